"""Image-pair metrics on numpy arrays: PSNR and SSIM, both with an optional mask of pixels to score.

Images are float ``(H, W[, C])`` in [0, 1] unless a ``peak`` says otherwise. Nothing here needs torch.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

PSNR_CAP_DB = 100.0
"""Per-frame PSNR is capped here before averaging over frames, so one perfect frame does not make the mean
infinite (the function itself returns ``inf`` for identical inputs)."""


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over the pixels where ``mask`` (H, W) is True (all when None).

    ``inf`` for identical inputs, ``nan`` for an empty mask."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ, {a.shape} vs {b.shape}")
    se = (a - b) ** 2
    if se.ndim == 3:
        se = se.mean(axis=-1)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        if not m.any():
            return float("nan")
        mse = float(se[m].mean())
    else:
        mse = float(se.mean())
    if mse == 0.0:
        return float("inf")
    return 10.0 * math.log10(peak * peak / mse)


def capped(value: float, cap: float = PSNR_CAP_DB) -> float:
    return min(value, cap) if not math.isnan(value) else value


def ssim_map(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> np.ndarray:
    """(H, W) SSIM map of Wang et al. 2004: Gaussian window 11x11 with sigma 1.5, K1 0.01, K2 0.03,
    population (co)variances, averaged over colour channels (skimage ``gaussian_weights=True`` settings)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ, {a.shape} vs {b.shape}")
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2

    def blur(x):
        out = cv2.GaussianBlur(x, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)
        return out.reshape(x.shape)

    maps = []
    for c in range(a.shape[2]):
        x, y = a[..., c], b[..., c]
        mx, my = blur(x), blur(y)
        vx = blur(x * x) - mx * mx
        vy = blur(y * y) - my * my
        cxy = blur(x * y) - mx * my
        num = (2 * mx * my + c1) * (2 * cxy + c2)
        den = (mx * mx + my * my + c1) * (vx + vy + c2)
        maps.append(num / den)
    return np.mean(maps, axis=0)


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None, erode_px: int = 5) -> float:
    """Mean SSIM over ``mask`` eroded by ``erode_px`` (the window straddles the mask edge there) and away
    from the image border by the window radius; ``nan`` when nothing is left."""
    smap = ssim_map(a, b)
    h, w = smap.shape
    keep = np.ones((h, w), dtype=bool) if mask is None else erode(np.asarray(mask, dtype=bool), erode_px)
    pad = 5
    border = np.zeros((h, w), dtype=bool)
    border[pad : h - pad, pad : w - pad] = True
    keep &= border
    if not keep.any():
        return float("nan")
    return float(smap[keep].mean())


def erode(mask: np.ndarray, px: int) -> np.ndarray:
    """Binary erosion of a (H, W) bool mask by a (2 px + 1) square; outside the image counts as False."""
    mask = np.asarray(mask, dtype=bool)
    if px <= 0:
        return mask
    k = np.ones((2 * px + 1, 2 * px + 1), np.uint8)
    out = cv2.erode(mask.astype(np.uint8), k, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return out.astype(bool)


def nanmean(values) -> float | None:
    """Mean of the finite-or-inf values, ignoring nan and None; None when there are none."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return None
    return float(np.mean(vals))
