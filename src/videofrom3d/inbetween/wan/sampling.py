"""The Wan VACE sampler: a plain flow-matching loop over diffusers' ``WanVACETransformer3DModel``.

For each step: the expert for this timestep (Wan2.2 A14B: the high-noise transformer at t >= boundary, the
low-noise one below; Wan2.1: the one transformer), the velocity for the prompt and for the negative prompt
with the VACE context(s), classifier-free guidance with that expert's scale, then the scheduler step. With
one context this is exactly diffusers' ``WanVACEPipeline`` (tests/test_inbetween_wan.py checks it); with two
(edges and depth) each context runs its own VACE blocks and their hints are added with their own scales.

Randomness: the initial noise from ``torch.Generator().manual_seed(seed)`` (the VACE context uses posterior
means and draws nothing), or the arc's warped noise blended with fresh noise from ``seed``.
"""

from __future__ import annotations

import contextlib
import html
import re
from collections.abc import Callable, Sequence

import numpy as np
import torch

from videofrom3d.inbetween.config import InbetweenError
from videofrom3d.inbetween.wan.components import WanVaceComponents
from videofrom3d.inbetween.wan.conditioning import (
    PATCH,
    SPATIAL,
    TEMPORAL,
    control_video_and_mask,
    denormalise,
    initial_noise,
    vace_context,
)


def clean_prompt(prompt: str) -> str:
    """HTML entities resolved and whitespace collapsed (as WanVACEPipeline, which also runs ftfy when installed)."""
    return re.sub(r"\s+", " ", html.unescape(html.unescape(prompt))).strip()


def encode_text(tokenizer, text_encoder, prompt: str, max_length: int = 512, device=None) -> torch.Tensor:
    """UMT5 embeddings (1, max_length, D) of ``prompt``: the tokens' states, zeros past the last token."""
    tokens = tokenizer([clean_prompt(prompt)], padding="max_length", max_length=max_length, truncation=True,
                       add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
    dev = device if device is not None else next(text_encoder.parameters()).device
    with torch.no_grad():
        states = text_encoder(tokens.input_ids.to(dev), tokens.attention_mask.to(dev)).last_hidden_state
    n = int(tokens.attention_mask.sum())
    out = torch.zeros_like(states)
    out[:, :n] = states[:, :n]
    return out


@contextlib.contextmanager
def extra_contexts(transformer, contexts: Sequence[tuple[torch.Tensor, float]], first_scale: float):
    """While open, each VACE block of ``transformer`` also runs the chain of every extra context (tokens
    already embedded) and returns ``first_scale * hint + sum(scale_c * hint_c)``; call the transformer with
    scale 1. Nothing is patched when there is no extra context."""
    if not contexts:
        yield
        return
    states = list(contexts)
    handles = []

    def hook(block, args, output):
        hidden, text, _, temb, rope = args
        hint, chain = output
        total = hint * first_scale
        for j, (state, scale) in enumerate(states):
            extra_hint, next_state = block.forward(hidden, text, state, temb, rope)  # forward: no hook again
            states[j] = (next_state, scale)
            total = total + extra_hint * scale
        return total, chain

    try:
        handles = [b.register_forward_hook(hook) for b in transformer.vace_blocks]
        yield
    finally:
        for h in handles:
            h.remove()


def embed_context(transformer, context: torch.Tensor, tokens: int) -> torch.Tensor:
    """A VACE context (1, 96, T, h, w) -> its tokens (1, tokens, D), zero-padded as the transformer does."""
    x = transformer.vace_patch_embedding(context).flatten(2).transpose(1, 2)
    return torch.cat([x, x.new_zeros(x.shape[0], tokens - x.shape[1], x.shape[2])], dim=1)


def predict(transformer, latents: torch.Tensor, t: torch.Tensor, text: torch.Tensor,
            contexts: Sequence[tuple[torch.Tensor, float]]) -> torch.Tensor:
    """The transformer's velocity for ``latents`` (1, 16, T, h, w) with VACE ``contexts`` [(context, scale)]."""
    n = len(transformer.config.vace_layers)
    dtype = latents.dtype
    (first, first_scale), extra = contexts[0], contexts[1:]
    p_t, p_h, p_w = transformer.config.patch_size
    tokens = latents.shape[2] // p_t * (latents.shape[3] // p_h) * (latents.shape[4] // p_w)
    scale = torch.full((n,), 1.0 if extra else first_scale, dtype=dtype, device=latents.device)
    with torch.no_grad():
        extra_tokens = [(embed_context(transformer, c, tokens), s) for c, s in extra]
    with extra_contexts(transformer, extra_tokens, first_scale), torch.no_grad():
        return transformer(hidden_states=latents, timestep=t.expand(latents.shape[0]), encoder_hidden_states=text,
                           control_hidden_states=first, control_hidden_states_scale=scale, return_dict=False)[0]


def denoise(
    components: WanVaceComponents,
    latents: torch.Tensor,
    contexts: Sequence[tuple[torch.Tensor, float]],
    prompt_embeds: torch.Tensor,
    negative_embeds: torch.Tensor | None,
    steps: int,
    guidance_scale: float,
    guidance_scale_2: float | None = None,
    device=None,
    dtype: torch.dtype | None = None,
    on_step: Callable[[int, int, torch.Tensor], None] | None = None,
    place: Callable[[object], None] | None = None,
) -> torch.Tensor:
    """``steps`` scheduler steps from ``latents`` (1, 16, T, h, w) float32 -> the final latents (float32).
    ``place(expert)`` is called before each expert's first step (model offload: one expert on the device)."""
    c, scheduler = components, components.scheduler
    device = torch.device(device) if device is not None else latents.device
    dtype = dtype or next(c.transformers()[0].parameters()).dtype
    use_cfg = guidance_scale > 1.0
    text = prompt_embeds.to(device, dtype)
    negative = negative_embeds.to(device, dtype) if use_cfg else None
    contexts = [(ctx.to(device, dtype), float(s)) for ctx, s in contexts]
    latents = latents.to(device, torch.float32)
    scheduler.set_timesteps(steps, device=device)
    boundary = None if c.boundary_ratio is None else c.boundary_ratio * scheduler.config.num_train_timesteps
    current = None
    for i, t in enumerate(scheduler.timesteps):
        high = boundary is None or t >= boundary
        model = c.transformer if high else c.transformer_2
        if model is not current:
            if place is not None:
                place(model)
            current = model
        scale = guidance_scale if high or guidance_scale_2 is None else guidance_scale_2
        x = latents.to(dtype)
        v = predict(model, x, t, text, contexts)
        if use_cfg:
            v_uncond = predict(model, x, t, negative, contexts)
            v = v_uncond + scale * (v - v_uncond)
        latents = scheduler.step(v, t, latents, return_dict=False)[0]
        if on_step is not None:
            on_step(i, int(t), latents)
    return latents


def vae_decode(vae, latents: torch.Tensor, device=None) -> np.ndarray:
    """(1, 16, T, h, w) normalised latents -> (4(T-1)+1, H, W, 3) float32 frames in [0, 1]."""
    p = next(vae.parameters())
    dev = torch.device(device) if device is not None else p.device
    with torch.no_grad():
        video = vae.decode(denormalise(vae, latents.to(dev)).to(p.dtype)).sample
    video = (video.float() / 2 + 0.5).clamp(0, 1)
    return video[0].permute(1, 2, 3, 0).cpu().numpy().astype(np.float32)


def wan_vace_arc(
    components: WanVaceComponents,
    start: np.ndarray,
    end: np.ndarray,
    controls: Sequence[tuple[np.ndarray, float]],
    embeds: tuple[torch.Tensor, torch.Tensor],
    steps: int,
    guidance_scale: float,
    guidance_scale_2: float | None = None,
    warped_noise: np.ndarray | None = None,
    degradation: float = 0.5,
    seed: int = 0,
    device=None,
    on_step: Callable[[int, int, torch.Tensor], None] | None = None,
    place: Callable[[object], None] | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One arc from ``start`` to ``end`` (H, W, 3) in [0, 1] along ``controls`` [(control frames (F, H, W, 3),
    scale)] -> (the arc's F frames, all M = 4k+1 >= F decoded frames), float32 in [0, 1].

    ``embeds`` = (prompt, negative) UMT5 embeddings; ``warped_noise`` (T, 16, H/8, W/8) or None; ``place`` as
    :func:`denoise`; ``dtype`` the transformer's compute dtype (default: its weights', wrong for fp8 storage)."""
    c = components
    device = torch.device(device) if device is not None else next(c.transformers()[0].parameters()).device
    start = np.asarray(start, dtype=np.float32)
    height, width = start.shape[:2]
    if height % (SPATIAL * PATCH) or width % (SPATIAL * PATCH):
        raise InbetweenError(f"Wan generates sizes that are multiples of 16; the arc is {width}x{height} (native: "
                             "832x480 or 1280x720): set [size] width and height to multiples of 16")
    contexts, frame_count = [], None
    for frames, scale in controls:
        video, mask = control_video_and_mask(start, np.asarray(end, np.float32), frames)
        contexts.append((vace_context(c.vae, video, mask, device), scale))
        frame_count = len(frames)
    t_count = (len(video) - 1) // TEMPORAL + 1
    shape = (int(c.transformers()[0].config.in_channels), t_count, height // SPATIAL, width // SPATIAL)
    latents = initial_noise(warped_noise, degradation, seed, shape)
    latents = denoise(c, latents, contexts, *embeds, steps, guidance_scale, guidance_scale_2, device=device,
                      dtype=dtype, on_step=on_step, place=place)
    decoded = vae_decode(c.vae, latents, device)
    return decoded[:frame_count], decoded
