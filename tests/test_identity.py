"""Who vs what: the face model separates identity from expression.

Synthetic cases have answers computed by hand from the model's definition; real cases use people
the model never saw (a model built from Canada neutrals + the videos only, evaluated on London).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dfe.extraction.expression import calm_frames, psi_norms
from dfe.extraction.identity import (DIM, FaceModel, FaceModelError, build_face_model, load_face_model, rig_inputs,
                                     track_neutral)
from dfe.extraction.mesh import MOUTH_CORNERS, canonical_mesh

from conftest import FACES

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))


def toy_model(expression_along_first: float = 0.0, noise: float = 0.01) -> FaceModel:
    """Three orthonormal identity directions with variance 1 (cm^2); optionally an expression
    covariance of ``expression_along_first``^2 along the first identity direction."""
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(DIM, 4)))
    basis = q[:, :3].T
    factor = np.vstack([expression_along_first * basis[0], 1e-6 * q[:, 3]])
    rig = np.zeros((52, DIM))
    rig[44] = 0.5 * q[:, 3]  # mouthSmileLeft moves along a direction no identity has
    return FaceModel(canonical_mesh().vertices.reshape(-1), basis, np.ones(3), factor, rig, noise)


def test_fit_recovers_known_identity_and_expression():
    model = toy_model()
    a = np.array([0.7, -1.2, 0.4])
    bs = np.zeros((1, 52))
    bs[0, 44] = 0.8
    expr = 0.8 * model.rig[44]
    x = model.mean + a @ model.identity_basis + expr
    fit = model.fit(x.reshape(1, 468, 3), bs)
    # prior variance 1, noise 0.01^2: posterior mean = a / (1 + 1e-4)
    np.testing.assert_allclose(fit.coefficients, a / (1 + 1e-4), atol=1e-6)
    psi = x - fit.neutral.reshape(-1)
    np.testing.assert_allclose(psi, expr, atol=1e-3)
    # a neutral photo of the same person: psi ~ 0
    neutral_psi = (model.mean + a @ model.identity_basis) - model.fit(
        (model.mean + a @ model.identity_basis).reshape(1, 468, 3), np.zeros((1, 52))).neutral.reshape(-1)
    assert np.abs(neutral_psi).max() < 1e-3


def test_expression_like_identity_is_left_to_expression():
    """Where expressions vary (variance 100 along identity direction 0), one frame barely moves the
    identity that way: posterior mean = 1 / (1 + 100 + noise^2) of the observed offset; with n
    frames the expression variance divides by min(n, 20)."""
    model = toy_model(expression_along_first=10.0)
    offset = 2.0
    x = model.mean + offset * model.identity_basis[0]
    one = model.fit(x.reshape(1, 468, 3), np.zeros((1, 52))).coefficients
    assert one[0] == pytest.approx(offset / (1 + 100 + 1e-4), rel=1e-4)
    assert one[1] == pytest.approx(0, abs=1e-9)
    many = model.fit(np.repeat(x.reshape(1, 468, 3), 20, 0), np.zeros((20, 52))).coefficients
    assert many[0] == pytest.approx(offset / (1 + 100 / 20 + 1e-4 / 20), rel=1e-4)
    capped = model.fit(np.repeat(x.reshape(1, 468, 3), 60, 0), np.zeros((60, 52))).coefficients
    assert capped[0] == pytest.approx(many[0], rel=1e-9)


def test_build_recovers_identity_subspace_and_rig():
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(DIM, 6)))
    ids = rng.normal(size=(60, 4)) * [3, 2, 1.5, 1] @ q[:, :4].T + canonical_mesh().vertices.reshape(-1)
    true_rig = np.zeros((52, DIM))
    true_rig[25] = 2 * q[:, 4]  # jawOpen
    true_rig[9] = 1 * q[:, 5]  # eyeBlinkLeft
    bs = np.zeros((200, 52))
    bs[:, [25, 9]] = rng.uniform(0, 1, (200, 2))
    bs[:, 11] = rng.uniform(0, 1, 200)  # gaze: ignored by the rig
    expr = bs @ true_rig
    model = build_face_model(ids.reshape(60, 468, 3), np.zeros((60, 52)), expr.reshape(200, 468, 3), bs, ridge=1e-6)
    assert model.n_identity == 4
    # principal angles between the recovered and the true identity subspace ~ 0
    s = np.linalg.svd(model.identity_basis @ q[:, :4], compute_uv=False)
    assert s.min() > 0.999
    np.testing.assert_allclose(model.rig[[25, 9]], true_rig[[25, 9]], atol=1e-4)
    assert np.abs(model.rig[11]).max() == 0 and np.abs(rig_inputs(bs)[:, 11]).max() == 0


def test_face_model_file_round_trip_and_damage(tmp_path):
    model = toy_model()
    model.save(tmp_path / "m.npz")
    back = FaceModel.load(tmp_path / "m.npz")
    np.testing.assert_allclose(back.identity_basis, model.identity_basis, atol=1e-6)
    raw = bytearray((tmp_path / "m.npz").read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = b"\x00" * 64
    (tmp_path / "bad.npz").write_bytes(bytes(raw))
    with pytest.raises(FaceModelError, match="bad.npz"):
        FaceModel.load(tmp_path / "bad.npz")
    with pytest.raises(FaceModelError, match="missing.npz"):
        FaceModel.load(tmp_path / "missing.npz")


def test_bundled_face_model_carries_credits():
    model = load_face_model()
    assert model.n_identity >= 70 and model.meta["neutral_faces"] == 80
    assert any("London" in s for s in model.meta["sources"]) and any("Canada" in s for s in model.meta["sources"])


# ------------------------------------------------------------------------------ real, held out

def _figures(model, data):
    def psi(aligned, bs):
        return np.array([a - model.fit(a[None], b[None]).neutral for a, b in zip(aligned, bs)]).reshape(len(aligned), -1)

    true = (data.london_smiling - data.london_neutral).reshape(40, -1)
    pn, ps = psi(data.london_neutral, data.london_neutral_bs), psi(data.london_smiling, data.london_smiling_bs)
    worst = lambda v: np.linalg.norm(v.reshape(len(v), -1, 3), axis=2).max(1)  # noqa: E731
    cos = (ps * true).sum(1) / np.linalg.norm(ps, axis=1) / np.linalg.norm(true, axis=1)
    size = np.linalg.norm(ps, axis=1) / np.linalg.norm(true, axis=1)
    a = ps / np.linalg.norm(ps, axis=1, keepdims=True)
    b = pn / np.linalg.norm(pn, axis=1, keepdims=True)
    reid = int((np.argmax(a @ b.T, 1) == np.arange(40)).sum())
    return np.median(worst(pn)) / np.median(worst(true)), np.median(cos), np.median(size), reid


def test_single_photo_psi_is_identity_free_on_unseen_people(face_data):
    from build_face_model import training_sets

    model = build_face_model(**training_sets(face_data, london=False))  # no London person in it
    neutral_ratio, cos, size, reid = _figures(model, face_data)
    # measured: 0.36, 0.90, 1.06, 8/40 (canonical face: 1.26, 0.63, 1.66, 11/40)
    assert neutral_ratio < 0.45 and cos > 0.87 and 0.85 < size < 1.2 and reid <= 11
    # the canonical face as reference, computed here without the model: far worse
    can = canonical_mesh().vertices.reshape(-1)
    true = (face_data.london_smiling - face_data.london_neutral).reshape(40, -1)
    ps = face_data.london_smiling.reshape(40, -1) - can
    assert np.median((ps * true).sum(1) / np.linalg.norm(ps, axis=1) / np.linalg.norm(true, axis=1)) < 0.7
    # pose photos of one still person: the model fit absorbs most of the pose leak (0.30 cm raw)
    fits = np.array([a - model.fit(a[None], b[None]).neutral for a, b in zip(face_data.pose, face_data.pose_bs)])
    spread = np.median(np.linalg.norm(fits - fits.mean(0), axis=2).max(1))
    assert spread < 0.2  # measured 0.13 cm with the full model


def test_smiling_only_video_keeps_its_smile(face_data):
    """single_face.mp4, frames with smile > 0.5 only: the track neutral takes the smile for the
    neutral (psi 0.27x the reference); the default model fit on calm frames does not."""
    from build_face_model import training_sets

    from dfe.extraction.expression import estimate_neutral

    aligned, bs = face_data.videos["single_face.mp4"]
    ref = (aligned - estimate_neutral(aligned, bs)[0]).reshape(len(aligned), -1)
    keep = bs[:, 44:46].mean(1) > 0.5
    model = build_face_model(**training_sets(face_data, videos=("WolfgangLanger_Pexels.mp4",)))
    neutral = track_neutral(aligned[keep], bs[keep], video=True, model=model)
    assert neutral.source == "track+model" and neutral.frames == len(calm_frames(bs[keep]))
    psi = (aligned[keep] - neutral.mesh).reshape(keep.sum(), -1)
    r = ref[keep]
    cos = (psi * r).sum(1) / np.linalg.norm(psi, axis=1) / np.linalg.norm(r, axis=1)
    size = np.linalg.norm(psi, axis=1) / np.linalg.norm(r, axis=1)
    assert np.median(cos) > 0.93 and np.median(size) > 0.75  # measured 0.969, 0.86
    old = track_neutral(aligned[keep], bs[keep], video=True, mode="track", model=model)
    assert np.median(np.linalg.norm((aligned[keep] - old.mesh).reshape(keep.sum(), -1), axis=1)
                     / np.linalg.norm(r, axis=1)) < 0.4


def test_extract_identity_modes_and_persons(tmp_path):
    from dfe.extraction.pipeline import ExtractOptions
    from dfe.runs.extract import extract
    from dfe.table import PSI_STEP, identity_columns, psi_array, read_table

    photos = [FACES / "london" / "003_neutral.jpg", FACES / "london" / "003_smiling.jpg"]
    persons = tmp_path / "persons.csv"
    pd.DataFrame({"image": [str(p) for p in photos], "person": ["003", "003"]}).to_csv(persons, index=False)
    runs = {"auto": ExtractOptions(progress=False), "canonical": ExtractOptions(identity="canonical", progress=False),
            "persons": ExtractOptions(persons=str(persons), progress=False),
            "neutral": ExtractOptions(neutral="auto", progress=False)}
    tables = {}
    for name, opts in runs.items():
        assert extract(photos, tmp_path / name, opts).ok
        tables[name] = {p.stem: read_table(tmp_path / name / f"{p.stem}.parquet") for p in photos}
    auto, pooled = tables["auto"], tables["persons"]
    assert auto["003_smiling"]["neutral_source"].iloc[0] == "model"
    assert tables["canonical"]["003_smiling"]["neutral_source"].iloc[0] == "canonical"
    assert tables["neutral"]["003_smiling"]["neutral_source"].iloc[0] == "image:003_neutral.jpg"
    assert pooled["003_smiling"]["neutral_source"].iloc[0] == "person+model"
    ids = identity_columns(load_face_model().n_identity)
    # one identity for the person's two photos, and two different ones without --persons
    np.testing.assert_array_equal(pooled["003_smiling"][ids].to_numpy(), pooled["003_neutral"][ids].to_numpy())
    assert not np.allclose(auto["003_smiling"][ids].to_numpy(), auto["003_neutral"][ids].to_numpy())
    # one shared neutral: the two photos' psi differ by exactly the smile measured against the
    # neutral photo itself
    np.testing.assert_allclose(psi_array(pooled["003_smiling"]) - psi_array(pooled["003_neutral"]),
                               psi_array(tables["neutral"]["003_smiling"]), atol=1.01 * PSI_STEP)  # tables store psi to 10 um
    # the mouth corners move more in the smile's psi than in the neutral's
    corners = list(MOUTH_CORNERS)
    n, s = (psi_norms(psi_array(auto[k]))[0, corners].mean() for k in ("003_neutral", "003_smiling"))
    assert s > 1.3 * n
    # the canonical face leaves the face shape in psi: the neutral photo's psi is large
    assert np.linalg.norm(psi_array(tables["canonical"]["003_neutral"])) > 2 * np.linalg.norm(
        psi_array(auto["003_neutral"]))


def test_cli_rejects_unknown_identity_mode(tmp_path):
    from typer.testing import CliRunner

    from dfe.cli import app

    res = CliRunner().invoke(app, ["extract", str(FACES / "single_face.jpg"), "-o", str(tmp_path), "--identity", "magic"])
    assert res.exit_code == 2 and "--identity must be one of" in res.output


def test_track_neutral_modes_and_calm_frames():
    """Which neutral each mode picks, on a toy model: hand-built answers."""
    from dfe.extraction.expression import estimate_neutral

    model = toy_model()
    rng = np.random.default_rng(2)
    aligned = (model.mean + rng.normal(scale=0.1, size=(12, DIM))).reshape(12, 468, 3)
    bs = np.zeros((12, 52))
    bs[:, 25] = np.arange(12)[::-1] / 12  # jawOpen: frames 11, 10, 9 are the calmest
    np.testing.assert_array_equal(calm_frames(bs), [11, 10, 9])  # ceil(10% of 12) = 2 -> at least 3
    np.testing.assert_array_equal(calm_frames(np.repeat(bs, 5, 0)), [55, 56, 57, 58, 59, 50])  # stable order
    assert len(calm_frames(np.repeat(bs, 5, 0))) == 6  # ceil(0.1 * 60)
    can = canonical_mesh().vertices
    auto_video = track_neutral(aligned, bs, video=True, model=model)
    np.testing.assert_allclose(auto_video.mesh, model.fit(aligned[[11, 10, 9]], bs[[11, 10, 9]]).neutral)
    assert (auto_video.source, auto_video.frames) == ("track+model", 3)
    every = track_neutral(aligned, bs, video=True, mode="model", model=model)
    np.testing.assert_allclose(every.mesh, model.fit(aligned, bs).neutral)
    assert (every.source, every.frames) == ("model", 12)
    photo = track_neutral(aligned[:1], bs[:1], video=False, model=model)
    assert photo.source == "model" and photo.frames == 1
    track = track_neutral(aligned, bs, video=True, mode="track", model=model)
    np.testing.assert_allclose(track.mesh, estimate_neutral(aligned, bs)[0])
    assert track.source == "track"
    for video in (True, False):
        c = track_neutral(aligned, bs, video=video, mode="canonical", model=model)
        np.testing.assert_allclose(c.mesh, can)
        assert (c.source, c.frames) == ("canonical", 0)
    assert track_neutral(aligned[:1], bs[:1], video=False, mode="track", model=model).source == "canonical"
    ref = track_neutral(aligned, bs, video=True, model=model, reference=can * 2, reference_name="n.jpg")
    assert ref.source == "image:n.jpg" and np.allclose(ref.mesh, can * 2)
    person = model.fit(aligned[:2], bs[:2])
    pooled = track_neutral(aligned[:1], bs[:1], video=False, model=model, person=person)
    assert pooled.source == "person+model" and pooled.frames == 2 and np.allclose(pooled.mesh, person.neutral)
    with pytest.raises(ValueError, match="identity mode"):
        track_neutral(aligned, bs, video=True, mode="magic", model=model)


def test_build_face_model_variances_are_sample_variances():
    rng = np.random.default_rng(4)
    faces = rng.normal(size=(10, DIM))
    model = build_face_model(faces.reshape(10, 468, 3), np.zeros((10, 52)), faces[:3].reshape(3, 468, 3) * 0,
                             np.zeros((3, 52)), n_identity=4)
    centred = faces - faces.mean(0)
    # the variance along each identity direction is the sample variance (n - 1) of the faces there
    np.testing.assert_allclose(model.identity_var, (centred @ model.identity_basis.T).var(0, ddof=1), rtol=1e-6)
    assert model.n_identity == 4 and np.allclose(model.mean, faces.mean(0))
    assert model.identity_var[0] >= model.identity_var[-1]


def test_prior_variance_and_expression_factor_by_hand():
    """Prior variance 0.25 and noise 0.5 (variance 0.25): one frame moves the identity halfway,
    a / (1 + noise^2 / var); the expression factor reproduces the displacements' second moments."""
    base = toy_model(noise=0.5)
    model = FaceModel(base.mean, base.identity_basis, np.full(3, 0.25), base.expression_factor, base.rig, 0.5)
    x = model.mean + 1.2 * model.identity_basis[1]
    fit = model.fit(x.reshape(1, 468, 3), np.zeros((1, 52)))
    np.testing.assert_allclose(fit.coefficients, [0, 0.6, 0], atol=1e-6)
    rng = np.random.default_rng(5)
    expr = rng.normal(size=(6, DIM))
    built = build_face_model(rng.normal(size=(8, 468, 3)), np.zeros((8, 52)), expr.reshape(6, 468, 3),
                             np.zeros((6, 52)), n_expression_factors=12)
    # no blendshapes: the rig predicts nothing, so the covariance is (E^T E + E^T E) / m
    np.testing.assert_allclose(built.expression_factor.T @ built.expression_factor, 2 * expr.T @ expr / 6, atol=1e-8)
