"""The scene as a small GLB for the viewer: quadric decimation to a face budget (per object, so object ids
survive) and one colour per object as vertex colours. Coordinates stay in our world (Y-up, the cameras'
frame), so the viewer draws cameras and mesh in one space with no extra transform."""

from __future__ import annotations

import colorsys

import numpy as np

from videofrom3d.scene.mesh import Scene

MIN_OBJECT_FACES = 64  # smaller objects (boxes, quads) are kept whole: decimating them changes their outline


def object_colours(count: int) -> np.ndarray:
    """(count, 3) uint8 pastel colours, hues spread by the golden ratio so neighbours differ."""
    hues = (np.arange(count) * 0.618033988749895) % 1.0
    rgb = [colorsys.hsv_to_rgb(h, 0.35, 0.92) for h in hues]
    return np.round(np.asarray(rgb).reshape(-1, 3) * 255).astype(np.uint8)


def decimate(scene: Scene, max_faces: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(V, 3) float32 vertices, (T, 3) uint32 faces and (T,) object ids with T <= about ``max_faces``;
    vertices are split per object so each can carry its object's colour."""
    total = scene.triangle_count
    ratio = min(1.0, max_faces / max(total, 1))
    verts, faces, objs, offset = [], [], [], 0
    for o in np.unique(scene.face_object):
        f = scene.faces[scene.face_object == o]
        used, local = np.unique(f, return_inverse=True)
        v, f = scene.vertices[used], local.reshape(-1, 3)
        if ratio < 1.0 and len(f) > MIN_OBJECT_FACES:
            import fast_simplification

            v, f = fast_simplification.simplify(v.astype(np.float32), f.astype(np.int32),
                                                target_reduction=1.0 - ratio)
        if len(f) == 0:
            continue
        verts.append(np.asarray(v, np.float32))
        faces.append(np.asarray(f, np.int64) + offset)
        objs.append(np.full(len(f), o, np.int32))
        offset += len(v)
    return np.concatenate(verts), np.concatenate(faces).astype(np.uint32), np.concatenate(objs)


def scene_glb(scene: Scene, max_faces: int = 60_000) -> tuple[bytes, int]:
    """GLB bytes of the decimated scene (positions, indices, COLOR_0 per object) and its face count."""
    import trimesh

    v, f, o = decimate(scene, max_faces)
    colours = object_colours(len(scene.object_names))
    vertex_obj = np.zeros(len(v), np.int64)
    vertex_obj[f.reshape(-1)] = np.repeat(o, 3)  # vertices are per object, so this is unambiguous
    rgba = np.concatenate([colours[vertex_obj], np.full((len(v), 1), 255, np.uint8)], axis=1)
    mesh = trimesh.Trimesh(v, f, vertex_colors=rgba, process=False)
    return mesh.export(file_type="glb", include_normals=False), len(f)
