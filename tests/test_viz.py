"""Visualisation: the numbers behind the heatmaps, decompositions with face crops."""

from __future__ import annotations

import numpy as np

from dfe.extraction.face import FaceLandmarker
from dfe.extraction.io import Frame
from dfe.extraction.mesh import MOUTH_CORNERS, canonical_mesh
from dfe.extraction.synthetic import action_recovery
from dfe.table import read_table
from dfe.tokens.tokenizer import Tokenizer
from dfe.views.figures import crop_face, decomposition_figure, geometry_of, read_face_crop

from conftest import run_dfe


def test_mouth_corner_code_peaks_at_mouth_corner(synthetic_tokenizer, corpus):
    tok = synthetic_tokenizer
    assert corpus.centres[0] == MOUTH_CORNERS[0]
    defs = tok.code_deformations()
    cos = action_recovery(defs, corpus.actions[:1])
    assert cos[0] >= 0.9
    unit = defs / np.linalg.norm(defs, axis=1, keepdims=True)
    code = int(np.argmax(unit @ (corpus.actions[0] / np.linalg.norm(corpus.actions[0]))))
    mag = np.linalg.norm(geometry_of(tok, tok.decode_code(code)), axis=1)  # (468,) cm
    verts = canonical_mesh().vertices
    peak = int(np.argmax(mag))
    assert np.linalg.norm(verts[peak] - verts[MOUTH_CORNERS[0]]) < 0.6, peak
    # localized: far from the mouth corner (> 3 cm) the code moves little
    far = np.linalg.norm(verts - verts[MOUTH_CORNERS[0]], axis=1) > 3.0
    assert mag[far].max() < 0.25 * mag.max()


def test_decomposition_crop_is_the_face(real_model, extracted, tmp_path):
    tok = Tokenizer.load(real_model)
    df = read_table(extracted / "WolfgangLanger_Pexels.parquet")
    row = df[df["success"] == 1].iloc[200]
    crop = read_face_crop(row["file"], row["frame"], (row["bbox_x"], row["bbox_y"], row["bbox_w"], row["bbox_h"]))
    assert crop is not None and crop.shape[0] > 100 and crop.shape[1] > 80
    with FaceLandmarker("image") as lm:
        faces = lm.detect(np.ascontiguousarray(crop))
    assert len(faces) == 1
    # the face fills the crop (margin 25% each side -> face about 2/3 of the crop)
    x, y, w, h = faces[0].bbox
    assert w > 0.45 * crop.shape[1] and h > 0.45 * crop.shape[0]
    png = decomposition_figure(tok, row, tmp_path / "dec.png")
    assert png.stat().st_size > 10_000


def test_show_cli(real_model, tmp_path):
    from conftest import VIDEOS

    out = tmp_path / "one.png"
    run = run_dfe("show", f"{VIDEOS / 'single_face.mp4'}:30",
                          "--model", str(real_model), "-o", str(out))
    assert run.returncode == 0, run.stderr
    assert out.stat().st_size > 10_000


def test_crop_face_scales_the_box_and_adds_the_margin():
    rgb = np.arange(100 * 200 * 3, dtype=np.uint8).reshape(100, 200, 3)
    half = Frame(0, 0.0, rgb, scale=0.5)  # decoded at half the original size
    # box (40, 20, 80, 40) original px -> (20, 10, 40, 20) here; 25% margin: x 10..70, y 5..35
    np.testing.assert_array_equal(crop_face(half, (40, 20, 80, 40)), rgb[5:35, 10:70])
    np.testing.assert_array_equal(crop_face(half, (0, 0, 80, 40), margin=0.0), rgb[0:20, 0:40])
    assert crop_face(half, (40, 20, float("nan"), 40)) is None  # no box: no crop
    assert crop_face(half, (1000, 20, 80, 40)) is None  # outside the frame

