"""Monocular relative depth with a DPT (MiDaS) model from local weights, through transformers.

The authors' GGI training computes HED edges on MiDaS depth ("HED-S", research/ggi-and-noise-warping.md
section 3). ``Intel/dpt-hybrid-midas`` (registry key ``depth``) is MiDaS v3 in transformers' layout; the
folder's ``preprocessor_config.json`` drives the resize and normalisation (transformers' DPT image
processor). Output is relative inverse depth (near = large), as MiDaS gives it.
"""

from __future__ import annotations

import os

import numpy as np

# A DPT small enough to run in tests and ``--models tiny-random`` (random weights, no files).
TINY_DPT_CONFIG = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_hidden_layers": 4,
    "num_attention_heads": 2,
    "image_size": 32,
    "patch_size": 8,
    "neck_hidden_sizes": [8, 8, 8, 8],
    "fusion_hidden_size": 8,
    "backbone_out_indices": [0, 1, 2, 3],
    "head_in_index": -1,
}
TINY_DPT_PROCESSOR = {"do_resize": True, "size": {"height": 32, "width": 32}, "do_normalize": True,
                      "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}


class DepthEstimator:
    """``estimator(frames (N, H, W, 3) f32 [0, 1]) -> (N, H, W) f32`` relative inverse depth, resized back
    to the frame size bicubically. ``model`` a ``DPTForDepthEstimation``, ``processor`` its image processor."""

    def __init__(self, model, processor, device: str = "cpu", batch: int = 4):
        self.model = model
        self.processor = processor
        self.device = device
        self.batch = batch

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        frames = np.asarray(frames, dtype=np.float32)
        h, w = frames.shape[1:3]
        outs = []
        for i in range(0, len(frames), self.batch):
            chunk = list(np.clip(frames[i : i + self.batch], 0, 1))
            x = self.processor(images=chunk, return_tensors="pt", do_rescale=False).pixel_values.to(self.device)
            with torch.no_grad():
                pred = self.model(pixel_values=x).predicted_depth.float()
            pred = F.interpolate(pred[:, None], size=(h, w), mode="bicubic", align_corners=False)[:, 0]
            outs.append(pred.cpu().numpy())
        return np.concatenate(outs).astype(np.float32)


def load_depth_estimator(path: str | os.PathLike | None = None, device: str = "cpu") -> DepthEstimator:
    """DPT from ``path`` or the registry (``models.locate("depth")``); a missing model names every place looked."""
    from transformers import DPTForDepthEstimation

    from videofrom3d.models import locate

    root = locate("depth", path)
    model = DPTForDepthEstimation.from_pretrained(str(root)).to(device).eval().requires_grad_(False)
    return DepthEstimator(model, _processor_class().from_pretrained(str(root)), device)


def tiny_depth_estimator(seed: int = 0, device: str = "cpu") -> DepthEstimator:
    """A random tiny DPT (``TINY_DPT_CONFIG``) for tests and ``--models tiny-random``."""
    import torch
    from transformers import DPTConfig, DPTForDepthEstimation

    torch.manual_seed(seed)
    model = DPTForDepthEstimation(DPTConfig(**TINY_DPT_CONFIG)).to(device).eval().requires_grad_(False)
    return DepthEstimator(model, _processor_class()(**TINY_DPT_PROCESSOR), device)


def _processor_class():
    """transformers' DPT image processor; its PIL backend where torchvision does not import (CPU torch)."""
    try:
        import torchvision  # noqa: F401
        from transformers import DPTImageProcessor as cls
    except Exception:
        try:
            from transformers import DPTImageProcessorPil as cls
        except ImportError:  # transformers < 5
            from transformers import DPTImageProcessor as cls
    return cls


def normalized_depth_image(depth: np.ndarray) -> np.ndarray:
    """(H, W) relative depth -> (H, W, 3) f32 grey image in [0, 1] (min-max per frame), the input HED sees."""
    d = np.asarray(depth, dtype=np.float64)
    lo, hi = float(d.min()), float(d.max())
    grey = np.zeros(d.shape) if hi <= lo else (d - lo) / (hi - lo)
    return np.repeat(grey[..., None], 3, axis=-1).astype(np.float32)
