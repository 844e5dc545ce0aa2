"""Image warping by a dense flow: bilinear backward warps with the mask of observed pixels.

A flow is target -> source in pixels, as in :mod:`videofrom3d.prepare.flow`: target pixel ``[y, x]`` reads
the source at ``(x + dx, y + dy)`` in array coordinates.
"""

from __future__ import annotations

import cv2
import numpy as np


def remap(image: np.ndarray, flow_target_to_source: np.ndarray, border: str = "constant", fill: float = 0.0) -> np.ndarray:
    """Bilinear backward warp of ``image`` (H, W[, C]) by a target->source flow (H, W, 2), no masking.

    ``border``: "constant" (``fill`` outside the source) or "replicate" (nearest edge pixel)."""
    h, w = flow_target_to_source.shape[:2]
    map_x = (np.arange(w, dtype=np.float32) + flow_target_to_source[..., 0]).astype(np.float32)
    map_y = (np.arange(h, dtype=np.float32)[:, None] + flow_target_to_source[..., 1]).astype(np.float32)
    mode = {"constant": cv2.BORDER_CONSTANT, "replicate": cv2.BORDER_REPLICATE}[border]
    src = np.ascontiguousarray(image, dtype=np.float32)
    return cv2.remap(src, map_x, map_y, cv2.INTER_LINEAR, borderMode=mode, borderValue=fill)


def backward_warp(
    image: np.ndarray, flow_target_to_source: np.ndarray, valid: np.ndarray | None = None, fill: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``image`` (H, W[, C]) of a source view into a target view.

    ``flow_target_to_source`` (H, W, 2) gives, per target pixel, its displacement into the source view
    (e.g. ``flow_end_to_start`` to bring the start anchor into the end view). Returns the warped image and
    the (H, W) bool mask of target pixels that were observed (``valid`` and inside the source image).
    """
    h, w = flow_target_to_source.shape[:2]
    warped = remap(image, flow_target_to_source, "constant", fill)
    sh, sw = np.shape(image)[:2]
    map_x = np.arange(w, dtype=np.float32) + flow_target_to_source[..., 0]
    map_y = np.arange(h, dtype=np.float32)[:, None] + flow_target_to_source[..., 1]
    inside = (map_x >= -0.5) & (map_x <= sw - 0.5) & (map_y >= -0.5) & (map_y <= sh - 0.5)
    mask = inside if valid is None else inside & valid.astype(bool)
    warped = np.where(mask[..., None] if warped.ndim == 3 else mask, warped, fill)
    return warped.astype(np.float32), mask
