"""CogVideoX-5B-I2V components for inbetweening: loading, the 48-channel patch embedding, checkpoints.

Three transformer sources (paper 3.3; KIMGEONUNG/VideoFrom3D ``ggi.py``, ``myutils.py`` ``ch_channel_cnn``):

- the authors' released GGI checkpoint: a folder with ``config.json`` (``in_channels`` 48) and one or more
  safetensors shards holding the whole transformer, base weights plus PEFT LoRA tensors (rank 2048, alpha
  2048 on ``attn1.to_q/to_k/to_v/to_out.0``). :func:`load_transformer_checkpoint` builds the model from the
  config, attaches a LoRA of the rank found in the tensors, loads every tensor strictly, then folds the LoRA
  into the base weights once;
- the stock 5B-I2V transformer plus the Go-with-the-Flow flow LoRA file (:func:`load_flow_lora`);
- our own trained checkpoints, written by :func:`save_transformer_checkpoint` (same folder layout, LoRA
  already merged or kept as PEFT tensors) and read by :func:`load_transformer_checkpoint`.

Weights are read as safetensors only, offline, from local folders or the Hugging Face cache
(:func:`videofrom3d.models.locate`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from videofrom3d.inbetween.config import InbetweenError
from videofrom3d.models import tiny_t5_tokenizer

LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")  # ggi.py / Go-with-the-Flow LoRA targets (attn1 of each block)
LATENT_CHANNELS = 16  # CogVideoX VAE latent channels
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


class CheckpointError(InbetweenError):
    """A checkpoint that does not match the model it is loaded into; the message names the tensor."""


@dataclass
class CogVideoXComponents:
    """What the inbetweening loop needs. ``text_encoder`` may be None after it was released; then
    ``text_encoder_factory`` (if any) loads it again on the next new prompt."""

    tokenizer: Any
    text_encoder: Any
    vae: Any
    transformer: Any
    scheduler: Any
    text_encoder_factory: Callable[[], Any] | None = None
    source: dict[str, str] = field(default_factory=dict)

    @property
    def condition_channels(self) -> int:
        """Channels the transformer reads beside the noisy latents (16: endpoints; 32: endpoints + edges)."""
        return int(self.transformer.config.in_channels) - int(self.transformer.config.out_channels)


# ----------------------------------------------------------------------------------------------- widening


def widen_patch_embedding(transformer, extra_channels: int):
    """Add ``extra_channels`` zero-initialised input channels to the patch embedding (in place).

    The CogVideoX 1.0 patch embedding is ``Conv2d(in -> hidden, k=2, s=2)``; the new input channels come
    after the old ones (GGI: noise 16 | endpoints 16 | edges 16 = 48, paper 3.3) and start at zero, so the
    widened model computes exactly what the unwidened one did until they are trained. The config's
    ``in_channels`` is updated so a saved model reloads with the new width. Returns ``transformer``."""
    if extra_channels < 0:
        raise ValueError(f"extra_channels must be >= 0, got {extra_channels}")
    proj = transformer.patch_embed.proj
    if not isinstance(proj, torch.nn.Conv2d):
        raise InbetweenError(
            f"widen_patch_embedding supports the CogVideoX 1.0 Conv2d patch embedding, got {type(proj).__name__}"
        )
    if extra_channels == 0:
        return transformer
    old_in = proj.in_channels
    wide = torch.nn.Conv2d(
        old_in + extra_channels,
        proj.out_channels,
        kernel_size=proj.kernel_size,
        stride=proj.stride,
        padding=proj.padding,
        bias=proj.bias is not None,
        device=proj.weight.device,
        dtype=proj.weight.dtype,
    )
    with torch.no_grad():
        wide.weight.zero_()
        wide.weight[:, :old_in].copy_(proj.weight)
        if proj.bias is not None:
            wide.bias.copy_(proj.bias)
    wide.requires_grad_(proj.weight.requires_grad)
    transformer.patch_embed.proj = wide
    transformer.register_to_config(in_channels=old_in + extra_channels)
    return transformer


# ---------------------------------------------------------------------------------------------- checkpoints


def read_safetensors_folder(folder: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor of every ``*.safetensors`` file in ``folder`` (shards merged); a tensor found in two
    shards is an error naming both files."""
    from safetensors.torch import load_file

    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder}: no .safetensors files (only safetensors checkpoints are read)")
    state: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for f in files:
        for key, value in load_file(str(f)).items():
            if key in state:
                raise CheckpointError(f"tensor {key!r} is in two shards: {origin[key]} and {f.name}")
            state[key] = value
            origin[key] = f.name
    return state


def canonical_key(key: str) -> str:
    """One spelling for a transformer tensor name, whatever wrote it: no ``transformer.`` prefix, no PEFT
    ``base_layer`` level, no adapter name (``lora_A.default.weight`` -> ``lora_A.weight``)."""
    if key.startswith("transformer."):
        key = key[len("transformer.") :]
    key = key.replace(".base_layer.", ".")
    return re.sub(r"\.(lora_[AB])\.[^.]+\.weight$", r".\1.weight", key)


def lora_layout(state: dict[str, torch.Tensor]) -> tuple[list[str], int] | None:
    """(module names, rank) of the LoRA tensors in ``state`` (canonical keys), None when there are none.

    Every LoRA module needs its ``lora_A`` (rank x in) and ``lora_B`` (out x rank) with one shared rank."""
    a_keys = {k[: -len(".lora_A.weight")]: v for k, v in state.items() if k.endswith(".lora_A.weight")}
    b_keys = {k[: -len(".lora_B.weight")]: v for k, v in state.items() if k.endswith(".lora_B.weight")}
    if not a_keys and not b_keys:
        return None
    if set(a_keys) != set(b_keys):
        lone = sorted(set(a_keys) ^ set(b_keys))[:3]
        raise CheckpointError(f"LoRA tensors come in lora_A/lora_B pairs; unpaired module(s): {lone}")
    ranks = {name: int(a.shape[0]) for name, a in a_keys.items()}
    for name, b in b_keys.items():
        if b.ndim != 2 or b.shape[1] != ranks[name]:
            raise CheckpointError(
                f"tensor {name}.lora_B.weight has shape {tuple(b.shape)}, expected (out, {ranks[name]}) to match "
                f"{name}.lora_A.weight of rank {ranks[name]}"
            )
    distinct = sorted(set(ranks.values()))
    if len(distinct) != 1:
        raise CheckpointError(f"LoRA ranks differ between modules ({distinct}); one rank is supported")
    return sorted(a_keys), distinct[0]


def attach_lora(transformer, modules: list[str], rank: int, alpha: float | None = None) -> None:
    """Wrap ``modules`` (full module names) of ``transformer`` with a PEFT LoRA of ``rank`` and ``alpha``
    (default: alpha = rank, scale 1, as ggi.py and the Go-with-the-Flow release use)."""
    from peft import LoraConfig

    names = set(dict(transformer.named_modules()))
    missing = [m for m in modules if m not in names]
    if missing:
        raise CheckpointError(f"LoRA for module(s) the transformer does not have: {missing[:3]}")
    config = LoraConfig(r=rank, lora_alpha=float(alpha if alpha is not None else rank), target_modules=list(modules))
    transformer.add_adapter(config)


def merge_lora(transformer) -> None:
    """Fold every attached LoRA into its base weight (W += alpha/r * B A) and remove the PEFT wrappers."""
    transformer.fuse_lora(lora_scale=1.0)
    transformer.unload_lora()


def load_transformer_checkpoint(
    folder: str | os.PathLike,
    dtype: torch.dtype = torch.bfloat16,
    merge: bool = True,
    lora_alpha: float | None = None,
):
    """A CogVideoX transformer from a checkpoint folder: ``config.json`` + safetensors shards.

    Reads the authors' released layout (``checkpoint-1350/transformer``: full transformer with PEFT LoRA
    tensors; the folder itself or its ``transformer/`` subfolder) and ours. The model is built from the config,
    a LoRA of the rank found in the tensors is attached (alpha from ``adapter_config.json`` when present,
    else ``lora_alpha``, else alpha = rank), every tensor is loaded strictly (missing, unexpected or mis-shaped
    tensors are errors naming them), then the LoRA is merged once unless ``merge`` is False."""
    from diffusers import CogVideoXTransformer3DModel

    folder = Path(folder)
    if not (folder / CONFIG_NAME).is_file() and (folder / "transformer" / CONFIG_NAME).is_file():
        folder = folder / "transformer"
    if not (folder / CONFIG_NAME).is_file():
        raise CheckpointError(f"{folder}: no {CONFIG_NAME}; a transformer checkpoint folder holds config.json + *.safetensors")
    config = json.loads((folder / CONFIG_NAME).read_text())
    raw = read_safetensors_folder(folder)
    state = {}
    for key, value in raw.items():
        ckey = canonical_key(key)
        if ckey in state:
            raise CheckpointError(f"tensors {key!r} and another one both name {ckey!r}")
        state[ckey] = value
    layout = lora_layout(state)
    if lora_alpha is None and (folder / "adapter_config.json").is_file():
        lora_alpha = float(json.loads((folder / "adapter_config.json").read_text())["lora_alpha"])

    init = {k: v for k, v in config.items() if not k.startswith("_")}
    # build without memory (the 5B model is 11 GB in bf16) unless it has a computed, unsaved buffer
    computed_buffer = not init.get("use_rotary_positional_embeddings") and not init.get("use_learned_positional_embeddings")
    try:
        with torch.device("cpu" if computed_buffer else "meta"):
            model = CogVideoXTransformer3DModel.from_config(init)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{folder / CONFIG_NAME}: not a CogVideoX transformer config ({e})") from e
    if layout is not None:
        modules, rank = layout
        attach_lora(model, modules, rank, lora_alpha)
    load_state_strict(model, state, dtype, where=str(folder))
    model.eval().requires_grad_(False)
    if layout is not None and merge:
        merge_lora(model)
    return model


def load_state_strict(model, state: dict[str, torch.Tensor], dtype: torch.dtype, where: str = "checkpoint") -> None:
    """Load canonical-key tensors into ``model`` (possibly on the meta device) with every name and shape checked."""
    expected = {canonical_key(k): (k, v) for k, v in model.state_dict(keep_vars=True).items()}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing, e.g. {missing[:4]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s), e.g. {unexpected[:4]}")
    for key in sorted(set(expected) & set(state)):
        want = tuple(expected[key][1].shape)
        got = tuple(state[key].shape)
        if want != got:
            hint = ""
            if key == "patch_embed.proj.weight" and len(want) == 4:
                hint = f" (the config says in_channels={want[1]}; the tensor has {got[1]} input channels)"
            problems.append(f"tensor {key!r} has shape {got}, expected {want}{hint}")
    if problems:
        raise CheckpointError(f"{where}: checkpoint does not match the model: " + "; ".join(problems[:8]))
    parameters = {canonical_key(k) for k, _ in model.named_parameters()}
    converted = {}
    for key, (model_key, _ref) in expected.items():
        value = state[key]  # parameters in ``dtype``; buffers (float64 positional tables) as stored
        converted[model_key] = value.to(dtype) if value.is_floating_point() and key in parameters else value
    model.load_state_dict(converted, strict=True, assign=True)
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_meta:  # pragma: no cover - guarded by the strict key check above
            raise CheckpointError(f"{where}: tensor {name!r} was not filled by the checkpoint")


def save_transformer_checkpoint(
    transformer,
    folder: str | os.PathLike,
    max_shard_bytes: int | None = None,
    lora_alpha: float | None = None,
    state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``transformer`` as ``config.json`` + safetensors shards of at most ``max_shard_bytes`` (our
    trained checkpoints; with an attached LoRA this is the authors' layout, PEFT tensors included, and
    ``adapter_config.json`` records the flow LoRA's alpha). ``state`` replaces the transformer's own state
    dict (training passes its gathered, export-ready tensors). Written to a temp folder and renamed."""
    from safetensors.torch import save_file

    from videofrom3d.io.atomic import atomic_path

    folder = Path(folder)
    state = transformer.state_dict() if state is None else state
    state = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, value in state.items():
        n = value.numel() * value.element_size()
        if max_shard_bytes is not None and shards[-1] and size + n > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = value
        size += n
    with atomic_path(folder, suffix="") as tmp:
        tmp.mkdir(parents=True)
        config = {k: v for k, v in dict(transformer.config).items() if not k.startswith("_")}
        config["_class_name"] = type(transformer).__name__
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=1, default=list))
        if len(shards) == 1:
            save_file(shards[0], str(tmp / WEIGHTS_NAME))
        else:
            index = {"metadata": {"total_size": sum(v.numel() * v.element_size() for v in state.values())}, "weight_map": {}}
            for i, shard in enumerate(shards):
                name = f"diffusion_pytorch_model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
                save_file(shard, str(tmp / name))
                index["weight_map"].update({k: name for k in shard})
            (tmp / (WEIGHTS_NAME + ".index.json")).write_text(json.dumps(index, indent=1))
        peft_config = getattr(transformer, "peft_config", None)
        if peft_config:
            cfg = peft_config.get("default") or next(iter(peft_config.values()))
            alpha = lora_alpha if lora_alpha is not None else cfg.lora_alpha
            (tmp / "adapter_config.json").write_text(json.dumps({"r": cfg.r, "lora_alpha": alpha}))
    return folder


def load_flow_lora(transformer, path: str | os.PathLike, merge: bool = True, alpha: float | None = None):
    """Attach the Go-with-the-Flow flow LoRA file (``I2V5B_final_i38800_nearest_lora_weights.safetensors``:
    rank 2048 on attn1 to_q/to_k/to_v/to_out.0, ``transformer.`` key prefix) to a stock CogVideoX-5B-I2V
    transformer, loading every LoRA tensor strictly; alpha = rank (scale 1) unless given. Merged once unless
    ``merge`` is False. Returns ``transformer``."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.safetensors"))
        if len(files) != 1:
            raise CheckpointError(f"{path}: expected one LoRA .safetensors file, found {[f.name for f in files]}")
        path = files[0]
    state = {canonical_key(k): v for k, v in load_file(str(path)).items()}
    stray = [k for k in state if ".lora_A." not in k and ".lora_B." not in k]
    if stray:
        raise CheckpointError(f"{path.name}: not a LoRA file; non-LoRA tensor(s) {stray[:3]}")
    layout = lora_layout(state)
    if layout is None:
        raise CheckpointError(f"{path.name}: no LoRA tensors")
    modules, rank = layout
    dtype = next(transformer.parameters()).dtype
    attach_lora(transformer, modules, rank, alpha)
    model_lora = {canonical_key(k): k for k, _ in transformer.state_dict().items() if ".lora_" in k}
    missing = sorted(set(model_lora) - set(state))
    if missing:
        raise CheckpointError(f"{path.name}: LoRA tensor(s) missing, e.g. {missing[:3]}")
    current = transformer.state_dict()
    for key, model_key in model_lora.items():
        want, got = tuple(current[model_key].shape), tuple(state[key].shape)
        if want != got:
            raise CheckpointError(f"{path.name}: tensor {key!r} has shape {got}, expected {want}")
    transformer.load_state_dict({model_lora[k]: state[k].to(dtype) for k in model_lora}, strict=False)
    if merge:
        merge_lora(transformer)
    return transformer


# ------------------------------------------------------------------------------------------ real components


def load_cogvideox_components(
    base: str | os.PathLike | None = None,
    transformer=None,
    dtype: torch.dtype = torch.bfloat16,
    load_text_encoder: bool = True,
) -> CogVideoXComponents:
    """Tokenizer, T5, VAE, scheduler (and the stock transformer unless ``transformer`` is given) of
    CogVideoX-5B-I2V from a local folder or the HF cache (``models.locate("cogvideox", base)``)."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
    from transformers import AutoTokenizer, T5EncoderModel

    from videofrom3d.models import locate

    root = locate("cogvideox", base)

    def text_encoder_factory():
        return T5EncoderModel.from_pretrained(root / "text_encoder", dtype=dtype, use_safetensors=True).eval()

    tokenizer = AutoTokenizer.from_pretrained(root / "tokenizer")
    vae = AutoencoderKLCogVideoX.from_pretrained(root / "vae", torch_dtype=dtype, use_safetensors=True).eval()
    scheduler = CogVideoXDDIMScheduler.from_pretrained(root / "scheduler")
    if transformer is None:
        transformer = CogVideoXTransformer3DModel.from_pretrained(
            root / "transformer", torch_dtype=dtype, use_safetensors=True
        ).eval()
    return CogVideoXComponents(
        tokenizer=tokenizer,
        text_encoder=text_encoder_factory() if load_text_encoder else None,
        vae=vae,
        transformer=transformer,
        scheduler=scheduler,
        text_encoder_factory=text_encoder_factory,
        source={"base": str(root)},
    )


def load_stock_transformer(base: str | os.PathLike | None = None, dtype: torch.dtype = torch.bfloat16):
    from diffusers import CogVideoXTransformer3DModel

    from videofrom3d.models import locate

    root = locate("cogvideox", base)
    return CogVideoXTransformer3DModel.from_pretrained(root / "transformer", torch_dtype=dtype, use_safetensors=True).eval()


# ------------------------------------------------------------------------------------------ tiny components

# THUDM/CogVideoX-5b-I2V scheduler_config.json (v-prediction, zero terminal SNR, trailing spacing)
SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": True,
    "steps_offset": 0,
    "prediction_type": "v_prediction",
    "clip_sample_range": 1.0,
    "sample_max_value": 1.0,
    "timestep_spacing": "trailing",
    "rescale_betas_zero_snr": True,
    "snr_shift_scale": 1.0,
}

# THUDM/CogVideoX-5b-I2V transformer/config.json (the benchmark builds it with random weights)
TRANSFORMER_5B_I2V_CONFIG = {
    "activation_fn": "gelu-approximate",
    "attention_bias": True,
    "attention_head_dim": 64,
    "dropout": 0.0,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 32,
    "max_text_seq_length": 226,
    "norm_elementwise_affine": True,
    "norm_eps": 1e-05,
    "num_attention_heads": 48,
    "num_layers": 42,
    "out_channels": 16,
    "patch_size": 2,
    "sample_frames": 49,
    "sample_height": 60,
    "sample_width": 90,
    "spatial_interpolation_scale": 1.875,
    "temporal_compression_ratio": 4,
    "temporal_interpolation_scale": 1.0,
    "text_embed_dim": 4096,
    "time_embed_dim": 512,
    "timestep_activation_fn": "silu",
    "use_learned_positional_embeddings": True,
    "use_rotary_positional_embeddings": True,
}

# THUDM/CogVideoX-5b-I2V vae/config.json
VAE_5B_CONFIG = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 256, 512],
    "down_block_types": ["CogVideoXDownBlock3D"] * 4,
    "up_block_types": ["CogVideoXUpBlock3D"] * 4,
    "force_upcast": True,
    "in_channels": 3,
    "latent_channels": 16,
    "layers_per_block": 3,
    "norm_eps": 1e-06,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_height": 480,
    "sample_width": 720,
    "scaling_factor": 0.7,
    "temporal_compression_ratio": 4,
    "use_post_quant_conv": False,
    "use_quant_conv": False,
}

TINY_TEXT_LENGTH = 16


def tiny_transformer_config(
    height: int = 32, width: int = 48, in_channels: int = 48, layers: int = 1, frames: int = 49
) -> dict:
    """A 5B-I2V-shaped transformer (rotary + learned positional embeddings) for ``height x width`` frames."""
    if height % 16 or width % 16:
        raise ValueError(f"tiny CogVideoX frames must be multiples of 16, got {width}x{height}")
    return {
        "num_attention_heads": 2,
        "attention_head_dim": 16,
        "in_channels": in_channels,
        "out_channels": LATENT_CHANNELS,
        "time_embed_dim": 8,
        "text_embed_dim": 32,
        "num_layers": layers,
        "sample_width": width // 8,
        "sample_height": height // 8,
        "sample_frames": frames,
        "patch_size": 2,
        "temporal_compression_ratio": 4,
        "max_text_seq_length": TINY_TEXT_LENGTH,
        "use_rotary_positional_embeddings": True,
        "use_learned_positional_embeddings": True,
    }


def tiny_vae_config(height: int = 32, width: int = 48) -> dict:
    """A 4-level CogVideoX VAE (8x spatial, 4x temporal, 16 latent channels, scale 0.7) with 8 channels.

    Its tiling thresholds are set above the frame size so tiling never changes tiny results. No resnets in
    the encoder's down blocks and one per decoder up block (``layers_per_block`` 0; the mid blocks keep
    theirs): at 720x480 the full-resolution resnets are most of a CPU arc's time. Fewer channels do not help:
    torch leaves oneDNN for its slow 3D convolution when channels x frames x rows <= 20480 (8 x 10 x 240
    already is)."""
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["CogVideoXDownBlock3D"] * 4,
        "up_block_types": ["CogVideoXUpBlock3D"] * 4,
        "block_out_channels": [8, 8, 8, 8],
        "latent_channels": LATENT_CHANNELS,
        "layers_per_block": 0,
        "norm_num_groups": 8,
        "temporal_compression_ratio": 4,
        "sample_height": 4 * height,
        "sample_width": 4 * width,
        "scaling_factor": 0.7,
    }


def tiny_t5_config(vocab_size: int) -> dict:
    return {
        "vocab_size": vocab_size,
        "d_model": 32,
        "d_kv": 8,
        "d_ff": 37,
        "num_layers": 2,
        "num_heads": 4,
        "relative_attention_num_buckets": 8,
        "dropout_rate": 0.0,
        "feed_forward_proj": "gated-gelu",
        "is_encoder_decoder": False,
        "pad_token_id": 0,
        "eos_token_id": 1,
    }


def tiny_cogvideox_components(
    seed: int = 0, height: int = 32, width: int = 48, in_channels: int = 48, layers: int = 1, frames: int = 49
) -> CogVideoXComponents:
    """Random CogVideoX components built from config dicts (no files, no network), in eval mode, fp32.

    The latent grid is ``height/8 x width/8`` (the transformer's learned positional embeddings fix it), 13
    latent frames for ``frames`` = 49 decoded frames; ``in_channels`` 48 is the widened GGI layout (32: stock I2V)."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    tokenizer = tiny_t5_tokenizer()

    def text_encoder_factory():
        torch.manual_seed(seed + 1)
        return T5EncoderModel(T5Config(**tiny_t5_config(len(tokenizer)))).eval()

    torch.manual_seed(seed)
    transformer = CogVideoXTransformer3DModel(**tiny_transformer_config(height, width, in_channels, layers, frames)).eval()
    torch.manual_seed(seed + 2)
    vae = AutoencoderKLCogVideoX(**tiny_vae_config(height, width)).eval()
    scheduler = CogVideoXDDIMScheduler(**SCHEDULER_CONFIG)
    return CogVideoXComponents(
        tokenizer=tokenizer,
        text_encoder=text_encoder_factory(),
        vae=vae,
        transformer=transformer,
        scheduler=scheduler,
        text_encoder_factory=text_encoder_factory,
        source={"base": f"tiny-random(seed={seed})"},
    )
