"""Exact correspondences between two views of an arc from the prepare stage's depth and cameras.

The prepare stage stores consecutive forward flows and ``flow_end_to_start``; evaluation also needs
``flow_i_to_0``, ``flow_i_to_N`` and ``flow_t_to_t-1``. Chaining consecutive flows resamples (and blurs)
the flow at every step, so instead each pixel of view i with a mesh hit is lifted to 3D with its depth and
projected into view j; it is visible in j when it lands inside j and its depth there matches j's depth
buffer (``rel_tol``, 1 % by default, research/evaluation.md section 1). Written elementwise on (H, W)
arrays (no (N, 3) matrix products), which keeps a 720x480 pair at a few tens of milliseconds.
"""

from __future__ import annotations

import numpy as np

from videofrom3d.scene.camera import Camera


def reprojection_flow(
    depth_i: np.ndarray, cam_i: Camera, depth_j: np.ndarray, cam_j: Camera, rel_tol: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) depth of view i (0 = miss) and of view j -> ``flow_i_to_j`` (H, W, 2) float32 in pixels and
    ``valid`` (H, W) bool: hit in i, in front of camera j, inside image j and not occluded there. The flow
    is also filled where the point is occluded or outside j (0 where view i has no hit or lands behind j)."""
    h, w = depth_i.shape
    d = np.asarray(depth_i, dtype=np.float64)
    hit = d > 0
    u = np.arange(w, dtype=np.float64)[None, :] + 0.5  # pixel centres at +0.5
    v = np.arange(h, dtype=np.float64)[:, None] + 0.5
    ki = np.linalg.inv(cam_i.K)
    # camera-i ray (z = 1) times depth
    xi = (ki[0, 0] * u + ki[0, 1] * v + ki[0, 2]) * d
    yi = (ki[1, 0] * u + ki[1, 1] * v + ki[1, 2]) * d
    zi = (ki[2, 0] * u + ki[2, 1] * v + ki[2, 2]) * d
    M = cam_j.world_to_cam @ cam_i.cam_to_world  # camera i -> camera j
    xj = M[0, 0] * xi + M[0, 1] * yi + M[0, 2] * zi + M[0, 3]
    yj = M[1, 0] * xi + M[1, 1] * yi + M[1, 2] * zi + M[1, 3]
    zj = M[2, 0] * xi + M[2, 1] * yi + M[2, 2] * zi + M[2, 3]
    kj = cam_j.K
    front = hit & (zj > 1e-9)
    zs = np.where(front, zj, 1.0)
    uj = (kj[0, 0] * xj + kj[0, 1] * yj + kj[0, 2] * zj) / zs
    vj = (kj[1, 0] * xj + kj[1, 1] * yj + kj[1, 2] * zj) / zs
    hj, wj = depth_j.shape
    inside = front & (uj >= 0) & (uj <= wj) & (vj >= 0) & (vj <= hj)
    # depth test against the depth buffer of view j
    x0 = np.floor(np.where(inside, uj, 0.5) - 0.5).astype(np.int64)
    y0 = np.floor(np.where(inside, vj, 0.5) - 0.5).astype(np.int64)
    dj_all = np.asarray(depth_j)
    # the texel the point falls in: its depth matches within rel_tol
    xn = np.clip(np.floor(np.where(inside, uj, 0.5)).astype(np.int64), 0, wj - 1)
    yn = np.clip(np.floor(np.where(inside, vj, 0.5)).astype(np.int64), 0, hj - 1)
    dn = dj_all[yn, xn]
    seen = (dn > 0) & (np.abs(zj - dn) <= rel_tol * dn)
    lo = np.full((h, w), np.inf)
    hi = np.zeros((h, w))
    for dy in (0, 1):
        ys = np.clip(y0 + dy, 0, hj - 1)
        for dx in (0, 1):
            dj = dj_all[ys, np.clip(x0 + dx, 0, wj - 1)]
            lo = np.minimum(lo, np.where(dj > 0, dj, 0.0))
            hi = np.maximum(hi, dj)
    # or a smooth surface sampled at a grazing angle: the 2x2 texels around the point span less than
    # ``smooth`` of the depth (no occlusion edge among them) and the point's depth lies within their range
    smooth = 0.1
    continuous = (lo > 0) & (hi - lo <= smooth * lo)
    seen |= continuous & (zj >= lo * (1 - rel_tol)) & (zj <= hi * (1 + rel_tol))
    valid = inside & seen
    flow = np.zeros((h, w, 2), dtype=np.float32)
    flow[..., 0] = np.where(front, uj - u, 0.0)
    flow[..., 1] = np.where(front, vj - v, 0.0)
    return flow, valid
