"""Distribution alignment (paper 3.2): a style LoRA on FLUX.1-dev + the HED ControlNet.

``train_style_lora(job, AlignConfig(...), out_dir, models="real"|"tiny-random") -> Path`` trains it
(:mod:`videofrom3d.align.train`); :mod:`videofrom3d.align.lora` attaches, saves and loads it."""

from videofrom3d.align.train import AlignConfig, AlignError, train_style_lora

__all__ = ["AlignConfig", "AlignError", "train_style_lora"]
