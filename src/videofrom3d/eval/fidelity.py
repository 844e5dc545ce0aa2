"""Pseudo-ground-truth fidelity (paper 4.2, Table 2 PSNR / SSIM / LPIPS).

For an inner frame i of an arc, the anchors v0 and vN are warped into view i with exact flows
(``flow_i_to_0``, ``flow_i_to_N`` from depth and cameras, visibility aware). Pixels seen by one anchor take
it; pixels seen by both take the nearer anchor in time (v0 when i <= N/2), since blending ghosts where
anchors disagree. The known region K_i is the union of both visibility masks; metrics score only K_i.
Frames 0 and N are excluded (they are the anchors). docs/evaluation.md gives the protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from videofrom3d.eval.metrics import PSNR_CAP_DB, capped, psnr, ssim
from videofrom3d.prepare.flow import reprojection_flow
from videofrom3d.prepare.warp import backward_warp


@dataclass(frozen=True)
class PseudoGT:
    """``target`` (H, W, 3) composite of warped anchors, ``known`` (H, W) bool region K_i, and each anchor's
    visibility mask ``from_start`` / ``from_end``."""

    target: np.ndarray
    known: np.ndarray
    from_start: np.ndarray
    from_end: np.ndarray


def composite_pseudo_gt(
    anchor_start: np.ndarray, anchor_end: np.ndarray, flow_i_to_start: np.ndarray, valid_start: np.ndarray,
    flow_i_to_end: np.ndarray, valid_end: np.ndarray, prefer_start: bool,
) -> PseudoGT:
    """Warp both anchors into view i and composite them (rule in the module docstring)."""
    w0, m0 = backward_warp(anchor_start, flow_i_to_start, valid_start)
    wn, mn = backward_warp(anchor_end, flow_i_to_end, valid_end)
    take_start = m0 & (~mn | prefer_start)
    target = np.where(take_start[..., None], w0, np.where(mn[..., None], wn, 0.0)).astype(np.float32)
    return PseudoGT(target, m0 | mn, m0, mn)


def arc_pseudo_gt(arc, i: int, anchor_start: np.ndarray, anchor_end: np.ndarray, rel_tol: float = 0.01) -> PseudoGT:
    """Pseudo-GT of local frame ``i`` (0 < i < N) of a :class:`~videofrom3d.prepare.arcs.PreparedArc`."""
    n = arc.frame_count - 1
    f0, v0 = reprojection_flow(arc.depth[i], arc.cameras[i], arc.depth[0], arc.cameras[0], rel_tol)
    fn, vn = reprojection_flow(arc.depth[i], arc.cameras[i], arc.depth[n], arc.cameras[n], rel_tol)
    return composite_pseudo_gt(anchor_start, anchor_end, f0, v0, fn, vn, prefer_start=i <= n / 2)


def masked_scores(frame: np.ndarray, gt: PseudoGT, lpips_fn=None) -> dict[str, float]:
    """PSNR (capped at 100 dB), SSIM (K_i eroded 5 px) and, with ``lpips_fn(a, b) -> (H, W) map``, LPIPS
    averaged over K_i; nan where K_i is empty."""
    out = {
        "psnr": capped(psnr(frame, gt.target, gt.known), PSNR_CAP_DB),
        "ssim": ssim(frame, gt.target, gt.known, erode_px=5),
    }
    if lpips_fn is not None:
        out["lpips"] = float(lpips_fn(frame, gt.target)[gt.known].mean()) if gt.known.any() else float("nan")
    return out
