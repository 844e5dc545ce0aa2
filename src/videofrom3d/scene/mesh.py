"""Scenes: one triangle soup with a per-face object id, read from the formats users bring via trimesh.

Units and axes: vertices are kept as the file gives them (metres for glTF by its spec; whatever the
exporter wrote for OBJ/PLY/STL/OFF), times ``unit_scale``. The world is Y-up like glTF; an ``up="z"`` scene
(Blender, most CAD exports to OBJ/PLY/STL) is rotated to Y-up on load with ``(x, y, z) -> (x, z, -y)`` so a
Blender camera exported to glTF lines up with it.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videofrom3d.errors import VideoFrom3DError, VideoFrom3DWarning

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
        """(2, 3) min and max corner of the referenced vertices (computed once; a copy each call)."""
        return self._bounds.copy()

    @functools.cached_property
    def _bounds(self) -> np.ndarray:
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
        raise SceneError(f"{name}: {bad} {'vertex has' if bad == 1 else 'vertices have'} NaN or inf coordinates")
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
        count = int(degenerate.sum())
        warnings.warn(f"{name}: dropped {count} degenerate face{'' if count == 1 else 's'}", VideoFrom3DWarning,
                      stacklevel=2)
        f, obj = f[~degenerate], obj[~degenerate]
        if len(f) == 0:
            raise SceneError(f"{name}: the scene has no triangles (all faces are degenerate)")
    return Scene(v, f, obj, tuple(names), source)


METRE_RANGE = (0.05, 1000.0)  # a scene's longest side in metres outside this suggests other units


def unit_scale_hint(longest_side: float) -> tuple[float, str] | None:
    """The ``unit_scale`` that would bring a scene whose longest side is ``longest_side`` units into
    :data:`METRE_RANGE`, with the unit it assumes (None when it already is): 1472 -> (0.01, "centimetres")."""
    lo, hi = METRE_RANGE
    if longest_side > hi:
        scale, unit = (0.001, "millimetres") if longest_side > 100 * hi else (0.01, "centimetres")
    elif 0 < longest_side < lo:
        scale, unit = 1000.0, "kilometres"
    else:
        return None
    return scale, unit


def scale_warning(scene: Scene) -> str | None:
    """One line when the scene's size suggests it is not in metres, naming the ``unit_scale`` that fixes it."""
    lo, hi = scene.bounds
    size = hi - lo
    hint = unit_scale_hint(float(size.max()))
    if hint is None:
        return None
    scale, unit = hint
    dims = " x ".join(f"{v:.4g}" for v in size)
    return (f"{scene.source or 'the scene'} is {dims} units (x, y, z), which as metres is unusually "
            f"{'large' if scale < 1 else 'small'}; if it is in {unit}, set [scene] unit_scale = {scale:g} "
            f"(scene info: --unit-scale {scale:g})")


def warn_scale(scene: Scene) -> None:
    line = scale_warning(scene)
    if line is not None:
        warnings.warn(line, VideoFrom3DWarning, stacklevel=2)


def load_scene(path: str | os.PathLike, up: str = "y", unit_scale: float = 1.0) -> Scene:
    """Read a mesh scene (glb/gltf/obj/ply/stl/off) with node transforms applied and one object id per mesh
    node (glTF, in file order) or per ``o``/``g`` group (OBJ); PLY/STL/OFF are one object. ``up`` is the
    file's up axis, "y" or "z"; ``unit_scale`` multiplies every coordinate (e.g. 0.01 for centimetres)."""
    path = Path(path)
    if not path.exists():
        raise SceneError(f"{path}: file not found")
    if path.is_dir():
        raise SceneError(f"{path}: is a folder, not a scene file")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise SceneError(f"{path}: unsupported format {path.suffix or path.name!r}; use one of {', '.join(SUPPORTED_SUFFIXES)}")
    if up not in ("y", "z"):
        raise SceneError(f"{path}: up must be 'y' or 'z', got {up!r}")
    if not (isinstance(unit_scale, int | float) and math.isfinite(unit_scale) and unit_scale > 0):
        raise SceneError(f"{path}: unit_scale must be a positive number, got {unit_scale!r}")
    if path.stat().st_size == 0:
        raise SceneError(f"{path}: the file is empty")
    if suffix in (".glb", ".gltf"):
        verts, faces, names = _read_gltf_meshes(path)
    else:
        verts, faces, names = _read_with_trimesh(path)
    if not faces or sum(len(f) for f in faces) == 0:
        raise SceneError(f"{path}: the scene has no triangles")

    offsets = np.cumsum([0] + [len(v) for v in verts])
    v = np.concatenate(verts) * float(unit_scale)
    f = np.concatenate([fc.astype(np.int64) + o for fc, o in zip(faces, offsets, strict=False)])
    obj = np.concatenate([np.full(len(fc), i, np.int32) for i, fc in enumerate(faces)])
    if up == "z":
        v = np.stack([v[:, 0], v[:, 2], -v[:, 1]], axis=1)
    return make_scene(v, f, obj, _unique(names), source=path)


def _read_with_trimesh(path: Path) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """OBJ (one object per ``o``/``g`` group, in file order), PLY, STL, OFF via trimesh, unprocessed."""
    import trimesh

    kwargs = {"process": False}
    if path.suffix.lower() == ".obj":
        kwargs.update(group_material=False, split_objects=True, split_groups=True, skip_materials=True)
    try:
        loaded = trimesh.load(str(path), force=None, **kwargs)
    except Exception as e:  # trimesh raises many types for broken files
        raise SceneError(f"{path}: cannot parse the file ({type(e).__name__}: {e})") from e
    verts, faces, names = [], [], []
    if isinstance(loaded, trimesh.Scene):
        for node_name in loaded.graph.nodes_geometry:
            transform, geom_name = loaded.graph[node_name]
            geom = loaded.geometry[geom_name]
            if not isinstance(geom, trimesh.Trimesh) or len(geom.faces) == 0:
                continue
            verts.append(np.asarray(geom.vertices, np.float64) @ transform[:3, :3].T + transform[:3, 3])
            faces.append(np.asarray(geom.faces, np.int64))
            names.append(str(node_name))
    elif isinstance(loaded, trimesh.Trimesh):
        verts.append(np.asarray(loaded.vertices, np.float64))
        faces.append(np.asarray(loaded.faces, np.int64))
        names.append(path.stem)
    return verts, faces, names


def _read_gltf_meshes(path: Path) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Every mesh node of the default scene, depth first in file order, with its world matrix applied;
    all triangle primitives (TRIANGLES, TRIANGLE_STRIP, TRIANGLE_FAN) of a node form one object."""
    from videofrom3d.scene.gltf import local_matrix, read_accessor, read_gltf, scene_roots

    doc, buffers = read_gltf(path, SceneError)
    nodes = doc.get("nodes", [])
    meshes = doc.get("meshes", [])
    verts, faces, names = [], [], []
    stack = [(i, np.eye(4)) for i in reversed(scene_roots(doc))]
    seen = set()
    while stack:
        i, parent = stack.pop()
        if i in seen or not 0 <= i < len(nodes):
            raise SceneError(f"{path}: node {i} is missing or part of a cycle")
        seen.add(i)
        node = nodes[i]
        try:
            M = parent @ local_matrix(node, SceneError)
        except SceneError as e:
            raise SceneError(f"{path}: {e}") from e
        for c in reversed(node.get("children", [])):
            stack.append((c, M))
        if "mesh" not in node:
            continue
        mesh = meshes[node["mesh"]]
        v_parts, f_parts, offset = [], [], 0
        for p_i, prim in enumerate(mesh.get("primitives", [])):
            mode = prim.get("mode", 4)
            if mode not in (4, 5, 6) or "POSITION" not in prim.get("attributes", {}):
                continue
            if "extensions" in prim and "KHR_draco_mesh_compression" in prim["extensions"]:
                raise SceneError(f"{path}: Draco-compressed meshes are not supported; export without compression")
            try:
                pos = read_accessor(doc, buffers, prim["attributes"]["POSITION"], SceneError)
                idx = (
                    read_accessor(doc, buffers, prim["indices"], SceneError)[:, 0].astype(np.int64)
                    if "indices" in prim
                    else np.arange(len(pos), dtype=np.int64)
                )
            except SceneError as e:
                raise SceneError(f"{path}: meshes[{node['mesh']}].primitives[{p_i}]: {e}") from e
            tri = _triangles(idx, mode)
            if len(tri) == 0:
                continue
            v_parts.append(pos[:, :3])
            f_parts.append(tri + offset)
            offset += len(pos)
        if not f_parts:
            continue
        v = np.concatenate(v_parts) @ M[:3, :3].T + M[:3, 3]
        f = np.concatenate(f_parts)
        if np.linalg.det(M[:3, :3]) < 0:  # a mirroring transform flips the winding
            f = f[:, ::-1]
        verts.append(v)
        faces.append(f)
        names.append(str(node.get("name") or mesh.get("name") or f"node{i}"))
    return verts, faces, names


def _triangles(idx: np.ndarray, mode: int) -> np.ndarray:
    """(T, 3) triangles of a primitive's index list in glTF mode 4 (list), 5 (strip) or 6 (fan)."""
    if mode == 4:
        n = len(idx) // 3 * 3
        return idx[:n].reshape(-1, 3)
    if len(idx) < 3:
        return np.zeros((0, 3), np.int64)
    k = np.arange(len(idx) - 2)
    if mode == 5:  # strip: odd triangles swap two vertices to keep the winding
        a, b, c = idx[k], idx[k + 1], idx[k + 2]
        odd = k % 2 == 1
        return np.stack([np.where(odd, b, a), np.where(odd, a, b), c], axis=1)
    return np.stack([np.full(len(k), idx[0]), idx[k + 1], idx[k + 2]], axis=1)


def _unique(names: list[str]) -> tuple[str, ...]:
    """Names made unique by a numeric suffix where they repeat."""
    out, used = [], set()
    for n in names:
        m, j = n, 1
        while m in used:
            m, j = f"{n}.{j}", j + 1
        used.add(m)
        out.append(m)
    return tuple(out)
