"""Anchor views with sparse appearance guidance (SAG, paper 3.2) on FLUX.1-dev + the XLabs HED ControlNet.

- :mod:`~videofrom3d.anchors.components`: loading (offline, safetensors, memory modes) and tiny random models.
- :mod:`~videofrom3d.anchors.sampling`: the Euler loop with Eq. 1 latent replacement.
- :mod:`~videofrom3d.anchors.generate`: :class:`AnchorConfig`, :class:`AnchorGenerator`, guide building
  (chaining rules: :mod:`videofrom3d.chaining`).

Names are resolved lazily: ``from videofrom3d.anchors import AnchorConfig`` imports no torch, and
``videofrom3d.anchors.sampling`` can be used without OpenCV.
"""

from __future__ import annotations

import importlib

__all__ = [
    "AnchorConfig",
    "AnchorGenerator",
    "anchor_size",
    "erode_px_at",
    "load_anchor_generator",
    "make_anchor_guide",
    "replacement_rule",
]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("videofrom3d.anchors.generate"), name)
    raise AttributeError(f"module 'videofrom3d.anchors' has no attribute {name!r}")
