"""MUSIQ, the multi-scale image quality transformer (Ke et al., ICCV 2021), in plain torch.

Written against the PyTorch port that VBench and the paper's numbers use (chaofengc/IQA-PyTorch
``pyiqa/archs/musiq_arch.py`` and ``pyiqa/data/multiscale_trans_util.py``); module and parameter names follow
that port so its released checkpoints (``musiq_spaq_ckpt-358bb6af.pth``, ``musiq_koniq_ckpt-e95806b9.pth``)
load with ``load_state_dict(strict=True)``. docs/evaluation.md has the protocol.

Pipeline of one image (RGB in [0, 1], any size):

1. scale to [-1, 1];
2. multi-scale patches: the image resized (bicubic, aspect kept, no antialias) so its longer side is 224, then
   384, then the image at native size; each cut into 32 px patches on a TF-"SAME" zero-padded grid. The two
   resized scales are zero-padded to ceil(L/32)^2 patches (mask 0), the native one keeps all its patches.
   Every patch carries a hashed spatial index (row and column of its grid cell mapped onto a 10 x 10 grid by
   nearest-neighbour lookup) and a scale index (0: 224, 1: 384, 2: native);
3. each 32 px patch through a ResNet stem (weight-standardised 7x7/2 conv, GroupNorm, ReLU, 3x3/2 max-pool,
   one bottleneck block 64 -> 256) to an 8 x 8 x 256 map, flattened channels-last and linearly embedded;
4. + hashed spatial embedding + scale embedding, a CLS token in front, 14 pre-norm transformer blocks (masked
   attention), final LayerNorm;
5. a linear head on the CLS token: one score for KonIQ/SPAQ/PaQ-2-PiQ (about 0-100), or for AVA a softmax
   over 10 bins whose expectation (1-10) is the score.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

STEM_CHANNELS = 64  # pyiqa ``resnet_token_dim``
ATTENTION_MASK_FILL = -1e3  # the port fills masked logits with -1000 (not -inf)

# checkpoint files in the order they are preferred (VBench scores imaging quality with SPAQ)
CHECKPOINT_NAMES = {
    "spaq": ("musiq_spaq_ckpt-358bb6af.pth", "musiq_spaq.safetensors"),
    "koniq": ("musiq_koniq_ckpt-e95806b9.pth", "musiq_koniq.safetensors"),
}


@dataclass(frozen=True)
class MusiqConfig:
    """Defaults are the released MUSIQ models' (pyiqa ``MUSIQ.__init__``)."""

    patch_size: int = 32
    hidden_size: int = 384
    mlp_dim: int = 1152
    num_heads: int = 6
    num_layers: int = 14
    num_scales: int = 3  # two resized scales + native
    hash_grid: int = 10  # hashed spatial embedding is hash_grid x hash_grid
    num_classes: int = 1  # 10 for AVA (score distribution)
    longer_sides: tuple[int, ...] = (224, 384)
    max_native_patches: int = -1  # -1: every patch of the native-size image


# ---------------------------------------------------------------------------------------------- preprocessing


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding of one axis: (before, after), the extra pixel after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Zero-pad (B, C, H, W) so a ``kernel``/``stride`` window gives ceil(H/stride) x ceil(W/stride) outputs."""
    top, bottom = same_padding(x.shape[-2], kernel, stride)
    left, right = same_padding(x.shape[-1], kernel, stride)
    return F.pad(x, (left, right, top, bottom))


def hashed_positions(grid: int, rows: int, cols: int) -> torch.Tensor:
    """(rows * cols,) int64 hashed spatial index of each cell of a rows x cols patch grid, row-major: the cell's
    row and column are mapped onto ``grid`` bins by nearest-neighbour resampling of 0..grid-1 (torch's
    'nearest' rule, as the reference), index = row_bin * grid + col_bin."""
    bins = torch.arange(grid, dtype=torch.float32).view(1, 1, grid)
    row_bin = F.interpolate(bins, size=rows, mode="nearest").view(rows, 1).long()
    col_bin = F.interpolate(bins, size=cols, mode="nearest").view(1, cols).long()
    return (row_bin * grid + col_bin).reshape(-1)


def resize_longer_side(x: torch.Tensor, longer: int) -> torch.Tensor:
    """(B, C, H, W) -> longer side ``longer``, aspect kept (Python round of each side), bicubic, no antialias."""
    h, w = x.shape[-2:]
    ratio = longer / max(h, w)
    return F.interpolate(x, size=(round(h * ratio), round(w * ratio)), mode="bicubic", align_corners=False)


@dataclass
class PatchSequence:
    """Multi-scale patch tokens of a batch: ``patches`` (B, N, 3*P*P) channel-major pixels of each P x P patch,
    ``spatial`` (B, N) hashed position, ``scale`` (B, N) scale index, ``mask`` (B, N) bool, False on padding."""

    patches: torch.Tensor
    spatial: torch.Tensor
    scale: torch.Tensor
    mask: torch.Tensor


def _one_scale(x: torch.Tensor, patch: int, grid: int, scale_id: int, length: int) -> PatchSequence:
    b = x.shape[0]
    rows, cols = math.ceil(x.shape[-2] / patch), math.ceil(x.shape[-1] / patch)
    cells = F.unfold(pad_same(x, patch, patch), kernel_size=patch, stride=patch).transpose(1, 2)  # (B, R*C, 3PP)
    spatial = hashed_positions(grid, rows, cols).to(x.device).expand(b, -1)
    seq = PatchSequence(cells, spatial, torch.full_like(spatial, scale_id), torch.ones_like(spatial, dtype=torch.bool))
    if length >= 0:  # zero tokens (position 0, scale 0, mask False) up to ``length``, or cut to it
        n = cells.shape[1]
        keep = min(n, length)
        pad = length - keep

        def fit(t, fill):
            t = t[:, :keep]
            return torch.cat([t, t.new_full((b, pad, *t.shape[2:]), fill)], dim=1) if pad else t

        seq = PatchSequence(fit(seq.patches, 0), fit(seq.spatial, 0), fit(seq.scale, 0), fit(seq.mask, False))
    return seq


def multiscale_patches(x: torch.Tensor, patch_size: int = 32, hash_grid: int = 10,
                       longer_sides: tuple[int, ...] = (224, 384), max_native_patches: int | None = -1
                       ) -> PatchSequence:
    """(B, 3, H, W) image already in [-1, 1] -> tokens of the resized scales (ascending longer side, each padded
    to ceil(L/P)^2 tokens) followed by the native-size tokens (all of them when ``max_native_patches`` < 0, none
    when it is None)."""
    parts = []
    for scale_id, longer in enumerate(sorted(longer_sides)):
        parts.append(_one_scale(resize_longer_side(x, longer), patch_size, hash_grid, scale_id,
                                math.ceil(longer / patch_size) ** 2))
    if max_native_patches is not None:
        parts.append(_one_scale(x, patch_size, hash_grid, len(longer_sides), max_native_patches))
    return PatchSequence(*(torch.cat([getattr(p, f) for p in parts], dim=1)
                           for f in ("patches", "spatial", "scale", "mask")))


# ---------------------------------------------------------------------------------------------- ResNet stem


class WSConv2d(nn.Conv2d):
    """Conv with TF "SAME" padding and weight standardisation: each output filter minus its mean, divided by
    its (unbiased) standard deviation + 1e-5 (pyiqa ``StdConv``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        w = w - w.mean(dim=(1, 2, 3), keepdim=True)
        w = w / (w.std(dim=(1, 2, 3), keepdim=True, correction=1) + 1e-5)
        x = pad_same(x, self.kernel_size[0], self.stride[0])
        return F.conv2d(x, w, self.bias, self.stride)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 weight-standardised convs with GroupNorm(32, eps 1e-4), projected shortcut."""

    def __init__(self, channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = WSConv2d(channels, channels, 1, 1, bias=False)
        self.gn1 = nn.GroupNorm(32, channels, eps=1e-4)
        self.conv2 = WSConv2d(channels, channels, 3, 1, bias=False)
        self.gn2 = nn.GroupNorm(32, channels, eps=1e-4)
        self.conv3 = WSConv2d(channels, out_channels, 1, 1, bias=False)
        self.gn3 = nn.GroupNorm(32, out_channels, eps=1e-4)
        self.has_projection = channels != out_channels or stride != 1
        if self.has_projection:
            self.conv_proj = WSConv2d(channels, out_channels, 1, stride, bias=False)
            self.gn_proj = nn.GroupNorm(32, out_channels, eps=1e-4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.gn_proj(self.conv_proj(x)) if self.has_projection else x
        y = F.relu(self.gn1(self.conv1(x)))
        y = F.relu(self.gn2(self.conv2(y)))
        return F.relu(self.gn3(self.conv3(y)) + shortcut)


# ---------------------------------------------------------------------------------------------- transformer


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden size {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape

        def split(t):
            return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        logits = (q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5
        pair = (mask[:, None, :, None] & mask[:, None, None, :])  # both tokens real
        logits = logits.masked_fill(~pair, ATTENTION_MASK_FILL)
        y = logits.softmax(dim=-1) @ v
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class EncoderBlock(nn.Module):
    """Pre-norm block: x + attention(LN(x)), then x + MLP(LN(x)); LayerNorm eps 1e-6."""

    def __init__(self, dim: int, mlp_dim: int, heads: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attention = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class HashedSpatialEmbedding(nn.Module):
    def __init__(self, grid: int, dim: int):
        super().__init__()
        self.position_emb = nn.Parameter(torch.zeros(1, grid * grid, dim))

    def forward(self, x: torch.Tensor, spatial: torch.Tensor) -> torch.Tensor:
        return x + self.position_emb[0][spatial]


class ScaleEmbedding(nn.Module):
    def __init__(self, scales: int, dim: int):
        super().__init__()
        self.scale_emb = nn.Parameter(torch.zeros(scales, dim))

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return x + self.scale_emb[scale]


class Encoder(nn.Module):
    def __init__(self, cfg: MusiqConfig):
        super().__init__()
        d = cfg.hidden_size
        self.posembed_input = HashedSpatialEmbedding(cfg.hash_grid, d)
        self.scaleembed_input = ScaleEmbedding(cfg.num_scales, d)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.encoder_norm = nn.LayerNorm(d, eps=1e-6)
        self.transformer = nn.ModuleDict(
            {f"encoderblock_{i}": EncoderBlock(d, cfg.mlp_dim, cfg.num_heads) for i in range(cfg.num_layers)}
        )

    def forward(self, x: torch.Tensor, seq: PatchSequence) -> torch.Tensor:
        x = self.scaleembed_input(self.posembed_input(x, seq.spatial), seq.scale)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
        mask = torch.cat([seq.mask.new_ones(x.shape[0], 1), seq.mask], dim=1)
        for block in self.transformer.values():
            x = block(x, mask)
        return self.encoder_norm(x)


# ---------------------------------------------------------------------------------------------- model


class MUSIQ(nn.Module):
    """MUSIQ with the pyiqa port's state-dict layout. ``forward`` takes (B, 3, H, W) RGB in [0, 1] and returns
    (B,) scores; frames of one batch share a size."""

    def __init__(self, cfg: MusiqConfig = MusiqConfig()):
        super().__init__()
        self.cfg = cfg
        c = STEM_CHANNELS
        self.conv_root = WSConv2d(3, c, 7, 2, bias=False)
        self.gn_root = nn.GroupNorm(32, c, eps=1e-6)
        self.block1 = Bottleneck(c, 4 * c)
        tokens = cfg.patch_size // 4  # stride-2 conv, stride-2 pool
        self.embedding = nn.Linear(4 * c * tokens * tokens, cfg.hidden_size)
        self.transformer_encoder = Encoder(cfg)
        linear = nn.Linear(cfg.hidden_size, cfg.num_classes)
        self.head = linear if cfg.num_classes == 1 else nn.Sequential(linear, nn.Softmax(dim=-1))
        self._init()

    def _init(self) -> None:
        for name, p in self.named_parameters():
            if name.endswith("_emb"):
                nn.init.normal_(p, std=0.02)

    def tokens(self, x: torch.Tensor) -> PatchSequence:
        """(B, 3, H, W) in [0, 1] -> multi-scale patch tokens (the image is mapped to [-1, 1] first)."""
        c = self.cfg
        return multiscale_patches(x * 2 - 1, c.patch_size, c.hash_grid, c.longer_sides, c.max_native_patches)

    def embed_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """(B, N, 3*P*P) -> (B, N, hidden) through the ResNet stem; features flattened channels-last (H, W, C)
        as in the TF original."""
        b, n, _ = patches.shape
        p = self.cfg.patch_size
        y = self.gn_root(self.conv_root(patches.reshape(b * n, 3, p, p)))
        y = F.max_pool2d(pad_same(F.relu(y), 3, 2), 3, 2)  # zero padding is safe after ReLU
        y = self.block1(y)
        return self.embedding(y.permute(0, 2, 3, 1).reshape(b, n, -1))

    def score_tokens(self, seq: PatchSequence) -> torch.Tensor:
        x = self.transformer_encoder(self.embed_patches(seq.patches), seq)
        q = self.head(x[:, 0])
        if self.cfg.num_classes == 1:
            return q[:, 0]
        return (q * torch.arange(1, q.shape[-1] + 1, dtype=q.dtype, device=q.device)).sum(-1)  # mean of the bins

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.score_tokens(self.tokens(x))


# ---------------------------------------------------------------------------------------------- loading


def read_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, metadata) of a ``.safetensors`` file or a torch file (read with ``weights_only=True``); a
    ``params``/``state_dict`` wrapper and DataParallel's ``module.`` prefix are removed (pyiqa's
    ``clean_state_dict`` does the same)."""
    path = Path(path)
    meta: dict[str, str] = {}
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        state = load_file(str(path))
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        for wrapper in ("params", "params_ema", "state_dict", "model"):
            if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
                state = state[wrapper]
                break
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    return state, meta


def config_from_state_dict(state: dict[str, torch.Tensor], meta: dict[str, str] | None = None) -> MusiqConfig:
    """Sizes read off the tensors. The head count is not in the weights: ``num_heads`` metadata of a
    safetensors file, else hidden_size // 64 (the released models: 384 / 6 heads)."""
    meta = meta or {}
    hidden, flat = state["embedding.weight"].shape
    tokens = math.isqrt(flat // (4 * STEM_CHANNELS))
    layers = sum(1 for k in state if k.startswith("transformer_encoder.transformer.") and k.endswith(".norm1.weight"))
    head = state.get("head.weight", state.get("head.0.weight"))
    if head is None:
        raise KeyError("no head.weight / head.0.weight: not a MUSIQ checkpoint")
    return MusiqConfig(
        patch_size=4 * tokens,
        hidden_size=int(hidden),
        mlp_dim=int(state["transformer_encoder.transformer.encoderblock_0.mlp.fc1.weight"].shape[0]),
        num_heads=int(meta.get("num_heads", max(1, int(hidden) // 64))),
        num_layers=layers,
        num_scales=int(state["transformer_encoder.scaleembed_input.scale_emb"].shape[0]),
        hash_grid=math.isqrt(int(state["transformer_encoder.posembed_input.position_emb"].shape[1])),
        num_classes=int(head.shape[0]),
    )


def find_checkpoint(path: str | os.PathLike) -> tuple[Path, str]:
    """(checkpoint file, dataset) for a file or a folder; a folder is searched SPAQ first, then KonIQ. The
    dataset ("spaq", "koniq" or "unknown") is read from the file name."""
    path = Path(path)
    if path.is_file():
        name = path.name.lower()
        return path, next((k for k in CHECKPOINT_NAMES if k in name), "unknown")
    for dataset, names in CHECKPOINT_NAMES.items():
        for name in names:
            if (path / name).is_file():
                return path / name, dataset
        found = sorted(p for p in path.glob(f"musiq_{dataset}*") if p.suffix in (".pth", ".pt", ".safetensors"))
        if found:
            return found[0], dataset
    wanted = ", ".join(n for names in CHECKPOINT_NAMES.values() for n in names)
    raise FileNotFoundError(f"{path}: no MUSIQ SPAQ or KonIQ checkpoint (looked for {wanted})")


def load_musiq(path: str | os.PathLike) -> MUSIQ:
    """MUSIQ from a checkpoint file or a folder holding one, loaded strictly; ``model.checkpoint`` is the file
    and ``model.dataset`` what it was trained on ("spaq", "koniq" or "unknown")."""
    file, dataset = find_checkpoint(path)
    state, meta = read_state_dict(file)
    model = MUSIQ(config_from_state_dict(state, meta))
    model.load_state_dict(state, strict=True)
    model.checkpoint, model.dataset = file, dataset
    return model.eval().requires_grad_(False)


# ---------------------------------------------------------------------------------------------- protocol


def vbench_resize(frames_u8: torch.Tensor, max_side: int = 512) -> torch.Tensor:
    """VBench ``imaging_quality`` preprocessing ('longer' mode, its default): (B, 3, H, W) uint8 frames whose
    longer side exceeds ``max_side`` are resized to (int(s*H), int(s*W)), s = max_side / longer side, bilinear
    without antialias and rounded back to uint8 (torchvision ``Resize`` on a uint8 tensor); then / 255."""
    h, w = frames_u8.shape[-2:]
    x = frames_u8.float()
    if max(h, w) > max_side:
        s = max_side / max(h, w)
        x = F.interpolate(x, size=(int(s * h), int(s * w)), mode="bilinear", align_corners=False, antialias=False)
        x = x.round().clamp(0, 255)
    return x / 255.0


@torch.no_grad()
def musiq_scores(model: MUSIQ, frames, max_side: int = 512, batch: int = 4) -> torch.Tensor:
    """(N,) MUSIQ scores of (N, H, W, 3) frames (float in [0, 1] or uint8) under the VBench protocol: frames
    quantised to uint8, longer side shrunk to <= ``max_side``, scored one per frame on the 0-100 scale of the
    checkpoint (VBench's imaging quality is the mean of these / 100). ``max_side=None`` scores native size."""
    import numpy as np

    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.dtype != np.uint8:
        arr = np.clip(np.round(arr.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    dev = next(model.parameters()).device
    out = []
    for i in range(0, len(arr), batch):
        x = torch.from_numpy(np.ascontiguousarray(arr[i : i + batch])).permute(0, 3, 1, 2)
        x = vbench_resize(x, max_side) if max_side is not None else x.float() / 255.0
        out.append(model(x.to(dev)).float().cpu())
    return torch.cat(out)
