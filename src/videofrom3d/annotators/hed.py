"""HED soft edges, as the ControlNet annotators compute them (used by alignment: control = HED(style crop)).

The network is the "ControlNetHED_Apache2" variant of HED that lllyasviel retrained for ControlNet 1.1
(weights ``lllyasviel/Annotators/ControlNetHED.pth``, Apache-2.0): five VGG-like stages of 2, 2, 3, 3, 3
3x3 conv+ReLU layers (64, 128, 256, 512, 512 channels) with 2x2 max-pooling between stages, a learned
per-channel offset ``norm`` subtracted from the 0-255 RGB input, and a 1x1 side projection per stage. The
edge map is ``sigmoid(mean of the five side outputs resized to the image)``. This implementation is ours and
matches that state dict's names (``norm``, ``blockN.convs.M.{weight,bias}``, ``blockN.projection.*``).

Weights are found with :func:`videofrom3d.models.locate` (``hed``: a ``.pth``/``.safetensors`` file, or a
folder holding ``ControlNetHED.pth``/``ControlNetHED.safetensors``); torch files are read with
``weights_only=True``. With no weights, :func:`hed_edges` falls back to :func:`classical_soft_edges` and warns
(once per process, and every call logs at INFO): multi-scale Gaussian-derivative gradient magnitude, made
soft and a few pixels wide, similar in look (white lines on black) but not a learned edge detector.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import cv2
import numpy as np

from videofrom3d.models import MissingModelError, candidate_paths

log = logging.getLogger(__name__)

WIDTHS = (64, 128, 256, 512, 512)  # output channels of the five stages
LAYERS = (2, 2, 3, 3, 3)  # 3x3 conv layers per stage
WEIGHT_NAMES = ("ControlNetHED.safetensors", "ControlNetHED.pth")

_WARNED = False


def build_hed_network(widths: tuple[int, ...] = WIDTHS):
    """The ControlNetHED_Apache2 architecture (random weights); ``widths`` narrower than the real
    (64, 128, 256, 512, 512) give the tiny random HED of tests and ``--models tiny-random``."""
    import torch
    from torch import nn

    class Stage(nn.Module):
        def __init__(self, c_in: int, c_out: int, layers: int):
            super().__init__()
            self.convs = nn.ModuleList(
                [nn.Conv2d(c_in if i == 0 else c_out, c_out, kernel_size=3, padding=1) for i in range(layers)]
            )
            self.projection = nn.Conv2d(c_out, 1, kernel_size=1)

        def forward(self, x, pool: bool):
            if pool:
                x = nn.functional.max_pool2d(x, kernel_size=2, stride=2)
            for conv in self.convs:
                x = torch.relu(conv(x))
            return x, self.projection(x)

    class HEDNetwork(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.Parameter(torch.zeros(1, 3, 1, 1))
            c_in = 3
            for i, (c_out, layers) in enumerate(zip(widths, LAYERS), start=1):
                setattr(self, f"block{i}", Stage(c_in, c_out, layers))
                c_in = c_out

        def forward(self, rgb255):
            """(B, 3, H, W) RGB in 0..255 -> five (B, 1, H/2^k, W/2^k) side logits."""
            x = rgb255 - self.norm
            sides = []
            for i in range(1, len(LAYERS) + 1):
                x, side = getattr(self, f"block{i}")(x, pool=i > 1)
                sides.append(side)
            return sides

    return HEDNetwork()


def tiny_hed_network(seed: int = 0):
    """A HED with 4 channels per stage and seeded random weights (eval mode): the code path, not the look."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_hed_network((4, 4, 4, 4, 4))
        with torch.no_grad():
            for p in net.parameters():
                p.normal_(0.0, 0.5)
    return net.eval().requires_grad_(False)


def find_hed_weights(override: str | Path | None = None) -> Path:
    """The HED weight file; raises :class:`MissingModelError` naming every place looked."""
    looked: list[Path] = []
    for place in candidate_paths("hed", override):
        if place.is_file():
            return place
        for name in WEIGHT_NAMES:
            looked.append(place / name)
            for cand in (place / name, *sorted(place.glob(f"*/{name}"))):
                if cand.is_file():
                    return cand
    raise MissingModelError("hed", looked)


def load_hed_network(path: str | Path | None = None, device: str = "cpu"):
    """HED with weights from ``path`` (file or folder) or the registry; eval mode."""
    import torch

    weight = find_hed_weights(path)
    if weight.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(weight))
    else:
        state = torch.load(str(weight), map_location="cpu", weights_only=True)
    net = build_hed_network()
    net.load_state_dict(state)
    return net.eval().requires_grad_(False).to(device)


class HEDDetector:
    """``detector(image (H, W, 3) f32 [0, 1]) -> (H, W) f32 [0, 1]`` soft edges, step for step as
    ``controlnet_aux.HEDdetector(image, detect_resolution, output_type="np")`` and a resize back (the
    authors' annotator): the image is quantised to uint8, resized so its short side is ``detect_resolution``
    (sides rounded to multiples of 64; Lanczos up, area down), run; the side outputs are resized to that size,
    averaged, passed through a sigmoid, quantised to uint8 and resized bilinearly to (W, H)."""

    def __init__(self, network=None, detect_resolution: int = 512, device: str = "cpu"):
        self.network = network
        self.detect_resolution = detect_resolution
        self.device = device

    def __call__(self, image: np.ndarray) -> np.ndarray:
        import torch

        img = np.asarray(image, dtype=np.float32)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        h, w = img.shape[:2]
        rgb8 = (np.clip(img, 0, 1) * 255.0 + 0.5).astype(np.uint8)
        scale = self.detect_resolution / min(h, w)
        dh, dw = (int(np.round(s * scale / 64.0)) * 64 for s in (h, w))
        small = cv2.resize(rgb8, (dw, dh), interpolation=cv2.INTER_LANCZOS4 if scale > 1 else cv2.INTER_AREA)
        x = torch.from_numpy(small).float().permute(2, 0, 1)[None].to(self.device)
        with torch.no_grad():
            sides = self.network(x)
        maps = [cv2.resize(s[0, 0].float().cpu().numpy(), (dw, dh), interpolation=cv2.INTER_LINEAR) for s in sides]
        edge = 0.5 + 0.5 * np.tanh(0.5 * np.mean(maps, axis=0, dtype=np.float64))  # sigmoid, no overflow
        edge8 = (edge * 255.0).clip(0, 255).astype(np.uint8)
        if (dw, dh) != (w, h):
            edge8 = cv2.resize(edge8, (w, h), interpolation=cv2.INTER_LINEAR)
        return edge8.astype(np.float32) / 255.0


def classical_soft_edges(image: np.ndarray, scales: tuple[float, ...] = (1.0, 2.0), width_px: float = 1.0) -> np.ndarray:
    """Weight-free stand-in for HED: (H, W, 3) f32 [0, 1] -> (H, W) f32 [0, 1] soft white edges on black.

    Per scale s: Gaussian blur (sigma s) of the luminance, Sobel gradient magnitude times s (scale-normalised),
    divided by its 99th percentile; the maximum over scales is mapped through ``1 - exp(-3 m^2)`` and blurred
    by ``width_px`` so lines come out soft and a few pixels wide, like HED's."""
    img = np.asarray(image, dtype=np.float32)
    grey = img @ np.array([0.299, 0.587, 0.114], np.float32) if img.ndim == 3 else img
    strength = np.zeros_like(grey)
    for s in scales:
        g = cv2.GaussianBlur(grey, (0, 0), s)
        gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
        mag = np.hypot(gx, gy) * s
        ref = float(np.percentile(mag, 99))
        if ref > 1e-6:
            strength = np.maximum(strength, mag / ref)
    edges = 1.0 - np.exp(-3.0 * strength**2)
    if width_px > 0:
        edges = cv2.GaussianBlur(edges, (0, 0), width_px)
    return np.clip(edges, 0, 1).astype(np.float32)


def make_edge_detector(mode: str = "auto", weights: str | Path | None = None, device: str = "cpu"):
    """A callable image -> soft edges. ``mode``: ``"network"`` (HED weights required), ``"classical"``,
    ``"tiny-random"`` (:func:`tiny_hed_network`), or ``"auto"`` (the network when its weights are found,
    else the classical fallback with a warning; the pipeline decides with
    :func:`videofrom3d.prepare.edge_mode.align_edge_detector` so a real run never falls back silently)."""
    global _WARNED
    if mode not in ("auto", "network", "classical", "tiny-random"):
        raise ValueError(f'edge detector mode must be "auto", "network", "classical" or "tiny-random", got {mode!r}')
    if mode == "tiny-random":
        return HEDDetector(tiny_hed_network().to(device), device=device)
    if mode != "classical":
        try:
            return HEDDetector(load_hed_network(weights, device), device=device)
        except MissingModelError as e:
            if mode == "network":
                raise
            msg = (f"HED weights not found, using the classical soft-edge fallback for control images "
                   f"(videofrom3d.annotators.hed.classical_soft_edges). {e}")
            if not _WARNED:
                warnings.warn(msg, stacklevel=2)
                _WARNED = True
            log.info(msg)
    return classical_soft_edges


def hed_edges(image: np.ndarray, mode: str = "auto", weights: str | Path | None = None) -> np.ndarray:
    """One-shot :func:`make_edge_detector` + call."""
    return make_edge_detector(mode, weights)(image)
