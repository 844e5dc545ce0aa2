"""LPIPS (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric"),
written here in plain torch so it needs neither torchvision nor network access.

Layout of a weight folder (``models`` key ``lpips``): a trunk state dict in torchvision's layout,
``alexnet*.safetensors|.pth`` (e.g. ``alexnet-owt-7be5be79.pth``) or ``vgg16*.safetensors|.pth``, and the
LPIPS v0.1 linear heads of that trunk, ``alex.pth`` / ``vgg.pth`` (or ``.safetensors``; keys
``lin0.model.1.weight`` ...). Torch files are read with ``weights_only=True``. AlexNet is preferred when
both trunks are present (the reference library's default).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# the reference's ScalingLayer: inputs in [-1, 1] -> ImageNet-normalised
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


def _alexnet_features() -> tuple[nn.Sequential, list[int], list[int]]:
    """torchvision ``alexnet().features`` with identical indices (so its state dict loads), the indices
    of the five ReLUs LPIPS taps, and their channel counts."""
    layers = [
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(),  # 0, 1
        nn.MaxPool2d(3, 2), nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(),  # 2, 3, 4
        nn.MaxPool2d(3, 2), nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),  # 5, 6, 7
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),  # 8, 9
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),  # 10, 11
    ]
    return nn.Sequential(*layers), [1, 4, 7, 9, 11], [64, 192, 384, 256, 256]


def _vgg16_features() -> tuple[nn.Sequential, list[int], list[int]]:
    """torchvision ``vgg16().features`` up to relu5_3 with identical indices; taps relu1_2 ... relu5_3."""
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]
    layers: list[nn.Module] = []
    c = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
            c = v
    return nn.Sequential(*layers), [3, 8, 15, 22, 29], [64, 128, 256, 512, 512]


class _Linear(nn.Module):
    """One LPIPS head: dropout (inactive in eval) then a 1x1 convolution to one channel, no bias."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x):
        return self.model(x)


class LPIPS(nn.Module):
    """``forward(x0, x1)`` with (B, 3, H, W) images in [-1, 1] -> (B, 1, H, W) distance map
    (the reference's ``spatial=True``: each layer's map upsampled bilinearly to the input size, summed)."""

    def __init__(self, net: str = "alex"):
        super().__init__()
        if net not in ("alex", "vgg"):
            raise ValueError(f"LPIPS trunk must be 'alex' or 'vgg', got {net!r}")
        self.net = net
        self.features, self.taps, channels = _alexnet_features() if net == "alex" else _vgg16_features()
        self.features = self.features[: self.taps[-1] + 1]
        for i, c in enumerate(channels):
            setattr(self, f"lin{i}", _Linear(c))
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)

    def _taps(self, x):
        out = []
        x = (x - self.shift) / self.scale
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        size = x0.shape[-2:]
        total = 0.0
        for i, (f0, f1) in enumerate(zip(self._taps(x0), self._taps(x1))):
            n0 = f0 / (torch.sqrt((f0 * f0).sum(dim=1, keepdim=True)) + 1e-10)
            n1 = f1 / (torch.sqrt((f1 * f1).sum(dim=1, keepdim=True)) + 1e-10)
            d = getattr(self, f"lin{i}")((n0 - n1) ** 2)
            total = total + F.interpolate(d, size=size, mode="bilinear", align_corners=False)
        return total


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


def _first(folder: Path, patterns: list[str]) -> Path | None:
    for pat in patterns:
        hits = sorted(folder.glob(pat))
        if hits:
            return hits[0]
    return None


def lpips_files(folder: str | Path) -> tuple[str, Path, Path] | str:
    """(net, trunk file, heads file) found in ``folder``, or a sentence saying what is absent."""
    folder = Path(folder)
    if folder.is_file():
        folder = folder.parent
    for net, trunk_pats, head in (
        ("alex", ["alexnet*.safetensors", "alexnet*.pth"], "alex"),
        ("vgg", ["vgg16*.safetensors", "vgg16*.pth"], "vgg"),
    ):
        trunk = _first(folder, trunk_pats)
        heads = _first(folder, [f"{head}.safetensors", f"{head}.pth"])
        if trunk is not None and heads is not None:
            return net, trunk, heads
    return (
        f"{folder} needs an AlexNet trunk (alexnet-owt-7be5be79.pth) with the LPIPS v0.1 heads alex.pth, "
        "or vgg16*.pth with vgg.pth"
    )


def load_lpips(folder: str | Path) -> LPIPS:
    """LPIPS from a weight folder (layout in the module docstring); raises FileNotFoundError if incomplete."""
    found = lpips_files(folder)
    if isinstance(found, str):
        raise FileNotFoundError(found)
    net, trunk_path, heads_path = found
    model = LPIPS(net)
    trunk = _read_state(trunk_path)
    feats = {k[len("features.") :]: v for k, v in trunk.items() if k.startswith("features.")}
    if not feats:  # a bare features state dict
        feats = dict(trunk)
    feats = {k: v for k, v in feats.items() if int(k.split(".")[0]) <= model.taps[-1]}
    model.features.load_state_dict(feats, strict=True)
    heads = _read_state(heads_path)
    model.load_state_dict(heads, strict=False)
    missing = [k for k in model.state_dict() if k.startswith("lin") and k not in heads]
    if missing:
        raise ValueError(f"{heads_path}: LPIPS heads lack {missing}")
    return model.eval().requires_grad_(False)
