"""Style LoRA alignment on tiny random models: loss, trainable set, exact blocks, file, reload, resume."""

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

from tiny_models import one_torch_thread, style_job, tiny_flux_components  # noqa: E402, F401
from videofrom3d.align import AlignConfig, train_style_lora  # noqa: E402
from videofrom3d.align.lora import (  # noqa: E402
    DOUBLE_TARGETS,
    SINGLE_TARGETS,
    load_style_lora,
    lora_modules,
    read_style_lora,
)
from videofrom3d.align.train import centre_crop, prepare_training_data, training_step, training_timesteps  # noqa: E402
from videofrom3d.anchors.generate import AnchorConfig, AnchorGenerator  # noqa: E402

FAST = dict(resolution=32, max_sequence_length=8, edge_detector="classical", checkpoint_every=1000)


def _style(seed=0):
    rng = np.random.default_rng(seed)
    img = np.zeros((40, 56, 3), np.float32)
    img[..., :] = rng.random(3)
    img[10:30, 14:40] = rng.random(3)
    return img


@pytest.fixture
def job(tmp_path):
    return style_job(tmp_path, {"sks style": _style()})


def _fixed_batch_loss(comps, samples, text, cfg, n=6):
    schedule = torch.from_numpy(training_timesteps(cfg.shift_mu)).float()
    gen = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        return float(np.mean([training_step(comps, samples, text, ["sks style"], schedule, gen, cfg).item()
                              for _ in range(n)]))


@pytest.mark.filterwarnings("ignore:HED weights not found")
def test_training_lowers_loss_trains_only_lora_on_configured_blocks(job, tmp_path):
    cfg = AlignConfig(steps=30, learning_rate=1e-3, double_blocks=(1,), single_blocks=(1, 2), **FAST)
    comps = tiny_flux_components(seed=0)
    samples, text = prepare_training_data(comps, job, cfg)
    before = _fixed_batch_loss(comps, samples, text, cfg)
    trainable = []

    def check(step, loss):
        if step == 1:
            for m in (comps.transformer, comps.controlnet):
                trainable.extend((n, p.dtype) for n, p in m.named_parameters() if p.requires_grad)

    path = train_style_lora(job, cfg, tmp_path / "align", models=comps, callback=check, progress=False)
    after = _fixed_batch_loss(comps, samples, text, cfg)
    assert after < before - 0.01, (before, after)
    # only LoRA parameters train, in float32
    assert trainable and all("lora_" in n and dt == torch.float32 for n, dt in trainable)
    # exactly the configured blocks: transformer double 1 (8 layers), single 1 and 2 (4 each), ControlNet both
    t_mods = lora_modules(comps.transformer)
    assert sorted(t_mods) == sorted([f"transformer_blocks.1.{t}" for t in DOUBLE_TARGETS]
                                    + [f"single_transformer_blocks.{i}.{t}" for i in (1, 2) for t in SINGLE_TARGETS])
    assert len(lora_modules(comps.controlnet)) == 2 * len(DOUBLE_TARGETS)
    # the file: only LoRA keys, the recipe in the metadata
    tensors, meta = read_style_lora(path)
    assert tensors and all(".lora_A." in k or ".lora_B." in k for k in tensors)
    assert len(tensors) == 2 * (len(t_mods) + 2 * len(DOUBLE_TARGETS))
    assert meta["rank"] == 16 and meta["transformer_double_blocks"] == [1]
    assert meta["transformer_single_blocks"] == [1, 2] and meta["controlnet_double_blocks"] == [0, 1]
    assert meta["identifiers"] == ["sks style"] and meta["steps"] == 30
    import hashlib

    assert meta["reference_sha256"] == [hashlib.sha256(job.styles[0].image.read_bytes()).hexdigest()]
    # reloading into fresh models reproduces the trained model's output exactly
    acfg = AnchorConfig(steps=2, true_cfg=1.0, max_sequence_length=8)
    edge = np.zeros((32, 32), np.float32)
    trained = AnchorGenerator(comps, acfg, ["sks style"]).generate_latents(edge, "sks style", seed=0)
    fresh = tiny_flux_components(seed=0)
    base = AnchorGenerator(fresh, acfg, ["sks style"]).generate_latents(edge, "sks style", seed=0)
    load_style_lora(fresh, path)
    reloaded = AnchorGenerator(fresh, acfg, ["sks style"]).generate_latents(edge, "sks style", seed=0)
    assert torch.equal(trained, reloaded)
    assert float((base - reloaded).abs().max()) > 1e-4
    # a finished run with the same inputs returns at once
    calls = []
    assert train_style_lora(job, cfg, tmp_path / "align", models="tiny-random", callback=lambda s, l: calls.append(s),
                            progress=False) == path
    assert calls == []


def test_default_blocks_are_the_official_ones(job, tmp_path):
    """All double blocks + single blocks 1-4 (not 0) + both ControlNet double blocks."""
    comps = tiny_flux_components(seed=0)
    cfg = AlignConfig(steps=1, **FAST)
    train_style_lora(job, cfg, tmp_path / "a", models=comps, progress=False)
    blocks = {tuple(n.split(".")[:2]) for n in lora_modules(comps.transformer)}
    assert blocks == {("transformer_blocks", "0"), ("transformer_blocks", "1")} | {
        ("single_transformer_blocks", str(i)) for i in (1, 2, 3, 4)}
    with pytest.raises(ValueError, match="do not exist"):
        train_style_lora(job, AlignConfig(steps=1, single_blocks=(9,), **FAST), tmp_path / "b",
                         models="tiny-random", progress=False)


class _Killed(Exception):
    pass


def test_killed_run_resumes_to_the_same_weights(job, tmp_path):
    cfg = AlignConfig(steps=5, learning_rate=1e-3, rank=4, double_blocks=(0,), single_blocks=(1,),
                      **{**FAST, "checkpoint_every": 2})
    whole = train_style_lora(job, cfg, tmp_path / "whole", models="tiny-random", progress=False)

    def kill(step, loss):
        if step == 3:
            raise _Killed

    with pytest.raises(_Killed):
        train_style_lora(job, cfg, tmp_path / "resumed", models="tiny-random", callback=kill, progress=False)
    assert (tmp_path / "resumed" / "checkpoints" / "step-000002" / "state.pt").is_file()
    assert not (tmp_path / "resumed" / "lora.safetensors").exists()
    steps = []
    resumed = train_style_lora(job, cfg, tmp_path / "resumed", models="tiny-random",
                               callback=lambda s, l: steps.append(s), progress=False)
    assert steps == [3, 4, 5]  # continued after the step-2 checkpoint
    a, _ = read_style_lora(whole)
    b, _ = read_style_lora(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(float(a[k].abs().max()) > 0 for k in a if "lora_B" in k)  # it trained
    # a different seed gives different weights (the comparison above can fail)
    other = train_style_lora(job, AlignConfig(**{**cfg.__dict__, "seed": 7}), tmp_path / "other",
                             models="tiny-random", progress=False)
    c, _ = read_style_lora(other)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_centre_crops():
    img = np.zeros((600, 1000, 3), np.float32)
    assert centre_crop(img, "16:9", 1024).shape == (576, 1024, 3)
    assert centre_crop(img, "4:3", 1024).shape == (768, 1024, 3)
    assert centre_crop(img, "1:1", 1024).shape == (1024, 1024, 3)
    assert centre_crop(img, "none", 1024).shape == (608, 1024, 3)  # 614.4 floored to a multiple of 32
    assert centre_crop(np.zeros((1000, 600, 3), np.float32), "16:9", 1024).shape == (1024, 576, 3)
    t = training_timesteps(1.15)
    assert len(t) == 1000 and t[0] == 1.0 and t[-1] == 0.0 and np.all(np.diff(t) < 0)
