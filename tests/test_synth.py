"""dfe synth: FACS units warped onto real photos, with their ground truth."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from scipy.linalg import orthogonal_procrustes
from typer.testing import CliRunner

import dfe
from dfe.cli import app
from dfe.extraction.expression import align_to_canonical
from dfe.extraction.mesh import canonical_mesh
from dfe.extraction.synth import (SynthError, canonical_to_image, image_to_pixels, load_photo, synthesize_face,
                                  target_pixels)
from dfe.extraction.units import Unit, displacement, parse_units

from conftest import FACES

PHOTO = FACES / "london" / "001_neutral.jpg"
OTHER = FACES / "canada" / "003f.jpg"
runner = CliRunner()


def _bgr(path):
    return cv2.imread(str(path))


def _cos(a, b):
    a, b = np.ravel(a), np.ravel(b)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_intensity_scale_one_side_and_both():
    """AU12L=0.5 moves the person's left lip corner (MediaPipe 291, +x side) 0.5 cm and not the
    right one; AU12=0.8 moves both 0.8 cm (read straight off naming.npz's shapes)."""
    with np.load(Path(dfe.__file__).parent / "data" / "naming.npz") as z:
        names = [str(n) for n in z["names"]]
        shapes = z["shapes"].reshape(len(names), -1, 3)
    left = shapes[names.index("mouthSmileLeft")]
    expected = 0.5 * left / np.linalg.norm(left, axis=1).max()
    d = displacement(parse_units(["AU12L=0.5"]))
    np.testing.assert_allclose(d, expected, atol=1e-6)
    assert np.linalg.norm(d, axis=1).max() == pytest.approx(0.5)
    both = np.linalg.norm(displacement(parse_units(["AU12=0.8"])), axis=1)
    assert both[291] == pytest.approx(0.8, abs=0.05) and both[61] == pytest.approx(0.8, abs=0.05)
    assert both.max() == pytest.approx(0.8, abs=1e-6)


def test_round_trip_on_canonical_face_removes_only_the_similarity_part():
    """Canonical face placed in a 640x480 photo by a known similarity; displacement -> pixels ->
    landmarks -> dfe's alignment gives the displacement less its similarity part (computed here
    with scipy's orthogonal Procrustes on the 33 basis points), to float precision."""
    mesh = canonical_mesh()
    w, h = 640, 480
    angle = np.deg2rad([8.0, -12.0, 5.0])
    rot = cv2.Rodrigues(angle)[0]
    img = 13.0 * mesh.vertices @ rot.T + [320.0, -250.0, 40.0]  # image space: x right, y up, z to camera
    landmarks = np.stack([img[:, 0] / w, -img[:, 1] / h, -img[:, 2] / w], 1)
    align = align_to_canonical(landmarks, w, h)
    np.testing.assert_allclose(align.mesh, mesh.vertices, atol=1e-9)
    np.testing.assert_allclose(canonical_to_image(align.mesh, align), img, atol=1e-9)  # the inverse, exactly
    d = displacement(parse_units(["AU12=0.6", "AU4=0.6", "AU26/27=1.0"]))
    moved = canonical_to_image(align.mesh + d, align)
    np.testing.assert_allclose(image_to_pixels(moved), target_pixels(align, d), atol=1e-9)
    again = align_to_canonical(np.stack([moved[:, 0] / w, -moved[:, 1] / h, -moved[:, 2] / w], 1), w, h)
    # independent similarity fit of (canonical + d) onto canonical on the basis points
    ids = mesh.basis_ids
    src, dst = mesh.vertices[ids] + d[ids], mesh.vertices[ids]
    sc, dc = src - src.mean(0), dst - dst.mean(0)
    r, _ = orthogonal_procrustes(sc, dc)
    s = np.trace(sc @ r @ dc.T) / np.sum(sc**2)
    expected = s * (mesh.vertices + d - src.mean(0)) @ r + dst.mean(0) - mesh.vertices
    np.testing.assert_allclose(again.mesh - mesh.vertices, expected, atol=1e-9)
    assert np.abs(expected - d).max() > 0.01  # the similarity part is not nothing


def test_zero_displacement_reproduces_the_photo_and_border_stays_put():
    rgb, face = load_photo(PHOTO)
    image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    same = synthesize_face(image, face, [])
    assert np.array_equal(same.image, image)  # resampling at d = 0 is exact (before JPEG)
    moved = synthesize_face(image, face, parse_units(["AU26/27=1.0"])).image
    np.testing.assert_array_equal(moved[[0, -1]], image[[0, -1]])  # fixed anchors on the border
    np.testing.assert_array_equal(moved[:, [0, -1]], image[:, [0, -1]])
    assert np.abs(moved.astype(int) - image).mean() > 0.5  # and the face did move


def test_warp_moves_mediapipes_landmarks_by_the_intended_displacement():
    """On two real neutral photos, MediaPipe's landmarks on the warped photo move along the
    applied displacement. Floors are generous: bench/synth.py measures the ceiling per unit."""
    from dfe.extraction.face import FaceLandmarker

    with FaceLandmarker("image", 1) as lm:
        for path in (PHOTO, OTHER):
            rgb, face = load_photo(path)
            for specs, floor in ((["AU12=0.6"], 0.6), (["AU1=0.6", "AU2=0.6"], 0.3)):
                result = synthesize_face(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), face, parse_units(specs))
                warped = cv2.cvtColor(result.image, cv2.COLOR_BGR2RGB)
                obs = lm.detect(warped)[0]
                # pixels: where MediaPipe's vertices went vs where the warp sent them
                seen = obs.landmarks[:468, :2] * [face.width, face.height] - face.pixels
                sent = result.target_px - result.source_px
                moving = np.linalg.norm(sent, axis=1) > 0.3 * np.linalg.norm(sent, axis=1).max()
                assert _cos(seen[moving], sent[moving]) > floor, (path.name, specs)
                # psi with the person's own photo as reference vs the applied displacement
                psi = align_to_canonical(obs.landmarks, face.width, face.height).mesh - face.alignment.mesh
                d = result.displacement
                assert _cos(psi, d) > floor - 0.1, (path.name, specs)
                assert 0.2 < float(psi.ravel() @ d.ravel() / (d.ravel() @ d.ravel())) < 1.5


def test_cli_writes_photo_card_and_truth_and_resumes(tmp_path):
    out = tmp_path / "out"
    args = ["synth", str(PHOTO), "--unit", "AU4=0.6", "--unit", "AU15L=0.4", "-o", str(out)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    card = json.loads((out / "001_neutral.json").read_text())
    assert [(u["unit"], u["intensity"]) for u in card["units"]] == [("AU4", 0.6), ("AU15L", 0.4)]
    assert card["peak_cm"] == pytest.approx(0.6, abs=1e-4) and card["source"] == str(PHOTO.resolve())
    # px per cm, independently: outer eye corners' distance in the photo over the canonical one
    rgb, face = load_photo(PHOTO)
    mesh = canonical_mesh()
    px = face.pixels
    expected = np.linalg.norm(px[33] - px[263]) / np.linalg.norm(mesh.vertices[33] - mesh.vertices[263])
    assert card["px_per_cm"] == pytest.approx(expected, rel=0.08)
    truth = pd.read_parquet(out / "001_neutral.truth.parquet")
    d = truth[["dx_cm", "dy_cm", "dz_cm"]].to_numpy()
    np.testing.assert_allclose(d, 0.6 * _peak1(Unit("AU4")) + 0.4 * _peak1(Unit("AU15", "left")), atol=1e-5)
    corners = np.linalg.norm(d[[61, 291]], axis=1)
    assert corners[0] < 0.01 and corners[1] > 0.3  # AU15L: the person's left lip corner (291) only
    photo = cv2.imread(str(out / "001_neutral.jpg"))
    assert photo.shape == _bgr(PHOTO).shape
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "1 up to date" in again.output


def _peak1(unit: Unit) -> np.ndarray:
    from dfe.extraction.units import unit_shape

    return unit_shape(unit)


def test_control_photo_pixel_error(tmp_path):
    r = runner.invoke(app, ["synth", str(PHOTO), "--control", "-o", str(tmp_path)])
    assert r.exit_code == 0, r.output
    err = np.abs(cv2.imread(str(tmp_path / "001_neutral.jpg")).astype(int) - _bgr(PHOTO)).mean()
    assert err < 2.0  # JPEG at quality 95 only
    truth = pd.read_parquet(tmp_path / "001_neutral.truth.parquet")
    assert (truth[["dx_cm", "dy_cm", "dz_cm", "dx_px", "dy_px"]].to_numpy() == 0).all()


@pytest.mark.parametrize("specs, words", [
    (["AU99=0.5"], "unknown action unit 'AU99'"),
    (["AU4=2.5"], "out of range"),
    (["AU4=-0.3"], "out of range"),
    (["AU4L=0.3x"], "cannot read unit"),
])
def test_bad_units_are_one_sentence_naming_the_photo(tmp_path, specs, words):
    args = ["synth", str(PHOTO), "-o", str(tmp_path / "out")] + [a for s in specs for a in ("--unit", s)]
    r = runner.invoke(app, args)
    assert r.exit_code == 2
    assert words in r.output and "001_neutral.jpg" in r.output and r.output.count("\n") == 1
    assert not (tmp_path / "out").exists()  # nothing written


def test_no_face_and_fold_fail_their_photo_only(tmp_path):
    background = tmp_path / "wall.jpg"
    cv2.imwrite(str(background), _bgr(PHOTO)[:150, :200])  # the grey wall above the head
    out = tmp_path / "out"
    r = runner.invoke(app, ["synth", str(background), str(PHOTO), str(OTHER), "--unit", "AU45=1.5", "-o", str(out)])
    assert r.exit_code == 1
    report = {x["id"]: x for x in json.loads((out / "report.json").read_text())["results"]}
    assert report["wall"]["error"] == "no face found in wall.jpg"
    assert "would fold the face mesh of 001_neutral.jpg" in report["001_neutral"]["error"]
    assert "fold" in report["003f"]["error"]
    leftovers = sorted(p.name for p in out.iterdir() if p.name not in ("manifest.sqlite", "report.json", "native.log"))
    assert leftovers == []  # nothing half-written
    with pytest.raises(SynthError, match="would fold the face mesh of x.jpg"):
        rgb, face = load_photo(PHOTO)
        synthesize_face(_bgr(PHOTO), face, parse_units(["AU45=1.5"]), "x.jpg")
