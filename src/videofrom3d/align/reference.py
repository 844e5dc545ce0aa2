"""Style from the reference image itself, no training (``[align] mode = "reference"``): FLUX.1 Redux.

FLUX.1 Redux (black-forest-labs/FLUX.1-Redux-dev, diffusers' ``FluxPriorReduxPipeline``) maps an image to
FLUX context tokens: SigLIP so400m (patch 14 at 384 px: a 27 x 27 grid, 729 tokens of width 1152) and the
Redux embedder (``ReduxImageEncoder``: 1152 -> 3*4096 -> SiLU -> 4096). The pipeline appends those 729 tokens
to the T5 tokens; unpooled and at full weight they override the text and copy the reference's layout
(invoke-ai/InvokeAI#7752), so we pool them 27x27 -> 9x9 and scale them by ``reference_weight`` (the
community fix: ComfyUI_AdvancedRefluxControl, InvokeAI#7875; research/next-speed-style.md 1.2). The
anchor sampler appends them to the identifier prompt's T5 tokens for the transformer only: the HED ControlNet
keeps the text-only context it was trained with.

Encoding runs once per image: the raw tokens are kept in the shared cache (:mod:`videofrom3d.io.cache`)
keyed by the image bytes and the weights, so a second job with the same style encodes nothing. The align
stage writes ``WORK/align/reference.safetensors``: per style ``reference.<i>`` (1, R, D) pooled and
weighted tokens, with the recipe in the metadata.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from videofrom3d.errors import VideoFrom3DError

FORMAT = "videofrom3d-reference/1"
PREFIX = "reference."
NOTE = ("no LoRA: [align] mode = \"reference\" conditions FLUX on the style image's FLUX.1 Redux tokens "
        "(pooled, weighted, after the identifier's T5 tokens; the ControlNet sees the text only)")

# Tiny random stand-ins (tests, `--models tiny-random`): a 27 x 27 token grid like so400m-patch14-384's, widths
# small; the embedder's output width is the tiny FLUX's joint_attention_dim (32).
TINY_SIGLIP = {"hidden_size": 16, "intermediate_size": 24, "num_hidden_layers": 1, "num_attention_heads": 2,
               "image_size": 54, "patch_size": 2, "num_channels": 3}
TINY_REDUX = {"redux_dim": 16, "txt_in_features": 32}
TINY_PROCESSOR = {"size": {"height": 54, "width": 54}, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
                  "image_std": [0.5, 0.5, 0.5], "resample": 3}


class ReferenceError(VideoFrom3DError, ValueError):
    """A reference file or token grid that does not fit."""


@dataclass
class ReduxComponents:
    """SigLIP vision model + its image processor + the Redux embedder. ``encode`` is the only entry point."""

    image_encoder: Any  # transformers.SiglipVisionModel
    feature_extractor: Any  # transformers.SiglipImageProcessor
    image_embedder: Any  # diffusers ReduxImageEncoder
    device: Any = None
    dtype: Any = None
    source: str = "tiny-random"

    def encode(self, image) -> Any:
        """A PIL image or (H, W, 3) array (uint8, or float in [0, 1]) -> Redux tokens (1, N, D) float32 on the
        CPU, N = the SigLIP grid (729 for so400m-patch14-384); the same as the image part of
        ``FluxPriorReduxPipeline``'s ``prompt_embeds``."""
        import torch

        image = to_pil(image)
        pixels = self.feature_extractor.preprocess(images=image, do_resize=True, return_tensors="pt",
                                                   do_convert_rgb=True).pixel_values
        enc = self.image_encoder
        dtype = self.dtype or next(enc.parameters()).dtype
        device = self.device or next(enc.parameters()).device
        with torch.no_grad():
            hidden = enc(pixel_values=pixels.to(device, dtype)).last_hidden_state
            tokens = self.image_embedder(hidden).image_embeds
        return tokens.float().cpu()


def to_pil(image):
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(arr[..., :3])


def tiny_redux_components(seed: int = 0) -> ReduxComponents:
    """Tiny random SigLIP + Redux embedder from the config dicts above, in eval mode (deterministic)."""
    import torch
    from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(seed)
    encoder = SiglipVisionModel(SiglipVisionConfig(**TINY_SIGLIP)).eval()
    embedder = ReduxImageEncoder(**TINY_REDUX).eval()
    return ReduxComponents(encoder, SiglipImageProcessor(**TINY_PROCESSOR), embedder,
                           torch.device("cpu"), torch.float32, "tiny-random")


def load_redux_components(redux: str | None = None, siglip: str | None = None, device="auto",
                          dtype="auto") -> ReduxComponents:
    """FLUX.1 Redux's embedder (``image_embedder/``) and SigLIP (the Redux folder's ``image_encoder/`` and
    ``feature_extractor/`` when present, else the ``siglip`` registry entry), offline, safetensors only.
    Raises :class:`videofrom3d.models.MissingModelError` naming the missing one."""
    from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder
    from transformers import SiglipImageProcessor, SiglipVisionModel

    from videofrom3d.models import locate, resolve_device, resolve_dtype

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    redux_dir = locate("redux", redux)
    kw = {"local_files_only": True}
    embedder = ReduxImageEncoder.from_pretrained(redux_dir, subfolder="image_embedder", torch_dtype=dt,
                                                 use_safetensors=True, **kw)
    if (redux_dir / "image_encoder" / "config.json").is_file() and siglip is None:
        enc_dir, enc_sub = redux_dir, {"subfolder": "image_encoder"}
        proc_dir, proc_sub = redux_dir, {"subfolder": "feature_extractor"}
    else:
        enc_dir = proc_dir = locate("siglip", siglip)
        enc_sub = proc_sub = {}
    encoder = SiglipVisionModel.from_pretrained(enc_dir, torch_dtype=dt, use_safetensors=True, **enc_sub, **kw)
    processor = SiglipImageProcessor.from_pretrained(proc_dir, **proc_sub, **kw)
    encoder.eval().requires_grad_(False).to(dev)
    embedder.eval().requires_grad_(False).to(dev)
    return ReduxComponents(encoder, processor, embedder, dev, dt, str(redux_dir))


# ---------------------------------------------------------------------------------------------------------
# Pooling and weighting


def pool_tokens(tokens, factor: int):
    """(B, g*g, D) tokens on a square g x g grid -> (B, m*m, D), m = round(g / factor), by area averaging
    (``adaptive_avg_pool2d``; 27 -> 9 for factor 3 is plain 3 x 3 averaging). ``factor`` 1 returns them."""
    import torch

    b, n, d = tokens.shape
    g = math.isqrt(n)
    if g * g != n:
        raise ReferenceError(f"Redux tokens must form a square grid, got {n}")
    if factor < 1:
        raise ReferenceError(f"[align].reference_pool must be >= 1, got {factor}")
    if factor == 1:
        return tokens
    m = max(1, round(g / factor))
    grid = tokens.transpose(1, 2).reshape(b, d, g, g)
    pooled = torch.nn.functional.adaptive_avg_pool2d(grid.float(), m).to(tokens.dtype)
    return pooled.reshape(b, d, m * m).transpose(1, 2)


def reference_context(tokens, pool: int, weight: float):
    """The tokens the transformer sees after the text: ``weight * pool_tokens(tokens, pool)``."""
    return pool_tokens(tokens, pool) * float(weight)


def append_reference(text_embeds, reference):
    """(1, L, D) T5 tokens + (1, R, D) reference tokens -> (1, L + R, D) (the text unchanged when None)."""
    import torch

    if reference is None:
        return text_embeds
    if reference.shape[-1] != text_embeds.shape[-1]:
        raise ReferenceError(f"reference tokens are {reference.shape[-1]} wide but the text tokens "
                             f"{text_embeds.shape[-1]}: the Redux weights do not match this FLUX")
    return torch.cat([text_embeds, reference.to(text_embeds.device, text_embeds.dtype)], dim=1)


# ---------------------------------------------------------------------------------------------------------
# Encoding with the shared cache


def encode_references(job, models: Any = "real") -> list:
    """Raw Redux tokens (1, N, D) of each ``[[style]]`` image, from the shared cache when an earlier job
    encoded the same image bytes with the same weights; Redux loads only when one is missing.
    ``models``: "real", "tiny-random" or ready :class:`ReduxComponents`."""
    from videofrom3d.io.cache import SharedCache
    from videofrom3d.io.manifest import digest_file

    cache = SharedCache("references")
    loaded: list = []

    def components():
        if not loaded:
            loaded.append(_components(job, models))
        return loaded[0]

    desc = models if isinstance(models, str) else getattr(models, "source", "custom")
    out = []
    for style in job.styles:
        key = {"format": FORMAT, "image": digest_file(style.image), "models": desc,
               "redux": job.model("redux"), "siglip": job.model("siglip")}

        def make(path=style.image):
            from videofrom3d.io.images import read_image

            return {"tokens": components().encode(read_image(path))}

        out.append(cache.get(key, make)["tokens"])
    return out


def _components(job, models):
    if isinstance(models, ReduxComponents):
        return models
    if models == "tiny-random":
        return tiny_redux_components(seed=0)
    if models == "real":
        return load_redux_components(job.model("redux"), job.model("siglip"))
    raise ValueError(f'models must be "real", "tiny-random" or ReduxComponents, got {models!r}')


# ---------------------------------------------------------------------------------------------------------
# The align stage's file


def save_references(path: str | Path, contexts: list, metadata: dict) -> Path:
    """Write the per-style reference tokens (each (1, R, D)) atomically, canonical bytes."""
    from safetensors.torch import save

    from videofrom3d.align.lora import canonical_safetensors
    from videofrom3d.io.atomic import atomic_path

    tensors = {f"{PREFIX}{i}": t.detach().float().cpu().contiguous() for i, t in enumerate(contexts)}
    meta = {"format": FORMAT, **{k: json.dumps(v) for k, v in metadata.items()}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(canonical_safetensors(save(tensors, metadata=meta)))
    return path


def reference_tensors(tensors: dict) -> list | None:
    """The ``reference.<i>`` tensors of a style file, in style order (None when it has none)."""
    found = sorted((int(k[len(PREFIX):]), v) for k, v in tensors.items() if k.startswith(PREFIX))
    return [v for _, v in found] or None


def is_reference_file(path: str | Path) -> bool:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return (f.metadata() or {}).get("format") == FORMAT


def read_references(path: str | Path) -> tuple[list, dict]:
    """(per-style tokens, metadata) of a ``reference.safetensors``."""
    from safetensors.torch import load_file

    if not is_reference_file(path):
        raise ReferenceError(f"{path}: not a videofrom3d reference file")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata() or {}
    meta = {k: (v if k == "format" else json.loads(v)) for k, v in raw.items()}
    return reference_tensors(load_file(str(path))), meta


def read_style_extras(path: str | Path) -> tuple[list | None, int | None, bool]:
    """What the anchors take from the align stage's file besides LoRA weights: (per-style reference tokens or
    None, the T5 length it asks the anchors to use or None, whether it holds a LoRA)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        refs = {k: f.get_tensor(k) for k in f.keys() if k.startswith(PREFIX)}
    length = meta.get("sampling_max_sequence_length")
    return reference_tensors(refs), (int(json.loads(length)) if length else None), meta.get("format") != FORMAT


def redux_missing(job) -> list[str]:
    """Registry keys of the Redux weights this job lacks: "redux", and "siglip" when the Redux folder has no
    ``image_encoder/`` and no SigLIP is found either (for the one-line error before any work)."""
    from videofrom3d.models import find

    redux = find("redux", job.model("redux"))
    if redux is None:
        return ["redux"]
    has_encoder = redux.is_dir() and (redux / "image_encoder" / "config.json").is_file()
    if not has_encoder and find("siglip", job.model("siglip")) is None:
        return ["siglip"]
    return []
