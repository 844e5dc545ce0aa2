"""SAG sampling loop (paper Eq. 1) on tiny random FLUX + XLabs-style ControlNet."""

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

from tiny_models import one_torch_thread, tiny_flux_components  # noqa: E402, F401
from videofrom3d.anchors.components import PromptEncoder  # noqa: E402
from videofrom3d.anchors.sampling import (  # noqa: E402
    flux_sigmas,
    pack_latents,
    replace_observed_latents,
    sample_anchor,
    schedule_mu,
    unpack_latents,
)

H = W = 64


@pytest.fixture(scope="module")
def setup():
    comps = tiny_flux_components(seed=0)
    text = PromptEncoder(comps, max_sequence_length=16)
    pos, pooled = text.encode("a photo of sks town")
    neg, neg_pooled = text.encode("")
    g = torch.Generator().manual_seed(1)
    control = torch.rand(1, 3, H, W, generator=g) * 2 - 1
    noise = torch.randn(1, 16, H // 8, W // 8, generator=g)
    return comps, (pos, pooled, neg, neg_pooled), control, noise


def _pipeline(comps):
    from diffusers import FluxControlNetPipeline

    return FluxControlNetPipeline(
        scheduler=comps.scheduler, vae=comps.vae, text_encoder=comps.text_encoder, tokenizer=comps.tokenizer,
        text_encoder_2=comps.text_encoder_2, tokenizer_2=comps.tokenizer_2, transformer=comps.transformer,
        controlnet=comps.controlnet,
    )


def test_pack_unpack_roundtrip():
    x = torch.randn(2, 16, 6, 10)
    tokens = pack_latents(x)
    assert tokens.shape == (2, 15, 64)
    assert torch.equal(unpack_latents(tokens, 6, 10), x)


def test_loop_equals_diffusers_pipeline(setup):
    """Replacement off, true CFG 1: our loop == FluxControlNetPipeline (same components, noise, sigmas)."""
    comps, (pos, pooled, _, _), control, noise = setup
    pipe = _pipeline(comps)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(prompt_embeds=pos, pooled_prompt_embeds=pooled, control_image=control, height=H, width=W,
               num_inference_steps=3, guidance_scale=4.0, controlnet_conditioning_scale=0.8,
               latents=pack_latents(noise), output_type="latent").images
    sigmas, timesteps = flux_sigmas(comps.scheduler, 3, H // 8, W // 8, "diffusers")
    ours = sample_anchor(comps.transformer, comps.controlnet, control, noise, sigmas, timesteps, pos, pooled,
                         guidance=4.0, true_cfg=1.0, controlnet_scale=0.8)
    assert float((pack_latents(ours) - ref).abs().max()) < 1e-5
    assert float(ref.abs().max()) > 0.1  # not trivially zero
    # the ControlNet matters: a different weight gives a different result
    other = sample_anchor(comps.transformer, comps.controlnet, control, noise, sigmas, timesteps, pos, pooled,
                          guidance=4.0, true_cfg=1.0, controlnet_scale=0.0)
    assert float((other - ours).abs().max()) > 1e-3


def test_true_cfg_equals_diffusers_when_residuals_shared(setup):
    """True CFG 3.5 from step 0 with the ControlNet run once per step (diffusers' choice) == the pipeline;
    the official variant (ControlNet also on the negative pass) differs."""
    comps, (pos, pooled, neg, neg_pooled), control, noise = setup
    pipe = _pipeline(comps)
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(prompt_embeds=pos, pooled_prompt_embeds=pooled, negative_prompt_embeds=neg,
               negative_pooled_prompt_embeds=neg_pooled, true_cfg_scale=3.5, control_image=control, height=H,
               width=W, num_inference_steps=2, guidance_scale=4.0, controlnet_conditioning_scale=0.8,
               latents=pack_latents(noise), output_type="latent").images
    sigmas, timesteps = flux_sigmas(comps.scheduler, 2, H // 8, W // 8, "diffusers")
    kw = dict(guidance=4.0, true_cfg=3.5, true_cfg_start_step=0, controlnet_scale=0.8)
    shared = sample_anchor(comps.transformer, comps.controlnet, control, noise, sigmas, timesteps, pos, pooled,
                           neg, neg_pooled, controlnet_on_negative=False, **kw)
    assert float((pack_latents(shared) - ref).abs().max()) < 1e-5
    official = sample_anchor(comps.transformer, comps.controlnet, control, noise, sigmas, timesteps, pos, pooled,
                             neg, neg_pooled, **kw)
    assert float((official - shared).abs().max()) > 1e-4


def test_official_schedule_has_the_xflux_mu_quirk(setup):
    comps = setup[0]
    # 1072x720 -> latents 90x134: x-flux seq = 12060 // 256 = 47 -> mu ~ 0.465 (digest: 1, 0.975, 0.948, 0.921)
    assert schedule_mu("official", 90, 134) == pytest.approx(0.5 + 0.65 / 3840 * (47 - 256))
    sigmas, timesteps = flux_sigmas(comps.scheduler, 25, 90, 134, "official")
    assert np.allclose(sigmas[:4].numpy(), [1.0, 0.975, 0.948, 0.921], atol=1e-3)
    assert len(sigmas) == 26 and float(sigmas[-1]) == 0.0
    assert torch.allclose(timesteps, sigmas[:-1] * 1000)
    # diffusers counts packed tokens: 45 * 67 = 3015 -> mu ~ 0.967, a visibly different schedule
    d_sigmas, _ = flux_sigmas(comps.scheduler, 25, 90, 134, "diffusers")
    assert schedule_mu("diffusers", 90, 134) == pytest.approx(0.5 + 0.65 / 3840 * (3015 - 256))
    assert float(d_sigmas[12] - sigmas[12]) > 0.03


def test_replace_observed_latents_math():
    g = torch.Generator().manual_seed(0)
    latents, z_obs, noise = (torch.randn(1, 16, 4, 6, generator=g) for _ in range(3))
    mask = torch.zeros(1, 1, 4, 6, dtype=torch.bool)
    mask[..., 1:3, 2:5] = True
    t = torch.tensor(0.37)
    out = replace_observed_latents(latents, z_obs, noise, mask, t)
    m = mask.expand_as(latents)
    assert torch.equal(out[m], ((1 - t) * z_obs + t * noise)[m])
    assert torch.equal(out[~m], latents[~m])


def _run_recording(comps, prompt, control, noise, replace_steps, z_obs=None, mask=None, steps=4):
    sigmas, timesteps = flux_sigmas(comps.scheduler, steps, H // 8, W // 8, "official")
    seen = []  # latents right after each step's replacement (packed)
    pos, pooled = prompt
    out = sample_anchor(comps.transformer, comps.controlnet, control, noise, sigmas, timesteps, pos, pooled,
                        guidance=4.0, true_cfg=1.0, replace_steps=replace_steps, observed_latents=z_obs,
                        observed_mask=mask, step_callback=lambda i, x: seen.append(x.clone()))
    return out, seen, sigmas


def test_replacement_in_the_loop(setup):
    comps, (pos, pooled, _, _), control, noise = setup
    g = torch.Generator().manual_seed(3)
    z_obs = torch.randn(1, 16, H // 8, W // 8, generator=g)
    mask = torch.zeros(1, 1, H // 8, W // 8, dtype=torch.bool)
    mask[..., :4, :] = True  # top half observed
    K = 2
    plain, plain_seen, sigmas = _run_recording(comps, (pos, pooled), control, noise, 0)
    out, seen, _ = _run_recording(comps, (pos, pooled), control, noise, K, z_obs, mask)
    m = pack_latents(mask.expand_as(z_obs).float()) > 0.5
    for i in range(K):  # observed: exactly (1 - t_i) z_obs + t_i x0 with the same initial noise
        t = sigmas[i]
        expected = pack_latents((1 - t) * z_obs + t * noise)
        assert torch.equal(seen[i][m], expected[m])
    assert torch.equal(seen[0], plain_seen[0])  # t_0 = 1: replacement with the initial noise is a no-op
    # unobserved tokens untouched by the replacement itself at step 1
    before = plain_seen[1]  # same latents up to step 1 (step 0 was a no-op)
    assert torch.equal(seen[1][~m], before[~m])
    assert not torch.equal(seen[1][m], before[m])
    # steps >= K: nothing is replaced, the callback sees the previous step's Euler update
    reference_k = pack_latents((1 - sigmas[K]) * z_obs + sigmas[K] * noise)
    assert not torch.equal(seen[K][m], reference_k[m])
    _, seen_more, _ = _run_recording(comps, (pos, pooled), control, noise, K + 1, z_obs, mask)
    assert torch.equal(seen_more[K][m], reference_k[m])  # with K+1 step K would have been replaced ...
    assert torch.equal(seen_more[K][~m], seen[K][~m])  # ... from the very same pre-replacement latents
    assert float((out - plain).abs().max()) > 1e-3
    # K = 0 equals no replacement at all
    none_out, _, _ = _run_recording(comps, (pos, pooled), control, noise, 0, z_obs, mask)
    assert torch.equal(none_out, plain)
    # an empty mask equals no replacement
    empty, _, _ = _run_recording(comps, (pos, pooled), control, noise, K, z_obs, torch.zeros_like(mask))
    assert torch.equal(empty, plain)
