"""Training the inbetweening model (GGI, paper 3.4): data preparation from a folder of videos, the training
loop on accelerate, validation, checkpoints in the authors' layout.

    videofrom3d train-ggi TRAIN.toml [--models real|tiny-random]
    accelerate launch -m videofrom3d train-ggi TRAIN.toml

Modules: ``config`` (TRAIN.toml), ``dataset`` (clip preparation and cache), ``batch`` (VAE encoding of a
batch), ``objective`` (the loss maths), ``model`` (widened transformer, frozen flow LoRA, what trains),
``text`` (cached prompt embeddings), ``validation``, ``trainer`` (the loop and checkpoints).
"""

from __future__ import annotations

from videofrom3d.inbetween.training.config import TrainConfig, TrainConfigError, load_train_config

__all__ = ["TrainConfig", "TrainConfigError", "load_train_config", "train_ggi"]


def train_ggi(*args, **kwargs):
    """See :func:`videofrom3d.inbetween.training.trainer.train_ggi` (imported on first use: it needs torch)."""
    from videofrom3d.inbetween.training.trainer import train_ggi as run

    return run(*args, **kwargs)
