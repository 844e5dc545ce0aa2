"""The XLabs HED ControlNet as the authors load it: one x-flux ``ControlNetFlux`` safetensors file
(``XLabs-AI/flux-controlnet-hed-v3/flux-hed-controlnet-v3.safetensors``), converted to diffusers'
:class:`~diffusers.FluxControlNetModel` (diffusers' single-file loader does not know this layout).

x-flux names (``src/flux/controlnet.py`` + BFL ``modules/layers.py``) -> diffusers names:

- ``img_in``/``txt_in`` -> ``x_embedder``/``context_embedder``; ``{time,vector,guidance}_in.{in,out}_layer`` ->
  ``time_text_embed.{timestep,text,guidance}_embedder.linear_{1,2}``
- ``double_blocks.i.{img,txt}_mod.lin`` -> ``transformer_blocks.i.norm1{,_context}.linear``; the fused
  ``{img,txt}_attn.qkv`` split in three into ``attn.to_{q,k,v}`` / ``attn.add_{q,k,v}_proj``;
  ``{img,txt}_attn.norm.{query,key}_norm.scale`` -> ``attn.norm_{q,k}`` / ``attn.norm_added_{q,k}``;
  ``{img,txt}_attn.proj`` -> ``attn.to_out.0`` / ``attn.to_add_out``; ``{img,txt}_mlp.{0,2}`` ->
  ``ff{,_context}.net.{0.proj,2}``
- ``controlnet_blocks.i`` unchanged; ``pos_embed_input`` -> ``controlnet_x_embedder``;
  ``input_hint_block.{0,2,...,14}`` (8 convs) -> ``input_hint_block.conv_in``, ``blocks.0-5``, ``conv_out``.
"""

from __future__ import annotations

import re
from pathlib import Path

XLABS_FILE = "flux-hed-controlnet-v3.safetensors"
_HINT = {0: "conv_in", 2: "blocks.0", 4: "blocks.1", 6: "blocks.2", 8: "blocks.3", 10: "blocks.4", 12: "blocks.5",
         14: "conv_out"}
_TOP = {
    "img_in": "x_embedder", "txt_in": "context_embedder", "pos_embed_input": "controlnet_x_embedder",
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
}
_BLOCK = {
    "img_mod.lin": "norm1.linear", "txt_mod.lin": "norm1_context.linear",
    "img_attn.proj": "attn.to_out.0", "txt_attn.proj": "attn.to_add_out",
    "img_attn.norm.query_norm.scale": "attn.norm_q.weight", "img_attn.norm.key_norm.scale": "attn.norm_k.weight",
    "txt_attn.norm.query_norm.scale": "attn.norm_added_q.weight",
    "txt_attn.norm.key_norm.scale": "attn.norm_added_k.weight",
    "img_mlp.0": "ff.net.0.proj", "img_mlp.2": "ff.net.2", "txt_mlp.0": "ff_context.net.0.proj",
    "txt_mlp.2": "ff_context.net.2",
}
_QKV = {"img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
        "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")}


def is_xlabs_controlnet(keys) -> bool:
    """Whether a state dict's keys are x-flux's ControlNetFlux layout."""
    keys = set(keys)
    return "pos_embed_input.weight" in keys and "double_blocks.0.img_attn.qkv.weight" in keys


def convert_xlabs_controlnet(state: dict, axes_dims_rope: tuple[int, ...] | None = None) -> tuple[dict, dict]:
    """x-flux ``ControlNetFlux`` state dict -> (FluxControlNetModel config, its state dict). Every input key is
    used (a leftover raises ``ValueError`` naming it). ``axes_dims_rope`` (not stored in the file; the FLUX
    transformer's config has it) defaults to FLUX's (16, 56, 56) when the head size is 128."""
    src = dict(state)
    out = {}

    def take(old: str, new: str) -> None:
        for suffix in (".weight", ".bias"):
            if old + suffix in src:
                out[new + suffix] = src.pop(old + suffix)

    for old, new in _TOP.items():
        take(old, new)
    for key in [k for k in src if k.startswith("input_hint_block.")]:
        i, rest = re.match(r"input_hint_block\.(\d+)\.(.+)", key).groups()
        if int(i) not in _HINT:
            raise ValueError(f"unexpected x-flux ControlNet key {key}")
        out[f"input_hint_block.{_HINT[int(i)]}.{rest}"] = src.pop(key)
    for key in [k for k in src if k.startswith("controlnet_blocks.")]:
        out[key] = src.pop(key)
    blocks = sorted({int(k.split(".")[1]) for k in src if k.startswith("double_blocks.")})
    for i in blocks:
        pre, new_pre = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        for old, new in _BLOCK.items():
            if pre + old in src:  # the norm scales carry no suffix
                out[new_pre + new] = src.pop(pre + old)
            else:
                take(pre + old, new_pre + new)
        for old, news in _QKV.items():
            for suffix in (".weight", ".bias"):
                if pre + old + suffix in src:
                    for new, part in zip(news, src.pop(pre + old + suffix).chunk(3, dim=0)):
                        out[new_pre + new + suffix] = part.contiguous()
    if src:
        raise ValueError(f"x-flux ControlNet keys this converter does not know: {sorted(src)[:5]}")
    hidden, in_channels = out["x_embedder.weight"].shape
    head_dim = out["transformer_blocks.0.attn.norm_q.weight"].shape[0]
    if axes_dims_rope is None:
        if head_dim != 128:
            raise ValueError(f"head size {head_dim}: pass axes_dims_rope (FLUX's (16, 56, 56) is for 128)")
        axes_dims_rope = (16, 56, 56)
    config = {
        "patch_size": 2, "in_channels": int(in_channels), "num_layers": len(blocks), "num_single_layers": 0,
        "attention_head_dim": int(head_dim), "num_attention_heads": int(hidden // head_dim),
        "joint_attention_dim": int(out["context_embedder.weight"].shape[1]),
        "pooled_projection_dim": int(out["time_text_embed.text_embedder.linear_1.weight"].shape[1]),
        "guidance_embeds": "time_text_embed.guidance_embedder.linear_1.weight" in out,
        "axes_dims_rope": list(axes_dims_rope), "conditioning_embedding_channels": 16,
    }
    return config, out


def xlabs_file(path: str | Path) -> Path | None:
    """``path`` itself or ``path/flux-hed-controlnet-v3.safetensors`` when that is an x-flux ControlNet file."""
    path = Path(path)
    cand = path if path.is_file() else path / XLABS_FILE
    if not cand.is_file() or cand.suffix != ".safetensors":
        return None
    from safetensors import safe_open

    with safe_open(str(cand), "pt") as f:
        return cand if is_xlabs_controlnet(f.keys()) else None


def load_xlabs_controlnet(path: str | Path, torch_dtype=None, axes_dims_rope: tuple[int, ...] | None = None):
    """A :class:`~diffusers.FluxControlNetModel` from an x-flux file (or its folder), loaded strictly."""
    from diffusers import FluxControlNetModel
    from safetensors.torch import load_file

    file = xlabs_file(path)
    if file is None:
        raise ValueError(f"{path}: not an x-flux ControlNet safetensors file ({XLABS_FILE})")
    config, state = convert_xlabs_controlnet(load_file(str(file)), axes_dims_rope)
    model = FluxControlNetModel(**config)
    model.load_state_dict(state, strict=True)
    if torch_dtype is not None:
        model = model.to(torch_dtype)
    return model.eval()
