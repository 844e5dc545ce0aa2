"""Memory modes of the Inbetweener on a CUDA GPU (tier 3, `-m gpu`): model offload, sequential offload and
fp8 weight storage give the no-offload frames (fp8: close to them) on tiny random models."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

pytestmark = [pytest.mark.gpu, pytest.mark.torch]


@pytest.fixture(scope="module")
def cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    return torch.device("cuda")


def _run(cfg_kwargs, device):
    from videofrom3d.inbetween import InbetweenConfig
    from videofrom3d.inbetween.components import tiny_cogvideox_components
    from videofrom3d.inbetween.inbetweener import Inbetweener

    h, w, n = 32, 48, 8
    c = tiny_cogvideox_components(seed=0, height=h, width=w, frames=9)
    rng = np.random.default_rng(0)
    start, end = rng.random((h, w, 3), dtype=np.float32), rng.random((h, w, 3), dtype=np.float32)
    edges = (rng.random((n + 1, h, w)) > 0.9).astype(np.float32)
    noise = rng.standard_normal((3, 16, h // 8, w // 8)).astype(np.float32)
    cfg = InbetweenConfig(steps=4, dtype="float32", device=str(device), **cfg_kwargs)
    inb = Inbetweener(c, cfg, device=device)
    frames = inb.inbetween(start, end, edges, noise, "a house", 1)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0
    inb.close()
    return frames, peak


def test_memory_modes_agree(cuda):
    reference, _ = _run({"memory": "none", "vae_tiling": False}, cuda)
    assert reference.shape == (9, 32, 48, 3) and np.isfinite(reference).all()
    runs = {mode: _run({"memory": mode, "vae_tiling": False}, cuda)[0] for mode in ("model", "sequential")}
    runs["fp8"] = _run({"fp8": True, "vae_tiling": False}, cuda)[0]
    runs["cpu"] = _run({"memory": "none", "vae_tiling": False}, torch.device("cpu"))[0]
    diffs = {k: float(np.abs(v - reference).max()) for k, v in runs.items()}
    print("max abs difference to no offload:", diffs)
    assert diffs["model"] < 1e-4 and diffs["sequential"] < 1e-4, diffs
    assert np.isfinite(runs["fp8"]).all() and diffs["fp8"] < 0.2, diffs
    assert diffs["cpu"] < 1e-2, diffs  # TF32 convolutions on the GPU
