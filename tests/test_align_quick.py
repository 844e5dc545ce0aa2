"""The quick alignment recipe on tiny random models: the preset under the job's values, exact resume (with
the resolution curriculum, cached inputs and reference conditioning), the shared input cache across jobs,
the shorter T5 length carried to the anchors."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

from tiny_models import one_torch_thread, style_job  # noqa: E402, F401
from videofrom3d.align import AlignConfig, train_style_lora  # noqa: E402
from videofrom3d.align import train as train_mod  # noqa: E402
from videofrom3d.align.lora import read_style_lora  # noqa: E402

QUICK = dict(mode="quick", steps=5, learning_rate=1e-3, rank=4, double_blocks=(0,), single_blocks=(1,),
             resolution=64, curriculum_resolution=32, curriculum_fraction=0.6, max_sequence_length=8,
             checkpoint_every=2, cache_inputs=True, text_length_at_sampling=True, reference_conditioning=True,
             edge_detector="classical", aspects=("1:1", "none"))


def _style():
    rng = np.random.default_rng(0)
    img = np.zeros((40, 56, 3), np.float32)
    img[...] = rng.random(3)
    img[10:30, 14:40] = rng.random(3)
    return img


class _Killed(Exception):
    pass


def test_quick_preset_is_under_the_jobs_values(tmp_path):
    from videofrom3d.diffusion import _configs

    job = style_job(tmp_path, {"sks": _style()}, align={"mode": "quick", "steps": 120})
    cfg = _configs(job)["align"]
    assert (cfg.steps, cfg.learning_rate, cfg.max_sequence_length) == (120, 3e-4, 64)
    assert cfg.curriculum_resolution == 512 and cfg.cache_inputs and cfg.text_length_at_sampling
    assert _configs(style_job(tmp_path / "b", {"sks": _style()}))["align"] == AlignConfig()  # "lora": the paper's
    # the new fields stay out of the paper recipe's hash, so LoRAs made before the modes stay current
    assert train_mod.recipe(AlignConfig()).keys() == {f for f in AlignConfig.__dataclass_fields__
                                                      if f not in train_mod._MODE_FIELDS}
    assert train_mod.recipe(AlignConfig(reference_weight=0.9)) == train_mod.recipe(AlignConfig())  # no Redux used
    assert train_mod.recipe(AlignConfig(mode="reference", reference_weight=0.9))["reference_weight"] == 0.9


def test_quick_resumes_to_the_same_weights_and_reuses_cached_inputs(tmp_path, monkeypatch):
    encodes, resolutions, with_refs = [], [], []
    real_encode = train_mod._encode_sample

    def counting(comps, crop, edges):
        encodes.append(crop.shape)
        return real_encode(comps, crop, edges)

    monkeypatch.setattr(train_mod, "_encode_sample", counting)
    real_step = train_mod.training_step

    def spy(comps, samples, *a, **kw):
        resolutions.append(samples[0][0][1].shape[-1] * 8)
        with_refs.append(a[-1] is not None)
        return real_step(comps, samples, *a, **kw)

    monkeypatch.setattr(train_mod, "training_step", spy)
    job = style_job(tmp_path, {"sks style": _style()})
    cfg = AlignConfig(**QUICK)
    whole = train_style_lora(job, cfg, tmp_path / "whole", models="tiny-random", progress=False)
    assert resolutions == [32, 32, 32, 64, 64]  # the curriculum: 60 % of the steps at 32, then 64
    assert len(encodes) == 4  # 2 aspects x 2 resolutions, into the shared cache
    assert with_refs == [True] * 5  # the reference tokens reach every step

    def kill(step, loss):
        if step == 3:
            raise _Killed

    with pytest.raises(_Killed):
        train_style_lora(job, cfg, tmp_path / "resumed", models="tiny-random", callback=kill, progress=False)
    assert (tmp_path / "resumed" / "checkpoints" / "step-000002" / "state.pt").is_file()
    steps = []
    resumed = train_style_lora(job, cfg, tmp_path / "resumed", models="tiny-random",
                               callback=lambda s, l: steps.append(s), progress=False)
    assert steps == [3, 4, 5]
    a, meta = read_style_lora(whole)
    b, _ = read_style_lora(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(float(a[k].abs().max()) > 0 for k in a if "lora_B" in k)
    assert len(encodes) == 4  # the two later runs (another work folder each) encoded nothing
    assert meta["mode"] == "quick" and meta["sampling_max_sequence_length"] == 8
    assert a["reference.0"].shape == (1, 81, 32) and meta["reference"] == {"pool": 3, "weight": 0.4}

    # the anchors read the LoRA with its T5 length and its reference tokens
    from videofrom3d.anchors.generate import AnchorConfig, load_anchor_generator

    gen = load_anchor_generator(job, AnchorConfig(steps=1, max_sequence_length=16), models="tiny-random",
                                lora_path=whole)
    assert gen.cfg.max_sequence_length == 8 and gen.text.max_sequence_length == 8
    torch.testing.assert_close(gen.references[0], a["reference.0"])
    # without reference conditioning the file holds no tokens and the anchors use none
    plain = train_style_lora(job, AlignConfig(**{**QUICK, "steps": 1, "reference_conditioning": False}),
                             tmp_path / "plain", models="tiny-random", progress=False)
    assert load_anchor_generator(job, AnchorConfig(steps=1), models="tiny-random", lora_path=plain).references is None
