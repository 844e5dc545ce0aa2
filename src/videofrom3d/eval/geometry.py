"""Exact correspondences between two views of an arc from the prepare stage's depth and cameras.

The prepare stage stores consecutive forward flows and ``flow_end_to_start``; evaluation also needs
``flow_i_to_0``, ``flow_i_to_N`` and ``flow_t_to_t-1``. Chaining consecutive flows resamples (and blurs)
the flow at every step, so instead each pixel of view i with a mesh hit is lifted to 3D with its depth and
projected into view j; it is visible in j when it lands inside j and its depth there matches j's depth
buffer (``rel_tol``, 1 % by default, research/evaluation.md section 1).
"""

from __future__ import annotations

import numpy as np

from videofrom3d.scene.camera import Camera, pixel_grid, project, unproject


def reprojection_flow(
    depth_i: np.ndarray, cam_i: Camera, depth_j: np.ndarray, cam_j: Camera, rel_tol: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) depth of view i (0 = miss) and of view j -> ``flow_i_to_j`` (H, W, 2) float32 in pixels and
    ``valid`` (H, W) bool: hit in i, in front of camera j, inside image j and not occluded there. The flow
    is also filled where the point is occluded or outside j (0 where view i has no hit)."""
    h, w = depth_i.shape
    flow = np.zeros((h, w, 2), dtype=np.float32)
    valid = np.zeros((h, w), dtype=bool)
    hit = depth_i > 0
    if not hit.any():
        return flow, valid
    uv_i = pixel_grid(w, h)[hit]
    points = unproject(uv_i, depth_i[hit], cam_i)
    uv_j, z_j = project(points, cam_j)
    hj, wj = depth_j.shape
    with np.errstate(invalid="ignore"):
        inside = (z_j > 1e-9) & (uv_j[:, 0] >= 0) & (uv_j[:, 0] <= wj) & (uv_j[:, 1] >= 0) & (uv_j[:, 1] <= hj)
    seen = np.zeros(len(z_j), dtype=bool)
    idx = np.flatnonzero(inside)
    if idx.size:
        # depth test against the 2x2 depth-buffer texels around the landing point (any one may match:
        # the surface can be sampled on either side of a texel centre at grazing angles)
        u = uv_j[idx, 0] - 0.5
        v = uv_j[idx, 1] - 0.5
        x0 = np.floor(u).astype(np.int64)
        y0 = np.floor(v).astype(np.int64)
        z = z_j[idx]
        ok = np.zeros(idx.size, dtype=bool)
        for dy in (0, 1):
            for dx in (0, 1):
                xs = np.clip(x0 + dx, 0, wj - 1)
                ys = np.clip(y0 + dy, 0, hj - 1)
                dj = depth_j[ys, xs]
                ok |= (dj > 0) & (np.abs(z - dj) <= rel_tol * dj)
        seen[idx] = ok
    flow[hit] = np.where(np.isfinite(uv_j) & (z_j > 1e-9)[:, None], uv_j - uv_i, 0.0).astype(np.float32)
    v_full = np.zeros((h, w), dtype=bool)
    v_full[hit] = seen
    return flow, v_full
