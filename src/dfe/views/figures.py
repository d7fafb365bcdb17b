"""Seeing the tokens: heatmaps on the canonical mesh, templates, decompositions, retrieval, atlas.

Every token of a linear-decoder model is one fixed displacement field on the 468-vertex mesh
(:meth:`Tokenizer.decode_code`). Figures are matplotlib (Agg) PNGs in canonical cm.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dfe.extraction.mesh import canonical_mesh
from dfe.tokens.tokenizer import Tokenizer
from dfe.tokens.tables import table_psi
from dfe.extraction.io import MediaError, read_frame
from dfe.views.naming import name_codes
from dfe.views.render import Camera, colour_table, heatmap

log = logging.getLogger(__name__)

CMAP = "magma"
VIEWS = {"frontal": 0.0, "three-quarter": 35.0}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ---------------------------------------------------------------------------- numbers behind pictures

@dataclass(frozen=True)
class Surface:
    """The mesh a model's deformations are drawn on."""

    vertices: np.ndarray  # (V, 3)
    triangles: np.ndarray  # (F, 3)
    name: str


def surface_for(tok: Tokenizer, flame=None) -> Surface | None:
    """MediaPipe's canonical face for geometry/blendshape models, the FLAME template for FLAME
    models when the user's FLAME model (:class:`dfe.extraction.flame.FlameModel`) is given; None: FLAME
    tokens without a FLAME model are drawn as parameter profiles."""
    if tok.config.psi_kind.startswith("flame"):
        return Surface(flame.v_template, flame.faces, "FLAME") if flame is not None else None
    mesh = canonical_mesh()
    return Surface(mesh.vertices, mesh.triangles, "MediaPipe's canonical face")


def geometry_of(tok: Tokenizer, psi_like: np.ndarray, flame=None) -> np.ndarray:
    """A deformation in the model's psi space -> (…, V, 3) vertex displacements.

    Geometry psi is used directly (cm); blendshape psi goes through the linear rig fitted at fit
    time; FLAME psi through the user's FLAME model (expression blendshapes + jaw skinning).
    """
    psi_like = np.asarray(psi_like, dtype=np.float32)
    kind = tok.config.psi_kind
    if kind == "geometry":
        return psi_like.reshape(*psi_like.shape[:-1], 468, 3)
    if kind.startswith("flame") and flame is not None:
        rows = psi_like.reshape(-1, psi_like.shape[-1])
        disp = np.stack([flame.displacement(r) for r in rows])
        return disp.reshape(*psi_like.shape[:-1], *disp.shape[1:])
    if kind == "blendshapes" and "rig" in tok.extras:
        rig = tok.extras["rig"][1:]  # (52, 1404): a deformation has no bias
        return (psi_like @ rig).reshape(*psi_like.shape[:-1], 468, 3)
    raise ValueError(f"cannot draw {kind} tokens on a face mesh (no geometry rig; FLAME needs --flame-model)")


def code_displacement(tok: Tokenizer, code: int) -> np.ndarray:
    """Per-vertex displacement magnitude (468,) in cm of one code decoded alone."""
    return np.linalg.norm(geometry_of(tok, tok.decode_code(int(code))), axis=-1)


def frequent_combinations(tokens: np.ndarray, levels: int, top: int = 8) -> list[tuple[tuple[int, ...], int]]:
    """Most frequent token combinations over the first ``levels`` levels."""
    return Counter(map(tuple, np.asarray(tokens)[:, :levels].tolist())).most_common(top)


def label_log_odds(tokens: np.ndarray, labels: np.ndarray, codebook_size: int, alpha: float = 1.0) -> pd.DataFrame:
    """Per label and code: smoothed log-odds of the code appearing in that label's frames vs the rest."""
    tokens = np.asarray(tokens)
    labels = np.asarray(labels)
    rows = []
    for lab in pd.unique(labels):
        inside = np.bincount(tokens[labels == lab].ravel(), minlength=codebook_size) + alpha
        outside = np.bincount(tokens[labels != lab].ravel(), minlength=codebook_size) + alpha
        lo = np.log(inside / inside.sum()) - np.log(outside / outside.sum())
        rows += [{"label": lab, "code": c, "log_odds": float(lo[c]), "count": int(inside[c] - alpha)}
                 for c in range(codebook_size)]
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- drawing

def _project(verts: np.ndarray, yaw_deg: float) -> np.ndarray:
    a = np.radians(yaw_deg)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    return verts @ rot.T


def draw_mesh(ax, verts: np.ndarray, values: np.ndarray | None = None, yaw: float = 0.0,
              vmax: float | None = None, cmap: str = CMAP, edge: bool = False, triangles: np.ndarray | None = None):
    """Draw a mesh (painter's algorithm; default triangles: MediaPipe's canonical face) coloured per
    vertex by ``values``; returns the collection."""
    from matplotlib.collections import PolyCollection

    tris = canonical_mesh().triangles if triangles is None else triangles
    p = _project(verts, yaw)
    order = np.argsort(p[tris, 2].mean(1))  # far to near
    polys = p[tris[order]][:, :, :2]
    if values is None:
        shade = 0.55 + 0.4 * (p[tris[order], 2].mean(1) - p[:, 2].min()) / np.ptp(p[:, 2])
        coll = PolyCollection(polys, facecolors=np.repeat(shade[:, None], 3, 1), edgecolors="0.35" if edge else "none",
                              linewidths=0.1)
    else:
        coll = PolyCollection(polys, array=values[tris[order]].mean(1), cmap=cmap, edgecolors="face", linewidths=0.3)
        coll.set_clim(0, vmax if vmax else max(values.max(), 1e-6))
    ax.add_collection(coll)
    ax.set_xlim(p[:, 0].min() - 0.5, p[:, 0].max() + 0.5)
    ax.set_ylim(p[:, 1].min() - 0.5, p[:, 1].max() + 0.5)
    ax.set_aspect("equal")
    ax.axis("off")
    return coll


def deformation_figure(displacement: np.ndarray, title: str, path: str | Path, exaggerate: float = 3.0,
                       vmax: float | None = None, surface: Surface | None = None) -> Path:
    """Heatmap of a (V, 3) displacement: frontal and three-quarter magnitude, the neutral mesh, and
    the displaced mesh exaggerated by ``exaggerate`` (default surface: MediaPipe's canonical face, cm)."""
    plt = _plt()
    mesh = canonical_mesh()
    base, tris = (mesh.vertices, mesh.triangles) if surface is None else (surface.vertices, surface.triangles)
    mag = np.linalg.norm(displacement, axis=1)
    fig, axes = plt.subplots(1, 4, figsize=(11, 3.3), dpi=72)
    coll = None
    for ax, (name, yaw) in zip(axes[:2], VIEWS.items()):
        coll = draw_mesh(ax, base, mag, yaw, vmax, triangles=tris)
        ax.set_title(name, fontsize=9)
    draw_mesh(axes[2], base, None, 20.0, edge=True, triangles=tris)
    axes[2].set_title("neutral", fontsize=9)
    draw_mesh(axes[3], base + exaggerate * displacement, None, 20.0, edge=True, triangles=tris)
    axes[3].set_title(f"displaced (x{exaggerate:g})", fontsize=9)
    cbar = fig.colorbar(coll, ax=axes[:2], fraction=0.03, pad=0.01)
    cbar.set_label("displacement (cm)" if surface is None or surface.name != "FLAME" else "displacement (FLAME units, m)",
                   fontsize=8)
    fig.suptitle(title, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def parameter_labels(kind: str, n: int) -> list[str]:
    if kind.startswith("flame"):
        return [f"exp {i}" for i in range(50)] + ["jaw x", "jaw y", "jaw z", "eyelid L", "eyelid R"][: n - 50]
    return [f"{i}" for i in range(n)]


def profile_figure(values: np.ndarray | list[np.ndarray], title: str, path: str | Path, kind: str,
                   labels: list[str] | None = None) -> Path:
    """A parameter profile: bar chart of one parameter vector (e.g. a FLAME code's 53 values), or
    several vectors as lines (``labels`` names them)."""
    plt = _plt()
    vals = [np.asarray(values)] if np.ndim(values) == 1 else [np.asarray(v) for v in values]
    n = len(vals[0])
    fig, ax = plt.subplots(figsize=(max(8, n * 0.16), 3.0), dpi=72)
    if len(vals) == 1:
        ax.bar(range(n), vals[0], color=["#444" if i < 50 else "#c33" for i in range(n)])
    else:
        for v, lab in zip(vals, labels or [str(i) for i in range(len(vals))]):
            ax.plot(range(n), v, marker=".", lw=1, label=lab)
        ax.legend(fontsize=7, ncol=len(vals))
    ax.axhline(0, color="0.6", lw=0.6)
    names = parameter_labels(kind, n)
    step = max(1, n // 27)
    ax.set_xticks(range(0, n, step), names[::step], rotation=90, fontsize=7)
    ax.set_xlim(-0.7, n - 0.3)
    ax.set_ylabel("parameter value", fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def draw_deformation(tok: Tokenizer, delta: np.ndarray, title: str, path: str | Path, flame=None,
                     exaggerate: float = 3.0) -> Path:
    """A deformation in psi space as a mesh heatmap, or as a parameter profile when the model's
    psi kind has no mesh here (FLAME without --flame-model)."""
    surface = surface_for(tok, flame)
    if surface is None:
        return profile_figure(delta, title, path, tok.config.psi_kind)
    disp = geometry_of(tok, delta, flame)
    return deformation_figure(disp, title, path, exaggerate, surface=surface if surface.name == "FLAME" else None)


def token_heatmap(tok: Tokenizer, code: int, path: str | Path, name: str = "", exaggerate: float = 3.0,
                  flame=None) -> Path:
    delta = tok.decode_code(int(code))
    if surface_for(tok, flame) is None:
        peak = f"peak |value| {np.abs(delta).max():.2f}"
    else:
        unit = "cm" if not tok.config.psi_kind.startswith("flame") else "FLAME units"
        peak = f"peak {np.linalg.norm(geometry_of(tok, delta, flame), axis=1).max():.2f} {unit}"
    title = f"code {code}" + (f" — {name}" if name else "") + f"  ({peak})"
    return draw_deformation(tok, delta, title, path, flame, exaggerate)


def crop_face(fr, bbox: tuple[float, float, float, float], margin: float = 0.25) -> np.ndarray | None:
    """The face region (RGB) of a decoded :class:`dfe.extraction.io.Frame`, from a table's bbox (original pixels)."""
    x, y, w, h = (v * fr.scale for v in bbox)
    if not np.isfinite([x, y, w, h]).all():
        return None
    H, W = fr.rgb.shape[:2]
    x0, y0 = int(max(0, x - margin * w)), int(max(0, y - margin * h))
    x1, y1 = int(min(W, x + (1 + margin) * w)), int(min(H, y + (1 + margin) * h))
    return fr.rgb[y0:y1, x0:x1] if x1 > x0 and y1 > y0 else None


def face_crop(file: str, frame: int, bbox: tuple[float, float, float, float], margin: float = 0.25) -> np.ndarray | None:
    """The face region of a frame of the source media (RGB), or None if the media is gone."""
    try:
        fr = read_frame(file, int(frame))
    except (MediaError, OSError):
        return None
    return crop_face(fr, bbox, margin)


def _row_crop(row: pd.Series) -> np.ndarray | None:
    box = [row.get(c, np.nan) for c in ("bbox_x", "bbox_y", "bbox_w", "bbox_h")]
    if not np.isfinite(np.asarray(box, dtype=float)).all():  # FLAME tables carry no image box
        return None
    return face_crop(row["file"], row["frame"], tuple(box))


def decomposition_figure(tok: Tokenizer, row: pd.Series, path: str | Path, exaggerate: float = 2.0,
                         flame=None) -> Path:
    """One frame: its face crop, tokens, the reconstructions after levels 1, 1..2, …, 1..K and the
    measured psi, as magnitude heatmaps on a shared colour scale (parameter profiles for FLAME
    without a FLAME model)."""
    plt = _plt()
    psi = table_psi(row.to_frame().T.assign(success=1), tok.config.psi_kind)
    tokens = tok.encode(psi)[0]
    prefixes = [tok.decode_prefix(tokens[None], k)[0] for k in range(1, tok.levels + 1)]
    surface = surface_for(tok, flame)
    if surface is None:
        return profile_figure([*prefixes, psi[0]], f"{Path(str(row['file'])).name} frame {int(row['frame'])}: tokens "
                              + " ".join(map(str, tokens)), path, tok.config.psi_kind,
                              [f"levels 1..{k}" for k in range(1, tok.levels + 1)] + ["measured psi"])
    import textwrap


    measured = psi[0].reshape(-1, 3) if tok.config.psi_kind == "geometry" else geometry_of(tok, psi[0], flame)
    cumulative = [geometry_of(tok, p, flame) for p in prefixes] + [measured]
    alone = [geometry_of(tok, tok.decode_code(int(t)), flame) for t in tokens] + [measured - cumulative[-2]]
    vmax = max(float(np.linalg.norm(g, axis=1).max()) for g in cumulative + alone)
    camera = Camera.fit(surface.vertices, 0.0, 320, 360)
    names = name_codes(tok, tokens) if surface.name != "FLAME" else {}
    n = len(cumulative) + 1
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n, 7.2), dpi=120)
    crop = _row_crop(row)
    if crop is not None:
        axes[0, 0].imshow(crop)
    axes[0, 0].set_title(f"{Path(str(row['file'])).name}\nframe {int(row['frame'])}", fontsize=9)
    axes[1, 0].text(0.5, 0.5, "top: the face rebuilt\nfrom levels 1..k\n\nbottom: what each\nlevel's code adds\n\n"
                    f"arrows: direction\n(x{exaggerate:g})", ha="center", va="center", fontsize=9)
    for row_axes, fields, titles in (
            (axes[0, 1:], cumulative, [f"levels 1..{k + 1}" for k in range(tok.levels)] + ["measured psi"]),
            (axes[1, 1:], alone, [f"level {k + 1}: code {t}\n" + textwrap.fill(names[int(t)].name if int(t) in names else "", 26)
                                  for k, t in enumerate(tokens)] + ["left over\n(psi - levels 1..K)"])):
        for ax, field, title in zip(row_axes, fields, titles):
            ax.imshow(heatmap(camera, surface.vertices, surface.triangles, field, vmax, arrows=20,
                              exaggerate=exaggerate)[:, :, ::-1])
            ax.set_title(title, fontsize=8.5)
    for ax in axes.ravel():
        ax.axis("off")
    from matplotlib.colors import ListedColormap, Normalize

    mappable = plt.cm.ScalarMappable(Normalize(0, vmax), ListedColormap(colour_table()[:, ::-1] / 255))
    fig.colorbar(mappable, ax=axes[:, 1:], fraction=0.015, pad=0.01).set_label("displacement (cm)", fontsize=9)
    fig.suptitle(f"tokens {' '.join(map(str, tokens))} (coarse to fine)", fontsize=11)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def nearest_by_tokens(tokens: np.ndarray, query: int, k: int = 5) -> np.ndarray:
    """Indices of the k frames sharing most tokens (position-wise) with the query (itself excluded)."""
    overlap = (np.asarray(tokens) == np.asarray(tokens)[query]).sum(1).astype(float)
    overlap[query] = -1
    return np.argsort(-overlap, kind="stable")[:k]


def nearest_by_blendshapes(blend: np.ndarray, query: int, k: int = 5) -> np.ndarray:
    d = np.linalg.norm(np.asarray(blend) - np.asarray(blend)[query], axis=1)
    d[query] = np.inf
    return np.argsort(d, kind="stable")[:k]


def retrieval_figure(frames: pd.DataFrame, tokens: np.ndarray, blend: np.ndarray, query: int,
                     path: str | Path, k: int = 5) -> Path:
    """A query face, its nearest frames by token overlap (top row) and by blendshape distance (bottom)."""
    plt = _plt()
    rows = [("tokens", nearest_by_tokens(tokens, query, k)), ("blendshapes", nearest_by_blendshapes(blend, query, k))]
    fig, axes = plt.subplots(2, k + 1, figsize=(1.8 * (k + 1), 4.0), dpi=72)
    for r, (name, idx) in enumerate(rows):
        for c, i in enumerate([query, *idx]):
            ax = axes[r, c]
            crop = _row_crop(frames.iloc[i])
            if crop is not None:
                ax.imshow(crop)
            ax.set_title(("query" if c == 0 else f"{name} #{c}") + f"\n{Path(str(frames.iloc[i]['file'])).stem[:14]}:{int(frames.iloc[i]['frame'])}", fontsize=7)
            ax.axis("off")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
