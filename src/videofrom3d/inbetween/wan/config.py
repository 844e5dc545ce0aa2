"""Options of the Wan VACE inbetween engine (``[inbetween] model = "wan-vace"``), and the choice between it and
GGI from the job's ``[inbetween]`` table; importable without torch."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Literal

from videofrom3d.inbetween.config import InbetweenConfig, InbetweenError

INBETWEEN_MODELS = ("ggi", "wan-vace")
# variant -> the registry key of its weights (videofrom3d.models)
WAN_WEIGHTS = {"1.3b": "wan_vace_1_3b", "14b": "wan_vace_14b", "2.2-a14b": "wan22_vace"}
WAN_FPS = 16  # Wan2.1/2.2 are trained on 16 fps clips of 81 frames (Wan2.1 report)


@dataclass(frozen=True)
class WanVaceConfig:
    """First/last-frame generation with a control video on Wan VACE (no fine-tuning): frame 0 = the start
    anchor, the last frames = the end anchor (both known, mask 0), our exact control frames between (mask 1).

    Defaults follow diffusers' ``WanVACEPipeline`` documentation (30 steps, CFG 5, flow shift 3 at 480p and 5
    at 720p) and the Wan2.2 release (two experts, the low-noise one below ``boundary_ratio``)."""

    variant: Literal["1.3b", "14b", "2.2-a14b"] = "1.3b"  # Wan2.1-VACE-1.3B / -14B / Wan2.2-VACE-Fun-A14B
    control: Literal["edges", "depth", "edges+depth"] = "edges"
    # "edges": our edge maps; "depth": G-buffer depth as VACE's depth video (conditioning.depth_control);
    # "edges+depth": two VACE contexts, their hints added with their own scales
    control_scale: float = 1.0  # VACE conditioning scale of the (first) control context (diffusers default 1)
    depth_scale: float | None = None  # the depth context's scale with control = "edges+depth" (None: control_scale)
    steps: int = 30  # diffusers WanVACEPipeline example: 30 steps
    guidance_scale: float = 5.0  # Wan2.1 default CFG
    guidance_scale_2: float | None = None  # Wan2.2 A14B low-noise expert's CFG (None: guidance_scale)
    flow_shift: float | None = None  # None: 3.0 up to 832x480, 5.0 above (diffusers: 3 for 480P, 5 for 720P)
    prompt: str | None = None  # None: BLIP-2 caption of the first anchor (as GGI), shared by all arcs
    negative_prompt: str = ""
    max_sequence_length: int = 512  # UMT5 tokens (WanVACEPipeline default)
    warped_noise: bool = False  # start from the arc's warped noise (the model was not trained on it)
    degradation: float = 0.5  # blend of the warped noise with fresh noise, as GGI (Go-with-the-Flow alpha)
    chain: Literal["generated", "anchor"] = "generated"  # as GGI: arc k starts from arc k-1's last frame
    chain_frame: Literal["last_kept", "last_decoded"] = "last_kept"
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"  # transformer and text encoder
    vae_dtype: Literal["bfloat16", "float16", "float32"] = "float32"  # diffusers loads the Wan VAE in fp32
    device: str = "auto"
    memory: Literal["none", "model", "sequential"] = "none"  # CPU offload, same names as the other stages
    fp8: bool = False  # store transformer weights in float8_e4m3fn, compute in dtype
    vae_tiling: bool = False
    release_text_encoder: bool = True  # drop UMT5-XXL (~11 GB) after encoding; prompts are cached
    caption_max_tokens: int = 30

    def __post_init__(self):
        if self.steps < 1:
            raise InbetweenError(f"[inbetween].steps must be >= 1, got {self.steps}")
        if self.guidance_scale < 0 or (self.guidance_scale_2 is not None and self.guidance_scale_2 < 0):
            raise InbetweenError("[inbetween].guidance_scale and guidance_scale_2 must be >= 0")
        if not 0.0 <= self.degradation <= 1.0:
            raise InbetweenError(f"[inbetween].degradation must be in [0, 1], got {self.degradation}")
        if self.guidance_scale_2 is not None and self.variant != "2.2-a14b":
            raise InbetweenError('[inbetween].guidance_scale_2 is for variant = "2.2-a14b" (two experts) only')
        if self.depth_scale is not None and self.control != "edges+depth":
            raise InbetweenError('[inbetween].depth_scale is for control = "edges+depth" only; use control_scale')
        if self.flow_shift is not None and self.flow_shift <= 0:
            raise InbetweenError(f"[inbetween].flow_shift must be > 0, got {self.flow_shift}")

    @property
    def contexts(self) -> tuple[tuple[str, float], ...]:
        """((control kind, scale), ...): one VACE context per control."""
        if self.control == "edges+depth":
            depth = self.control_scale if self.depth_scale is None else self.depth_scale
            return (("edges", self.control_scale), ("depth", depth))
        return ((self.control, self.control_scale),)

    def shift_for(self, width: int, height: int) -> float:
        if self.flow_shift is not None:
            return self.flow_shift
        return 3.0 if width * height <= 832 * 480 else 5.0


def _check_table(self) -> None:
    """Pick the model's config from the given options (None = not given); an option of the other model is a
    one-line error naming it, and the chosen config checks its own values."""
    if self.model not in INBETWEEN_MODELS:
        raise InbetweenError(f"[inbetween].model must be one of {', '.join(INBETWEEN_MODELS)}, got {self.model!r}")
    cls = InbetweenConfig if self.model == "ggi" else WanVaceConfig
    given = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
             if f.name != "model" and getattr(self, f.name) is not None}
    own = {f.name for f in dataclasses.fields(cls)}
    foreign = sorted(k for k in given if k not in own)
    if foreign:
        other = "wan-vace" if self.model == "ggi" else "ggi"
        raise InbetweenError(f"[inbetween] option(s) {foreign} apply to model = \"{other}\" only; this job uses "
                             f"model = \"{self.model}\"")
    object.__setattr__(self, "config", cls(**given))


def _table_class() -> type:
    """The ``[inbetween]`` table: ``model`` plus every option of both models (the job file's schema, one
    class per table); ``.config`` is the chosen model's :class:`InbetweenConfig` or :class:`WanVaceConfig`."""
    fields: list = [("model", Literal["ggi", "wan-vace"], dataclasses.field(default="ggi"))]
    for cls in (InbetweenConfig, WanVaceConfig):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name not in {name for name, *_ in fields}:
                fields.append((f.name, hints[f.name] | None, dataclasses.field(default=None)))
    cls = dataclasses.make_dataclass("InbetweenTable", fields, frozen=True, namespace={"__post_init__": _check_table})
    cls.__module__ = __name__
    return cls


InbetweenTable = _table_class()


def inbetween_config(job) -> InbetweenConfig | WanVaceConfig:
    """The job's ``[inbetween]`` table as the config of the model it names (``model = "ggi" | "wan-vace"``,
    default "ggi"); an option of the other model is a one-line error naming it."""
    from videofrom3d.job import stage_config

    return stage_config(InbetweenTable, job, "inbetween").config
