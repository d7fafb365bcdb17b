"""Fast raster pictures of a face mesh (OpenCV, no matplotlib): heatmaps with direction arrows and
shaded displaced faces. An atlas of 1,000 codes needs thousands of these in seconds; each is a
painter's-algorithm fill of the mesh's triangles seen from a given yaw, framed the same way for
every picture of one surface so pictures compare side by side."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=4)
def colour_table(name: str = "magma") -> np.ndarray:
    """(256, 3) uint8 BGR colours of a matplotlib colour map."""
    from matplotlib import colormaps

    rgb = (colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    return np.ascontiguousarray(rgb[:, ::-1])


def rotate(vertices: np.ndarray, yaw_deg: float) -> np.ndarray:
    a = np.radians(yaw_deg)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    return np.asarray(vertices, dtype=float) @ rot.T


@dataclass(frozen=True)
class Camera:
    """Orthographic view of a surface from ``yaw`` degrees, fitted into ``width x height`` px."""

    yaw: float
    width: int
    height: int
    scale: float  # px per cm
    centre: tuple[float, float]

    @classmethod
    def fit(cls, vertices: np.ndarray, yaw: float, width: int, height: int, margin: float = 0.06) -> "Camera":
        p = rotate(vertices, yaw)
        lo, hi = p[:, :2].min(0), p[:, :2].max(0)
        scale = min(width * (1 - 2 * margin) / (hi[0] - lo[0]), height * (1 - 2 * margin) / (hi[1] - lo[1]))
        return cls(yaw, width, height, float(scale), tuple(((lo + hi) / 2).tolist()))

    def project(self, vertices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (V, 2) and depth (V,), larger = nearer the viewer."""
        p = rotate(vertices, self.yaw)
        x = (p[:, 0] - self.centre[0]) * self.scale + self.width / 2
        y = self.height / 2 - (p[:, 1] - self.centre[1]) * self.scale
        return np.stack([x, y], 1), p[:, 2]


def _facing(vertices: np.ndarray, triangles: np.ndarray, yaw: float) -> np.ndarray:
    """Per triangle: the z of its unit normal after rotation (> 0 faces the viewer)."""
    p = rotate(vertices, yaw)
    n = np.cross(p[triangles[:, 1]] - p[triangles[:, 0]], p[triangles[:, 2]] - p[triangles[:, 0]])
    return n[:, 2] / np.maximum(np.linalg.norm(n, axis=1), 1e-12)


def fill_mesh(camera: Camera, vertices: np.ndarray, triangles: np.ndarray, colours: np.ndarray,
              background: int = 255, light: bool = True) -> np.ndarray:
    """Draw triangles (F, 3) in per-triangle BGR ``colours`` (F, 3), far to near, back faces culled."""
    import cv2

    img = np.full((camera.height, camera.width, 3), background, dtype=np.uint8)
    px, depth = camera.project(vertices)
    facing = _facing(vertices, triangles, camera.yaw)
    order = np.argsort(depth[triangles].mean(1))
    order = order[facing[order] > 0]
    polys = np.round(px[triangles[order]] * 4).astype(np.int32)  # 2 bits of sub-pixel precision
    shade = (0.55 + 0.45 * facing[order])[:, None] if light else 1.0
    cols = np.clip(np.asarray(colours, dtype=float)[order] * shade, 0, 255).astype(np.uint8).tolist()
    for poly, col in zip(polys, cols):
        cv2.fillConvexPoly(img, poly, col, cv2.LINE_AA, shift=2)
    return img


def heatmap(camera: Camera, vertices: np.ndarray, triangles: np.ndarray, displacement: np.ndarray, vmax: float,
            arrows: int = 0, exaggerate: float = 3.0) -> np.ndarray:
    """The neutral surface coloured by displacement magnitude (0..``vmax`` cm on the magma scale),
    with ``arrows`` arrows of the in-view displacement (x ``exaggerate``) at well-spread vertices."""
    import cv2

    mag = np.linalg.norm(displacement, axis=1)
    level = np.clip(mag[triangles].mean(1) / max(vmax, 1e-9), 0, 1)
    img = fill_mesh(camera, vertices, triangles, colour_table()[(level * 255).astype(int)].astype(float))
    if arrows:
        start, _ = camera.project(vertices)
        end, _ = camera.project(vertices + exaggerate * displacement)
        length = np.linalg.norm(end - start, axis=1)
        chosen: list[int] = []
        for v in np.argsort(-length):
            if length[v] < 4 or len(chosen) >= arrows:
                break
            if all(np.linalg.norm(start[v] - start[c]) > 0.07 * camera.width for c in chosen):
                chosen.append(int(v))
        for v in chosen:
            cv2.arrowedLine(img, tuple(np.round(start[v]).astype(int)), tuple(np.round(end[v]).astype(int)),
                            (255, 255, 0), 1, cv2.LINE_AA, tipLength=0.3)
    return img


def shaded(camera: Camera, vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """A plain grey, lit surface (for the displaced face at a few strengths)."""
    return fill_mesh(camera, vertices, triangles, np.full((len(triangles), 3), 215.0))


def colour_bar(vmax: float, width: int, height: int = 28, label: str = "cm") -> np.ndarray:
    """A horizontal magma bar from 0 to ``vmax`` with its end values written under it."""
    import cv2

    img = np.full((height, width, 3), 255, dtype=np.uint8)
    lut = colour_table()
    bar = lut[np.linspace(0, 255, width - 20).astype(int)][None].repeat(10, 0)
    img[2:12, 10:width - 10] = bar
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(img, "0", (8, 25), font, 0.38, (40, 40, 40), 1, cv2.LINE_AA)
    text = f"{vmax:.2f} {label}"
    size = cv2.getTextSize(text, font, 0.38, 1)[0][0]
    cv2.putText(img, text, (width - 10 - size, 25), font, 0.38, (40, 40, 40), 1, cv2.LINE_AA)
    return img


def encode_image(img: np.ndarray, fmt: str = ".webp", quality: int = 80) -> bytes:
    import cv2

    params = [cv2.IMWRITE_WEBP_QUALITY, quality] if fmt == ".webp" else [cv2.IMWRITE_JPEG_QUALITY, quality]
    ok, buf = cv2.imencode(fmt, img, params)
    if not ok:
        raise ValueError(f"could not encode a {fmt} image")
    return buf.tobytes()
