"""The diffusion engine (``--engine diffusion``), the paper's method: the style LoRA on FLUX.1-dev + the HED
ControlNet (align, paper 3.2; or, by ``[align] mode``, the quick LoRA recipe or FLUX.1 Redux reference tokens
with no training), SAG anchors on FLUX (paper 3.2) and GGI inbetweening on CogVideoX-5B-I2V (paper 3.3), or,
with ``[inbetween] model = "wan-vace"``, Wan VACE first/last-frame generation (:mod:`videofrom3d.inbetween.wan`).
The stage objects are light: models load on the first anchor or arc that must be made, so a
re-run that reuses every output loads none; one diffusion model is in memory at a time."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from videofrom3d.chaining import ArcChaining
from videofrom3d.engines import STAGES, AnchorGuide, EngineContext, EngineError, EngineSpec, style_digests
from videofrom3d.io.manifest import json_ready

# Weights the diffusion engine needs; the inbetween stage needs cogvideox and one of ggi / flow_lora.
DIFFUSION_MODELS = ("flux", "controlnet_hed", "cogvideox")
INBETWEEN_WEIGHTS = ("ggi", "flow_lora")


def _model_ids(job, keys) -> dict:
    return {k: job.model(k) for k in keys}


class LoraAligner:
    """The align stage: the style LoRA (``WORK/align/lora.safetensors``); the trainer keeps checkpoints in
    ``align/checkpoints/`` and resumes from them, so a killed alignment goes on where it stopped."""

    item = "diffusion"
    output = "lora.safetensors"
    note = ""

    def __init__(self, ctx: EngineContext):
        self.ctx = ctx
        self.cfg = ctx.configs["align"]

    def cache_key(self) -> dict:
        from videofrom3d.align.train import recipe

        job = self.ctx.job
        ids = ("flux", "controlnet_hed", "hed") + (("redux", "siglip") if self.cfg.reference_conditioning else ())
        return {"engine": "diffusion", "models": self.ctx.models, "model_ids": _model_ids(job, ids),
                "styles": style_digests(job), "config": json_ready(recipe(self.cfg)), "seed": job.seed}

    def align(self, out: Path) -> dict | None:
        from videofrom3d.align import train_style_lora

        lora = Path(train_style_lora(self.ctx.job, self.cfg, out.parent, models=self.ctx.models,
                                     progress=self.ctx.progress))
        if lora != out:  # the style cache aligns into a partial name: move, not copy, the trainer's file
            os.replace(lora, out)
        return {"mode": self.cfg.mode} if self.cfg.mode != "lora" else None


class ReferenceAligner:
    """``[align] mode = "reference"``: no training. Writes ``WORK/align/reference.safetensors``, each style
    image's FLUX.1 Redux tokens pooled and weighted (:mod:`videofrom3d.align.reference`); the raw tokens come
    from the shared cache when another job encoded the same image, so this stage then loads no model."""

    item = "diffusion"
    output = "reference.safetensors"

    def __init__(self, ctx: EngineContext):
        self.ctx = ctx
        self.cfg = ctx.configs["align"]
        self.note = " (reference mode: Redux tokens, no LoRA)"

    def cache_key(self) -> dict:
        job = self.ctx.job
        return {"engine": "diffusion", "mode": "reference", "models": self.ctx.models,
                "model_ids": _model_ids(job, ("redux", "siglip")), "styles": style_digests(job),
                "pool": self.cfg.reference_pool, "weight": self.cfg.reference_weight}

    def align(self, out: Path) -> dict:
        from videofrom3d.align.reference import NOTE, encode_references, reference_context, save_references

        job = self.ctx.job
        tokens = encode_references(job, self.ctx.models)
        contexts = [reference_context(t, self.cfg.reference_pool, self.cfg.reference_weight) for t in tokens]
        save_references(out, contexts, {
            "identifiers": [s.identifier_prompt for s in job.styles],
            "reference_images": [Path(s.image).name for s in job.styles],
            "pool": self.cfg.reference_pool, "weight": self.cfg.reference_weight,
            "tokens": [list(t.shape) for t in tokens], "note": NOTE})
        return {"mode": "reference", "lora": None, "why": NOTE}


def make_aligner(ctx: EngineContext):
    """The align stage object for ``[align] mode``: the LoRA trainer ("lora", "quick") or Redux ("reference")."""
    return ReferenceAligner(ctx) if ctx.configs["align"].mode == "reference" else LoraAligner(ctx)


class FluxAnchors:
    """SAG anchors (:class:`videofrom3d.anchors.AnchorGenerator`, loaded on first use)."""

    def __init__(self, ctx: EngineContext):
        from videofrom3d.anchors.generate import replacement_rule

        self.ctx = ctx
        self.cfg = ctx.configs["anchors"]
        self.replacement = replacement_rule(self.cfg)
        self._generator = None

    def cache_key(self) -> dict:
        job = self.ctx.job
        return {"engine": "diffusion", "models": self.ctx.models,
                "model_ids": _model_ids(job, ("flux", "controlnet_hed")),
                "options": json_ready(job.options("anchors")), "align": self.ctx.style[1]}

    def guide(self, previous_anchor: np.ndarray, arc, flow=None) -> AnchorGuide:
        from videofrom3d.anchors.generate import make_anchor_guide

        return make_anchor_guide(previous_anchor, arc, self.cfg.mask_erode_px, flow=flow)

    def render_anchor(self, arc, frame: int, prompt: str, seed: int, guide: AnchorGuide | None = None,
                      edge_map: np.ndarray | None = None) -> np.ndarray:
        from videofrom3d.anchors.generate import anchor_index, anchor_style

        if self._generator is None:
            from videofrom3d.anchors import load_anchor_generator

            self._generator = load_anchor_generator(self.ctx.job, self.cfg, models=self.ctx.models,
                                                    lora_path=self.ctx.style[0])
        style = anchor_style(self.ctx.job, anchor_index(arc, frame), self.cfg)  # its reference tokens, if any
        return self._generator.render_anchor(arc, frame, prompt, seed, guide, edge_map=edge_map, style=style)

    def close(self) -> None:
        if self._generator is not None:
            self._generator.close()
            self._generator = None


class CogVideoXInbetween:
    """GGI inbetweening (:class:`videofrom3d.inbetween.Inbetweener`, loaded on first use)."""

    def __init__(self, ctx: EngineContext):
        self.ctx = ctx
        self.cfg = cfg = ctx.configs["inbetween"]
        self.chaining = ArcChaining(cfg.chain, cfg.chain_frame)
        self.fixed_prompt = cfg.prompt
        self._inbetweener = None

    def cache_key(self) -> dict:
        job = self.ctx.job
        return {"engine": "diffusion", "models": self.ctx.models,
                "model_ids": _model_ids(job, ("cogvideox", "ggi", "flow_lora", "blip2")),
                "options": json_ready(job.options("inbetween")), "align": None}

    def _loaded(self):
        if self._inbetweener is None:
            from videofrom3d.inbetween import load_inbetweener

            self._inbetweener = load_inbetweener(self.ctx.job, self.cfg, models=self.ctx.models)
        return self._inbetweener

    def prompt_for(self, first_anchor: np.ndarray) -> str:
        return self._loaded().resolve_prompt(first_anchor)

    def arc_frames(self, start, end, arc, prompt: str, seed: int):
        return self._loaded().arc_frames(start, end, arc, prompt, seed)

    def last_decoded_frame(self) -> np.ndarray | None:
        return None if self._inbetweener is None else self._inbetweener.last_decoded_frame()

    def close(self) -> None:
        if self._inbetweener is not None:
            self._inbetweener.close()
            self._inbetweener = None


def _wan_weight(job) -> str | None:
    """The registry key of the Wan VACE weights the job's ``[inbetween]`` asks for, None for GGI (read
    without parsing the table: a bad table is the plan's one-line error, not the engine choice's)."""
    from videofrom3d.inbetween.wan.config import WAN_WEIGHTS

    options = job.options("inbetween") if job is not None else {}
    if options.get("model", "ggi") != "wan-vace":
        return None
    return WAN_WEIGHTS.get(options.get("variant", "1.3b"), WAN_WEIGHTS["1.3b"])


def missing_weights(job=None) -> list[str]:
    """Registry keys of the weights the diffusion engine needs that are not on this machine."""
    from videofrom3d import models as registry

    def override(key):
        return job.model(key) if job is not None else None

    wan = _wan_weight(job)
    needed = [k for k in DIFFUSION_MODELS if wan is None or k != "cogvideox"] + ([wan] if wan else [])
    missing = [k for k in needed if registry.find(k, override(k)) is None]
    if wan is None and all(registry.find(k, override(k)) is None for k in INBETWEEN_WEIGHTS):
        missing.append(" or ".join(INBETWEEN_WEIGHTS))
    return missing


# `--models tiny-random` is a smoke test of the code path, not of the output (noise either way): these
# settings replace the paper's heavy defaults unless the job sets the key itself. The alignment recipe is the
# costly one (400 steps at 1024 px would take over 20 minutes on a CPU even with tiny models).
SMOKE_DEFAULTS = {
    "align": {"steps": 2, "resolution": 64, "aspects": ["none"], "max_sequence_length": 16},
    "anchors": {"steps": 2, "max_sequence_length": 16},
    "inbetween": {"steps": 2},
}


def _tables() -> dict[str, type]:
    from videofrom3d.align import AlignConfig
    from videofrom3d.anchors import AnchorConfig
    from videofrom3d.inbetween.wan.config import InbetweenTable

    return {"align": AlignConfig, "anchors": AnchorConfig, "inbetween": InbetweenTable}


def _configs(job, models: str = "real") -> dict:
    """The align, anchors and inbetween configs from the job's tables; over :data:`SMOKE_DEFAULTS` for
    ``models="tiny-random"``."""
    from videofrom3d.align.train import align_defaults
    from videofrom3d.job import stage_config

    if not job.styles:
        raise EngineError("the diffusion engine needs a style image: add [[style]] image = ... and "
                          "identifier = ... to the job (or --style IMAGE --identifier TEXT)")
    smoke = SMOKE_DEFAULTS if models == "tiny-random" else {}

    def defaults(table):  # the job's values win over [align] mode = "quick"'s preset, which wins over smoke ones
        base = dict(smoke.get(table, {}))
        return {**base, **align_defaults(job.options(table))} if table == "align" else base

    configs = {table: stage_config(cls, job, table, defaults(table)) for table, cls in ENGINE.tables.items()}
    configs["inbetween"] = configs["inbetween"].config  # the config of [inbetween] model: GGI's or Wan VACE's
    return configs


def _check(job, models: str, until: str, configs: dict) -> None:
    """With real models, every weight the stages up to ``until`` need must be here (one line that points to
    ``doctor``, instead of a failure after the earlier stages ran)."""
    if models != "real":
        return
    from videofrom3d import models as registry

    stage = STAGES.index(until)
    needed = ["flux", "controlnet_hed"] if stage >= STAGES.index("align") else []
    align = configs["align"]
    if needed and (align.mode == "reference" or align.reference_conditioning):
        from videofrom3d.align.reference import redux_missing

        needed += redux_missing(job)
    if stage >= STAGES.index("inbetween"):
        inb = configs["inbetween"]
        if _is_wan(inb):
            from videofrom3d.inbetween.wan.config import WAN_WEIGHTS

            needed.append(WAN_WEIGHTS[inb.variant])
        else:
            needed.append("cogvideox")
            needed += {"ggi": ["ggi"], "flow_lora": ["flow_lora"]}.get(inb.transformer, [])
    missing = [k for k in needed if registry.find(k, job.model(k)) is None]
    if missing:
        ids = ", ".join(f"{k} ({registry.MODELS[k].repo_id})" for k in missing)
        raise EngineError(f"the diffusion engine needs weights that are not on this machine: {ids}; "
                          "`videofrom3d doctor` shows where each was looked for and how to get it, "
                          "`--engine preview` renders without weights")


def _is_wan(cfg) -> bool:
    from videofrom3d.inbetween.wan.config import WanVaceConfig

    return isinstance(cfg, WanVaceConfig)


def _inbetween(ctx: EngineContext):
    """The inbetween stage object of ``[inbetween] model``: GGI on CogVideoX (default) or Wan VACE."""
    if _is_wan(ctx.configs["inbetween"]):
        from videofrom3d.inbetween.wan.engine import WanVaceInbetween

        return WanVaceInbetween(ctx)
    return CogVideoXInbetween(ctx)


def _noise_defaults(job, configs: dict) -> dict:
    """The warped noise at the inbetween model's latent grid: Wan generates the nearest 4k+1 >= N+1 frames
    ((M-1)/4 + 1 latents); CogVideoX-5B-I2V is fixed at 13 latents ([noise] defaults)."""
    if not _is_wan(configs["inbetween"]):
        return {}
    from videofrom3d.inbetween.wan.conditioning import latent_frame_count

    return {"latent_frames": latent_frame_count(job.frames_per_arc + 1)}


def _anchor_size(job, configs: dict) -> tuple[int, int]:
    """FLUX works at 1.5x the job size rounded to 16 (the authors' 1072x720 for 720x480), or ``[anchors] size``."""
    from videofrom3d.anchors.generate import anchor_size

    return anchor_size((job.width, job.height), configs["anchors"].size)


ENGINE = EngineSpec(
    name="diffusion",
    anchor_size=_anchor_size,
    configs=_configs,
    aligner=make_aligner,
    anchors=FluxAnchors,
    inbetween=_inbetween,
    needs_noise=True,
    check=_check,
    noise_defaults=_noise_defaults,
    tables=_tables(),
)
