"""Wan VACE inbetweening on tiny random components: our loop against diffusers' WanVACEPipeline, the arc's
control video and mask, two VACE contexts, warped noise as the first latents, and the config choice."""

from __future__ import annotations

import numpy as np
import pytest

from tiny_models import one_torch_thread  # noqa: F401

pytestmark = pytest.mark.torch

H, W = 32, 48


def _images(rng, n):
    """Frames whose values are exact k/255, so PIL copies of them hold the same numbers."""
    return (rng.integers(0, 256, size=(n, H, W, 3)) / 255.0).astype(np.float32)


def _pil(frames):
    from PIL import Image

    return [Image.fromarray(np.round(f * 255).astype(np.uint8)) for f in frames]


def _run_both(two_experts: bool, steps: int):
    import torch
    from diffusers import WanVACEPipeline

    from videofrom3d.inbetween.wan.components import tiny_wan_vace_components
    from videofrom3d.inbetween.wan.conditioning import control_video_and_mask
    from videofrom3d.inbetween.wan.sampling import encode_text, wan_vace_arc

    rng = np.random.default_rng(3)
    control = _images(rng, 6)  # an arc of N = 5 -> 6 frames, generated as 9 (4k+1)
    start, end = _images(rng, 2)
    c = tiny_wan_vace_components(seed=1, two_experts=two_experts)
    prompt, negative = "a red house by a lake", "blurry"
    embeds = tuple(encode_text(c.tokenizer, c.text_encoder, p, 64) for p in (prompt, negative))
    g2 = 3.0 if two_experts else None
    frames, decoded = wan_vace_arc(c, start, end, [(control, 0.8)], embeds, steps, 5.0, g2, seed=7)

    video, mask = control_video_and_mask(start, end, control)
    pipe = WanVACEPipeline(tokenizer=c.tokenizer, text_encoder=c.text_encoder, vae=c.vae, transformer=c.transformer,
                           scheduler=c.scheduler, transformer_2=c.transformer_2, boundary_ratio=c.boundary_ratio)
    pipe.set_progress_bar_config(disable=True)
    from PIL import Image

    # the embeddings go in as such: the pipeline's own prompt cleaning needs ftfy (test_text_embeddings_...)
    ref = pipe(prompt_embeds=embeds[0], negative_prompt_embeds=embeds[1], video=_pil(video),
               mask=[Image.fromarray((m * 255).astype(np.uint8), "L") for m in mask], conditioning_scale=0.8,
               height=H, width=W, num_frames=len(video), num_inference_steps=steps, guidance_scale=5.0,
               guidance_scale_2=g2, generator=torch.Generator().manual_seed(7), output_type="np",
               max_sequence_length=64).frames[0]
    return frames, decoded, ref, c


def test_loop_equals_wan_vace_pipeline():
    frames, decoded, ref, _ = _run_both(two_experts=False, steps=2)
    assert decoded.shape == ref.shape == (9, H, W, 3) and frames.shape == (6, H, W, 3)
    assert np.abs(decoded - ref).max() < 1e-5
    assert decoded.std() > 1e-3  # not a constant image


def test_loop_equals_pipeline_with_two_experts():
    frames, decoded, ref, c = _run_both(two_experts=True, steps=4)
    timesteps = c.scheduler.timesteps
    boundary = c.boundary_ratio * 1000
    assert (timesteps >= boundary).any() and (timesteps < boundary).any()  # both experts ran
    assert np.abs(decoded - ref).max() < 1e-5


def test_text_embeddings_equal_the_pipeline(monkeypatch):
    import types

    import diffusers.pipelines.wan.pipeline_wan_vace as module
    import torch
    from diffusers import WanVACEPipeline

    from videofrom3d.inbetween.wan.components import tiny_wan_vace_components
    from videofrom3d.inbetween.wan.sampling import encode_text

    # diffusers cleans prompts with ftfy (not a dependency here); on a plain ASCII prompt it changes nothing
    monkeypatch.setattr(module, "ftfy", types.SimpleNamespace(fix_text=lambda s: s), raising=False)
    c = tiny_wan_vace_components(seed=1)
    pipe = WanVACEPipeline(tokenizer=c.tokenizer, text_encoder=c.text_encoder, vae=c.vae, transformer=c.transformer,
                           scheduler=c.scheduler)
    prompt = "  a red   house &amp; a lake "
    ours = encode_text(c.tokenizer, c.text_encoder, prompt, 64)
    ref = pipe._get_t5_prompt_embeds(prompt, max_sequence_length=64, device=torch.device("cpu"))
    assert ours.shape == ref.shape == (1, 64, 16)
    assert (ours - ref).abs().max() < 1e-6, (ours - ref).abs().max()
    assert ours[0, -1].abs().max() == 0 and ours[0, 0].abs().max() > 0  # zeros after the tokens


def test_control_video_and_mask_layout():
    from videofrom3d.inbetween.wan.conditioning import control_video_and_mask, generated_frame_count

    rng = np.random.default_rng(0)
    control = _images(rng, 46)  # N = 45
    start, end = _images(rng, 2)
    video, mask = control_video_and_mask(start, end, control)
    assert generated_frame_count(46) == 49 and video.shape == (49, H, W, 3) and mask.shape == (49, H, W)
    assert np.array_equal(video[0], start) and np.array_equal(video[-1], end)
    assert np.array_equal(video[1:45], control[1:45])  # our control frames between, in place
    assert all(np.array_equal(v, end) for v in video[45:])  # frame N = end anchor, padded with it
    assert np.all(mask[0] == 0) and np.all(mask[45:] == 0) and np.all(mask[1:45] == 1)
    # an arc that is already 4k+1 frames gets no padding
    v2, m2 = control_video_and_mask(start, end, control[:41])
    assert len(v2) == 41 and np.array_equal(v2[40], end) and m2[40].max() == 0 and m2[39].min() == 1


def test_depth_control_is_inverse_depth_in_one_range_per_arc():
    from videofrom3d.inbetween.wan.conditioning import depth_control

    depth = np.zeros((2, 4, 4), np.float32)
    depth[0, :2] = 2.0  # near
    depth[1, :2] = 4.0  # far
    depth[1, 2:] = 1.0  # nearer still, only in frame 1
    out = depth_control(depth)
    # 1/z over the arc: 1/4 -> 0, 1/1 -> 1, 1/2 -> 1/3; misses black; frame 0's plane keeps the arc's scale
    assert np.allclose(out[0, :2], 1 / 3) and np.allclose(out[1, :2], 0) and np.allclose(out[1, 2:], 1)
    assert np.all(out[0, 2:] == 0)


def test_two_contexts_add_their_hints():
    import torch

    from videofrom3d.inbetween.wan.components import tiny_wan_vace_components
    from videofrom3d.inbetween.wan.sampling import predict

    c = tiny_wan_vace_components(seed=2)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 3, 4, 6, generator=g)
    ctx1, ctx2 = torch.randn(1, 96, 3, 4, 6, generator=g), torch.randn(1, 96, 3, 4, 6, generator=g)
    text = torch.randn(1, 8, 16, generator=g)
    t = torch.tensor(500.0)
    one = predict(c.transformer, x, t, text, [(ctx1, 0.7)])
    # the hint is linear in its scale: the same context twice at 0.3 + 0.4 = once at 0.7
    assert torch.allclose(predict(c.transformer, x, t, text, [(ctx1, 0.3), (ctx1, 0.4)]), one, atol=1e-5)
    # a second context at scale 0 changes nothing; at scale 1 it does
    assert torch.allclose(predict(c.transformer, x, t, text, [(ctx1, 0.7), (ctx2, 0.0)]), one, atol=1e-6)
    assert (predict(c.transformer, x, t, text, [(ctx1, 0.7), (ctx2, 1.0)]) - one).abs().max() > 1e-3


def _fake_arc(n_frames, noise=None):
    from types import SimpleNamespace

    rng = np.random.default_rng(5)
    depth = rng.uniform(1, 5, size=(n_frames, H, W)).astype(np.float32)
    return SimpleNamespace(edge_maps=rng.uniform(0, 1, (n_frames, H, W)).astype(np.float32), depth=depth,
                           warped_noise=noise, frame_count=n_frames)


def _engine(tmp_path, **options):
    from tiny_models import style_job
    from videofrom3d.engines import EngineContext
    from videofrom3d.inbetween.wan import inbetween_config
    from videofrom3d.inbetween.wan.engine import WanVaceInbetween

    job = style_job(tmp_path, {"sks": np.zeros((8, 8, 3), np.float32)},
                    size={"width": W, "height": H}, inbetween={"model": "wan-vace", "steps": 1, **options})
    return WanVaceInbetween(EngineContext(job=job, models="tiny-random", work=None,
                                          configs={"inbetween": inbetween_config(job)}, progress=False))


def test_warped_noise_is_the_first_latents(tmp_path):
    import torch

    from videofrom3d.prepare.noise_warp import degrade_noise

    engine = _engine(tmp_path, warped_noise=True, degradation=0.5, control="edges+depth")
    noise = np.random.default_rng(9).standard_normal((2, 16, H // 8, W // 8)).astype(np.float32)
    seen = []
    handle = engine._loaded().transformer.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append(kwargs["hidden_states"].clone()), with_kwargs=True)
    start = end = np.full((H, W, 3), 0.5, np.float32)
    frames = list(engine.arc_frames(start, end, _fake_arc(5, noise), "a house", seed=11))
    handle.remove()
    assert len(frames) == 5 and frames[0].shape == (H, W, 3)
    blended = degrade_noise(noise, 0.5, np.random.default_rng(11))  # GGI's blend, same seed
    want = torch.from_numpy(np.asarray(blended, np.float32)).permute(1, 0, 2, 3)[None]
    assert torch.equal(seen[0], want)
    assert not torch.allclose(seen[0], torch.from_numpy(noise).permute(1, 0, 2, 3)[None])  # blended, not raw


def test_config_choice_and_one_line_errors(tmp_path):
    from tiny_models import style_job
    from videofrom3d.errors import VideoFrom3DError
    from videofrom3d.inbetween import InbetweenConfig
    from videofrom3d.inbetween.wan import WanVaceConfig, inbetween_config

    def cfg(**inb):
        return inbetween_config(style_job(tmp_path, {"sks": np.zeros((8, 8, 3), np.float32)}, inbetween=inb))

    assert isinstance(cfg(), InbetweenConfig) and isinstance(cfg(model="ggi", steps=3), InbetweenConfig)
    w = cfg(model="wan-vace", control="edges+depth", control_scale=0.5, depth_scale=0.8)
    assert isinstance(w, WanVaceConfig) and w.contexts == (("edges", 0.5), ("depth", 0.8))
    for bad, words in [({"model": "wan-vace", "transformer": "ggi"}, 'apply to model = "ggi" only'),
                       ({"warped_noise": True}, 'apply to model = "wan-vace" only'),
                       ({"model": "sora"}, "model must be one of"),
                       ({"model": "wan-vace", "guidance_scale_2": 3.0}, "2.2-a14b"),
                       ({"model": "wan-vace", "bogus": 1}, "bogus: unknown key")]:
        with pytest.raises(VideoFrom3DError, match=words) as e:
            cfg(**bad)
        assert "\n" not in str(e.value)


def test_two_experts_take_turns_at_the_boundary():
    import torch

    from videofrom3d.inbetween.wan.components import tiny_wan_vace_components
    from videofrom3d.inbetween.wan.sampling import denoise

    c = tiny_wan_vace_components(seed=4, two_experts=True)
    placed = []
    g = torch.Generator().manual_seed(0)
    x, ctx = torch.randn(1, 16, 2, 4, 6, generator=g), torch.randn(1, 96, 2, 4, 6, generator=g)
    text = torch.randn(1, 8, 16, generator=g)
    denoise(c, x, [(ctx, 1.0)], text, text, 6, 1.0, place=placed.append)
    assert placed == [c.transformer, c.transformer_2]  # high-noise expert first, each placed once


def test_fp8_storage_computes_in_the_model_dtype(tmp_path):
    engine = _engine(tmp_path, fp8=True)  # tiny models compute in float32, stored in float8
    c = engine._loaded()
    import torch

    assert any(p.dtype == torch.float8_e4m3fn for p in c.transformer.parameters())
    start = end = np.full((H, W, 3), 0.5, np.float32)
    frames = list(engine.arc_frames(start, end, _fake_arc(5), "a house", seed=1))
    assert len(frames) == 5 and np.isfinite(np.stack(frames)).all()
