"""The diffusion engine (``--engine diffusion``), the paper's method: the style LoRA on FLUX.1-dev + the HED
ControlNet (align, paper 3.2), SAG anchors on FLUX (paper 3.2) and GGI inbetweening on CogVideoX-5B-I2V
(paper 3.3). The stage objects are light: models load on the first anchor or arc that must be made, so a
re-run that reuses every output loads none; one diffusion model is in memory at a time."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np

from videofrom3d.chaining import ArcChaining
from videofrom3d.engines import AnchorGuide, EngineContext, EngineError, EngineSpec, style_digests
from videofrom3d.io.manifest import json_ready

# Weights the diffusion engine needs; the inbetween stage needs cogvideox and one of ggi / flow_lora.
DIFFUSION_MODELS = ("flux", "controlnet_hed", "cogvideox")
INBETWEEN_WEIGHTS = ("ggi", "flow_lora")
STAGES = ("prepare", "align", "anchors", "inbetween", "video")


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
        job = self.ctx.job
        return {"engine": "diffusion", "models": self.ctx.models,
                "model_ids": _model_ids(job, ("flux", "controlnet_hed", "hed")), "styles": style_digests(job),
                "config": json_ready(dataclasses.asdict(self.cfg)), "seed": job.seed}

    def align(self, out: Path) -> None:
        from videofrom3d.align import train_style_lora

        lora = Path(train_style_lora(self.ctx.job, self.cfg, out.parent, models=self.ctx.models,
                                     progress=self.ctx.progress))
        if lora != out:
            shutil.copyfile(lora, out)


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

    def guide(self, previous_anchor: np.ndarray, arc) -> AnchorGuide:
        from videofrom3d.anchors.generate import make_anchor_guide

        return make_anchor_guide(previous_anchor, arc, self.cfg.mask_erode_px)

    def render_anchor(self, arc, frame: int, prompt: str, seed: int, guide: AnchorGuide | None = None) -> np.ndarray:
        if self._generator is None:
            from videofrom3d.anchors import load_anchor_generator

            self._generator = load_anchor_generator(self.ctx.job, self.cfg, models=self.ctx.models,
                                                    lora_path=self.ctx.style[0])
        return self._generator.render_anchor(arc, frame, prompt, seed, guide)

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


def missing_weights(job=None) -> list[str]:
    """Registry keys of the weights the diffusion engine needs that are not on this machine."""
    from videofrom3d import models as registry

    def override(key):
        return job.model(key) if job is not None else None

    missing = [k for k in DIFFUSION_MODELS if registry.find(k, override(k)) is None]
    if all(registry.find(k, override(k)) is None for k in INBETWEEN_WEIGHTS):
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


def _configs(job, models: str = "real") -> dict:
    """The align, anchors and inbetween configs from the job's tables; over :data:`SMOKE_DEFAULTS` for
    ``models="tiny-random"``."""
    from videofrom3d.align import AlignConfig
    from videofrom3d.anchors import AnchorConfig
    from videofrom3d.inbetween import InbetweenConfig
    from videofrom3d.job import stage_config

    if not job.styles:
        raise EngineError("the diffusion engine needs a style image: add [[style]] image = ... and "
                          "identifier = ... to the job (or --style IMAGE --identifier TEXT)")
    classes = {"align": AlignConfig, "anchors": AnchorConfig, "inbetween": InbetweenConfig}
    defaults = SMOKE_DEFAULTS if models == "tiny-random" else {}
    return {name: stage_config(cls, job, name, defaults.get(name)) for name, cls in classes.items()}


def _check(job, models: str, until: str, configs: dict) -> None:
    """With real models, every weight the stages up to ``until`` need must be here (one line that points to
    ``doctor``, instead of a failure after the earlier stages ran)."""
    if models != "real":
        return
    from videofrom3d import models as registry

    stage = STAGES.index(until)
    needed = ["flux", "controlnet_hed"] if stage >= STAGES.index("align") else []
    if stage >= STAGES.index("inbetween"):
        needed.append("cogvideox")
        needed += {"ggi": ["ggi"], "flow_lora": ["flow_lora"]}.get(configs["inbetween"].transformer, [])
    missing = [k for k in needed if registry.find(k, job.model(k)) is None]
    if missing:
        ids = ", ".join(f"{k} ({registry.MODELS[k].repo_id})" for k in missing)
        raise EngineError(f"the diffusion engine needs weights that are not on this machine: {ids}; "
                          "`videofrom3d doctor` shows where each was looked for and how to get it, "
                          "`--engine preview` renders without weights")


ENGINE = EngineSpec(
    name="diffusion",
    configs=_configs,
    aligner=LoraAligner,
    anchors=FluxAnchors,
    inbetween=CogVideoXInbetween,
    needs_noise=True,
    check=_check,
)
