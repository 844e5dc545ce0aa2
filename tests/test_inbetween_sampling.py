"""The inbetweening loop against diffusers, the widened patch embedding, and seeding (issue 6)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from tiny_models import one_torch_thread  # noqa: E402, F401  (one intra-op thread for tiny models)
from videofrom3d.inbetween.components import tiny_cogvideox_components, widen_patch_embedding  # noqa: E402
from videofrom3d.inbetween.conditioning import initial_latents  # noqa: E402
from videofrom3d.inbetween.config import InbetweenConfig, InbetweenError  # noqa: E402
from videofrom3d.inbetween.sampling import NOISE_SEED_OFFSET, inbetween_arc  # noqa: E402

pytestmark = pytest.mark.torch

H, W, FRAMES, T = 32, 48, 9, 3  # 9 video frames -> 3 latent frames of 4x6


def _start(seed=0):
    return np.random.default_rng(seed).random((H, W, 3)).astype(np.float32)


def _noise(seed=1):
    return torch.randn(T, 16, H // 8, W // 8, generator=torch.Generator().manual_seed(seed)).numpy()


def test_loop_matches_diffusers_i2v_pipeline():
    """End frame off and no edge channels: our loop is diffusers' CogVideoXImageToVideoPipeline."""
    from diffusers import CogVideoXImageToVideoPipeline

    c = tiny_cogvideox_components(seed=0, height=H, width=W, in_channels=32, frames=FRAMES)
    pipe = CogVideoXImageToVideoPipeline(
        tokenizer=c.tokenizer, text_encoder=c.text_encoder, vae=c.vae, transformer=c.transformer, scheduler=c.scheduler
    )
    pipe.set_progress_bar_config(disable=True)
    start, noise = _start(), _noise()
    theirs = pipe(
        image=torch.from_numpy(start).permute(2, 0, 1)[None],
        prompt="a red house by a lake",
        height=H,
        width=W,
        num_frames=FRAMES,
        num_inference_steps=4,
        guidance_scale=6.0,
        generator=torch.Generator().manual_seed(7),
        latents=torch.from_numpy(noise)[None].clone(),
        output_type="np",
        max_sequence_length=16,
    ).frames[0]
    cfg = InbetweenConfig(steps=4, guidance_scale=6.0, degradation=0.0, vae_tiling=False)
    ours = inbetween_arc(c, start, None, None, noise, "a red house by a lake", cfg, seed=7)
    assert ours.shape == theirs.shape == (FRAMES, H, W, 3)
    print("max abs diff vs diffusers", np.abs(ours - theirs).max())
    assert np.abs(ours - theirs).max() < 1e-5
    # the comparison has teeth: another prompt changes the video
    other = inbetween_arc(c, start, None, None, noise, "a blue car", cfg, seed=7)
    assert np.abs(other - theirs).max() > 1e-3


def _run_widened(c, edges, noise, seed=3):
    cfg = InbetweenConfig(steps=2, degradation=0.0, vae_tiling=False)
    return inbetween_arc(c, _start(), _start(5), edges, noise, "a house", cfg, seed=seed)


def test_zero_initialised_edge_channels_change_nothing_until_trained():
    narrow = tiny_cogvideox_components(seed=0, height=H, width=W, in_channels=32, frames=FRAMES)
    wide = tiny_cogvideox_components(seed=0, height=H, width=W, in_channels=32, frames=FRAMES)
    widen_patch_embedding(wide.transformer, 16)
    assert wide.transformer.config.in_channels == 48
    assert wide.transformer.patch_embed.proj.weight.shape[1] == 48
    noise = _noise()
    rng = np.random.default_rng(0)
    reference = _run_widened(narrow, None, noise)  # 32 channels: edges are not read
    for _ in range(2):
        edges = rng.random((FRAMES, H, W)).astype(np.float32)
        assert np.array_equal(_run_widened(wide, edges, noise), reference)
    with torch.no_grad():  # a training-like update of the new channels
        wide.transformer.patch_embed.proj.weight[:, 32:].normal_(0, 0.05, generator=torch.Generator().manual_seed(0))
    changed = _run_widened(wide, edges, noise)
    assert np.abs(changed - reference).max() > 1e-3


def test_widened_model_needs_edges():
    wide = tiny_cogvideox_components(seed=0, height=H, width=W, in_channels=48, frames=FRAMES)
    with pytest.raises(InbetweenError, match="edge maps"):
        _run_widened(wide, None, _noise())


def test_initial_latents_are_the_degraded_warped_noise():
    c = tiny_cogvideox_components(seed=0, height=H, width=W, in_channels=48, frames=FRAMES)
    noise = _noise()
    edges = np.zeros((FRAMES, H, W), np.float32)
    seen = []
    original = c.scheduler.step

    def spy(v, t, latents, **kw):
        if not seen:
            seen.append(latents.clone())
        return original(v, t, latents, **kw)

    c.scheduler.step = spy
    cfg = InbetweenConfig(steps=2, degradation=0.5, vae_tiling=False)
    a = inbetween_arc(c, _start(), _start(5), edges, noise, "a house", cfg, seed=11)
    expected = initial_latents(noise, 0.5, 11 + NOISE_SEED_OFFSET, noise.shape)
    assert torch.equal(seen[0], expected)
    # the blend really mixes in fresh noise: neither the warped noise nor independent of it
    corr = np.corrcoef(expected.numpy().ravel(), noise.ravel())[0, 1]
    assert 0.6 < corr < 0.8  # (1 - a) / sqrt(a^2 + (1 - a)^2) = 0.707 for a = 0.5
    b = inbetween_arc(c, _start(), _start(5), edges, noise, "a house", cfg, seed=11)
    d = inbetween_arc(c, _start(), _start(5), edges, noise, "a house", cfg, seed=12)
    assert np.array_equal(a, b)
    assert np.abs(a - d).max() > 1e-3


def test_wrong_noise_shape_is_named():
    c = tiny_cogvideox_components(seed=0, height=H, width=W, in_channels=48, frames=FRAMES)
    edges = np.zeros((FRAMES, H, W), np.float32)
    with pytest.raises(InbetweenError, match="3 latent frames"):
        inbetween_arc(c, _start(), _start(5), edges[:5], _noise()[:2], "a", InbetweenConfig(steps=1), seed=0)
    with pytest.raises(ValueError, match=r"warped_noise has shape \(3, 16, 2, 6\)"):
        inbetween_arc(c, _start(), _start(5), edges, _noise()[:, :, :2], "a", InbetweenConfig(steps=1), seed=0)
