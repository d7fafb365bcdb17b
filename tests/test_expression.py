"""Pose and identity removal, stage by stage, on hand-built inputs with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dfe.extraction.expression import (align_to_canonical, anchor_weights, blendshape_activity, estimate_neutral,
                                       geometry_psi, landmarks_to_image_space, psi_norms, similarity_procrustes)
from dfe.extraction.face import BLENDSHAPE_NAMES
from dfe.extraction.mesh import canonical_mesh


def test_landmarks_to_image_space_by_hand():
    lm = np.zeros((478, 3))
    lm[0] = [0.25, 0.5, -0.1]
    out = landmarks_to_image_space(lm, width=640, height=480)
    assert out.shape == (468, 3)
    np.testing.assert_allclose(out[0], [160.0, -240.0, 64.0])  # (x W, -y H, -z W)


def test_similarity_procrustes_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(40, 3))
    rot = Rotation.from_euler("xyz", [10, -25, 40], degrees=True).as_matrix()
    dst = 2.5 * src @ rot.T + [1.0, -2.0, 3.0]
    s, r, t = similarity_procrustes(src, dst, np.ones(40))
    assert s == pytest.approx(2.5) and np.allclose(r, rot) and np.allclose(t, [1.0, -2.0, 3.0])
    # weights: points with weight 0 do not pull the fit
    noisy = dst.copy()
    noisy[:5] += 10
    w = np.ones(40)
    w[:5] = 0
    s2, r2, _ = similarity_procrustes(src, noisy, w)
    assert s2 == pytest.approx(2.5) and np.allclose(r2, rot)


def test_alignment_undoes_pose_and_reports_it():
    """Canonical face rotated (yaw 20, pitch -10, roll 5), scaled to pixels and written as MediaPipe
    landmarks: aligning gives back the canonical face and those angles."""
    mesh = canonical_mesh()
    W, H = 800, 600
    rot = Rotation.from_euler("YXZ", [20, -10, 5], degrees=True).as_matrix()
    pix = 9.0 * mesh.vertices @ rot.T + [400, -300, 0]  # image space: (x, -y, -z) in pixels
    lm = np.zeros((478, 3))
    lm[:468] = np.stack([pix[:, 0] / W, -pix[:, 1] / H, -pix[:, 2] / W], 1)
    al = align_to_canonical(lm, W, H, mesh)
    np.testing.assert_allclose(al.mesh, mesh.vertices, atol=1e-6)
    assert al.rmse < 1e-6 and al.scale == pytest.approx(1 / 9.0)
    np.testing.assert_allclose(al.pose_angles, [20, -10, 5], atol=1e-6)


def test_anchor_weights_schemes():
    mesh = canonical_mesh()
    basis = anchor_weights(mesh, "basis")
    assert basis.sum() == len(mesh.basis_ids) and set(np.flatnonzero(basis)) == set(mesh.basis_ids.tolist())
    assert np.allclose(anchor_weights(mesh, "mediapipe")[mesh.basis_ids], mesh.basis_weights)
    assert (anchor_weights(mesh, "robust") > 0).all()
    with pytest.raises(ValueError):
        anchor_weights(mesh, "nonsense")


def test_neutral_from_least_expressive_frames():
    """10 frames; the neutral is the median of the ceil(10%)=1 -> at least 3 calmest frames."""
    rng = np.random.default_rng(1)
    aligned = rng.normal(size=(10, 468, 3))
    bs = np.zeros((10, 52))
    activity = np.array([5, 1, 9, 0.5, 7, 2, 8, 6, 3, 4], dtype=float)
    bs[:, BLENDSHAPE_NAMES.index("jawOpen")] = activity
    bs[:, BLENDSHAPE_NAMES.index("eyeLookUpLeft")] = 100 * rng.random(10)  # gaze is not expression
    bs[:, 0] = 50  # _neutral is not expression either
    np.testing.assert_allclose(blendshape_activity(bs), activity)
    neutral, k = estimate_neutral(aligned, bs)
    assert k == 3
    np.testing.assert_allclose(neutral, np.median(aligned[[3, 1, 5]], axis=0))
    neutral30, k30 = estimate_neutral(np.repeat(aligned, 4, 0), np.repeat(bs, 4, 0))
    assert k30 == 4  # ceil(0.1 * 40)


def test_psi_is_displacement_vertex_major():
    aligned = np.zeros((2, 468, 3))
    aligned[1, 7] = [3.0, 4.0, 0.0]
    psi = geometry_psi(aligned, np.zeros((468, 3)))
    assert psi.shape == (2, 1404) and psi.dtype == np.float32
    np.testing.assert_array_equal(psi[1, 21:24], [3.0, 4.0, 0.0])
    norms = psi_norms(psi)
    assert norms[1, 7] == 5.0 and norms.sum() == 5.0


def test_robust_scheme_weights_and_outliers():
    """The rejected robust scheme stays as documented: MediaPipe's weights plus 0.002 everywhere,
    and its re-weighting ignores vertices that sit far off (here 40 vertices moved 3 cm)."""
    mesh = canonical_mesh()
    np.testing.assert_allclose(anchor_weights(mesh, "robust") - anchor_weights(mesh, "mediapipe"), 0.002)
    W, H = 800, 600
    pix = 9.0 * mesh.vertices + [400, -300, 0]
    far = np.setdiff1d(np.arange(468), mesh.basis_ids)[:40]
    pix[far] += [27.0, 0.0, 0.0]
    lm = np.zeros((478, 3))
    lm[:468] = np.stack([pix[:, 0] / W, -pix[:, 1] / H, -pix[:, 2] / W], 1)
    one = align_to_canonical(lm, W, H, mesh, scheme="robust", iterations=1)
    three = align_to_canonical(lm, W, H, mesh, scheme="robust")
    assert three.rmse < 1e-6 and one.rmse > 0.05  # re-weighting moves the fit back onto the undisturbed face


def test_activity_counts_every_expression_blendshape():
    b = np.zeros((1, 52))
    b[0, BLENDSHAPE_NAMES.index("browDownLeft")] = 0.3  # index 1: the first real expression
    b[0, BLENDSHAPE_NAMES.index("noseSneerRight")] = 0.2  # the last one
    assert blendshape_activity(b)[0] == pytest.approx(0.5)
