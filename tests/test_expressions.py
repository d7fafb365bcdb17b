"""Every facial action in a single photo's psi (issue 22): the face model's expression side, the
rigid anchors and the psi version. Held-out figures are measured by bench/expressions.py; these
tests assert generous floors on real photos of ../shared."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from dfe.extraction.expression import PSI_VERSION, align_to_canonical, realigned
from dfe.extraction.identity import FaceModel, load_face_model
from dfe.extraction.mesh import canonical_mesh
from dfe.extraction.units import displacement, parse_units
from dfe.table import (check_psi_versions, file_psi_version, find_tables, load_tables, psi_version, read_table,
                       write_table)

from conftest import FACES


def _cos(a, b) -> float:
    a, b = np.ravel(a), np.ravel(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_rigid_anchors_keep_cheek_units_with_perfect_landmarks():
    """A similarity re-alignment on the 33 basis points removes part of AU6+AU12 (cheek points are
    anchors); the rigid set leaves it. Expected values: the issue's 0.56-0.75 for basis."""
    d = displacement(parse_units(["AU6=0.6", "AU12=0.6"]))
    assert _cos(realigned(d, "basis"), d) < 0.8
    assert _cos(realigned(d, "rigid"), d) > 0.9
    brows = displacement(parse_units(["AU1=0.6", "AU2=0.6"]))
    assert _cos(realigned(brows, "rigid"), brows) > 0.9


def _landmarks(lm, rgb):
    found = lm.detect(rgb)
    assert found
    h, w = rgb.shape[:2]
    return align_to_canonical(found[0].landmarks, w, h).mesh, np.asarray(found[0].blendshapes, dtype=float)


def test_shipped_face_model_keeps_brow_and_lip_actions_in_a_single_photo():
    """dfe synth photos of two London people (in the model's fit: the held-out figures are the
    bench's): the share of each unit's change that default psi keeps, against the change with the
    person's real neutral photo. dfe 0.3's model kept 0.25-0.35 of brows and AU24."""
    from dfe.extraction.face import FaceLandmarker
    from dfe.extraction.synth import load_photo, synthesize_face

    model = load_face_model()
    assert model.psi_version == PSI_VERSION and model.anchors == "basis"
    shares: dict[str, list[float]] = {}
    with FaceLandmarker("image", 1) as lm:
        for person in ("003", "012"):
            rgb, face = load_photo(FACES / "london" / f"{person}_neutral.jpg")
            bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
            seen = {}
            for name, specs in {"control": [], "AU4": ["AU4=0.6"], "AU1+AU2": ["AU1=0.6", "AU2=0.6"],
                                "AU24": ["AU24=0.6"]}.items():
                warped = synthesize_face(bgr, face, parse_units(specs)).image
                seen[name] = _landmarks(lm, cv2.cvtColor(warped, cv2.COLOR_BGR2RGB))
            default = {k: x - model.fit(x[None], b[None]).neutral for k, (x, b) in seen.items()}
            for k in ("AU4", "AU1+AU2", "AU24"):
                ref = (seen[k][0] - seen["control"][0]).ravel()
                dfl = (default[k] - default["control"]).ravel()
                shares.setdefault(k, []).append(float(ref @ dfl / (ref @ ref)))
    print({k: np.round(v, 2) for k, v in shares.items()})
    assert min(shares["AU4"]) > 0.5 and min(shares["AU1+AU2"]) > 0.5  # measured 0.60-0.78
    assert min(shares["AU24"]) > 0.45  # measured 0.54-0.68


@pytest.fixture(scope="module")
def one_table(tmp_path_factory):
    """One London photo extracted with today's dfe (defaults: no reference)."""
    from dfe.extraction.pipeline import ExtractOptions
    from dfe.runs.extract import extract

    out = tmp_path_factory.mktemp("v2")
    report = extract([FACES / "london" / "005_smiling.jpg"], out, ExtractOptions(progress=False))
    assert report.ok
    return find_tables([out])[0]


def test_tables_record_the_psi_version_and_mixing_versions_is_one_sentence(one_table, tmp_path):
    df = read_table(one_table)
    assert psi_version(df) == PSI_VERSION == 2
    assert file_psi_version(one_table) == 2
    old = tmp_path / "old_photo.parquet"  # a table written by dfe 0.3 and earlier: no psi_version column
    write_table(df.drop(columns=["psi_version"]), old)
    assert file_psi_version(old) == 1
    csv = tmp_path / "old_csv.csv"
    df.drop(columns=["psi_version"]).to_csv(csv, index=False)
    assert file_psi_version(csv) == 1
    with pytest.raises(ValueError) as e:
        load_tables([one_table, old])
    msg = str(e.value)
    assert "old_photo.parquet" in msg and one_table.name in msg and "psi version 1" in msg and "\n" not in msg
    assert check_psi_versions({"a": 2, "b": 2}) == 2
    mixed = pd.concat([df, df.assign(psi_version=1)])
    with pytest.raises(ValueError, match="mixes psi versions 1 and 2"):
        psi_version(mixed, "mixed.parquet")


def test_tokenizer_records_the_psi_version_and_refuses_other_psi(one_table, tmp_path):
    from dfe.runs.demo import starter_model_path
    from dfe.tokens.tables import encode_table
    from dfe.tokens.tokenizer import Tokenizer

    tok = Tokenizer.load(starter_model_path())
    assert tok.psi_version == 2  # the starter was retrained on psi version 2
    df = read_table(one_table)
    assert (encode_table(df, tok)["tok_1"] >= 0).all()
    with pytest.raises(ValueError, match="psi version 1 but the model was trained on psi version 2"):
        encode_table(df.drop(columns=["psi_version"]), tok)
    tok.summary.data.pop("psi_version")  # a model written by dfe 0.3 and earlier
    assert tok.psi_version == 1
    path = tok.save(tmp_path / "old.dfe")
    assert Tokenizer.load(path).psi_version == 1


def test_old_face_model_files_load_as_psi_version_1_and_align_as_they_were_built(tmp_path):
    """A face model without a psi version (dfe 0.3) still loads as version 1 (basis anchors); a
    model built on other anchors aligns extraction on them."""
    from dfe.extraction.pipeline import ExtractOptions, extract_file

    new = load_face_model()
    old = FaceModel(new.mean, new.identity_basis, new.identity_var, new.expression_factor, new.rig, new.noise,
                    {k: v for k, v in new.meta.items() if k not in ("psi_version", "anchors")})
    path = old.save(tmp_path / "old_model.npz")
    loaded = FaceModel.load(path)
    assert loaded.psi_version == 1 and loaded.anchors == "basis"
    rigid = FaceModel(new.mean, new.identity_basis, new.identity_var, new.expression_factor, new.rig, new.noise,
                      {**new.meta, "anchors": "rigid"})
    rigid_path = rigid.save(tmp_path / "rigid_model.npz")
    photo = FACES / "london" / "005_neutral.jpg"
    v1 = extract_file(photo, ExtractOptions(face_model=str(path), identity="canonical"))
    v2 = extract_file(photo, ExtractOptions(face_model=str(rigid_path), identity="canonical"))
    assert v1["psi_version"].iloc[0] == 1 and v2["psi_version"].iloc[0] == 2
    lm = v2[[f"lm_{i}" for i in range(478 * 3)]].to_numpy(float).reshape(478, 3)
    from dfe.extraction.io import read_image

    h, w = read_image(photo).rgb.shape[:2]
    for table, scheme in ((v1, "basis"), (v2, "rigid")):
        psi = table[[f"psi_{i}" for i in range(1404)]].to_numpy(float).reshape(468, 3)
        expected = align_to_canonical(lm, w, h, scheme=scheme).mesh - canonical_mesh().vertices
        assert np.abs(psi - expected).max() < 1e-3
