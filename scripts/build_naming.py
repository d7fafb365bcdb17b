"""Build dfe's reference naming basis (``src/dfe/data/naming.npz``) from ICT FaceKit.

    python scripts/build_naming.py [--shared ../shared] [-o src/dfe/data/naming.npz]

ICT FaceKit's 53 ARKit-named expression shapes (artist-made, MIT licence) are carried onto
MediaPipe's 468-vertex canonical face:
1. a similarity transform (Umeyama) from six landmark pairs (nose tip, outer eye corners, mouth
   corners, chin: ICT's 68-landmark ids 30, 36, 45, 48, 54, 8 -> MediaPipe 1, 33, 263, 61, 291, 152),
   refined by a few rounds of nearest-vertex matching (ICP, scale kept);
2. each expression shape's displacement sampled at every canonical vertex by inverse-distance
   weighting of the 4 nearest ICT vertices, rotated and scaled into canonical cm.
No user table and no person's face is involved, so names never depend on the data a model saw.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from dfe.extraction.mesh import canonical_mesh

ROOT = Path(__file__).resolve().parents[1]
PAIRS_ICT68 = [30, 36, 45, 48, 54, 8]
PAIRS_MP = [1, 33, 263, 61, 291, 152]


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """s, R, t with dst ~ s R src + t (least squares)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    U, S, Vt = np.linalg.svd(b.T @ a / len(src))
    D = np.eye(3)
    D[2, 2] = np.sign(np.linalg.det(U @ Vt))
    R = U @ D @ Vt
    s = float(np.trace(np.diag(S) @ D) / (a**2).sum(1).mean())
    return s, R, mu_d - s * R @ mu_s


def register(ict_neutral: np.ndarray, landmarks68: np.ndarray, canonical: np.ndarray, rounds: int = 10):
    s, R, t = umeyama(ict_neutral[landmarks68[PAIRS_ICT68]], canonical[PAIRS_MP])
    for _ in range(rounds):
        moved = s * ict_neutral @ R.T + t
        dist, idx = cKDTree(moved).query(canonical)
        keep = dist < np.percentile(dist, 90)
        s, R, t = umeyama(ict_neutral[idx[keep]], canonical[keep])
    moved = s * ict_neutral @ R.T + t
    return s, R, t, moved


def build(shared: Path) -> dict:
    z = np.load(shared / "ict-facekit" / "ict_face_light.npz")
    canonical = canonical_mesh().vertices
    s, R, t, moved = register(z["neutral"], z["landmarks68"], canonical)
    dist, idx = cKDTree(moved).query(canonical, k=4)
    w = 1.0 / np.maximum(dist, 1e-3)
    w /= w.sum(1, keepdims=True)
    shapes = np.einsum("vk,evkc->evc", w, z["expression"][:, idx]) * s @ R.T  # (53, 468, 3) canonical cm
    names = [re.sub(r"_L$", "Left", re.sub(r"_R$", "Right", str(n))) for n in z["expression_names"]]
    readme = (shared / "ict-facekit" / "README.md").read_text()
    licence = readme[readme.index("## Licence"):].strip()
    fit = float(np.median(dist[:, 0]))
    return {"shapes": shapes.reshape(len(names), -1).astype(np.float32), "names": np.asarray(names),
            "meta": json.dumps({"source": "ICT FaceKit light (USC ICT, github.com/ICT-VGL/ICT-FaceKit), expression "
                                "shapes registered onto MediaPipe's canonical face by scripts/build_naming.py",
                                "scale": s, "median_nearest_vertex_cm": fit, "licence": licence})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "src" / "dfe" / "data" / "naming.npz")
    args = ap.parse_args()
    data = build(args.shared)
    np.savez_compressed(args.output, **data)
    meta = json.loads(str(data["meta"]))
    args.output.with_suffix(".npz.LICENSE").write_text(
        "naming.npz is derived from ICT FaceKit (expression shapes registered onto MediaPipe's canonical face).\n\n"
        + meta["licence"] + "\n")
    print(f"wrote {args.output}: {len(data['names'])} shapes, scale {meta['scale']:.3f}, "
          f"median distance to the nearest ICT vertex {meta['median_nearest_vertex_cm']:.2f} cm")


if __name__ == "__main__":
    main()
