"""The transformer GGI trains (paper 3.3-3.4): CogVideoX-5B-I2V with its patch embedding widened to 48
input channels (noise | endpoints | edges) and the Go-with-the-Flow flow LoRA attached, unmerged and frozen.

Trainable parameters (:func:`set_trainable`):

- ``mode="full"`` (the paper's Eq. 3): every transformer weight except the flow LoRA;
- ``mode="lora"`` (smaller GPUs): a second PEFT adapter ``trained`` (rank r, alpha r) on the attention and
  feed-forward projections, plus the whole patch embedding (its edge channels start at zero and must learn).

:func:`export_state` gives the state dict of the authors' checkpoint layout (base weights, the 48-channel
embedding, the flow LoRA as PEFT ``lora_A/B.default`` tensors); in LoRA mode the ``trained`` adapter is merged into
the base weights first, so the inbetween stage reads both modes the same way.
"""

from __future__ import annotations

import torch

from videofrom3d.inbetween.components import LATENT_CHANNELS, LORA_TARGETS, attach_lora

FLOW_ADAPTER = "default"  # the flow LoRA's PEFT adapter name (the authors' checkpoint keys say "default")
TRAIN_ADAPTER = "trained"  # not "train": PEFT adds a module attribute per adapter name
TRAIN_LORA_TARGETS = (*LORA_TARGETS, "ff.net.0.proj", "ff.net.2")


def attention_modules(transformer, targets=LORA_TARGETS) -> list[str]:
    """Full names of ``attn1.<target>`` in every block (the flow LoRA's modules)."""
    return [n for n, _ in transformer.named_modules() if n.startswith("transformer_blocks.") and
            any(n.endswith(f"attn1.{t}") for t in targets)]


def block_modules(transformer, targets=TRAIN_LORA_TARGETS) -> list[str]:
    """Full names of the attention and feed-forward projections of every block (the ``trained`` adapter)."""
    names = []
    for n, m in transformer.named_modules():
        if n.startswith("transformer_blocks.") and isinstance(m, torch.nn.Linear):
            if any(n.endswith(f"attn1.{t}") or n.endswith(t) and t.startswith("ff.") for t in targets):
                names.append(n)
    return names


def widen_for_ggi(transformer):
    """32 -> 48 input channels, the new (edge) channels zero (``components.widen_patch_embedding``)."""
    from videofrom3d.inbetween.components import widen_patch_embedding

    extra = 3 * LATENT_CHANNELS - int(transformer.config.in_channels)
    return widen_patch_embedding(transformer, extra) if extra > 0 else transformer


def attach_random_flow_lora(transformer, rank: int, seed: int = 0, std: float = 0.02):
    """A random stand-in for the flow LoRA (``--models tiny-random``): rank ``rank``, alpha = rank, A and B
    drawn from a seeded generator (PEFT would start B at zero, which would make the LoRA invisible)."""
    attach_lora(transformer, attention_modules(transformer), rank)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in transformer.named_parameters():
            if f".lora_A.{FLOW_ADAPTER}." in name or f".lora_B.{FLOW_ADAPTER}." in name:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    return transformer


def add_train_lora(transformer, rank: int):
    """The ``trained`` adapter beside the flow LoRA, both active (diffusers activates only the newest one)."""
    import warnings

    from peft import LoraConfig

    config = LoraConfig(r=rank, lora_alpha=float(rank), target_modules=block_modules(transformer))
    with warnings.catch_warnings():  # "multiple adapters in the model": two are intended here
        warnings.filterwarnings("ignore", message=".*multiple adapters.*")
        transformer.add_adapter(config, adapter_name=TRAIN_ADAPTER)
    transformer.set_adapters([FLOW_ADAPTER, TRAIN_ADAPTER], [1.0, 1.0])
    return transformer


def is_flow_lora(name: str) -> bool:
    return f".lora_A.{FLOW_ADAPTER}." in name or f".lora_B.{FLOW_ADAPTER}." in name


def set_trainable(transformer, mode: str) -> list[torch.nn.Parameter]:
    """Freeze/unfreeze per ``mode`` (module docstring) and return the trainable parameters, in order."""
    if mode not in ("full", "lora"):
        raise ValueError(f'mode must be "full" or "lora", got {mode!r}')
    params = []
    for name, p in transformer.named_parameters():
        if is_flow_lora(name):
            train = False
        elif mode == "full":
            train = True
        else:
            train = f".{TRAIN_ADAPTER}." in name or name.startswith("patch_embed.proj.")
        p.requires_grad_(train)
        if train:
            params.append(p)
    return params


def export_state(state: dict[str, torch.Tensor], train_lora_scale: float = 1.0) -> dict[str, torch.Tensor]:
    """The authors' checkpoint layout from a training state dict: ``trained`` adapter tensors (if any) merged
    into their base weights (``W + scale * B @ A``) and dropped; everything else (the flow LoRA included)
    kept as is. Tensors are detached copies on the CPU."""
    out = {k: v.detach().cpu().clone() for k, v in state.items() if f".{TRAIN_ADAPTER}." not in k}
    for key, a in state.items():
        marker = f".lora_A.{TRAIN_ADAPTER}.weight"
        if not key.endswith(marker):
            continue
        module = key[: -len(marker)]
        b = state[f"{module}.lora_B.{TRAIN_ADAPTER}.weight"]
        base = f"{module}.base_layer.weight"
        out[base] = (out[base].float() + train_lora_scale * (b.float() @ a.float())).to(out[base].dtype)
    return out
