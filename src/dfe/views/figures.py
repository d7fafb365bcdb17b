"""Figures of tokens: the surface a model's codes move, their displacements, one frame's
decomposition into its tokens, parameter profiles, face crops and per-label log-odds.

Every token of a linear-decoder model is one fixed displacement field on the face mesh
(:meth:`Tokenizer.decode_code`); :func:`geometry_of` turns it into vertex displacements (cm on
MediaPipe's canonical face, FLAME's own units on the FLAME template). Figures are matplotlib
(Agg) PNGs; the atlas (:mod:`dfe.views.atlas`) draws its pictures with :mod:`dfe.views.render`.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dfe.analysis.reports import agg_pyplot, save_figure
from dfe.extraction.io import Frame, MediaError, read_frame
from dfe.extraction.mesh import canonical_mesh
from dfe.tokens.tables import table_psi
from dfe.tokens.tokenizer import Tokenizer
from dfe.views.naming import name_codes
from dfe.views.render import Camera, colour_table, heatmap
from dfe.table import BBOX_COLUMNS

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


# ---------------------------------------------------------------------------- face crops

def crop_face(frame: Frame, bbox: tuple[float, float, float, float], margin: float = 0.25) -> np.ndarray | None:
    """The face region (RGB) of a frame already decoded, from a table's bbox (original pixels),
    ``margin`` of the box's size added on every side; None when the box is empty or not finite."""
    x, y, w, h = (v * frame.scale for v in bbox)
    if not np.isfinite([x, y, w, h]).all():
        return None
    H, W = frame.rgb.shape[:2]
    x0, y0 = int(max(0, x - margin * w)), int(max(0, y - margin * h))
    x1, y1 = int(min(W, x + (1 + margin) * w)), int(min(H, y + (1 + margin) * h))
    return frame.rgb[y0:y1, x0:x1] if x1 > x0 and y1 > y0 else None


def read_face_crop(file: str, frame: int, bbox: tuple[float, float, float, float],
                   margin: float = 0.25) -> np.ndarray | None:
    """Decode frame ``frame`` of the source media and :func:`crop_face` it; None if the media is gone."""
    try:
        decoded = read_frame(file, int(frame))
    except (MediaError, OSError):
        return None
    return crop_face(decoded, bbox, margin)


def read_row_face_crop(row: pd.Series) -> np.ndarray | None:
    """:func:`read_face_crop` of one table row (its file, frame and bbox); None for rows without an
    image box (FLAME tables carry none)."""
    box = [row.get(c, np.nan) for c in BBOX_COLUMNS]
    if not np.isfinite(np.asarray(box, dtype=float)).all():
        return None
    return read_face_crop(row["file"], row["frame"], tuple(box))


# ---------------------------------------------------------------------------- figures

def parameter_labels(kind: str, n: int) -> list[str]:
    """Tick labels of a psi kind's ``n`` parameters: FLAME's expression, jaw and eyelid values by
    name, any other kind by index."""
    if kind.startswith("flame"):
        return [f"exp {i}" for i in range(50)] + ["jaw x", "jaw y", "jaw z", "eyelid L", "eyelid R"][: n - 50]
    return [f"{i}" for i in range(n)]


def profile_figure(values: np.ndarray | list[np.ndarray], title: str, path: str | Path, kind: str,
                   labels: list[str] | None = None) -> Path:
    """A parameter profile: bar chart of one parameter vector (e.g. a FLAME code's 53 values), or
    several vectors as lines (``labels`` names them)."""
    plt = agg_pyplot()
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
    return save_figure(fig, path)


def decomposition_figure(tok: Tokenizer, row: pd.Series, path: str | Path, exaggerate: float = 2.0,
                         flame=None) -> Path:
    """One frame: its face crop, tokens, the reconstructions after levels 1, 1..2, …, 1..K and the
    measured psi, as magnitude heatmaps on a shared colour scale (parameter profiles for FLAME
    without a FLAME model)."""
    plt = agg_pyplot()
    psi = table_psi(row.to_frame().T.assign(success=1), tok.config.psi_kind)
    tokens = tok.encode(psi)[0]
    prefixes = [tok.decode_prefix(tokens[None], k)[0] for k in range(1, tok.levels + 1)]
    surface = surface_for(tok, flame)
    if surface is None:
        return profile_figure([*prefixes, psi[0]], f"{Path(str(row['file'])).name} frame {int(row['frame'])}: tokens "
                              + " ".join(map(str, tokens)), path, tok.config.psi_kind,
                              [f"levels 1..{k}" for k in range(1, tok.levels + 1)] + ["measured psi"])
    measured = psi[0].reshape(-1, 3) if tok.config.psi_kind == "geometry" else geometry_of(tok, psi[0], flame)
    cumulative = [geometry_of(tok, p, flame) for p in prefixes] + [measured]
    alone = [geometry_of(tok, tok.decode_code(int(t)), flame) for t in tokens] + [measured - cumulative[-2]]
    vmax = max(float(np.linalg.norm(g, axis=1).max()) for g in cumulative + alone)
    camera = Camera.fit(surface.vertices, 0.0, 320, 360)
    names = name_codes(tok, tokens) if surface.name != "FLAME" else {}
    n = len(cumulative) + 1
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n, 7.2), dpi=120)
    crop = read_row_face_crop(row)
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
    return save_figure(fig, path, bbox_inches="tight")
