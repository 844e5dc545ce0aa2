"""Optical flow between video frames: RAFT (torchvision) when it imports and its weights are local, else
OpenCV DIS. The authors' GGI training uses RAFT-large on 240x360 frames (research/ggi-and-noise-warping.md
section 3); the method used is named by :attr:`FlowEstimator.method` so a dataset can record it.
"""

from __future__ import annotations

import cv2
import numpy as np


def _grey_u8(img: np.ndarray) -> np.ndarray:
    arr = (np.clip(np.asarray(img, dtype=np.float32), 0, 1) * 255.0 + 0.5).astype(np.uint8)
    return cv2.cvtColor(arr, cv2.COLOR_RGB2GRAY) if arr.ndim == 3 else arr


class FlowEstimator:
    """``estimator(frame_a, frame_b) -> (H, W, 2) f32`` flow a -> b in pixels of a (``flow[y, x] = (dx, dy)``).

    Frames are (H, W, 3) f32 in [0, 1]. ``scale`` < 1 estimates at that fraction of the resolution and
    upsamples the flow (values times 1/scale), as the authors run RAFT at half resolution."""

    def __init__(self, method: str, scale: float = 0.5, device: str = "cpu"):
        if method not in ("raft", "dis"):
            raise ValueError(f'flow method must be "raft" or "dis", got {method!r}')
        if not 0 < scale <= 1:
            raise ValueError(f"flow scale must be in (0, 1], got {scale}")
        self.method = method
        self.scale = scale
        self.device = device
        self._raft = None
        self._dis = None
        if method == "raft":
            from torchvision.models.optical_flow import Raft_Large_Weights, raft_large

            self._raft = raft_large(weights=Raft_Large_Weights.DEFAULT).eval().to(device)
        else:
            self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def __call__(self, frame_a: np.ndarray, frame_b: np.ndarray) -> np.ndarray:
        h, w = np.asarray(frame_a).shape[:2]
        sh, sw = max(8, int(round(h * self.scale))), max(8, int(round(w * self.scale)))
        a, b = (cv2.resize(np.asarray(f, np.float32), (sw, sh), interpolation=cv2.INTER_AREA) for f in (frame_a, frame_b))
        flow = self._raft_flow(a, b) if self._raft is not None else self._dis.calc(_grey_u8(a), _grey_u8(b), None)
        up = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR)
        up[..., 0] *= w / sw
        up[..., 1] *= h / sh
        return up.astype(np.float32)

    def _raft_flow(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        import torch

        h, w = a.shape[:2]
        ph, pw = (-h) % 8, (-w) % 8  # RAFT needs sides divisible by 8
        x = [torch.from_numpy(np.pad(f, ((0, ph), (0, pw), (0, 0)), mode="edge")).permute(2, 0, 1)[None] * 2 - 1
             for f in (a, b)]
        with torch.no_grad():
            flow = self._raft(x[0].to(self.device), x[1].to(self.device))[-1]
        return flow[0, :, :h, :w].permute(1, 2, 0).cpu().numpy()


def make_flow_estimator(method: str = "auto", scale: float = 0.5, device: str = "cpu") -> FlowEstimator:
    """``"raft"``, ``"dis"``, or ``"auto"``: RAFT-large when torchvision imports and finds its weights locally
    (torch hub cache; nothing is downloaded offline), else DIS."""
    if method != "auto":
        return FlowEstimator(method, scale, device)
    try:
        return FlowEstimator("raft", scale, device)
    except Exception:  # torchvision missing or broken (CPU torch), or no local RAFT weights
        return FlowEstimator("dis", scale, device)
