"""Paper-faithful input: FLAME expression parameters from EMOCA, DECA, inferno, SMIRK or a CSV.

The paper tokenizes FLAME expression parameters (50 expression values + 3 jaw rotation values).
This module reads what those tools write into dfe's per-frame tables (psi kind ``flame``, or
``flame+eyelids`` with SMIRK's 2 eyelid values), and, with the user's own FLAME model file, builds
the FLAME mesh so FLAME tokens can be drawn on the FLAME face.

Layouts read (:func:`find_flame_units` tells them apart):
- EMOCA/DECA ``--save_codes``, images: ``<out>/<image stem>/{shape,exp,tex,pose,detail}.npy``;
  arrays per item, often (1, 50) and (1, 6): psi = exp[:50] + jaw = pose[3:6]; pose[0:3] is the
  global head rotation (axis-angle) -> ``pose_yaw/pitch/roll``. One table for the image folder.
- EMOCA/DECA, video: ``<out>/<video>/results/<model>/<frame:06d>_<face:03d>/...``: the folder
  above ``results`` is the video (one table each), ``_<face>`` the face_id.
- inferno: ``exp.npy`` + ``jawpose.npy`` (+ ``globalpose.npy``) per image folder.
- SMIRK and other dicts in ``.npz`` / ``.pt`` / ``.pkl``: keys ``expression_params`` | ``exp`` |
  ``expcode``, ``jaw_params`` | ``jawpose`` | ``pose`` (6 values: jaw = [3:6]), optional
  ``eyelid_params`` (2 values); one frame per file (a folder of them) or stacked (T, 50).
- a CSV with columns ``exp_0..exp_49``, ``jaw_0..jaw_2`` and optionally ``frame``, ``face_id``,
  ``timestamp``, ``global_0..global_2``, ``eyelid_0, eyelid_1``.

Angles: FLAME's axis-angle vectors (x right, y up, z towards the camera) -> scipy rotation ->
intrinsic Y-X-Z Euler angles in degrees: yaw about y, pitch about x, roll about z (the same
convention as dfe's own pose columns).
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dfe.errors import DfeError
from dfe.table import psi_column_names

N_EXPRESSION = 50
EXP_KEYS = ("expression_params", "exp", "expcode", "expression")
JAW_KEYS = ("jaw_params", "jawpose", "jaw_pose", "jaw")
POSE_KEYS = ("pose", "posecode", "pose_params")  # 6 values: global rotation (3) then jaw (3)
GLOBAL_KEYS = ("globalpose", "global_pose", "global_params")
EYELID_KEYS = ("eyelid_params", "eyelids")
DICT_SUFFIXES = (".npz", ".pt", ".pth", ".pkl", ".pickle")
FRAME_DIR = re.compile(r"^(\d+)_(\d+)$")  # EMOCA video frames: <frame:06d>_<face:03d>


class FlameInputError(DfeError, ValueError):
    """A FLAME output that dfe cannot read (one sentence naming the file)."""


def natural_key(path: Path | str) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(path))]


# ---------------------------------------------------------------------- reading arrays

def read_flame_arrays(path: Path) -> dict[str, np.ndarray]:
    """Every array in one file: .npy (named by its stem), .npz, .pt/.pth (torch), .pkl (a dict)."""
    path = Path(path)
    try:
        if path.suffix == ".npy":
            obj = np.load(path, allow_pickle=False)
            return {path.stem: obj}
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        if path.suffix in (".pt", ".pth"):
            import torch

            obj = torch.load(path, map_location="cpu", weights_only=True)
        else:
            with open(path, "rb") as fh:
                obj = pickle.load(fh)
    except Exception as e:  # noqa: BLE001 - any unreadable file is one sentence
        raise FlameInputError(f"{path}: cannot read it ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise FlameInputError(f"{path}: holds a {type(obj).__name__}, not a dict of named arrays")
    return {str(k): np.asarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v) for k, v in obj.items()}


def _first(arrays: dict, keys: tuple[str, ...]) -> np.ndarray | None:
    return next((np.asarray(arrays[k], dtype=np.float64) for k in keys if k in arrays), None)


def _rows(a: np.ndarray, width: int, name: str, where: Path) -> np.ndarray:
    """An array of one frame ((width,), (1, width)) or of T frames ((T, width)) as (T, width)."""
    a = np.asarray(a, dtype=np.float64)
    a = a.reshape(1, -1) if a.ndim <= 1 or (a.ndim > 2 and a.shape[0] == 1) else a.reshape(a.shape[0], -1)
    if a.shape[1] < width:
        raise FlameInputError(f"{where}: {name} has {a.shape[1]} values per frame, expected at least {width}")
    if not np.isfinite(a).all():
        raise FlameInputError(f"{where}: {name} holds NaN or infinite values")
    return a


@dataclass
class FlameFrames:
    """FLAME parameters of the frames of one video (or one set of images): what becomes a table."""

    expression: np.ndarray  # (n, 50)
    jaw: np.ndarray  # (n, 3) axis-angle
    global_rotation: np.ndarray  # (n, 3) axis-angle; NaN where not given
    eyelids: np.ndarray | None  # (n, 2) or None
    frame: np.ndarray  # (n,)
    face_id: np.ndarray  # (n,)
    files: list[str]  # the file or folder each row came from


def frames_from_arrays(arrays: dict, where: Path) -> FlameFrames:
    """FLAME parameters from a dict of arrays in EMOCA/DECA/inferno/SMIRK naming (1 or T frames)."""
    exp = _first(arrays, EXP_KEYS)
    if exp is None:
        raise FlameInputError(f"{where}: no expression array (one of {', '.join(EXP_KEYS)}); found {', '.join(sorted(arrays)) or 'nothing'}")
    exp = _rows(exp, N_EXPRESSION, "the expression", where)[:, :N_EXPRESSION]
    n = len(exp)
    jaw, glob = _first(arrays, JAW_KEYS), _first(arrays, GLOBAL_KEYS)
    pose = _first(arrays, POSE_KEYS)
    if jaw is not None:
        jaw = _rows(jaw, 3, "the jaw pose", where)[:, -3:]
    elif pose is not None:
        pose = _rows(pose, 6, "the pose (global 3 + jaw 3)", where)
        jaw, glob = pose[:, 3:6], pose[:, 0:3] if glob is None else glob
    else:
        raise FlameInputError(f"{where}: no jaw pose (one of {', '.join(JAW_KEYS + POSE_KEYS)}); found {', '.join(sorted(arrays))}")
    glob = np.full((n, 3), np.nan) if glob is None else _rows(glob, 3, "the global pose", where)[:, :3]
    lids = _first(arrays, EYELID_KEYS)
    lids = None if lids is None else _rows(lids, 2, "the eyelids", where)[:, :2]
    for name, a in (("jaw pose", jaw), ("global pose", glob), ("eyelids", lids)):
        if a is not None and len(a) != n:
            raise FlameInputError(f"{where}: {n} expression frames but {len(a)} {name} frames")
    return FlameFrames(exp, jaw, glob, lids, np.arange(n), np.zeros(n, dtype=np.int64), [str(where)] * n)


def concat_frames(parts: list[FlameFrames], where: Path) -> FlameFrames:
    lids = [p.eyelids is not None for p in parts]
    if any(lids) and not all(lids):
        raise FlameInputError(f"{where}: some frames have eyelid parameters and some do not (mixed outputs)")
    return FlameFrames(np.vstack([p.expression for p in parts]), np.vstack([p.jaw for p in parts]),
                       np.vstack([p.global_rotation for p in parts]),
                       np.vstack([p.eyelids for p in parts]) if all(lids) else None,
                       np.concatenate([p.frame for p in parts]), np.concatenate([p.face_id for p in parts]),
                       [f for p in parts for f in p.files])


def read_frame_folder(folder: Path) -> FlameFrames:
    """One EMOCA/DECA/inferno item folder (exp.npy + pose.npy or jawpose.npy ...): one frame."""
    arrays = {}
    for f in sorted(folder.glob("*.npy")):
        arrays.update(read_flame_arrays(f))
    return frames_from_arrays(arrays, folder)


def read_csv_frames(path: Path) -> FlameFrames:
    df = pd.read_csv(path)

    def block(prefix: str, width: int, required: bool) -> np.ndarray | None:
        cols = [f"{prefix}_{i}" for i in range(width)]
        if not set(cols) <= set(df.columns):
            if required:
                raise FlameInputError(f"{path}: needs the columns {cols[0]}..{cols[-1]} (see docs/guide.md, Import-flame)")
            return None
        return _rows(df[cols].to_numpy(float), width, prefix, path)

    exp, jaw = block("exp", N_EXPRESSION, True), block("jaw", 3, True)
    glob = block("global", 3, False)
    n = len(exp)
    return FlameFrames(exp, jaw, np.full((n, 3), np.nan) if glob is None else glob, block("eyelid", 2, False),
                       df["frame"].to_numpy() if "frame" in df else np.arange(n),
                       df["face_id"].to_numpy() if "face_id" in df else np.zeros(n, dtype=np.int64), [str(path)] * n)


# ---------------------------------------------------------------------- layouts

@dataclass
class FlameUnit:
    """One table to write: a video (or an image set, or one file) and where its frames are."""

    id: str
    source: Path  # the file or folder the table comes from
    kind: str  # emoca-video | item-folders | dict-files | dict-file | csv
    items: list[Path]  # frame folders or files, in frame order


def find_flame_units(source: str | Path) -> list[FlameUnit]:
    """What tables a FLAME output holds. Raises :class:`FlameInputError` for unknown or mixed layouts."""
    source = Path(source)
    if source.is_file():
        if source.suffix == ".csv":
            return [FlameUnit(source.stem, source, "csv", [source])]
        if source.suffix in DICT_SUFFIXES + (".npy",):
            return [FlameUnit(source.stem, source, "dict-file", [source])]
        raise FlameInputError(f"{source}: not a FLAME output (.npz, .pt, .pkl, .npy, .csv or a folder)")
    if not source.is_dir():
        raise FlameInputError(f"{source}: no such file or folder")
    item_dirs = sorted({p.parent for p in source.rglob("exp.npy")}, key=natural_key)
    loose = sorted((p for p in source.rglob("*") if p.suffix in DICT_SUFFIXES), key=natural_key)
    if item_dirs and loose:
        raise FlameInputError(f"{source}: mixes per-item folders (exp.npy) with loose {loose[0].suffix} files "
                              f"(e.g. {loose[0]}); import them separately")
    if loose:
        return [FlameUnit(source.name, source, "dict-files", loose)]
    if not item_dirs:
        raise FlameInputError(f"{source}: no FLAME outputs found (no exp.npy folders, no .npz/.pt/.pkl files)")
    videos: dict[Path, list[Path]] = {}
    images: list[Path] = []
    for d in item_dirs:
        parts = d.relative_to(source).parts
        if "results" in parts and FRAME_DIR.match(d.name):
            videos.setdefault(source.joinpath(*parts[: parts.index("results")]), []).append(d)
        else:
            images.append(d)
    if videos and images:
        raise FlameInputError(f"{source}: mixes EMOCA video results with image folders (e.g. {images[0]}); "
                              "import them separately")
    if images:
        return [FlameUnit(source.name, source, "item-folders", images)]
    return [FlameUnit(video.name if video != source else source.name, video, "emoca-video", dirs)
            for video, dirs in sorted(videos.items(), key=lambda kv: natural_key(kv[0]))]


def read_unit(unit: FlameUnit) -> FlameFrames:
    if unit.kind == "csv":
        return read_csv_frames(unit.source)
    if unit.kind == "dict-file":
        return frames_from_arrays(read_flame_arrays(unit.source), unit.source)
    if unit.kind == "dict-files":
        frames = concat_frames([frames_from_arrays(read_flame_arrays(f), f) for f in unit.items], unit.source)
        frames.frame = np.arange(len(frames.frame))
        return frames
    frames = concat_frames([read_frame_folder(d) for d in unit.items], unit.source)
    if unit.kind == "item-folders":
        frames.frame = np.arange(len(frames.frame))
    else:  # emoca-video: <frame>_<face>
        ids = [FRAME_DIR.match(d.name) for d in unit.items]
        frames.frame = np.array([int(m.group(1)) for m in ids])
        frames.face_id = np.array([int(m.group(2)) for m in ids])
    return frames


# ---------------------------------------------------------------------- the table

def axis_angle_to_ypr(rotvec: np.ndarray) -> np.ndarray:
    """(n, 3) axis-angle -> (n, 3) yaw, pitch, roll in degrees (intrinsic Y-X-Z; NaN stays NaN)."""
    from scipy.spatial.transform import Rotation

    out = np.full((len(rotvec), 3), np.nan)
    ok = np.isfinite(rotvec).all(1)
    if ok.any():
        out[ok] = Rotation.from_rotvec(rotvec[ok]).as_euler("YXZ", degrees=True)
    return out


def flame_table(frames: FlameFrames, fps: float = 30.0) -> pd.DataFrame:
    """The per-frame table: ``flame_0..flame_52`` (50 expression + 3 jaw; + 2 eyelid values as
    ``flame_53, flame_54`` for psi kind ``flame+eyelids``) and the head pose columns."""
    order = np.lexsort((frames.face_id, frames.frame))
    psi = np.hstack([frames.expression, frames.jaw] + ([frames.eyelids] if frames.eyelids is not None else []))[order]
    ypr = axis_angle_to_ypr(frames.global_rotation)[order]
    df = pd.DataFrame({"file": np.asarray(frames.files, dtype=object)[order], "frame": frames.frame[order],
                       "timestamp": frames.frame[order] / fps, "face_id": frames.face_id[order], "success": 1,
                       "pose_yaw": ypr[:, 0], "pose_pitch": ypr[:, 1], "pose_roll": ypr[:, 2],
                       "psi_kind": "flame" if frames.eyelids is None else "flame+eyelids",
                       "neutral_source": "flame-zero"})
    block = pd.DataFrame(psi.astype(np.float32), columns=psi_column_names(psi.shape[1], "flame"))
    return pd.concat([df, block], axis=1)




# ---------------------------------------------------------------------- the FLAME mesh (user's model file)

class _ChumpyStandIn:
    """Stands in for chumpy's classes when unpickling a FLAME model without chumpy installed."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.__dict__.update(state if isinstance(state, dict) else {"state": state})

    def array(self) -> np.ndarray:
        for key in ("x", "a", "r"):
            if isinstance(self.__dict__.get(key), np.ndarray):
                return self.__dict__[key]
        found = [v for v in self.__dict__.values() if isinstance(v, np.ndarray)]
        if not found:
            raise FlameInputError("a chumpy object in the FLAME file holds no array")
        return found[0]


class _FlameUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module.split(".")[0] == "chumpy":
            return _ChumpyStandIn
        return super().find_class(module, name)


FLAME_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")


@dataclass
class FlameModel:
    """The parts of a FLAME model file dfe needs: template, blendshapes, joints, skinning weights."""

    v_template: np.ndarray  # (V, 3)
    shapedirs: np.ndarray  # (V, 3, 300 + E): shape then expression directions
    posedirs: np.ndarray  # (V, 3, 9 * (J - 1)): pose correctives
    J_regressor: np.ndarray  # (J, V) dense
    weights: np.ndarray  # (V, J)
    parents: np.ndarray  # (J,), -1 for the root
    faces: np.ndarray  # (F, 3)
    n_shape: int = 300

    @classmethod
    def load(cls, path: str | Path, n_shape: int = 300) -> "FlameModel":
        """Read FLAME 2020/2023 ``generic_model.pkl`` with numpy alone (chumpy not needed)."""
        path = Path(path)
        try:
            with open(path, "rb") as fh:
                raw = _FlameUnpickler(fh, encoding="latin1").load()
        except FileNotFoundError:
            raise FlameInputError(f"{path}: FLAME model file not found") from None
        except Exception as e:  # noqa: BLE001
            raise FlameInputError(f"{path}: not a readable FLAME model ({type(e).__name__}: {e})") from None
        missing = [k for k in FLAME_KEYS if k not in raw]
        if missing:
            raise FlameInputError(f"{path}: not a FLAME model (missing {', '.join(missing)})")

        def arr(v):
            if isinstance(v, _ChumpyStandIn):
                v = v.array()
            if hasattr(v, "toarray"):  # scipy.sparse
                v = v.toarray()
            return np.asarray(v)

        a = {k: arr(raw[k]) for k in FLAME_KEYS}
        parents = a["kintree_table"][0].astype(np.int64)
        parents[0] = -1
        return cls(a["v_template"].astype(np.float64), a["shapedirs"].astype(np.float64),
                   a["posedirs"].astype(np.float64), a["J_regressor"].astype(np.float64),
                   a["weights"].astype(np.float64), parents, a["f"].astype(np.int64), n_shape)

    def mesh(self, expression: np.ndarray, jaw: np.ndarray | None = None) -> np.ndarray:
        """Vertices (V, 3) of the template face with ``expression`` (<= E values) and a jaw rotation
        (axis-angle): linear expression blendshapes, pose correctives (posedirs) for the jaw, then
        linear blend skinning; shape, global, neck and eye rotations stay zero."""
        from scipy.spatial.transform import Rotation

        exp = np.asarray(expression, dtype=np.float64).ravel()
        dirs = self.shapedirs[:, :, self.n_shape: self.n_shape + len(exp)]
        v_shaped = self.v_template + dirs @ exp
        joints = self.J_regressor @ v_shaped  # (J, 3)
        n_joints = len(self.parents)
        rot = np.repeat(np.eye(3)[None], n_joints, 0)
        if jaw is not None and n_joints > 2:
            rot[2] = Rotation.from_rotvec(np.asarray(jaw, dtype=np.float64).ravel()[:3]).as_matrix()
        pose_feature = (rot[1:] - np.eye(3)).ravel()
        v_posed = v_shaped + self.posedirs[:, :, : len(pose_feature)] @ pose_feature
        world = np.zeros((n_joints, 4, 4))
        for j in range(n_joints):
            local = np.eye(4)
            local[:3, :3] = rot[j]
            p = self.parents[j]
            local[:3, 3] = joints[j] - (joints[p] if p >= 0 else 0.0)
            world[j] = local if p < 0 else world[p] @ local
        rel = world.copy()
        rel[:, :3, 3] -= np.einsum("jab,jb->ja", world[:, :3, :3], joints)  # remove the rest pose
        per_vertex = np.einsum("vj,jab->vab", self.weights, rel)
        homog = np.hstack([v_posed, np.ones((len(v_posed), 1))])
        return np.einsum("vab,vb->va", per_vertex, homog)[:, :3]

    def displacement(self, psi: np.ndarray) -> np.ndarray:
        """(V, 3) displacement of FLAME psi (50 expression + 3 jaw [+ eyelids, ignored]) from the template."""
        psi = np.asarray(psi, dtype=np.float64).ravel()
        return self.mesh(psi[:N_EXPRESSION], psi[N_EXPRESSION: N_EXPRESSION + 3]) - self.mesh(np.zeros(N_EXPRESSION))
