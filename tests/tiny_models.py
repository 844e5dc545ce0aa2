"""Tiny random models for tests: thin re-exports of the builders in src (configs live there, so that
``--models tiny-random`` and the tests build the very same models), plus small job helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from videofrom3d.anchors.components import (  # noqa: F401
    TINY_CONTROLNET,
    TINY_TRANSFORMER,
    TINY_VAE,
    save_flux_components,
    tiny_flux_components,
)
from videofrom3d.inbetween.components import (  # noqa: F401  (CogVideoX, for the inbetween tests)
    SCHEDULER_CONFIG as COGVIDEOX_SCHEDULER,
)
from videofrom3d.inbetween.components import (  # noqa: F401
    tiny_cogvideox_components,
)
from videofrom3d.inbetween.components import (  # noqa: F401
    tiny_transformer_config as tiny_cogvideox_transformer_config,
)
from videofrom3d.inbetween.components import (  # noqa: F401
    tiny_vae_config as tiny_cogvideox_vae_config,
)
from videofrom3d.models import tiny_t5_tokenizer  # noqa: F401  (both stages' tiny T5 tokenizer)


def style_job(folder: Path, styles: dict[str, np.ndarray], seed: int = 0, **extra):
    """A job whose ``[[style]]`` entries are the given images (identifier -> (H, W, 3) f32), written as PNGs."""
    from videofrom3d.io.images import write_image
    from videofrom3d.job import job_from_dict

    folder = Path(folder)
    entries = []
    for i, (ident, img) in enumerate(styles.items()):
        write_image(folder / f"style{i}.png", img)
        entries.append({"image": f"style{i}.png", "identifier": ident})
    doc = {"name": "tiny", "seed": seed, "scene": {"path": "scene.glb"}, "trajectory": {"path": "camera.json"},
           "style": entries, **extra}
    return job_from_dict(doc, base=folder)


def _one_thread():
    """Tiny models are all per-op overhead; on a busy 2-core machine one intra-op thread is several times
    faster than two spinning ones. Restores the previous setting."""
    import pytest

    @pytest.fixture(autouse=True, scope="module")
    def one_torch_thread():
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(1)
        yield
        torch.set_num_threads(before)

    return one_torch_thread


one_torch_thread = _one_thread()
