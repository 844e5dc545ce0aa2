"""Speed and memory presets of both diffusion stages on tiny random models, on the CPU (issue 15 item 7).

Stated tolerances (tiny random models, float32 compute):
- CFG batching, regional compile, the first-block cache at threshold 0: equal to the plain loop within 1e-4.
- fp8 weight storage (float8_e4m3fn, upcast per layer): mean |difference| <= 3% of the mean |output|.
- step caches: identical latents up to ``cache_start_step``, the expected number of full block passes, and
  an output within 60% (first-block, every later step skipped) / 5% (TaylorSeer) of the plain one in mean
  |difference| / mean |output| (random weights give arbitrary residuals: the realised quality needs real
  weights; here the tests pin down which steps are skipped).
Offload (``memory = "model"``, "sequential") moves nothing on the CPU; its equality is checked on a GPU in
tests/test_inbetween_gpu.py and the card-size presets' fit by ``benchmarks/bench_presets.py --fit`` (gpu).
"""

from dataclasses import replace

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

from tiny_models import one_torch_thread  # noqa: E402, F401  (one intra-op thread for tiny models)
from videofrom3d import speed  # noqa: E402
from videofrom3d.anchors import AnchorConfig  # noqa: E402
from videofrom3d.anchors.components import (  # noqa: E402
    PromptEncoder,
    apply_speed,
    place_components,
    resolve_memory,
    tiny_flux_components,
)
from videofrom3d.anchors.sampling import flux_sigmas, sample_anchor  # noqa: E402
from videofrom3d.inbetween.components import tiny_cogvideox_components  # noqa: E402
from videofrom3d.inbetween.config import InbetweenConfig, InbetweenError  # noqa: E402
from videofrom3d.inbetween.inbetweener import Inbetweener  # noqa: E402
from videofrom3d.inbetween.inbetweener import resolve_memory as inbetween_memory  # noqa: E402

STEPS = 6


def rel(a, b) -> float:
    """mean |a - b| / mean |b|"""
    return float((a - b).abs().mean() / b.abs().mean()) if torch.is_tensor(a) else float(np.abs(a - b).mean() / np.abs(b).mean())


# ------------------------------------------------------------------------------------------- anchors (FLUX)


def anchor(cfg: AnchorConfig | None = None, fp8: bool = False, controlnet_on_negative: bool = True,
           step_callback=None):
    """Latents of a 64x64 anchor with true CFG after ``apply_speed(cfg)``; and the number of full passes
    through the transformer's last block (the cache hooks skip it)."""
    cfg = cfg or AnchorConfig(steps=STEPS)
    c = tiny_flux_components(seed=0)
    text = PromptEncoder(c, 16)
    pos, pooled = text.encode("a photo of sks town")
    neg, neg_pooled = text.encode("")
    c.fp8 = fp8
    place_components(c)
    sw = apply_speed(c, cfg)
    calls = []
    c.transformer.single_transformer_blocks[-1].attn.to_q.register_forward_hook(lambda *a: calls.append(1))
    g = torch.Generator().manual_seed(1)
    control = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
    noise = torch.randn(1, 16, 8, 8, generator=g)
    sigmas, timesteps = flux_sigmas(c.scheduler, cfg.steps, 8, 8)
    out = sample_anchor(c.transformer, c.controlnet, control, noise, sigmas, timesteps, pos, pooled, neg, neg_pooled,
                        controlnet_on_negative=controlnet_on_negative, cfg_batch=sw.cfg_batch,
                        cache_start_step=cfg.cache_start_step, step_callback=step_callback)
    return out, len(calls)


@pytest.fixture(scope="module")
def plain_anchor():
    return anchor()


@pytest.mark.parametrize("on_negative", [True, False])
def test_cfg_batching_equals_the_two_passes(on_negative):
    ref, ref_calls = anchor(controlnet_on_negative=on_negative)
    out, calls = anchor(AnchorConfig(steps=STEPS, cfg_batch=True), controlnet_on_negative=on_negative)
    assert float((out - ref).abs().max()) < 1e-4
    assert (ref_calls, calls) == (2 * STEPS - 1, STEPS)  # step 0 is conditional only (true_cfg_start_step 1)
    other, _ = anchor(AnchorConfig(steps=STEPS, cfg_batch=True), controlnet_on_negative=not on_negative)
    assert float((other - out).abs().max()) > 1e-3  # the comparison can fail


def test_fp8_storage_is_within_its_tolerance(plain_anchor):
    ref, _ = plain_anchor
    out, _ = anchor(fp8=True)
    assert 1e-4 < rel(out, ref) <= 0.03


def test_first_block_cache_skips_the_steps_after_its_start(plain_anchor):
    ref, _ = plain_anchor
    seen = {}

    def keep(step):
        return lambda i, x: seen.setdefault(step, {}).__setitem__(i, x.clone())

    exact, calls = anchor(AnchorConfig(steps=STEPS, cache="first_block", cache_threshold=0.0, cache_start_step=0))
    assert float((exact - ref).abs().max()) < 1e-4 and calls == 2 * STEPS - 1  # threshold 0 never skips
    cfg = AnchorConfig(steps=STEPS, cache="first_block", cache_threshold=1e9, cache_start_step=3)
    out, calls = anchor(cfg, step_callback=keep("cached"))
    _, _ = anchor(step_callback=keep("plain"))
    assert calls == 1 + 2 + 2  # steps 0-2 in full (cond; cond + uncond twice), steps 3-5 skip every later block
    for i in range(4):  # SAG's replacement steps are never cached: the latents agree up to step 3's input
        assert torch.equal(seen["cached"][i], seen["plain"][i])
    assert not torch.equal(seen["cached"][4], seen["plain"][4])
    assert 1e-3 < rel(out, ref) < 0.6
    batched, calls = anchor(replace(cfg, cfg_batch=True))
    assert calls == 3 and float((batched - out).abs().max()) < 1e-4


def test_taylorseer_computes_every_interval(plain_anchor):
    ref, _ = plain_anchor
    out, calls = anchor(AnchorConfig(steps=STEPS, cache="taylorseer", cache_interval=2, cache_start_step=2))
    # per context, full passes at its calls 0, 1 (warm-up), then 3, 5: cond 6 calls -> 4, uncond 5 -> 3
    assert calls == 4 + 3
    assert 1e-4 < rel(out, ref) < 0.05


@pytest.mark.slow
def test_regional_compile_is_lossless(plain_anchor):
    ref, _ = plain_anchor
    out, _ = anchor(AnchorConfig(steps=STEPS, compile=True))
    assert float((out - ref).abs().max()) < 1e-4


def test_presets_and_switches():
    assert speed.speed_switches(AnchorConfig()) == speed.SpeedSwitches()
    exact = speed.speed_switches(AnchorConfig(preset="exact"))
    assert exact.cfg_batch and exact.compile and exact.attention == "auto" and not exact.fp8_matmul
    fast = speed.speed_switches(AnchorConfig(preset="fast", cache="taylorseer", compile=False))
    assert fast.fp8_matmul and fast.cache == "taylorseer" and not fast.compile  # a switch beats the preset
    with pytest.raises(ValueError, match=r"\[anchors\].cache"):
        AnchorConfig(cache="teacache")
    with pytest.raises(InbetweenError, match=r"\[inbetween\].preset"):
        InbetweenConfig(preset="fastest")


def test_fast_preset_on_the_cpu_runs_what_it_can(caplog):
    """No torchao / no fp8 tensor cores: the fp8 matmuls are skipped with a note; compile is left to the slow
    test; the rest of "fast" is installed and recorded."""
    c = tiny_flux_components(seed=0)
    sw = apply_speed(c, AnchorConfig(preset="fast", compile=False))
    assert sw == speed.SpeedSwitches(cfg_batch=True, compile=False, attention="native", fp8_matmul=False,
                                     cache="first_block")
    assert "fp8 matmuls need" in caplog.text
    assert speed.has_step_cache(c.transformer)
    assert apply_speed(c, AnchorConfig()) is sw  # installed once


def test_memory_presets_resolve():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_memory("24gb", cuda, False) == ("model", True)
    assert resolve_memory("12gb", cuda, False) == ("sequential", False)
    assert resolve_memory("16gb", cpu, False) == ("none", True)  # nothing moves on the CPU; fp8 storage does
    with pytest.raises(ValueError, match="memory must be one of"):
        resolve_memory("8gb", cpu, False)
    assert inbetween_memory(InbetweenConfig(memory="12gb")) == ("model", True, False)
    assert inbetween_memory(InbetweenConfig(memory="12gb", cfg_batch=True)) == ("model", True, True)
    assert inbetween_memory(InbetweenConfig(memory="24gb")) == ("none", False, None)


# ------------------------------------------------------------------------------------ inbetween (CogVideoX)

H, W, FRAMES = 32, 48, 9


def arc(**options):
    """Frames of a tiny GGI arc through the Inbetweener with ``options``; and full last-block passes."""
    cfg = InbetweenConfig(steps=STEPS, prompt="a red house", vae_tiling=False, **options)
    c = tiny_cogvideox_components(seed=0, height=H, width=W, layers=2, frames=FRAMES)
    with Inbetweener(c, cfg, device="cpu") as inb:
        calls = []
        c.transformer.transformer_blocks[-1].attn1.to_q.register_forward_hook(lambda *a: calls.append(1))
        rng = np.random.default_rng(0)
        start, end = rng.random((2, H, W, 3), dtype=np.float32)
        edges = rng.random((FRAMES, H, W), dtype=np.float32)
        noise = torch.randn(3, 16, H // 8, W // 8, generator=torch.Generator().manual_seed(1)).numpy()
        frames = inb.inbetween(start, end, edges, noise, None, seed=3)
        return frames, len(calls), inb.speed


@pytest.fixture(scope="module")
def plain_arc():
    return arc()


def test_inbetween_cfg_batching(plain_arc):
    ref, calls, sw = plain_arc
    assert sw.cfg_batch and calls == STEPS  # batched by default, as before
    out, calls, sw = arc(cfg_batch=False)
    assert not sw.cfg_batch and calls == 2 * STEPS
    assert np.abs(out - ref).max() < 1e-4


def test_inbetween_12gb_preset_on_the_cpu(plain_arc):
    """model offload (nothing moves on the CPU) + fp8 storage + unbatched CFG: within fp8's tolerance."""
    ref, _, _ = plain_arc
    out, calls, sw = arc(memory="12gb")
    assert calls == 2 * STEPS and not sw.cfg_batch
    assert 1e-5 < rel(out, ref) <= 0.03


def test_inbetween_first_block_cache(plain_arc):
    ref, _, _ = plain_arc
    exact, calls, _ = arc(cache="first_block", cache_threshold=0.0, cache_start_step=0)
    assert calls == STEPS and np.abs(exact - ref).max() < 1e-4
    out, calls, sw = arc(cache="first_block", cache_threshold=1e9, cache_start_step=2)
    assert sw.cache == "first_block" and calls == 2
    assert 1e-5 < rel(out, ref) < 0.6


def test_inbetween_taylorseer(plain_arc):
    ref, _, _ = plain_arc
    out, calls, _ = arc(cache="taylorseer", cache_interval=2, cache_start_step=2)
    assert calls == 4  # one batched context: calls 0, 1, 3, 5 in full
    assert 1e-6 < rel(out, ref) < 0.05


def test_inbetween_attention_kernel_choice_is_lossless_on_the_cpu(plain_arc):
    """A preferred SDPA kernel that cannot run here (flash on a CPU) falls back; the frames are unchanged."""
    ref, _, _ = plain_arc
    out, _, sw = arc(attention="_native_flash")
    assert sw.attention == "_native_flash" and np.abs(out - ref).max() < 1e-5
