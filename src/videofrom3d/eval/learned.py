"""The paper's weight-based metrics (Table 2): PSNR-D, CLIP-A, MUSIQ, CLIP-I, subject and background
consistency, LPIPS; each built from a local weight folder found through :mod:`videofrom3d.models`.

Every model is a transformers class loaded with ``from_pretrained(local_folder)`` (CLIPModel, ViTModel /
Dinov2Model through AutoModel, DPTForDepthEstimation), so a tiny random model saved in the same layout runs
through exactly the same code. Definitions follow docs/evaluation.md (VBench and LAION references);
preprocessing is written out here in torch so it does not depend on image-processor classes.

MUSIQ is our own torch port (:mod:`videofrom3d.eval.musiq`) that loads pyiqa's checkpoint files strictly;
it scores frames under the VBench protocol (SPAQ checkpoint, longer side shrunk to <= 512, 0-100 scale).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from videofrom3d.eval.metrics import PSNR_CAP_DB, capped, psnr

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# which registry models each metric needs
METRIC_MODELS: dict[str, tuple[str, ...]] = {
    "lpips": ("lpips",),
    "psnr_d": ("depth",),
    "clip_a": ("clip_l", "aesthetic"),
    "clip_i": ("clip_b",),
    "clip_i_l14": ("clip_l",),
    "subject_consistency": ("dino",),
    "background_consistency": ("clip_b",),
    "musiq": ("musiq",),
}


@dataclass
class LoadedModels:
    """Models found and loaded, plus ``missing``: metric -> why it cannot be computed."""

    device: str = "cpu"
    clip_l: object | None = None
    clip_b: object | None = None
    dino: object | None = None
    depth: object | None = None
    depth_preprocess: dict = field(default_factory=dict)
    aesthetic: torch.nn.Module | None = None
    lpips: torch.nn.Module | None = None
    musiq: torch.nn.Module | None = None
    missing: dict[str, str] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)


def find_weight(key: str, models_dir: str | os.PathLike | None = None, override=None) -> Path:
    """Folder (or file) of model ``key``: ``override``, then ``models_dir/<repo id>``, ``models_dir/<name>``,
    ``models_dir/<key>``, then :func:`videofrom3d.models.locate`'s own places. Raises MissingModelError."""
    from videofrom3d.models import MODELS, MissingModelError, locate

    looked: list[Path] = []
    if override is not None:
        return locate(key, Path(override))
    if models_dir is not None:
        spec = MODELS.get(key)
        names = [spec.repo_id, spec.repo_id.split("/")[-1]] if spec else []
        for name in [*names, key]:
            place = Path(models_dir) / name
            if place.exists():
                try:
                    return locate(key, place)
                except MissingModelError as e:
                    looked += e.looked
            else:
                looked.append(place)
    try:
        return locate(key)
    except MissingModelError as e:
        hint = _HINTS.get(key, "") or (
            f"copy the folder of {MODELS[key].repo_id if key in MODELS else key} here, then pass "
            f"--model {key}=DIR or --models-dir DIR (or set $VIDEOFROM3D_MODELS)"
        )
        raise MissingModelError(key, looked + e.looked, hint=hint) from None


_HINTS = {
    "lpips": "put torchvision's alexnet-owt-7be5be79.pth and the LPIPS v0.1 heads alex.pth (from the lpips "
    "package) in one folder; pass it with --model lpips=DIR or place it at $VIDEOFROM3D_MODELS/lpips",
    "musiq": "get pyiqa's musiq_spaq_ckpt-358bb6af.pth (the VBench protocol) or musiq_koniq_ckpt-e95806b9.pth "
    "(HF chaofengc/IQA-PyTorch-Weights); pass the file or its folder with --model musiq=PATH, or put the folder "
    "at DIR/musiq for --models-dir DIR",
}


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip()


def load_models(
    wanted: tuple[str, ...] = ("lpips", "psnr_d", "clip_a", "clip_i", "clip_i_l14", "subject_consistency",
                               "background_consistency", "musiq"),
    models_dir: str | os.PathLike | None = None,
    overrides: dict[str, str | os.PathLike] | None = None,
    device: str | None = None,
) -> LoadedModels:
    """Load every model the ``wanted`` metrics need; what cannot be found or loaded goes to ``missing``
    with the reason (the places looked, or the load error)."""
    overrides = overrides or {}
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = LoadedModels(device=device)
    keys = sorted({k for m in wanted for k in METRIC_MODELS.get(m, ())})
    errors: dict[str, str] = {}
    for key in keys:
        try:
            path = find_weight(key, models_dir, overrides.get(key))
        except Exception as e:  # MissingModelError: name + places looked
            errors[key] = str(e).replace("\n", " ")
            continue
        try:
            out.paths[key] = str(_load_one(out, key, path) or path)
        except Exception as e:
            errors[key] = f"{path}: cannot load: {_first_line(e)}"
    for metric in wanted:
        reasons = [f"{k}: {errors[k]}" for k in METRIC_MODELS.get(metric, ()) if k in errors]
        if reasons:
            out.missing[metric] = "; ".join(reasons)
    return out


def _load_one(out: LoadedModels, key: str, path: Path) -> Path | None:
    """Load model ``key`` into ``out``; returns the file to report when it is not ``path`` itself."""
    dev = out.device
    if key in ("clip_l", "clip_b"):
        from transformers import CLIPModel

        setattr(out, key, CLIPModel.from_pretrained(str(path)).to(dev).eval().requires_grad_(False))
    elif key == "dino":
        from transformers import AutoModel

        out.dino = AutoModel.from_pretrained(str(path)).to(dev).eval().requires_grad_(False)
    elif key == "depth":
        from transformers import DPTForDepthEstimation

        out.depth = DPTForDepthEstimation.from_pretrained(str(path)).to(dev).eval().requires_grad_(False)
        out.depth_preprocess = _dpt_preprocess_config(path)
    elif key == "aesthetic":
        out.aesthetic = load_aesthetic_head(path).to(dev)
    elif key == "lpips":
        from videofrom3d.eval.lpips import load_lpips

        out.lpips = load_lpips(path).to(dev)
    elif key == "musiq":  # a folder: SPAQ checkpoint first, else KonIQ; the file name says which
        from videofrom3d.eval.musiq import load_musiq

        out.musiq = load_musiq(path).to(dev)
        return out.musiq.checkpoint
    return None


# ------------------------------------------------------------------------------------------ preprocessing


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) float in [0, 1] or uint8 -> (N, 3, H, W) float32 in [0, 1]."""
    arr = np.asarray(frames)
    arr = arr.astype(np.float32) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float32)
    if arr.ndim == 3:
        arr = arr[None]
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)


def resize_short_side(x: torch.Tensor, size: int, antialias: bool, mode: str = "bicubic") -> torch.Tensor:
    h, w = x.shape[-2:]
    if h <= w:
        nh, nw = size, int(size * w / h)  # torchvision Resize(int) truncates the long side
    else:
        nh, nw = int(size * h / w), size
    if (nh, nw) == (h, w):
        return x
    return F.interpolate(x, size=(nh, nw), mode=mode, align_corners=False, antialias=antialias)


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    top = int(round((h - size) / 2.0))
    left = int(round((w - size) / 2.0))
    return x[..., top : top + size, left : left + size]


def normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - m) / s


def clip_preprocess(x: torch.Tensor, size: int, antialias: bool = True) -> torch.Tensor:
    """CLIP: short side to ``size`` bicubic, centre crop, CLIP mean/std. ``antialias=True`` matches CLIP's
    PIL pipeline (CLIP-A, CLIP-I); False matches VBench's tensor pipeline for background consistency."""
    return normalize(center_crop(resize_short_side(x, size, antialias), size), CLIP_MEAN, CLIP_STD)


def dino_preprocess(x: torch.Tensor, size: int) -> torch.Tensor:
    """VBench subject consistency (``dino_transform``): short side to ``size`` with torchvision's default
    bilinear filter and no antialias, no crop (positional embeddings are interpolated), ImageNet mean/std."""
    return normalize(resize_short_side(x, size, antialias=False, mode="bilinear"), IMAGENET_MEAN, IMAGENET_STD)


def _vision_size(model) -> int:
    cfg = model.config
    vc = getattr(cfg, "vision_config", None) or cfg
    return int(vc.image_size if not isinstance(vc.image_size, (tuple, list)) else vc.image_size[0])


# ------------------------------------------------------------------------------------------------ features


@torch.no_grad()
def clip_image_embeds(model, frames: np.ndarray, antialias: bool = True, batch: int = 8) -> torch.Tensor:
    """(N, H, W, 3) -> (N, D) L2-normalised projected CLIP image embeddings."""
    size = _vision_size(model)
    dev = next(model.parameters()).device
    outs = []
    for i in range(0, len(frames), batch):
        x = clip_preprocess(to_tensor(frames[i : i + batch]), size, antialias).to(dev)
        pooled = model.vision_model(pixel_values=x).pooler_output
        outs.append(F.normalize(model.visual_projection(pooled).float(), dim=-1).cpu())
    return torch.cat(outs)


@torch.no_grad()
def dino_cls(model, frames: np.ndarray, batch: int = 8) -> torch.Tensor:
    """(N, H, W, 3) -> (N, D) L2-normalised CLS tokens after the final LayerNorm."""
    size = _vision_size(model)
    dev = next(model.parameters()).device
    kwargs = {"interpolate_pos_encoding": True} if type(model).__name__ == "ViTModel" else {}
    outs = []
    for i in range(0, len(frames), batch):
        x = dino_preprocess(to_tensor(frames[i : i + batch]), size).to(dev)
        cls = model(pixel_values=x, **kwargs).last_hidden_state[:, 0]
        outs.append(F.normalize(cls.float(), dim=-1).cpu())
    return torch.cat(outs)


def vbench_consistency(features: torch.Tensor) -> tuple[float, float, int]:
    """VBench subject/background consistency of one video from (T, D) L2-normalised features:
    s_t = (max(0, cos(f_t-1, f_t)) + max(0, cos(f_0, f_t))) / 2 for t = 1..T-1. Returns (mean s_t, sum s_t,
    T-1); a dataset score is sum(sum s_t) / sum(T-1)."""
    if len(features) < 2:
        return float("nan"), 0.0, 0
    f = features.double()
    prev = (f[1:] * f[:-1]).sum(-1).clamp(min=0.0)
    first = (f[1:] * f[:1]).sum(-1).clamp(min=0.0)
    s = (prev + first) / 2.0
    return float(s.mean()), float(s.sum()), int(s.numel())


# ------------------------------------------------------------------------------------------------ CLIP-A


class AestheticHead(torch.nn.Module):
    """LAION aesthetic predictor v1: one linear layer on the L2-normalised CLIP ViT-L/14 image embedding."""

    def __init__(self, dim: int = 768):
        super().__init__()
        self.linear = torch.nn.Linear(dim, 1)

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        return self.linear(embeds).squeeze(-1)


def load_aesthetic_head(path: str | os.PathLike) -> AestheticHead:
    """``sa_0_4_vit_l_14_linear.pth`` (keys ``weight``, ``bias``; torch file read with weights_only) or a
    ``.safetensors`` twin, given as the file or its folder."""
    path = Path(path)
    if path.is_dir():
        cands = sorted(path.glob("sa_0_4_vit_l_14_linear.*")) or sorted(path.glob("*.safetensors")) + sorted(
            path.glob("*.pth")
        )
        if not cands:
            raise FileNotFoundError(f"{path}: no sa_0_4_vit_l_14_linear.pth")
        path = cands[0]
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    state = {k.split(".")[-1]: v for k, v in state.items()}
    head = AestheticHead(int(state["weight"].shape[-1]))
    head.linear.load_state_dict({"weight": state["weight"].reshape(1, -1), "bias": state["bias"].reshape(1)})
    return head.eval().requires_grad_(False)


@torch.no_grad()
def aesthetic_scores(clip_l, head: AestheticHead, frames: np.ndarray) -> np.ndarray:
    """(N,) LAION v1 aesthetic scores (raw 1-10 scale, as the paper reports) of (N, H, W, 3) frames."""
    emb = clip_image_embeds(clip_l, frames, antialias=True)
    dev = next(head.parameters()).device
    return head(emb.to(dev)).float().cpu().numpy()


# ------------------------------------------------------------------------------------------------ PSNR-D


def _dpt_preprocess_config(path: Path) -> dict:
    cfg = {"height": 384, "width": 384, "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "mode": "bicubic",
           "keep_aspect_ratio": False, "multiple": 1}
    folder = path if path.is_dir() else path.parent
    pp = folder / "preprocessor_config.json"
    if pp.is_file():
        doc = json.loads(pp.read_text())
        size = doc.get("size")
        if isinstance(size, dict):
            cfg["height"] = int(size.get("height", size.get("shortest_edge", cfg["height"])))
            cfg["width"] = int(size.get("width", size.get("shortest_edge", cfg["width"])))
        elif isinstance(size, int):
            cfg["height"] = cfg["width"] = size
        if doc.get("do_normalize", True):
            cfg["mean"] = tuple(doc.get("image_mean", cfg["mean"]))
            cfg["std"] = tuple(doc.get("image_std", cfg["std"]))
        else:
            cfg["mean"], cfg["std"] = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        cfg["mode"] = {2: "bilinear", 3: "bicubic"}.get(doc.get("resample", 3), "bicubic")
        cfg["keep_aspect_ratio"] = bool(doc.get("keep_aspect_ratio", False))
        cfg["multiple"] = int(doc.get("ensure_multiple_of", 1) or 1)
    return cfg


def _dpt_input_size(h: int, w: int, cfg: dict) -> tuple[int, int]:
    th, tw = cfg["height"], cfg["width"]
    if cfg["keep_aspect_ratio"]:  # scale as little as possible (the DPT processor's rule)
        sh, sw = th / h, tw / w
        s = sw if abs(1 - sw) < abs(1 - sh) else sh
        th, tw = h * s, w * s
    m = cfg["multiple"]
    return max(m, int(round(th / m) * m)), max(m, int(round(tw / m) * m))


@torch.no_grad()
def estimate_disparity(model, cfg: dict, frames: np.ndarray, batch: int = 4) -> np.ndarray:
    """(N, H, W, 3) -> (N, H, W) float32 relative inverse depth from a DPT (MiDaS) model, resized back to
    the frame size bicubically."""
    h, w = frames.shape[1:3]
    size = _dpt_input_size(h, w, cfg)
    dev = next(model.parameters()).device
    outs = []
    for i in range(0, len(frames), batch):
        x = to_tensor(frames[i : i + batch])
        x = F.interpolate(x, size=size, mode=cfg["mode"], align_corners=False, antialias=True)
        x = normalize(x, cfg["mean"], cfg["std"]).to(dev)
        pred = model(pixel_values=x).predicted_depth.float()
        pred = F.interpolate(pred[:, None], size=(h, w), mode="bicubic", align_corners=False)[:, 0]
        outs.append(pred.cpu().numpy())
    return np.concatenate(outs).astype(np.float32)


def equalized_u8(x: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(H, W) float -> min-max scaled to uint8 (over ``valid`` when given; 0 elsewhere) -> cv2.equalizeHist."""
    x = np.asarray(x, dtype=np.float64)
    v = np.ones(x.shape, bool) if valid is None else valid
    if not v.any():
        return np.zeros(x.shape, np.uint8)
    lo, hi = float(x[v].min()), float(x[v].max())
    scaled = np.zeros(x.shape) if hi <= lo else (x - lo) / (hi - lo) * 255.0
    u8 = np.where(v, np.clip(scaled + 0.5, 0, 255), 0).astype(np.uint8)
    return cv2.equalizeHist(u8)


def gt_disparity(depth: np.ndarray) -> np.ndarray:
    """Mesh depth along +z (0 = miss) -> disparity 1/z, background 0 (PSNR-D in docs/evaluation.md)."""
    d = np.asarray(depth, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), 0.0)


def psnr_d(gt_depth: np.ndarray, estimated_disparity: np.ndarray) -> float:
    """PSNR-D of one frame: GT disparity and the estimate, both min-max to uint8 and histogram-equalised,
    PSNR with peak 255 over the whole frame, capped at 100 dB. Invariant to monotone increasing remaps of
    the estimate; a polarity flip (depth given for disparity) scores low."""
    a = equalized_u8(np.where(gt_depth > 0, gt_disparity(gt_depth), 0.0))
    b = equalized_u8(estimated_disparity)
    return capped(psnr(a.astype(np.float64), b.astype(np.float64), peak=255.0), PSNR_CAP_DB)


# ------------------------------------------------------------------------------------------------ LPIPS


@torch.no_grad()
def lpips_map(model, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W, 3) images in [0, 1] -> (H, W) LPIPS distance map (inputs scaled to [-1, 1])."""
    dev = next(model.parameters()).device
    x0 = to_tensor(a).to(dev) * 2 - 1
    x1 = to_tensor(b).to(dev) * 2 - 1
    return model(x0, x1)[0, 0].float().cpu().numpy()


def finite_or_none(x: float | None) -> float | None:
    if x is None or (isinstance(x, float) and (math.isnan(x))):
        return None
    return float(x)
