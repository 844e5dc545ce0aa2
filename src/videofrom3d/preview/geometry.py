"""Pixel-space geometry for the preview engine: flow from any frame of an arc to any other, from depth and
cameras (the same geometric flow as the prepare stage, recomputed here so inner frames can look straight at
the arc's ends), and backward warping with visibility."""

from __future__ import annotations

import cv2
import numpy as np

from videofrom3d.scene.camera import Camera


def flow_to_view(
    depth_i: np.ndarray, cam_i: Camera, depth_j: np.ndarray, cam_j: Camera, depth_tolerance: float = 0.02
) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) depth of view i (0 = miss) and of view j -> ``flow_i_to_j`` (H, W, 2) float32 in pixels and
    ``valid`` (H, W) bool: the surface point at pixel centre (x + 0.5, y + 0.5) of view i lands at
    (x + 0.5 + dx, y + 0.5 + dy) in view j, is in front of camera j, inside image j, and is what view j sees
    there (depth within ``depth_tolerance`` relative)."""
    h, w = depth_i.shape
    Ri, ti = cam_i.world_to_cam[:3, :3], cam_i.world_to_cam[:3, 3]
    Rj, tj = cam_j.world_to_cam[:3, :3], cam_j.world_to_cam[:3, 3]
    R_rel = Rj @ Ri.T
    t_rel = tj - R_rel @ ti
    H = (cam_j.K @ R_rel @ np.linalg.inv(cam_i.K)).astype(np.float32)
    e = (cam_j.K @ t_rel).astype(np.float32)
    u = np.arange(w, dtype=np.float32) + 0.5
    v = np.arange(h, dtype=np.float32)[:, None] + 0.5
    d = depth_i.astype(np.float32)
    proj = [d * (H[r, 0] * u + H[r, 1] * v + H[r, 2]) + e[r] for r in range(3)]
    z = proj[2]
    safe_z = np.where(z > 1e-9, z, 1.0)
    px = proj[0] / safe_z
    py = proj[1] / safe_z
    flow = np.stack([px - u, py - v], axis=-1).astype(np.float32)
    hj, wj = depth_j.shape
    inside = (d > 0) & (z > 1e-9) & (px >= 0) & (px < wj) & (py >= 0) & (py < hj)
    seen = cv2.remap(
        depth_j.astype(np.float32), px - 0.5, py - 0.5, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
    valid = inside & (seen > 0) & (np.abs(seen - z) <= depth_tolerance * z)
    return flow, valid


def warp(image: np.ndarray, flow_target_to_source: np.ndarray) -> np.ndarray:
    """Bilinear backward warp of ``image`` (H, W[, C]) float32 by a target->source flow (border = 0)."""
    h, w = flow_target_to_source.shape[:2]
    gx = np.arange(w, dtype=np.float32)
    gy = np.arange(h, dtype=np.float32)[:, None]
    map_x = (gx + flow_target_to_source[..., 0]).astype(np.float32)
    map_y = (gy + flow_target_to_source[..., 1]).astype(np.float32)
    return cv2.remap(
        np.ascontiguousarray(image, dtype=np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


def view_rays(cam: Camera) -> np.ndarray:
    """(H, W, 3) float32 unit ray directions in world coordinates through every pixel centre."""
    R = cam.world_to_cam[:3, :3]
    M = (R.T @ np.linalg.inv(cam.K)).astype(np.float32)
    u = np.arange(cam.width, dtype=np.float32) + 0.5
    v = np.arange(cam.height, dtype=np.float32)[:, None] + 0.5
    rays = np.stack([M[r, 0] * u + M[r, 1] * v + M[r, 2] for r in range(3)], axis=-1)
    return rays / np.linalg.norm(rays, axis=-1, keepdims=True)
