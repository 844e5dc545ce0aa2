"""The style LoRA (paper 3.2 distribution alignment): peft LoRA on chosen FLUX / ControlNet blocks, saved
as one LoRA-only safetensors file with its recipe in the metadata.

Targets, as in the official trainer (KIMGEONUNG/VideoFrom3D ``sag_distribution_alignment.py`` with the LoRA
processors of XLabs-AI/x-flux ``src/flux/modules/layers.py``) mapped onto diffusers' unfused layers: in a double block the image-stream q, k, v and output projections (``attn.to_q/k/v``,
``attn.to_out.0``) and the text-stream ones (``attn.add_q/k/v_proj``, ``attn.to_add_out``); in a single
block q, k, v and ``proj_out`` (x-flux's ``linear2``). x-flux shares one down matrix across fused q/k/v;
here q, k and v get their own, so the LoRA has about 17.3 M parameters instead of 13.2 M at rank 16 on
19 double + 4 single blocks. Initialisation as x-flux: down ~ N(0, 1/rank), up = 0, alpha = rank (scale 1).

File layout: keys ``transformer.<module>.lora_A.weight`` / ``.lora_B.weight`` and ``controlnet.<...>``
(diffusers' LoRA naming), metadata ``format``, ``rank``, ``alpha``, ``transformer_double_blocks``,
``transformer_single_blocks``, ``controlnet_double_blocks`` (JSON lists), ``identifiers``,
``reference_sha256`` (JSON lists, one per style image), ``steps``; from the quick recipe also ``mode``,
``sampling_max_sequence_length`` (the anchors' T5 length) and, with reference conditioning, ``reference``
(pool, weight) plus tensors ``reference.<i>`` (see :mod:`videofrom3d.align.reference`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from videofrom3d.errors import VideoFrom3DError

ADAPTER = "style"
FORMAT = "videofrom3d-style-lora/1"
DOUBLE_TARGETS = (
    "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
    "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out",
)
SINGLE_TARGETS = ("attn.to_q", "attn.to_k", "attn.to_v", "proj_out")


class LoraFileError(VideoFrom3DError, ValueError):
    """A LoRA file that does not fit the models (wrong blocks, rank or keys)."""


def resolve_blocks(requested: Sequence[int] | None, available: int, what: str) -> list[int]:
    """``None`` = all ``available`` blocks; otherwise check every index exists."""
    if requested is None:
        return list(range(available))
    blocks = sorted(set(int(b) for b in requested))
    bad = [b for b in blocks if not 0 <= b < available]
    if bad:
        raise ValueError(f"{what} {bad} do not exist: the model has {available} (indices 0..{available - 1})")
    return blocks


def lora_target_names(model, double_blocks: Sequence[int] | None, single_blocks: Sequence[int] | None = ()) -> list[str]:
    """Full module names of the Linear layers that get a LoRA (see the module docstring)."""
    double = resolve_blocks(double_blocks, len(model.transformer_blocks), "double blocks")
    single = resolve_blocks(single_blocks, len(model.single_transformer_blocks), "single blocks")
    names = [f"transformer_blocks.{i}.{t}" for i in double for t in DOUBLE_TARGETS]
    names += [f"single_transformer_blocks.{i}.{t}" for i in single for t in SINGLE_TARGETS]
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise ValueError(f"the model has no layers named {missing[:3]}...")
    return names


def add_style_lora(model, names: Sequence[str], rank: int, alpha: float | None = None, adapter: str = ADAPTER) -> None:
    """Attach a LoRA adapter to exactly the Linear layers ``names``; the base model is frozen."""
    from peft import LoraConfig

    model.requires_grad_(False)
    pattern = "^(?:" + "|".join(re.escape(n) for n in names) + ")$"  # peft fullmatches a str target
    config = LoraConfig(r=rank, lora_alpha=alpha if alpha is not None else rank, lora_dropout=0.0,
                        target_modules=pattern, init_lora_weights="gaussian")
    model.add_adapter(config, adapter_name=adapter)


def lora_modules(model) -> list[str]:
    """Names of the modules that carry a LoRA (for checks)."""
    from peft.tuners.lora import LoraLayer

    return [n for n, m in model.named_modules() if isinstance(m, LoraLayer)]


def lora_state_dict(model, adapter: str = ADAPTER) -> dict:
    from peft.utils import get_peft_model_state_dict

    return get_peft_model_state_dict(model, adapter_name=adapter)


def set_lora_state_dict(model, state: dict, adapter: str = ADAPTER) -> None:
    from peft.utils import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, state, adapter_name=adapter)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    missing = [k for k in (getattr(result, "missing_keys", []) or []) if "lora_" in k]
    if unexpected or missing:
        raise LoraFileError(f"LoRA keys do not fit the model: unexpected {unexpected[:3]}, missing {missing[:3]}")


def save_style_lora(path: str | Path, transformer, controlnet, metadata: dict, extra: dict | None = None) -> Path:
    """Write the LoRA weights of both models (and only those, plus ``extra`` tensors by name, e.g. the quick
    recipe's ``reference.<i>`` tokens) to ``path`` atomically."""
    from safetensors.torch import save

    from videofrom3d.io.atomic import atomic_path

    tensors = {f"transformer.{k}": v.detach().float().cpu().contiguous() for k, v in lora_state_dict(transformer).items()}
    if controlnet is not None and getattr(controlnet, "peft_config", None):
        tensors.update({f"controlnet.{k}": v.detach().float().cpu().contiguous()
                        for k, v in lora_state_dict(controlnet).items()})
    tensors.update({k: v.detach().float().cpu().contiguous() for k, v in (extra or {}).items()})
    meta = {"format": FORMAT}
    meta.update({k: json.dumps(v) for k, v in metadata.items()})  # every value JSON-encoded
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(canonical_safetensors(save(tensors, metadata=meta)))
    return path


def canonical_safetensors(data: bytes) -> bytes:
    """``data`` (a safetensors file) with its JSON header's keys sorted: safetensors writes the metadata in hash
    order, which differs between processes, so the same weights would give different file bytes."""
    n = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8 : 8 + n]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the format pads the header to 8 bytes with spaces
    return len(header).to_bytes(8, "little") + header + data[8 + n :]


def read_style_lora(path: str | Path) -> tuple[dict, dict]:
    """(tensors, metadata with JSON fields decoded)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise LoraFileError(f"LoRA file not found: {path} (run `videofrom3d align JOB` first)")
    with safe_open(str(path), framework="pt") as f:
        raw = f.metadata() or {}
    if raw.get("format") != FORMAT:
        raise LoraFileError(f"{path}: not a videofrom3d style LoRA (format {raw.get('format')!r})")
    meta = {k: (v if k == "format" else json.loads(v)) for k, v in raw.items()}
    return load_file(str(path)), meta


def attach_lora_from_metadata(transformer, controlnet, meta: dict) -> None:
    """Add adapters shaped as described by a LoRA file's metadata (weights still the random init)."""
    rank, alpha = int(meta["rank"]), float(meta["alpha"])
    add_style_lora(transformer, lora_target_names(transformer, meta["transformer_double_blocks"],
                                                  meta["transformer_single_blocks"]), rank, alpha)
    if meta.get("controlnet_double_blocks"):
        add_style_lora(controlnet, lora_target_names(controlnet, meta["controlnet_double_blocks"], []), rank, alpha)


def set_style_lora_tensors(transformer, controlnet, tensors: dict) -> list:
    """Load a style LoRA file's ``transformer.*`` / ``controlnet.*`` tensors into the attached adapters;
    returns the models that received tensors."""
    loaded = []
    for prefix, model in (("transformer.", transformer), ("controlnet.", controlnet)):
        part = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        if part:
            set_lora_state_dict(model, part)
            loaded.append(model)
    return loaded


def load_style_lora(comps, path: str | Path, scale: float = 1.0) -> dict:
    """Attach the LoRA in ``path`` to ``comps.transformer`` / ``comps.controlnet``; returns its metadata."""
    tensors, meta = read_style_lora(path)
    try:
        attach_lora_from_metadata(comps.transformer, comps.controlnet, meta)
    except (ValueError, KeyError) as e:
        raise LoraFileError(f"{path}: does not fit these models ({e})") from e
    for model in set_style_lora_tensors(comps.transformer, comps.controlnet, tensors):
        if scale != 1.0:
            model.set_adapters([ADAPTER], weights=[scale])
    for m in (comps.transformer, comps.controlnet):
        m.requires_grad_(False)
    return meta
