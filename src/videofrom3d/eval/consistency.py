"""Weight-free metrics (numpy + OpenCV, no torch); docs/evaluation.md gives the protocol.

- warp error: frame t against frame t-1 warped along the exact mesh flow (temporal consistency);
- flow agreement: OpenCV DIS flow between generated frames against the mesh flow (does the video follow
  the camera path);
- edge alignment: Canny edges of the frames against the geometry edge maps (precision, recall, F at a
  tolerance; truncated chamfer distance);
- colour: CIELAB distances to the style reference and to the first frame (drift).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from videofrom3d.eval.metrics import erode, psnr
from videofrom3d.prepare.warp import backward_warp

# ------------------------------------------------------------------------------------------- warp error


def warp_error(
    previous: np.ndarray, current: np.ndarray, flow_current_to_previous: np.ndarray, valid: np.ndarray,
    erode_px: int = 2,
) -> tuple[float, float]:
    """(mean absolute error per channel, PSNR in dB) of ``current`` against ``previous`` warped into it, over
    pixels visible in both views (``valid``), inside the image, eroded by ``erode_px``. (nan, nan) if none."""
    warped, observed = backward_warp(previous, flow_current_to_previous, valid)
    mask = erode(observed, erode_px)
    if not mask.any():
        return float("nan"), float("nan")
    diff = np.abs(np.asarray(current, np.float64) - warped)
    l1 = float(diff[mask].mean())
    return l1, psnr(current, warped, mask)


# ----------------------------------------------------------------------------------------- flow agreement

def _grey_u8(img: np.ndarray) -> np.ndarray:
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255.0 + 0.5).astype(np.uint8)
    return cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY) if arr.ndim == 3 else arr


def estimate_flow(frame_a: np.ndarray, frame_b: np.ndarray) -> np.ndarray:
    """(H, W, 2) float32 flow a -> b by OpenCV DIS (PRESET_MEDIUM) on grey frames."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(_grey_u8(frame_a), _grey_u8(frame_b), None)


def flow_agreement(
    frame_a: np.ndarray, frame_b: np.ndarray, flow_a_to_b: np.ndarray, valid: np.ndarray, erode_px: int = 2
) -> tuple[float, float, float]:
    """(mean end-point error in px, share under 1 px, share under 3 px) of the DIS flow between two
    generated frames against the exact mesh flow a -> b over ``valid`` eroded by ``erode_px``."""
    mask = erode(valid, erode_px)
    if not mask.any():
        return float("nan"), float("nan"), float("nan")
    est = estimate_flow(frame_a, frame_b)
    epe = np.linalg.norm(est[mask] - flow_a_to_b[mask], axis=-1)
    return float(epe.mean()), float((epe < 1.0).mean()), float((epe < 3.0).mean())


# ------------------------------------------------------------------------------------------ edge alignment


def canny_edges(img: np.ndarray) -> np.ndarray:
    """(H, W) bool edges: Gaussian blur sigma 1, Canny with thresholds 0.66x and 1.33x the median grey."""
    grey = cv2.GaussianBlur(_grey_u8(img), (0, 0), 1.0)
    med = float(np.median(grey))
    lo, hi = max(1.0, 0.66 * med), max(2.0, 1.33 * med)
    return cv2.Canny(grey, lo, hi) > 0


def geometry_edges(edge_map: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Soft edge map (H, W) in [0, 1] -> bool edges."""
    return np.asarray(edge_map) >= threshold


def _distance_to(edges: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel to the nearest True pixel (inf when there is none)."""
    if not edges.any():
        return np.full(edges.shape, np.inf, np.float32)
    return cv2.distanceTransform((~edges).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def edge_tolerance(width: int, height: int) -> float:
    """BSDS convention: 0.75 % of the image diagonal (about 6.5 px at 720x480)."""
    return 0.0075 * math.hypot(width, height)


def edge_alignment(generated: np.ndarray, geometry: np.ndarray, tol: float) -> dict[str, float]:
    """Precision (share of generated edge pixels within ``tol`` of a geometry edge), recall (share of
    geometry edge pixels within ``tol`` of a generated edge), their F-score, and the symmetric chamfer
    distance with each side truncated at 3 ``tol``. Recall is the headline; precision is low wherever
    painted texture adds edges the geometry lacks. nan entries when the geometry has no edges."""
    gen = np.asarray(generated, bool)
    geo = np.asarray(geometry, bool)
    if not geo.any():
        return {"precision": float("nan"), "recall": float("nan"), "f": float("nan"), "chamfer": float("nan")}
    d_gen = _distance_to(gen)
    d_geo = _distance_to(geo)
    recall = float((d_gen[geo] <= tol).mean())
    precision = float((d_geo[gen] <= tol).mean()) if gen.any() else 0.0
    f = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    cap = 3.0 * tol
    c_geo = float(np.minimum(d_gen[geo], cap).mean())
    c_gen = float(np.minimum(d_geo[gen], cap).mean()) if gen.any() else cap
    return {"precision": precision, "recall": recall, "f": f, "chamfer": 0.5 * (c_geo + c_gen)}


# ---------------------------------------------------------------------------------------------- colour


def to_lab(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) RGB in [0, 1] (sRGB) -> CIELAB (D65): L in [0, 100], a and b about [-128, 127]."""
    arr = np.asarray(img)
    arr = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else np.clip(arr, 0, 1).astype(np.float32)
    return cv2.cvtColor(arr, cv2.COLOR_RGB2Lab)


def _sample(lab: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    px = lab.reshape(-1, 3).astype(np.float64)
    if len(px) <= n:
        return px
    return px[rng.choice(len(px), size=n, replace=False)]


def _directions(count: int = 64, seed: int = 0) -> np.ndarray:
    d = np.random.default_rng(seed).normal(size=(count, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def sliced_wasserstein(lab_a: np.ndarray, lab_b: np.ndarray, samples: int = 4096, projections: int = 64,
                       seed: int = 0) -> float:
    """Sliced Wasserstein-1 distance (Lab units) between the pixel colours of two images: ``samples``
    pixels of each, ``projections`` fixed-seed directions; 0 for identical colour distributions."""
    rng = np.random.default_rng(seed)
    a = _sample(lab_a, samples, rng)
    b = _sample(lab_b, samples, rng)
    dirs = _directions(projections, seed)
    pa = np.sort(a @ dirs.T, axis=0)
    pb = np.sort(b @ dirs.T, axis=0)
    if len(pa) != len(pb):  # compare quantiles when sample counts differ
        q = np.linspace(0, 1, max(len(pa), len(pb)))
        pa = np.quantile(pa, q, axis=0)
        pb = np.quantile(pb, q, axis=0)
    return float(np.abs(pa - pb).mean())


_LAB_RANGE = ((0.0, 100.0), (-128.0, 128.0), (-128.0, 128.0))


def lab_histogram(lab: np.ndarray, bins: int = 8) -> np.ndarray:
    h, _ = np.histogramdd(lab.reshape(-1, 3), bins=(bins, bins, bins), range=_LAB_RANGE)
    return h / max(h.sum(), 1.0)


def chi2_distance(hist_a: np.ndarray, hist_b: np.ndarray) -> float:
    """0.5 * sum (p - q)^2 / (p + q) over non-empty bins; 0 (same) to 1 (disjoint)."""
    s = hist_a + hist_b
    nz = s > 0
    return float(0.5 * (((hist_a - hist_b) ** 2)[nz] / s[nz]).sum())


def lab_moments(lab: np.ndarray) -> np.ndarray:
    px = lab.reshape(-1, 3).astype(np.float64)
    return np.concatenate([px.mean(0), px.std(0)])


def color_distances(lab: np.ndarray, lab_ref: np.ndarray, hist_ref: np.ndarray | None = None) -> dict[str, float]:
    """Sliced Wasserstein, chi-squared of 8x8x8 histograms, and L1 of (mean, std) per Lab channel."""
    hist_ref = lab_histogram(lab_ref) if hist_ref is None else hist_ref
    return {
        "swd": sliced_wasserstein(lab, lab_ref),
        "chi2": chi2_distance(lab_histogram(lab), hist_ref),
        "moments": float(np.abs(lab_moments(lab) - lab_moments(lab_ref)).sum()),
    }


def small(img: np.ndarray, longest: int = 256) -> np.ndarray:
    """Area-downsized copy for colour statistics (keeps the distribution, saves time)."""
    h, w = img.shape[:2]
    s = longest / max(h, w)
    if s >= 1:
        return img
    return cv2.resize(np.asarray(img, np.float32), (max(1, round(w * s)), max(1, round(h * s))),
                      interpolation=cv2.INTER_AREA)
