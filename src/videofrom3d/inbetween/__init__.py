"""Inbetweening (GGI, paper 3.3-3.4): CogVideoX-5B-I2V generates the frames between anchor views, guided by
the arc's edge maps and warped noise. ``[inbetween] model = "wan-vace"`` picks the other inbetweener, Wan VACE
on our edges and depth (:mod:`videofrom3d.inbetween.wan`).

``InbetweenConfig`` imports without torch; everything else is loaded on first use::

    from videofrom3d.chaining import chain_inbetween
    from videofrom3d.inbetween import InbetweenConfig, load_inbetweener
    inbetweener = load_inbetweener(job, InbetweenConfig(prompt="a photo of a town"), models="tiny-random")
    frames = chain_inbetween(inbetweener, arcs, anchors, prompt=None)
"""

from __future__ import annotations

from videofrom3d.inbetween.config import InbetweenConfig, InbetweenError

_LAZY = {
    "Inbetweener": "videofrom3d.inbetween.inbetweener",
    "load_inbetweener": "videofrom3d.inbetween.inbetweener",
    "write_frame_pngs": "videofrom3d.inbetween.inbetweener",
    "inbetween_arc": "videofrom3d.inbetween.sampling",
    "endpoint_latents": "videofrom3d.inbetween.conditioning",
    "edge_latents": "videofrom3d.inbetween.conditioning",
    "initial_latents": "videofrom3d.inbetween.conditioning",
    "CogVideoXComponents": "videofrom3d.inbetween.components",
    "widen_patch_embedding": "videofrom3d.inbetween.components",
    "load_transformer_checkpoint": "videofrom3d.inbetween.components",
    "save_transformer_checkpoint": "videofrom3d.inbetween.components",
    "load_flow_lora": "videofrom3d.inbetween.components",
    "tiny_cogvideox_components": "videofrom3d.inbetween.components",
}

__all__ = ["InbetweenConfig", "InbetweenError", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'videofrom3d.inbetween' has no attribute {name!r}")
