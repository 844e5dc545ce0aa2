"""Wan VACE inbetweening (``[inbetween] model = "wan-vace"``): first/last-frame generation on Wan2.1-VACE
(1.3B, 14B) or Wan2.2-VACE-Fun-A14B, guided by our exact edge maps and/or G-buffer depth, no fine-tuning.

``config`` imports without torch; ``components`` (loading, tiny random), ``conditioning`` (control video,
mask, VACE context, noise), ``sampling`` (the loop) and ``engine`` (the stage object) need the diffusion extra.
"""

from videofrom3d.inbetween.wan.config import WanVaceConfig, inbetween_config

__all__ = ["WanVaceConfig", "inbetween_config"]
