"""Scenes: one triangle soup with a per-face object id, read from the formats users bring via trimesh.

Units and axes: vertices are kept as the file gives them (metres for glTF by its spec; whatever the
exporter wrote for OBJ/PLY/STL/OFF), times ``unit_scale``. The world is Y-up like glTF; an ``up="z"`` scene
(Blender, most CAD exports to OBJ/PLY/STL) is rotated to Y-up on load with ``(x, y, z) -> (x, z, -y)`` so a
Blender camera exported to glTF lines up with it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videofrom3d.errors import VideoFrom3DError

SUPPORTED_SUFFIXES = (".glb", ".gltf", ".obj", ".ply", ".stl", ".off")


class SceneError(VideoFrom3DError, ValueError):
    """A scene file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True, eq=False)
class Scene:
    """``vertices`` (V, 3) float64 world (Y-up), ``faces`` (T, 3) int64, ``face_object`` (T,) int32 index
    into ``object_names``."""

    vertices: np.ndarray
    faces: np.ndarray
    face_object: np.ndarray
    object_names: tuple[str, ...]
    source: Path | None = None

    @property
    def triangle_count(self) -> int:
        return int(self.faces.shape[0])

    @property
    def bounds(self) -> np.ndarray:
        """(2, 3) min and max corner of the referenced vertices."""
        used = self.vertices[np.unique(self.faces)] if self.faces.size else self.vertices
        return np.stack([used.min(axis=0), used.max(axis=0)])

    def info(self) -> dict:
        """The stable ``scene info --json`` object."""
        return {
            "triangles": self.triangle_count,
            "objects": len(self.object_names),
            "bounds": self.bounds.tolist(),
        }

    def face_normals(self) -> np.ndarray:
        """(T, 3) unit normals of the faces (counter-clockwise winding); zero for degenerate faces."""
        tri = self.vertices[self.faces]
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        length = np.linalg.norm(n, axis=1, keepdims=True)
        return np.divide(n, length, out=np.zeros_like(n), where=length > 0)


def make_scene(
    vertices: np.ndarray,
    faces: np.ndarray,
    face_object: np.ndarray | None = None,
    object_names: tuple[str, ...] | None = None,
    source: Path | None = None,
) -> Scene:
    """Validate arrays and build a Scene: errors for NaN/inf, bad indices, no triangles; degenerate faces
    (repeated index or zero area) are dropped with a warning that counts them."""
    name = str(source) if source is not None else "<arrays>"
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3:
        raise SceneError(f"{name}: vertices must be (V, 3), got {v.shape}")
    if f.size == 0:
        raise SceneError(f"{name}: the scene has no triangles")
    if f.ndim != 2 or f.shape[1] != 3:
        raise SceneError(f"{name}: faces must be triangles (T, 3), got {f.shape}")
    f = f.astype(np.int64)
    if not np.isfinite(v).all():
        bad = int((~np.isfinite(v).all(axis=1)).sum())
        raise SceneError(f"{name}: {bad} vertices have NaN or inf coordinates")
    if f.min() < 0 or f.max() >= len(v):
        raise SceneError(
            f"{name}: face indices out of range (min {f.min()}, max {f.max()}, {len(v)} vertices)"
        )
    obj = np.zeros(len(f), np.int32) if face_object is None else np.asarray(face_object, np.int32)
    names = object_names if object_names is not None else tuple(f"object{i}" for i in range(int(obj.max()) + 1))

    tri = v[f]
    area2 = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    scale = max(float(np.ptp(v, axis=0).max()), 1e-12)
    degenerate = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 0] == f[:, 2]) | (area2 <= 1e-14 * scale**2)
    if degenerate.any():
        warnings.warn(f"{name}: dropped {int(degenerate.sum())} degenerate faces", stacklevel=2)
        f, obj = f[~degenerate], obj[~degenerate]
        if len(f) == 0:
            raise SceneError(f"{name}: the scene has no triangles (all faces are degenerate)")
    return Scene(v, f, obj, tuple(names), source)


def load_scene(path: str | os.PathLike, up: str = "y", unit_scale: float = 1.0) -> Scene:
    """Read a mesh scene (glb/gltf/obj/ply/stl/off) with node transforms applied and one object id per
    scene-graph node (glTF) or group (OBJ). ``up`` is the file's up axis, "y" or "z"."""
    import trimesh

    path = Path(path)
    if not path.exists():
        raise SceneError(f"{path}: file not found")
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise SceneError(f"{path}: unsupported format {path.suffix!r}; use one of {', '.join(SUPPORTED_SUFFIXES)}")
    if up not in ("y", "z"):
        raise SceneError(f"{path}: up must be 'y' or 'z', got {up!r}")
    try:
        loaded = trimesh.load(str(path), force=None, process=False, group_material=False, split_object=True)
    except Exception as e:  # trimesh raises many types for broken files
        raise SceneError(f"{path}: cannot parse the file ({type(e).__name__}: {e})") from e

    verts, faces, objs, names = [], [], [], []
    offset = 0
    if isinstance(loaded, trimesh.Scene):
        for node_name in loaded.graph.nodes_geometry:
            transform, geom_name = loaded.graph[node_name]
            geom = loaded.geometry[geom_name]
            if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
                continue
            v = np.asarray(geom.vertices, np.float64) @ transform[:3, :3].T + transform[:3, 3]
            verts.append(v)
            faces.append(np.asarray(geom.faces, np.int64) + offset)
            objs.append(np.full(len(geom.faces), len(names), np.int32))
            names.append(str(node_name))
            offset += len(v)
    elif isinstance(loaded, trimesh.Trimesh):
        verts.append(np.asarray(loaded.vertices, np.float64))
        faces.append(np.asarray(loaded.faces, np.int64))
        objs.append(np.zeros(len(loaded.faces), np.int32))
        names.append(path.stem)
    if not faces or sum(len(f) for f in faces) == 0:
        raise SceneError(f"{path}: the scene has no triangles")

    v = np.concatenate(verts) * float(unit_scale)
    if up == "z":
        v = np.stack([v[:, 0], v[:, 2], -v[:, 1]], axis=1)
    return make_scene(v, np.concatenate(faces), np.concatenate(objs), tuple(names), source=path)
