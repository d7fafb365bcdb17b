"""OpenFace 2.2 ``FeatureExtraction`` CSV: write it from dfe's per-frame tables, read OpenFace files.

Columns, in OpenFace 2.2's order: ``frame, face_id, timestamp, confidence, success, gaze_0_x ..
gaze_angle_y, eye_lmk_* (NaN), pose_Tx, pose_Ty, pose_Tz, pose_Rx, pose_Ry, pose_Rz, x_0 .. x_67,
y_0 .. y_67, X_0 .. Z_67, p_scale .. p_33 (NaN), AU01_r .. AU45_r, AU01_c .. AU45_c``, then dfe's own
columns (file, blendshapes, AU*_r_blendshapes, au_version, psi_kind, tokens, psi ...; not the 478 raw
landmarks); ``au_version`` is 1 for AU columns a dfe 0.4-0.6 table stored, 2 for today's.
Units as OpenFace: frame 1-based, pixels for x/y, mm and camera coordinates (x right, y down, z away
from the camera) for X/Y/Z and pose_T, radians for pose_R (R = Rx Ry Rz of the head in camera
coordinates) and gaze. ``confidence`` is 1 - (align_rmse / 1.2 cm)^2 clipped to [0, 1] (how well the
face fits the canonical face; not OpenFace's detector confidence). AU intensities are on dfe's scale
(cm of peak movement, :mod:`dfe.extraction.units`), not OpenFace's 0-5.

68 landmarks from MediaPipe's 468 (:data:`LANDMARKS_68`): jaw, brows and nose (0-35) are the
MediaPipe vertices nearest ICT FaceKit's ``landmarks68`` once ICT's neutral face is registered onto
MediaPipe's canonical face (``scripts/build_naming.py``'s ``register``); eyes and lips (36-67) are
MediaPipe's own eye and lip contour vertices at the Multi-PIE positions (ICT's inner-lip landmarks
lie inside the mouth, where MediaPipe's mesh has no surface).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from dfe.errors import DfeError
from dfe.extraction.action_units import frame_action_units_and_gaze
from dfe.extraction.expression import MAX_ALIGN_RMSE, align_to_canonical
from dfe.extraction.gaze import table_image_size
from dfe.table import (AU_INTENSITY_COLUMNS, AU_PRESENCE_COLUMNS, BLENDSHAPE_COLUMNS, FRAME_AU_GAZE_COLUMNS,
                       GAZE_COLUMNS, LANDMARK_COLUMNS, has_action_units, landmarks_array, psi_columns)

LANDMARKS_68 = np.array([
    127, 234, 93, 177, 138, 136, 149, 171, 175, 396, 378, 365, 367, 401, 323, 454, 356,  # jaw 0-16 (ICT)
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,  # brows 17-26 (ICT)
    168, 197, 195, 4, 98, 97, 2, 326, 327,  # nose 27-35 (ICT)
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,  # eyes 36-47 (MediaPipe contours)
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,  # outer lips 48-59
    78, 82, 13, 312, 308, 317, 14, 87])  # inner lips 60-67

EYE_LANDMARK_COLUMNS = [f"eye_lmk_{a}_{i}" for a in ("x", "y", "X", "Y", "Z") for i in range(56)]
POSE_COLUMNS = ["pose_Tx", "pose_Ty", "pose_Tz", "pose_Rx", "pose_Ry", "pose_Rz"]
LANDMARK_68_COLUMNS = [f"{a}_{i}" for a in ("x", "y", "X", "Y", "Z") for i in range(68)]
SHAPE_COLUMNS = ["p_scale", "p_rx", "p_ry", "p_rz", "p_tx", "p_ty"] + [f"p_{i}" for i in range(34)]
OPENFACE_COLUMNS = (["frame", "face_id", "timestamp", "confidence", "success"] + GAZE_COLUMNS + EYE_LANDMARK_COLUMNS
                    + POSE_COLUMNS + LANDMARK_68_COLUMNS + SHAPE_COLUMNS + AU_INTENSITY_COLUMNS + AU_PRESENCE_COLUMNS)
_FLIP = np.diag([1.0, -1.0, -1.0])  # dfe's image axes (x right, y up, z to the camera) <-> OpenFace's


class OpenFaceError(DfeError, ValueError):
    """A file is not an OpenFace-style CSV (one sentence naming it)."""


def add_action_units(df: pd.DataFrame) -> pd.DataFrame:
    """A table with the per-frame action-unit and gaze columns, computed from psi, blendshapes and
    landmarks for tables written before dfe 0.4 (tables that have them are returned as they are)."""
    if has_action_units(df):
        return df

    n = len(df)
    psi = df[psi_columns(df)].to_numpy(np.float64) if psi_columns(df) else np.full((n, 1404), np.nan)

    bs = df[BLENDSHAPE_COLUMNS].to_numpy(np.float64) if set(BLENDSHAPE_COLUMNS) <= set(df.columns) else np.full((n, 52), np.nan)
    lm = df[LANDMARK_COLUMNS].to_numpy(np.float64) if set(LANDMARK_COLUMNS) <= set(df.columns) else np.full((n, 1434), np.nan)
    extra = frame_action_units_and_gaze(psi, bs, lm, df["bbox_w"], df["bbox_h"], df.get("neutral_source"))
    extra.index = df.index
    return pd.concat([df.drop(columns=[c for c in FRAME_AU_GAZE_COLUMNS + ["au_version"] if c in df.columns]), extra], axis=1)


def head_pose(df: pd.DataFrame) -> np.ndarray:
    """(n, 6) pose_Tx, pose_Ty, pose_Tz (mm) and pose_Rx, pose_Ry, pose_Rz (radians) in OpenFace's
    camera coordinates, from a table's pose_yaw/pitch/roll (degrees) and pose_tx/ty/tz (cm)."""
    from scipy.spatial.transform import Rotation

    out = np.full((len(df), 6), np.nan)
    ang = df[["pose_yaw", "pose_pitch", "pose_roll"]].to_numpy(float)
    ok = np.isfinite(ang).all(1)
    if ok.any():
        head = Rotation.from_euler("YXZ", ang[ok], degrees=True).as_matrix()  # canonical -> image axes
        out[ok, 3:] = Rotation.from_matrix(_FLIP @ head @ _FLIP).as_euler("XYZ")
    out[:, :3] = df[["pose_tx", "pose_ty", "pose_tz"]].to_numpy(float) * 10.0 * np.diag(_FLIP)
    return out


def landmarks_68(df: pd.DataFrame, pose_mm: np.ndarray) -> np.ndarray:
    """(n, 340) x_0..x_67, y_0..y_67 (pixels), X_0..Z_67 (mm, camera coordinates) of a table with
    landmarks (NaN without them)."""
    out = np.full((len(df), 5 * 68), np.nan)
    if not set(LANDMARK_COLUMNS) <= set(df.columns):
        return out
    lm = landmarks_array(df).astype(np.float64)
    width, height = table_image_size(df)
    for i in np.flatnonzero(np.isfinite(lm).all((1, 2)) & np.isfinite(width)):
        pts = lm[i, LANDMARKS_68]
        al = align_to_canonical(lm[i], width[i], height[i])
        cam = al.mesh[LANDMARKS_68] @ al.rotation + pose_mm[i, :3] / 10.0 * np.diag(_FLIP)  # canonical -> image axes, cm
        cam = 10.0 * cam @ _FLIP
        out[i] = np.concatenate([pts[:, 0] * width[i], pts[:, 1] * height[i], cam[:, 0], cam[:, 1], cam[:, 2]])
    return out


def openface_frame(df: pd.DataFrame) -> pd.DataFrame:
    """A dfe per-frame table as OpenFace 2.2 columns (see the module docstring), dfe's own columns after."""
    df = add_action_units(df.reset_index(drop=True))
    if "au_version" not in df.columns:  # AU columns stored by dfe 0.4-0.6: say so in the CSV
        df["au_version"] = 1
    n = len(df)
    pose = head_pose(df)
    success = df["success"].to_numpy(int)
    rmse = df["align_rmse"].to_numpy(float) if "align_rmse" in df else np.full(n, np.nan)
    conf = np.where(success == 1, np.clip(1 - (rmse / MAX_ALIGN_RMSE) ** 2, 0, 1), 0.0)
    blocks = {"frame": df["frame"].to_numpy(int) + 1, "face_id": np.maximum(df["face_id"].to_numpy(int), 0),
              "timestamp": df["timestamp"].to_numpy(float), "confidence": np.nan_to_num(conf), "success": success}
    head = pd.DataFrame(blocks)
    parts = [head, df[GAZE_COLUMNS], pd.DataFrame(np.nan, index=df.index, columns=EYE_LANDMARK_COLUMNS),
             pd.DataFrame(pose, columns=POSE_COLUMNS), pd.DataFrame(landmarks_68(df, pose), columns=LANDMARK_68_COLUMNS),
             pd.DataFrame(np.nan, index=df.index, columns=SHAPE_COLUMNS), df[AU_INTENSITY_COLUMNS + AU_PRESENCE_COLUMNS]]
    taken = set(OPENFACE_COLUMNS) | set(LANDMARK_COLUMNS)
    own = [c for c in df.columns if c not in taken]
    return pd.concat(parts + [df[own]], axis=1)


def read_openface(path: str | Path) -> pd.DataFrame:
    """An OpenFace CSV (2.2, or the older style with a space after every comma) as a DataFrame with
    clean column names. Raises :class:`OpenFaceError` naming the file."""
    path = Path(path)
    try:
        df = pd.read_csv(path, skipinitialspace=True)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise OpenFaceError(f"{path}: cannot read it as an OpenFace CSV ({type(e).__name__})") from None
    df.columns = [str(c).strip() for c in df.columns]
    if not {"frame", "success"} <= set(df.columns) or not any(c.startswith("AU") for c in df.columns):
        raise OpenFaceError(f"{path}: not an OpenFace CSV (no frame, success and AU* columns)")
    return df


