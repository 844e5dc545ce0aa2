"""Speed presets of the two diffusion stages (``[anchors]`` / ``[inbetween]`` ``preset = ...``) and the
switches they stand for; the memory presets for 24, 16 and 12 GB cards live beside the memory modes
(:mod:`videofrom3d.anchors.components`, :mod:`videofrom3d.inbetween.inbetweener`).

- ``"none"`` (default): the plain models, as before.
- ``"exact"`` (lossless up to float rounding): CFG batching (the conditional and unconditional passes in one
  batch of 2), regional ``torch.compile`` of the repeated transformer blocks (compiled once, reused by every
  block), and the fastest fused attention kernel installed (flash-attn 3, then flash-attn 2, through
  diffusers' attention dispatcher; otherwise torch's SDPA, which picks its own fused kernel).
- ``"fast"``: "exact" plus fp8 matmuls (torchao's dynamic float8 quantisation of the transformer's linear
  layers; an optional extra, CUDA on Hopper/Ada only, skipped with a note elsewhere) and a step cache
  (diffusers' first-block cache: a step whose first block changes its output by less than
  ``cache_threshold`` relative reuses the other blocks' residual from the previous step).

Each switch can be set on its own in the same table (``compile``, ``cfg_batch``, ``attention``,
``fp8_matmul``, ``cache``) and wins over the preset. Torch is imported only by the functions that apply them.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

PRESETS = ("none", "exact", "fast")
CACHES = ("none", "first_block", "taylorseer")
ATTENTION = ("auto", "native", "flash", "_flash_3", "sage", "_native_cudnn", "_native_flash", "_native_efficient")


@dataclass(frozen=True)
class SpeedSwitches:
    """What a preset turns on. ``attention``: a diffusers attention backend name, "auto" (the fastest
    installed) or "native" (torch SDPA, unchanged)."""

    cfg_batch: bool = False
    compile: bool = False
    attention: str = "native"
    fp8_matmul: bool = False
    cache: str = "none"


PRESET_SWITCHES = {
    "none": SpeedSwitches(),
    "exact": SpeedSwitches(cfg_batch=True, compile=True, attention="auto"),
    "fast": SpeedSwitches(cfg_batch=True, compile=True, attention="auto", fp8_matmul=True, cache="first_block"),
}


def speed_switches(cfg: Any) -> SpeedSwitches:
    """The switches of a stage config (``preset`` plus its optional ``compile``, ``cfg_batch``,
    ``attention``, ``fp8_matmul``, ``cache`` fields; None = the preset's)."""
    base = PRESET_SWITCHES[cfg.preset]
    values = {}
    for name in SpeedSwitches.__dataclass_fields__:
        own = getattr(cfg, name, None)
        values[name] = getattr(base, name) if own is None else own
    return SpeedSwitches(**values)


def check_speed_options(cfg: Any, section: str) -> None:
    """One-line errors for unknown preset, cache or attention names (called by the configs' __post_init__)."""
    if cfg.preset not in PRESETS:
        raise ValueError(f"[{section}].preset must be one of {PRESETS}, got {cfg.preset!r}")
    if cfg.cache is not None and cfg.cache not in CACHES:
        raise ValueError(f"[{section}].cache must be one of {CACHES}, got {cfg.cache!r}")
    if cfg.attention is not None and cfg.attention not in ATTENTION:
        raise ValueError(f"[{section}].attention must be one of {ATTENTION}, got {cfg.attention!r}")
    if cfg.cache_threshold < 0 or cfg.cache_interval < 1 or cfg.cache_start_step < 0:
        raise ValueError(f"[{section}]: cache_threshold >= 0, cache_interval >= 1 and cache_start_step >= 0 needed")


# ---------------------------------------------------------------------------------------------------------
# Applying the switches to a model


def attention_backend(name: str, device) -> str | None:
    """The diffusers backend to set for ``name`` on ``device``, or None to leave torch's SDPA."""
    if name == "native":
        return None
    if name != "auto":
        return name
    if getattr(device, "type", str(device)) != "cuda":
        return None
    if importlib.util.find_spec("flash_attn_interface") is not None:
        return "_flash_3"
    if importlib.util.find_spec("flash_attn") is not None:
        return "flash"
    return None


def compile_blocks(model, block_classes: tuple[str, ...]) -> int:
    """Regional compilation: ``torch.compile`` each repeated block in place (same class -> one compiled
    graph, reused); returns how many blocks were compiled. The rest of the model stays eager."""
    count = 0
    for module in model.modules():
        if type(module).__name__ in block_classes:
            module.compile(fullgraph=True, dynamic=False)
            count += 1
    return count


def fp8_matmuls(model, device) -> bool:
    """Dynamic float8 activations x float8 weights in every linear layer (torchao); False with a note when
    torchao or a GPU with float8 tensor cores (compute capability >= 8.9) is missing."""
    import torch

    if importlib.util.find_spec("torchao") is None:
        log.warning("fp8 matmuls need torchao (pip install 'videofrom3d[fast]'); running without them")
        return False
    if getattr(device, "type", None) != "cuda" or torch.cuda.get_device_capability(device) < (8, 9):
        log.warning("fp8 matmuls need an NVIDIA GPU with compute capability >= 8.9; running without them")
        return False
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    quantize_(model, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()))
    return True


def enable_step_cache(transformer, kind: str, threshold: float, interval: int, start_step: int,
                      attention_modules: tuple[str, ...] | None = None) -> str:
    """Install diffusers' cache hooks on ``transformer``: ``"first_block"`` (threshold on the first block's
    relative residual change) or ``"taylorseer"`` (full compute every ``interval`` steps, Taylor-extrapolated
    in between, from ``start_step``; ``attention_modules``: regexes of the attention modules it predicts,
    default diffusers' names). The sampler wraps each call in :class:`StepCache`. Returns the cache installed
    ("none" for a model with a single block, which a first-block cache cannot split)."""
    if kind == "none":
        return kind
    if kind == "first_block":
        from diffusers.hooks import FirstBlockCacheConfig

        try:
            transformer.enable_cache(FirstBlockCacheConfig(threshold=threshold))
        except IndexError:  # diffusers needs a head and a tail block
            transformer.disable_cache()
            log.warning("the first-block cache needs a model of 2 blocks or more; running without it")
            return "none"
    elif kind == "taylorseer":
        from diffusers.hooks import TaylorSeerCacheConfig

        transformer.enable_cache(TaylorSeerCacheConfig(
            cache_interval=interval, disable_cache_before_step=start_step,
            cache_identifiers=list(attention_modules) if attention_modules else None))
    else:
        raise ValueError(f"cache must be one of {CACHES}, got {kind!r}")
    return kind


def has_step_cache(model) -> bool:
    return getattr(model, "_cache_config", None) is not None


class StepCache:
    """The sampler's side of a step cache: ``begin()`` once per sample (forget the last sample's
    residuals), ``call(name, step)`` around each model call. Before ``start_step`` the first-block cache is
    reset at each step so that it computes every block (the paper's latent replacement of the early steps
    changes the latents in ways a threshold on the first block does not see); TaylorSeer counts its warm-up
    itself. A no-op for a model without cache hooks."""

    def __init__(self, model, start_step: int = 0):
        self.model = model
        self.active = has_step_cache(model)
        self.first_block = self.active and type(model._cache_config).__name__ == "FirstBlockCacheConfig"
        self.start_step = start_step
        self._reset_at = -1

    def begin(self) -> None:
        if self.active:
            self.model._reset_stateful_cache()
            self._reset_at = -1

    def call(self, name: str, step: int):
        import contextlib

        if not self.active:
            return contextlib.nullcontext()
        if self.first_block and step < self.start_step and step != self._reset_at:
            self.model._reset_stateful_cache()  # once per step: every context computes in full
            self._reset_at = step
        return self.model.cache_context(name)
