"""The Wan VACE inbetween engine (``[inbetween] model = "wan-vace"``): an
:class:`videofrom3d.engines.InbetweenEngine` whose models load on the first arc that must be made."""

from __future__ import annotations

import gc

import numpy as np
import torch

from videofrom3d.chaining import ArcChaining
from videofrom3d.inbetween.config import InbetweenError
from videofrom3d.inbetween.wan.components import (
    WanVaceComponents,
    load_wan_vace_components,
    tiny_wan_vace_components,
)
from videofrom3d.inbetween.wan.conditioning import control_frames
from videofrom3d.inbetween.wan.config import WAN_WEIGHTS, WanVaceConfig
from videofrom3d.inbetween.wan.sampling import encode_text, wan_vace_arc
from videofrom3d.io.manifest import digest_arrays, json_ready
from videofrom3d.models import empty_device_cache, model_offload, resolve_device, resolve_dtype

PROMPT_HINT = ('give one in the job: [inbetween] prompt = "a photo of ..." (or put BLIP-2 where `videofrom3d '
               'doctor` looks, to caption the first anchor)')


class WanVaceInbetween:
    """Arcs from start to end anchor along our control frames on Wan VACE. Built from an
    :class:`videofrom3d.engines.EngineContext` whose ``configs["inbetween"]`` is a :class:`WanVaceConfig`;
    ``components`` (tests) skips loading."""

    def __init__(self, ctx, components: WanVaceComponents | None = None):
        self.ctx = ctx
        self.job = ctx.job
        self.cfg: WanVaceConfig = ctx.configs["inbetween"]
        self.chaining = ArcChaining(self.cfg.chain, self.cfg.chain_frame)
        self.fixed_prompt = self.cfg.prompt
        self.device = resolve_device(self.cfg.device)
        self._components = components
        self._captioner = None
        self._embeds: dict[str, torch.Tensor] = {}
        self._captions: dict[str, str] = {}
        self._last_decoded: np.ndarray | None = None
        self._compute_dtype: torch.dtype | None = None
        if components is not None:
            self._setup(components)

    # ------------------------------------------------------------------ the engine interface
    def cache_key(self) -> dict:
        key = WAN_WEIGHTS[self.cfg.variant]
        return {"engine": "diffusion", "inbetween": "wan-vace", "models": self.ctx.models,
                "model_ids": {key: self.job.model(key), "blip2": self.job.model("blip2")},
                "options": json_ready(self.job.options("inbetween")), "align": None}

    def prompt_for(self, first_anchor: np.ndarray) -> str:
        if self.cfg.prompt is not None:
            return self.cfg.prompt
        key = digest_arrays(np.asarray(first_anchor, dtype=np.float32))
        if key not in self._captions:
            self._loaded()
            if self._captioner is None:
                raise InbetweenError("no prompt for the inbetweening stage and no BLIP-2 to caption the first "
                                     "anchor; " + PROMPT_HINT)
            self._captions[key] = self._captioner(np.asarray(first_anchor, dtype=np.float32))
        return self._captions[key]

    def arc_frames(self, start: np.ndarray, end: np.ndarray, arc, prompt: str, seed: int):
        """The arc's N+1 frames: frame 0 ~ ``start`` (known), frame N ~ ``end`` (known)."""
        cfg, c = self.cfg, self._loaded()
        noise = None
        if cfg.warped_noise:
            if arc.warped_noise is None:
                raise InbetweenError("[inbetween] warped_noise = true but the arc has no warped noise; re-run "
                                     "`videofrom3d prepare --noise`")
            noise = np.asarray(arc.warped_noise, dtype=np.float32)
        controls = [(control_frames(arc, kind), scale) for kind, scale in cfg.contexts]
        embeds = self.text_embeddings(prompt if prompt is not None else self.prompt_for(start))
        # model offload: the VAE for the arc, each expert for its own steps (Wan2.2 A14B: one 14B at a time)
        swap = cfg.memory == "model" and self.device.type != "cpu"
        try:
            with model_offload(cfg.memory, self.device, c.vae):
                frames, decoded = wan_vace_arc(c, start, end, controls, embeds, cfg.steps, cfg.guidance_scale,
                                               cfg.guidance_scale_2, noise, cfg.degradation, seed, self.device,
                                               place=self._place if swap else None, dtype=self._compute_dtype)
        finally:
            if swap:
                self._place(None)
        self._last_decoded = decoded[-1]
        yield from frames

    def last_decoded_frame(self) -> np.ndarray | None:
        return self._last_decoded

    def close(self) -> None:
        self._components = self._captioner = None
        self._embeds.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ------------------------------------------------------------------ models
    def _loaded(self) -> WanVaceComponents:
        if self._components is None:
            self._setup(self._load())
        return self._components

    def _load(self) -> WanVaceComponents:
        from videofrom3d.inbetween.inbetweener import blip2_captioner
        from videofrom3d.models import find, locate

        cfg, job = self.cfg, self.job
        if self.ctx.models == "tiny-random":
            self._captioner = lambda image: "a tiny random scene"
            return tiny_wan_vace_components(seed=job.seed, two_experts=cfg.variant == "2.2-a14b")
        if self.ctx.models != "real":
            raise InbetweenError(f'models must be "real" or "tiny-random", got {self.ctx.models!r}')
        key = WAN_WEIGHTS[cfg.variant]
        folder = locate(key, job.model(key))
        components = load_wan_vace_components(folder, resolve_dtype(cfg.dtype, self.device),
                                              resolve_dtype(cfg.vae_dtype, self.device))
        if cfg.variant == "2.2-a14b" and components.transformer_2 is None:
            raise InbetweenError(f"{folder} has no transformer_2: variant = \"2.2-a14b\" needs a two-expert folder")
        blip = find("blip2", job.model("blip2"))
        if blip is not None:
            self._captioner = blip2_captioner(blip, self.device, cfg.caption_max_tokens)
        return components

    def _setup(self, c: WanVaceComponents) -> None:
        """The size's flow shift and the memory mode (as the other stages: none / model / sequential)."""
        cfg = self.cfg
        if "flow_shift" in c.scheduler.config:
            shift = cfg.shift_for(self.job.width, self.job.height)
            c.scheduler = type(c.scheduler).from_config(c.scheduler.config, flow_shift=shift)
        if cfg.vae_tiling:
            c.vae.enable_tiling()
        self._compute_dtype = next(c.transformer.parameters()).dtype  # before fp8 storage changes it
        for t in c.transformers():
            if cfg.fp8:
                t.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=self._compute_dtype)
        if cfg.memory == "sequential" and self.device.type != "cpu":
            from accelerate import cpu_offload

            for module in (*c.transformers(), c.vae):
                cpu_offload(module, execution_device=self.device)
        elif cfg.memory == "none":
            for module in (*c.transformers(), c.vae):
                module.to(self.device)
        self._components = c

    def _place(self, expert) -> None:
        """Model offload of the experts: ``expert`` onto the device, every other transformer back to the CPU."""
        for t in self._components.transformers():
            if t is not expert:
                t.to("cpu")
        empty_device_cache(self.device)
        if expert is not None:
            expert.to(self.device)

    def text_embeddings(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(prompt, negative) UMT5 embeddings, cached per prompt; UMT5 is released afterwards when configured."""
        c, cfg = self._loaded(), self.cfg
        missing = [p for p in (prompt, cfg.negative_prompt) if p not in self._embeds]
        if missing:
            if c.text_encoder is None:
                if c.text_encoder_factory is None:
                    raise InbetweenError("no text encoder to encode a new prompt")
                c.text_encoder = c.text_encoder_factory()
            c.text_encoder.to(self.device)
            for p in missing:
                self._embeds[p] = encode_text(c.tokenizer, c.text_encoder, p, cfg.max_sequence_length,
                                              self.device).cpu()
            if cfg.release_text_encoder:
                c.text_encoder = None
                gc.collect()
            elif cfg.memory != "none":
                c.text_encoder.to("cpu")
        return self._embeds[prompt], self._embeds[cfg.negative_prompt]
