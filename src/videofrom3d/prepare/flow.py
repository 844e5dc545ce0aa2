"""Exact geometric optical flow between views of the mesh, with visibility; correspondence maps; warping.

``flow_i_to_j[y, x] = (dx, dy)``: the surface point seen at pixel centre (x + 0.5, y + 0.5) of view i is
seen at (x + 0.5 + dx, y + 0.5 + dy) in view j. ``valid`` is True where that point is visible in both views
and lands inside image j.
"""

from __future__ import annotations

import cv2
import numpy as np


def backward_warp(
    image: np.ndarray, flow_target_to_source: np.ndarray, valid: np.ndarray | None = None, fill: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``image`` (H, W[, C]) of a source view into a target view.

    ``flow_target_to_source`` (H, W, 2) gives, per target pixel, its displacement into the source view
    (e.g. ``flow_end_to_start`` to bring the start anchor into the end view). Returns the warped image and
    the (H, W) bool mask of target pixels that were observed (``valid`` and inside the source image).
    """
    h, w = flow_target_to_source.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x = gx + flow_target_to_source[..., 0].astype(np.float32)
    map_y = gy + flow_target_to_source[..., 1].astype(np.float32)
    src = np.asarray(image, dtype=np.float32)
    warped = cv2.remap(src, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
    sh, sw = src.shape[:2]
    inside = (map_x >= -0.5) & (map_x <= sw - 0.5) & (map_y >= -0.5) & (map_y <= sh - 0.5)
    mask = inside if valid is None else inside & valid.astype(bool)
    if warped.ndim == 3:
        warped = np.where(mask[..., None], warped, fill)
    else:
        warped = np.where(mask, warped, fill)
    return warped.astype(np.float32), mask
