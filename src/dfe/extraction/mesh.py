"""The canonical face mesh: MediaPipe's 468-vertex face topology.

Read from ``geometry_pipeline_metadata_landmarks.binarypb`` inside the Face Landmarker
``.task`` file (a zip). Fields follow MediaPipe's ``face_geometry/proto/*.proto``:

- ``GeometryPipelineMetadata``: 1 = canonical_mesh (Mesh3d), 2 = procrustes_landmark_basis
  (repeated WeightedLandmarkRef: 1 = landmark_id, 2 = weight), 3 = input_source.
- ``Mesh3d``: 3 = vertex_buffer (floats, x y z u v per vertex, cm), 4 = index_buffer (triangles).

Everything in dfe that needs the face's shape or triangles goes through :func:`canonical_mesh`.
"""

from __future__ import annotations

import struct
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from dfe.extraction.face import default_model_path

METADATA_NAME = "geometry_pipeline_metadata_landmarks.binarypb"
TOPOLOGY_ID = "mediapipe-canonical-468"
N_VERTICES = 468


@dataclass(frozen=True)
class CanonicalMesh:
    """MediaPipe's canonical face: vertices in cm (x right, y up, z towards the viewer)."""

    vertices: np.ndarray  # (468, 3) float64, cm
    uv: np.ndarray  # (468, 2)
    triangles: np.ndarray  # (898, 3) int
    basis_ids: np.ndarray  # (33,) landmark ids used for Procrustes
    basis_weights: np.ndarray  # (33,)
    topology_id: str = TOPOLOGY_ID


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes):
    """Yield (field_number, wire_type, value) of a protobuf message; value is int or bytes."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos : pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos : pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield field, wire, value


def _floats(wire: int, value) -> list[float]:
    if wire == 2:  # packed
        return list(struct.unpack(f"<{len(value) // 4}f", value))
    return [struct.unpack("<f", value)[0]]


def _uints(wire: int, value) -> list[int]:
    if wire == 0:
        return [value]
    out, pos = [], 0
    while pos < len(value):
        v, pos = _varint(value, pos)
        out.append(v)
    return out


def parse_geometry_metadata(buf: bytes) -> CanonicalMesh:
    """Parse the GeometryPipelineMetadata protobuf bytes."""
    vertex_buffer: list[float] = []
    index_buffer: list[int] = []
    ids: list[int] = []
    weights: list[float] = []
    for field, wire, value in _fields(buf):
        if field == 1 and wire == 2:
            for f2, w2, v2 in _fields(value):
                if f2 == 3:
                    vertex_buffer += _floats(w2, v2)
                elif f2 == 4:
                    index_buffer += _uints(w2, v2)
        elif field == 2 and wire == 2:
            lid, weight = 0, 0.0
            for f2, w2, v2 in _fields(value):
                if f2 == 1:
                    lid = v2
                elif f2 == 2:
                    weight = _floats(w2, v2)[0]
            ids.append(lid)
            weights.append(weight)
    vb = np.asarray(vertex_buffer, dtype=np.float64).reshape(-1, 5)
    if len(vb) != N_VERTICES:
        raise ValueError(f"canonical mesh has {len(vb)} vertices, expected {N_VERTICES}")
    return CanonicalMesh(
        vertices=vb[:, :3].copy(),
        uv=vb[:, 3:].copy(),
        triangles=np.asarray(index_buffer, dtype=np.int64).reshape(-1, 3),
        basis_ids=np.asarray(ids, dtype=np.int64),
        basis_weights=np.asarray(weights, dtype=np.float64),
    )


@lru_cache(maxsize=4)
def canonical_mesh(task_path: str | Path | None = None) -> CanonicalMesh:
    """The canonical face mesh from the Face Landmarker model file (default: the bundled one)."""
    path = Path(task_path) if task_path else default_model_path()
    with zipfile.ZipFile(path) as zf:
        return parse_geometry_metadata(zf.read(METADATA_NAME))


MOUTH_CORNERS = (61, 291)  # the lip corners' vertices of MediaPipe's face mesh (right, left)
