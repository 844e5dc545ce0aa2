"""Analytic scenes and cameras shared by the prepare tests (not a test module)."""

from __future__ import annotations

import numpy as np
import pytest

from videofrom3d.scene.camera import Camera, intrinsics_from_fov, look_at
from videofrom3d.scene.mesh import make_scene


def box(lo, hi):
    """(8, 3) vertices and (12, 3) outward-facing triangles of an axis-aligned box."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    v = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    # vertex index = 4*ix + 2*iy + iz
    quads = [
        (0, 1, 3, 2),  # x = lo, outward -x
        (4, 6, 7, 5),  # x = hi
        (0, 4, 5, 1),  # y = lo
        (2, 3, 7, 6),  # y = hi
        (0, 2, 6, 4),  # z = lo
        (1, 5, 7, 3),  # z = hi
    ]
    f = []
    for a, b, c, d in quads:
        f += [(a, b, c), (a, c, d)]
    return v, np.array(f)


def quad(corners):
    """A quad from 4 corners in order -> (4, 3) vertices, (2, 3) faces."""
    return np.asarray(corners, float), np.array([[0, 1, 2], [0, 2, 3]])


def combine(*parts):
    """[(vertices, faces), ...] -> Scene with one object per part."""
    vs, fs, obj, off = [], [], [], 0
    for k, (v, f) in enumerate(parts):
        vs.append(v)
        fs.append(f + off)
        obj.append(np.full(len(f), k))
        off += len(v)
    return make_scene(np.concatenate(vs), np.concatenate(fs), np.concatenate(obj))


def camera(position, target, w=160, h=120, fov_x=60.0, up=(0, 1, 0)):
    return Camera(intrinsics_from_fov(w, h, fov_x_deg=fov_x), look_at(position, target, up), w, h)


def translated(w2c_or_cam, t, w=None, h=None):
    """A camera at the same orientation moved by world translation t."""
    cam = w2c_or_cam
    T = cam.world_to_cam.copy()
    T[:3, 3] -= T[:3, :3] @ np.asarray(t, float)
    return Camera(cam.K.copy(), T, cam.width, cam.height)


def moderngl_ok() -> bool:
    from videofrom3d.prepare.gbuffer import moderngl_available

    return moderngl_available()[0]


BACKENDS = [
    pytest.param("moderngl", marks=pytest.mark.skipif(not moderngl_ok(), reason="no EGL context here")),
    "embree",
]


def segment_distance(points, a, b):
    """(N, 2) points -> (N,) distance to segment a-b (2D)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ab = b - a
    t = np.clip(((points - a) @ ab) / max(ab @ ab, 1e-12), 0, 1)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=1)
