"""Wan VACE components (diffusers' ``WanVACETransformer3DModel``, ``AutoencoderKLWan``, the UMT5 encoder and
the flow-matching scheduler) loaded from a diffusers folder, or built tiny and random from configs."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from videofrom3d.inbetween.config import InbetweenError


@dataclass
class WanVaceComponents:
    """What one arc needs. ``transformer_2`` and ``boundary_ratio`` are Wan2.2 A14B's low-noise expert and the
    fraction of the 1000 training timesteps below which it takes over (None for Wan2.1)."""

    tokenizer: Any
    text_encoder: Any  # UMT5EncoderModel, or None once released
    vae: Any
    transformer: Any
    scheduler: Any
    transformer_2: Any = None
    boundary_ratio: float | None = None
    text_encoder_factory: Callable[[], Any] | None = None
    source: dict = field(default_factory=dict)

    def transformers(self) -> list:
        return [t for t in (self.transformer, self.transformer_2) if t is not None]


# Scheduler of the Wan-AI/Wan2.1-VACE-*-diffusers folders: UniPC on flow sigmas (flow_shift set per size)
SCHEDULER_CONFIG = {"prediction_type": "flow_prediction", "use_flow_sigmas": True, "num_train_timesteps": 1000,
                    "flow_shift": 3.0}

# Full-size transformer configs (the diffusers folders' transformer/config.json), for benchmarks
TRANSFORMER_1_3B = {"num_attention_heads": 12, "attention_head_dim": 128, "in_channels": 16, "out_channels": 16,
                    "text_dim": 4096, "freq_dim": 256, "ffn_dim": 8960, "num_layers": 30,
                    "vace_layers": [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28], "vace_in_channels": 96}
TRANSFORMER_14B = {"num_attention_heads": 40, "attention_head_dim": 128, "in_channels": 16, "out_channels": 16,
                   "text_dim": 4096, "freq_dim": 256, "ffn_dim": 13824, "num_layers": 40,
                   "vace_layers": [0, 5, 10, 15, 20, 25, 30, 35], "vace_in_channels": 96}


def tiny_transformer_config(layers: int = 2) -> dict:
    return {"patch_size": (1, 2, 2), "num_attention_heads": 2, "attention_head_dim": 8, "in_channels": 16,
            "out_channels": 16, "text_dim": 16, "freq_dim": 32, "ffn_dim": 16, "num_layers": layers,
            "rope_max_seq_len": 64, "vace_layers": [0, layers - 1] if layers > 1 else [0], "vace_in_channels": 96}


def tiny_vae_config() -> dict:
    """A 16-channel Wan VAE with the real compression (8x space, 4x time) and the default latent mean/std."""
    return {"base_dim": 4, "z_dim": 16, "dim_mult": [1, 1, 1, 1], "num_res_blocks": 1,
            "temperal_downsample": [False, True, True]}


def tiny_umt5_config(vocab_size: int) -> dict:
    return {"vocab_size": vocab_size, "d_model": 16, "d_kv": 4, "d_ff": 16, "num_layers": 1, "num_heads": 2,
            "relative_attention_num_buckets": 8, "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0}


def tiny_wan_vace_components(seed: int = 0, layers: int = 2, two_experts: bool = False) -> WanVaceComponents:
    """Random Wan VACE components from config dicts (no files), eval mode, fp32; ``two_experts`` adds a
    second transformer and ``boundary_ratio = 0.875`` (the Wan2.2 A14B layout)."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanVACETransformer3DModel
    from transformers import UMT5Config, UMT5EncoderModel

    from videofrom3d.models import tiny_t5_tokenizer

    tokenizer = tiny_t5_tokenizer()

    def text_encoder_factory():
        torch.manual_seed(seed + 1)
        return UMT5EncoderModel(UMT5Config(**tiny_umt5_config(len(tokenizer)))).eval()

    torch.manual_seed(seed)
    transformer = WanVACETransformer3DModel(**tiny_transformer_config(layers)).eval()
    transformer_2 = None
    if two_experts:
        torch.manual_seed(seed + 3)
        transformer_2 = WanVACETransformer3DModel(**tiny_transformer_config(layers)).eval()
    torch.manual_seed(seed + 2)
    vae = AutoencoderKLWan(**tiny_vae_config()).eval()
    return WanVaceComponents(
        tokenizer=tokenizer, text_encoder=text_encoder_factory(), vae=vae, transformer=transformer,
        scheduler=UniPCMultistepScheduler(**SCHEDULER_CONFIG), transformer_2=transformer_2,
        boundary_ratio=0.875 if two_experts else None, text_encoder_factory=text_encoder_factory,
        source={"base": f"tiny-random(seed={seed})"},
    )


def load_wan_vace_components(folder: str | Path, dtype: torch.dtype, vae_dtype: torch.dtype) -> WanVaceComponents:
    """A diffusers Wan VACE folder (``model_index.json``; ``transformer_2`` and ``boundary_ratio`` when it is a
    Wan2.2 A14B one). The UMT5 encoder is loaded on first use (``text_encoder_factory``)."""
    import diffusers
    from diffusers import AutoencoderKLWan, WanVACETransformer3DModel
    from transformers import AutoTokenizer, UMT5EncoderModel

    folder = Path(folder)
    index = json.loads((folder / "model_index.json").read_text())
    if index.get("_class_name") != "WanVACEPipeline":
        raise InbetweenError(f"{folder} is a {index.get('_class_name')} folder; the wan-vace engine needs a "
                             "WanVACEPipeline one (e.g. Wan-AI/Wan2.1-VACE-1.3B-diffusers)")

    def transformer(sub):
        if not (folder / sub).is_dir() or not index.get(sub) or index[sub][0] is None:
            return None
        return WanVACETransformer3DModel.from_pretrained(folder, subfolder=sub, torch_dtype=dtype).eval()

    scheduler_cls = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())["_class_name"]
    return WanVaceComponents(
        tokenizer=AutoTokenizer.from_pretrained(folder, subfolder="tokenizer"),
        text_encoder=None,
        vae=AutoencoderKLWan.from_pretrained(folder, subfolder="vae", torch_dtype=vae_dtype).eval(),
        transformer=transformer("transformer"),
        transformer_2=transformer("transformer_2"),
        boundary_ratio=index.get("boundary_ratio"),
        scheduler=getattr(diffusers, scheduler_cls).from_pretrained(folder, subfolder="scheduler"),
        text_encoder_factory=lambda: UMT5EncoderModel.from_pretrained(folder, subfolder="text_encoder",
                                                                      torch_dtype=dtype).eval(),
        source={"base": str(folder)},
    )
