"""FLUX.1-dev components and the XLabs HED ControlNet (paper 3.2), loaded from disk or built tiny and random.

Real weights are found through :func:`videofrom3d.models.locate` (a local folder, ``$VIDEOFROM3D_MODELS``, or
the Hugging Face cache layout ``models--org--name/snapshots/<rev>/``) and read as safetensors only, with the hub
never contacted. ``black-forest-labs/FLUX.1-dev`` is a diffusers folder (``model_index.json``, ``transformer/``,
``vae/``, ``text_encoder/`` = CLIP-L, ``text_encoder_2/`` = T5-v1.1-XXL, ``tokenizer*/``, ``scheduler/``);
``XLabs-AI/flux-controlnet-hed-diffusers`` is one :class:`~diffusers.FluxControlNetModel` (2 double blocks,
pixel-space hint block, residuals repeated over the 19 double blocks); ``[models].controlnet_hed`` may also
name the file the authors load, ``XLabs-AI/flux-controlnet-hed-v3/flux-hed-controlnet-v3.safetensors``
(x-flux layout, converted on load by :mod:`videofrom3d.anchors.xlabs`).

Memory modes (``memory=``), so that FLUX-dev (12B parameters, 24 GB in bf16) fits smaller GPUs:

- ``"none"``: everything on the GPU (about 35 GB with the ControlNet; fastest).
- ``"model"``: models wait on the CPU and move to the GPU while used (transformer + ControlNet while
  sampling, VAE while encoding/decoding). Needs the transformer's size in GPU memory.
- ``"sequential"``: accelerate streams each layer's weights to the GPU for its forward (a few GB of GPU
  memory, several seconds per step).
- ``fp8=True`` (combines with any mode): transformer and ControlNet weights stored as ``float8_e4m3fn`` and
  upcast layer by layer to the compute dtype (diffusers layerwise casting; norms and embeddings stay in
  bf16). Halves weight memory: with ``"model"`` it runs on a 24 GB GPU.

Prompts are encoded by :class:`PromptEncoder` once per distinct text; :meth:`PromptEncoder.release` drops the
two text encoders (about 10 GB) before sampling starts.
"""

from __future__ import annotations

import gc
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from videofrom3d.models import (
    empty_device_cache,
    locate,
    model_offload,
    resolve_device,
    resolve_dtype,
    tiny_t5_tokenizer,
)

log = logging.getLogger(__name__)

MEMORY_MODES = ("auto", "none", "model", "sequential")
# Card sizes -> (mode, fp8 storage). fp8 weights resident peak at 15.3 GB (H100, 1024x1024, README); model
# offload keeps the text encoders off the GPU while sampling; 12 GB: only sequential offload fits (0.3-0.7 GB).
MEMORY_PRESETS = {"24gb": ("model", True), "16gb": ("model", True), "12gb": ("sequential", False)}
FLUX_BLOCKS = ("FluxTransformerBlock", "FluxSingleTransformerBlock")  # repeated blocks, compiled regionally


@dataclass
class FluxComponents:
    """The models one anchor/alignment run needs. Text encoders may be ``None`` once released.

    ``device`` is where computation happens; ``dtype`` the compute dtype. ``memory`` is the resolved memory
    mode (see the module docstring)."""

    transformer: Any
    controlnet: Any
    vae: Any
    scheduler: Any
    text_encoder: Any = None  # CLIPTextModel (pooled output)
    tokenizer: Any = None
    text_encoder_2: Any = None  # T5EncoderModel (sequence output)
    tokenizer_2: Any = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32
    memory: str = "none"
    fp8: bool = False
    source: str = "tiny-random"
    text_loader: Any = None  # callable returning (text_encoder, tokenizer, text_encoder_2, tokenizer_2)
    speed: Any = None  # the videofrom3d.speed.SpeedSwitches installed by apply_speed

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return self.transformer.config.in_channels // 4

    def denoisers(self) -> list:
        return [self.transformer, self.controlnet]

    def on_device(self, *modules):
        """Under ``memory="model"``: ``modules`` on the GPU for the block, back on the CPU after."""
        return model_offload(self.memory, self.device, *modules)

    def close(self) -> None:
        """Drop every model and free GPU memory."""
        for name in ("transformer", "controlnet", "vae", "text_encoder", "text_encoder_2"):
            setattr(self, name, None)
        gc.collect()
        empty_device_cache(self.device)


# ---------------------------------------------------------------------------------------------------------
# Real weights


def resolve_memory(memory: str, device: torch.device, fp8: bool) -> tuple[str, bool]:
    """Pick a memory mode for ``"auto"`` from the GPU's total memory: >= 40 GB: everything resident;
    >= 20 GB: model offload with fp8 weights; else sequential offload. A card size (``"24gb"``...) gives
    its :data:`MEMORY_PRESETS` entry (on the CPU: its fp8 storage, nothing moves)."""
    if memory in MEMORY_PRESETS:  # a card size: its mode, fp8 storage when it needs it
        mode, preset_fp8 = MEMORY_PRESETS[memory]
        return (mode, fp8 or preset_fp8) if device.type == "cuda" else ("none", fp8 or preset_fp8)
    if memory not in MEMORY_MODES:
        raise ValueError(f"memory must be one of {(*MEMORY_MODES, *MEMORY_PRESETS)}, got {memory!r}")
    if device.type != "cuda":
        return "none", fp8
    if memory != "auto":
        return memory, fp8
    total = torch.cuda.get_device_properties(device).total_memory / 2**30
    if total >= 40:
        return "none", fp8
    if total >= 20:
        return "model", True
    return "sequential", fp8


def load_flux_components(
    flux: str | None = None,
    controlnet: str | None = None,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = "auto",
    memory: str = "auto",
    fp8: bool = False,
    text: bool = True,
    place: bool = True,
) -> FluxComponents:
    """Load FLUX.1-dev and the HED ControlNet from local folders (ids or paths; offline, safetensors only).

    ``flux``/``controlnet``: a Hugging Face id or a local folder (default: the registry's ids, looked up by
    :func:`videofrom3d.models.locate`). ``text=False`` skips the text encoders (they are loaded later by
    :class:`PromptEncoder` through ``text_loader`` when a prompt needs encoding). ``place=False`` leaves the
    models on the CPU in full precision for changes (a LoRA) before :func:`place_components`.
    Raises :class:`videofrom3d.models.MissingModelError` naming the model and every place looked."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxControlNetModel,
        FluxTransformer2DModel,
    )

    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    mode, fp8 = resolve_memory(memory, dev, fp8)
    flux_dir = locate("flux", flux)
    cn_path = locate("controlnet_hed", controlnet)
    cn_dir = cn_path.parent if cn_path.is_file() else cn_path
    common = {"torch_dtype": dt, "use_safetensors": True, "local_files_only": True}
    log.info("loading FLUX from %s and the HED ControlNet from %s (%s, memory=%s, fp8=%s)", flux_dir, cn_dir, dt,
             mode, fp8)
    from videofrom3d.anchors.xlabs import load_xlabs_controlnet, xlabs_file

    transformer = FluxTransformer2DModel.from_pretrained(flux_dir, subfolder="transformer", **common)
    comps = FluxComponents(
        transformer=transformer,
        controlnet=(load_xlabs_controlnet(cn_path, dt, transformer.config.axes_dims_rope)  # the authors' x-flux file
                    if xlabs_file(cn_path) else FluxControlNetModel.from_pretrained(cn_dir, **common)),
        vae=AutoencoderKL.from_pretrained(flux_dir, subfolder="vae", **common),
        scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(flux_dir, subfolder="scheduler",
                                                                  local_files_only=True),
        device=dev,
        dtype=dt,
        memory=mode,
        fp8=fp8,
        source=str(flux_dir),
        text_loader=lambda: _load_text_encoders(flux_dir, dt),
    )
    if text:
        comps.text_encoder, comps.tokenizer, comps.text_encoder_2, comps.tokenizer_2 = comps.text_loader()
    return place_components(comps) if place else comps


def _load_text_encoders(flux_dir: Path, dtype: torch.dtype):
    from transformers import AutoTokenizer, CLIPTextModel, T5EncoderModel

    kw = {"local_files_only": True}
    te = CLIPTextModel.from_pretrained(flux_dir, subfolder="text_encoder", torch_dtype=dtype, use_safetensors=True, **kw)
    te2 = T5EncoderModel.from_pretrained(flux_dir, subfolder="text_encoder_2", torch_dtype=dtype, use_safetensors=True,
                                         **kw)
    tok = AutoTokenizer.from_pretrained(flux_dir, subfolder="tokenizer", **kw)
    tok2 = AutoTokenizer.from_pretrained(flux_dir, subfolder="tokenizer_2", **kw)
    return te.eval(), tok, te2.eval(), tok2


def place_components(comps: FluxComponents) -> FluxComponents:
    """Apply the memory mode: move models to the device, or install offload hooks, and fp8 storage."""
    for m in (comps.transformer, comps.controlnet, comps.vae):
        m.eval().requires_grad_(False)
    if comps.fp8:
        for m in comps.denoisers():
            m.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=comps.dtype)
    if comps.device.type == "cpu" or comps.memory == "model":
        for m in (comps.transformer, comps.controlnet, comps.vae):
            m.to("cpu")
    elif comps.memory == "none":
        for m in (comps.transformer, comps.controlnet, comps.vae):
            m.to(comps.device)
    elif comps.memory == "sequential":
        from accelerate import cpu_offload

        for m in (comps.transformer, comps.controlnet, comps.vae):
            cpu_offload(m, execution_device=comps.device)
    if comps.text_encoder is not None:
        _place_text(comps)
    return comps


def apply_speed(comps: FluxComponents, cfg) -> Any:
    """Install the speed switches of ``cfg`` (an :class:`~videofrom3d.anchors.AnchorConfig`; see
    :mod:`videofrom3d.speed`) on the placed components, once; returns the switches in effect."""
    from videofrom3d import speed

    if comps.speed is not None:
        return comps.speed
    sw = speed.speed_switches(cfg)
    backend = speed.attention_backend(sw.attention, comps.device)
    if backend is not None:
        for m in comps.denoisers():
            m.set_attention_backend(backend)
    fp8_matmul = sw.fp8_matmul and not comps.fp8  # fp8 storage already casts the weights per layer
    if fp8_matmul:
        fp8_matmul = all([speed.fp8_matmuls(m, comps.device) for m in comps.denoisers()])
    cache = speed.enable_step_cache(comps.transformer, sw.cache, cfg.cache_threshold, cfg.cache_interval,
                                    cfg.cache_start_step)
    compiled = sw.compile and comps.memory != "sequential"  # accelerate's per-layer hooks break the graphs
    if compiled:
        for m in comps.denoisers():
            speed.compile_blocks(m, FLUX_BLOCKS)
    comps.speed = speed.SpeedSwitches(sw.cfg_batch, compiled, backend or "native", fp8_matmul, cache)
    return comps.speed


def _place_text(comps: FluxComponents) -> None:
    for m in (comps.text_encoder, comps.text_encoder_2):
        m.eval().requires_grad_(False)
        if comps.device.type == "cpu" or comps.memory == "model":
            m.to("cpu")
        elif comps.memory == "none":
            m.to(comps.device)
        else:
            from accelerate import cpu_offload

            cpu_offload(m, execution_device=comps.device)


# ---------------------------------------------------------------------------------------------------------
# Text


class PromptEncoder:
    """CLIP-L pooled + T5 sequence embeddings, computed once per distinct prompt and kept.

    ``encode(prompt) -> (prompt_embeds (1, L, D) , pooled (1, P))`` on ``comps.device`` in ``comps.dtype``.
    :meth:`release` frees the encoders; a later unseen prompt reloads them through ``comps.text_loader``."""

    def __init__(self, comps: FluxComponents, max_sequence_length: int = 512):
        self.comps = comps
        self.max_sequence_length = max_sequence_length
        self.cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def encode_all(self, prompts) -> None:
        for p in dict.fromkeys(prompts):
            self.encode(p)

    @torch.no_grad()
    def encode(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        if prompt in self.cache:
            return self.cache[prompt]
        c = self.comps
        if c.text_encoder is None:
            if c.text_loader is None:
                raise RuntimeError(f"text encoders were released and cannot be reloaded to encode {prompt!r}")
            log.info("reloading the text encoders for a new prompt %r", prompt)
            c.text_encoder, c.tokenizer, c.text_encoder_2, c.tokenizer_2 = c.text_loader()
            _place_text(c)
        with c.on_device(c.text_encoder, c.text_encoder_2):
            ids = c.tokenizer([prompt], padding="max_length", max_length=c.tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids
            pooled = c.text_encoder(ids.to(c.device), output_hidden_states=False).pooler_output
            ids2 = c.tokenizer_2([prompt], padding="max_length", max_length=self.max_sequence_length,
                                 truncation=True, return_tensors="pt").input_ids
            embeds = c.text_encoder_2(ids2.to(c.device), output_hidden_states=False)[0]
        out = (embeds.to(c.device, c.dtype), pooled.to(c.device, c.dtype))
        self.cache[prompt] = out
        return out

    def release(self) -> None:
        """Drop the text encoders (the cached embeddings stay)."""
        c = self.comps
        if c.text_encoder is None and c.text_encoder_2 is None:
            return
        if c.text_loader is None:
            return  # nothing could bring them back (tiny in-memory models): keep them
        c.text_encoder = c.text_encoder_2 = None
        gc.collect()
        empty_device_cache(c.device)


# ---------------------------------------------------------------------------------------------------------
# Tiny random components (tests, `--models tiny-random`)

TINY_TRANSFORMER = {
    "patch_size": 1, "in_channels": 64, "num_layers": 2, "num_single_layers": 5, "attention_head_dim": 16,
    "num_attention_heads": 4, "joint_attention_dim": 32, "pooled_projection_dim": 32,
    "axes_dims_rope": [4, 6, 6], "guidance_embeds": True,
}
# The XLabs layout: 2 double blocks, no single blocks, a pixel-space hint block, 2x2 patches.
TINY_CONTROLNET = {
    "patch_size": 2, "in_channels": 64, "num_layers": 2, "num_single_layers": 0, "attention_head_dim": 16,
    "num_attention_heads": 4, "joint_attention_dim": 32, "pooled_projection_dim": 32,
    "axes_dims_rope": [4, 6, 6], "guidance_embeds": True, "conditioning_embedding_channels": 16,
}
TINY_VAE = {
    "in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "block_out_channels": [16, 16, 32, 32], "layers_per_block": 1,
    "latent_channels": 16, "norm_num_groups": 8, "use_quant_conv": False, "use_post_quant_conv": False,
    "scaling_factor": 3.0, "shift_factor": 0.0, "sample_size": 64,
}  # scaling: the random encoder's means have std ~0.33; x3 gives unit-scale latents like FLUX's
TINY_SCHEDULER = {
    "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True, "base_shift": 0.5,
    "max_shift": 1.15, "base_image_seq_len": 256, "max_image_seq_len": 4096,
}  # FLUX.1-dev's scheduler_config.json


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins for bytes used by byte-level BPE vocabularies (GPT-2/CLIP)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    extra = 0
    out = {}
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return [out[b] for b in range(256)]


def tiny_tokenizers():
    """A CLIP BPE tokenizer over single bytes and the tiny T5 unigram tokenizer, built in memory."""
    from transformers import CLIPTokenizer

    syms = _byte_symbols()
    vocab = {s: i for i, s in enumerate(syms)}
    vocab.update({s + "</w>": 256 + i for i, s in enumerate(syms)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    clip_tok = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    return clip_tok, tiny_t5_tokenizer()


def tiny_flux_components(seed: int = 0, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                         text: bool = True) -> FluxComponents:
    """Tiny random FLUX + XLabs-style ControlNet + VAE + CLIP/T5 (about 0.6 M parameters), in eval mode.

    Same architectures and code paths as the real models, built from the config dicts above; outputs are
    noise. Deterministic for a given ``seed``."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxControlNetModel,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(**TINY_TRANSFORMER)
    controlnet = FluxControlNetModel(**TINY_CONTROLNET)
    _randomise_zero_layers(controlnet, seed)
    vae = AutoencoderKL(**TINY_VAE)
    _sharpen_posterior(vae)
    scheduler = FlowMatchEulerDiscreteScheduler(**TINY_SCHEDULER)
    te = te2 = tok = tok2 = None
    if text:
        tok, tok2 = tiny_tokenizers()
        clip_cfg = CLIPTextConfig(
            vocab_size=len(tok), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
            max_position_embeddings=77, projection_dim=32, bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        )
        te = CLIPTextModel(clip_cfg)
        t5_cfg = T5Config(
            vocab_size=len(tok2), d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
            relative_attention_num_buckets=8, dropout_rate=0.0, pad_token_id=0, eos_token_id=1,
            decoder_start_token_id=0,
        )
        te2 = T5EncoderModel(t5_cfg)
        te, te2 = te.eval(), te2.eval()
        if torch.device(device).type != "cpu" or dtype != torch.float32:
            te, te2 = te.to(device, dtype), te2.to(device, dtype)
    if torch.device(device).type != "cpu" or dtype != torch.float32:
        transformer, controlnet, vae = (m.to(device, dtype) for m in (transformer, controlnet, vae))
    comps = FluxComponents(
        transformer=transformer, controlnet=controlnet, vae=vae, scheduler=scheduler, text_encoder=te, tokenizer=tok, text_encoder_2=te2,
        tokenizer_2=tok2, device=torch.device(device), dtype=dtype, memory="none", source="tiny-random",
    )
    for m in (comps.transformer, comps.controlnet, comps.vae):
        m.eval().requires_grad_(False)
    return comps


def _randomise_zero_layers(controlnet, seed: int) -> None:
    """A fresh ControlNet's output layers are zero (no effect until trained); give the tiny one small random
    weights so that tests see the control image change the output."""
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in controlnet.named_parameters():
            if p.abs().max() == 0 and p.ndim >= 1 and ("controlnet_blocks" in name or "input_hint_block.conv_out" in name):
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def _sharpen_posterior(vae, log_var: float = -10.0) -> None:
    """A random encoder predicts log-variance ~0 (posterior std 1, as large as the signal); trained VAEs are
    nearly deterministic. Zero the log-variance head and set its bias to ``log_var`` (std ~0.007)."""
    conv = vae.encoder.conv_out
    half = conv.out_channels // 2
    with torch.no_grad():
        conv.weight[half:].zero_()
        conv.bias[half:].fill_(log_var)


def save_flux_components(comps: FluxComponents, flux_dir: str | Path, controlnet_dir: str | Path) -> None:
    """Write components in the real on-disk layouts (diffusers FLUX folder; ControlNet folder)."""
    flux_dir, controlnet_dir = Path(flux_dir), Path(controlnet_dir)
    flux_dir.mkdir(parents=True, exist_ok=True)
    comps.transformer.save_pretrained(flux_dir / "transformer", safe_serialization=True)
    comps.vae.save_pretrained(flux_dir / "vae", safe_serialization=True)
    comps.scheduler.save_pretrained(flux_dir / "scheduler")
    comps.text_encoder.save_pretrained(flux_dir / "text_encoder", safe_serialization=True)
    comps.text_encoder_2.save_pretrained(flux_dir / "text_encoder_2", safe_serialization=True)
    comps.tokenizer.save_pretrained(flux_dir / "tokenizer")
    comps.tokenizer_2.save_pretrained(flux_dir / "tokenizer_2")
    index = {
        "_class_name": "FluxPipeline", "_diffusers_version": "0.30.0.dev0",
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"], "text_encoder_2": ["transformers", "T5EncoderModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "T5TokenizerFast"],
        "transformer": ["diffusers", "FluxTransformer2DModel"], "vae": ["diffusers", "AutoencoderKL"],
    }
    (flux_dir / "model_index.json").write_text(json.dumps(index, indent=2))
    comps.controlnet.save_pretrained(controlnet_dir, safe_serialization=True)
