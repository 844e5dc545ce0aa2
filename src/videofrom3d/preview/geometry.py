"""Pixel-space geometry for the preview engine's shading (flows and warps come from
:mod:`videofrom3d.prepare.flow`)."""

from __future__ import annotations

import numpy as np

from videofrom3d.scene.camera import Camera


def view_rays(cam: Camera) -> np.ndarray:
    """(H, W, 3) float32 unit ray directions in world coordinates through every pixel centre."""
    R = cam.world_to_cam[:3, :3]
    M = (R.T @ np.linalg.inv(cam.K)).astype(np.float32)
    u = np.arange(cam.width, dtype=np.float32) + 0.5
    v = np.arange(cam.height, dtype=np.float32)[:, None] + 0.5
    rays = np.stack([M[r, 0] * u + M[r, 1] * v + M[r, 2] for r in range(3)], axis=-1)
    return rays / np.linalg.norm(rays, axis=-1, keepdims=True)
