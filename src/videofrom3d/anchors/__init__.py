"""Anchor views with sparse appearance guidance (SAG, paper 3.2) on FLUX.1-dev + the XLabs HED ControlNet.

- :mod:`~videofrom3d.anchors.components`: loading (offline, safetensors, memory modes) and tiny random models.
- :mod:`~videofrom3d.anchors.sampling`: the Euler loop with Eq. 1 latent replacement.
- :mod:`~videofrom3d.anchors.generate`: :class:`AnchorConfig`, :class:`AnchorGenerator`, guide building, chaining.

torch is imported only when a model is built, so ``from videofrom3d.anchors import AnchorConfig`` is cheap.
"""

from videofrom3d.anchors.generate import (
    AnchorConfig,
    AnchorGenerator,
    AnchorGuide,
    anchor_prompt,
    compose_prompt,
    generate_anchors,
    load_anchor_generator,
    make_anchor_guide,
    use_replacement,
)

__all__ = [
    "AnchorConfig",
    "AnchorGenerator",
    "AnchorGuide",
    "anchor_prompt",
    "compose_prompt",
    "generate_anchors",
    "load_anchor_generator",
    "make_anchor_guide",
    "use_replacement",
]
