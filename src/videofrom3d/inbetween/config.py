"""Options of the inbetweening stage (the job's ``[inbetween]`` table); importable without torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from videofrom3d.errors import VideoFrom3DError


class InbetweenError(VideoFrom3DError, ValueError):
    """An input of the inbetweening stage that cannot be used (a shape, a checkpoint, a missing prompt)."""


@dataclass(frozen=True)
class InbetweenConfig:
    """Geometry- and appearance-guided inbetweening (GGI, paper 3.3) with CogVideoX-5B-I2V.

    Defaults follow the paper and the authors' ``ggi.py`` and ``mypipes/pipe_intp2.py`` (KIMGEONUNG/VideoFrom3D),
    which follow Go-with-the-Flow's ``cut_and_drag_inference.py`` (Eyeline-Research/Go-with-the-Flow).
    """

    steps: int = 30  # paper 4.1, ggi.py: 30 DDIM steps
    guidance_scale: float = 6.0  # ggi.py: CFG 6, no dynamic CFG
    degradation: float = 0.5  # Go-with-the-Flow "degradation" alpha at inference (ggi.py --degradation 0.5)
    eta: float = 0.0  # deterministic DDIM: the warped noise is the only noise
    prompt: str | None = None  # None: BLIP-2 caption of the first anchor (ggi.py), shared by all arcs
    negative_prompt: str = ""  # the unconditional CFG branch uses the empty prompt (ggi.py)
    transformer: Literal["ggi", "flow_lora", "stock", "checkpoint"] = "ggi"
    # "ggi": the authors' released checkpoint (models "ggi"); "flow_lora": stock 5B-I2V + the Go-with-the-Flow
    # LoRA (no edge guidance); "stock": plain 5B-I2V; "checkpoint": our own trained folder (checkpoint_path)
    checkpoint_path: str | None = None
    merge_lora: bool = True  # fold W += B.A once at load time (ggi.py shortcut; 1.3x faster steps)
    use_end_frame: bool = True  # put E(end) in the last latent slot (paper 3.3); False gives plain I2V
    chain: Literal["generated", "anchor"] = "generated"  # arc k starts from arc k-1's last frame (ggi.py)
    chain_frame: Literal["last_kept", "last_decoded"] = "last_kept"
    # "last_kept": frame N of arc k-1 (the frame shown in the video); "last_decoded": decoded frame 48, the
    # padded tail frame the authors chain from (same latent as frame N)
    encode_mode: Literal["sample", "mode"] = "sample"  # VAE posterior: sample (ggi.py, seeded here) or mean
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"  # CogVideoX-5B runs in bf16
    device: str = "auto"  # auto: cuda when available, else cpu
    memory: Literal["none", "model", "sequential", "24gb", "16gb", "12gb"] = "none"
    # CPU offload (same names as [anchors] memory) or a card size's preset (inbetweener.MEMORY_PRESETS)
    fp8: bool = False  # store transformer weights in float8_e4m3fn, compute in dtype (as [anchors] fp8)
    vae_slicing: bool = True  # ggi.py: enable_slicing
    vae_tiling: bool = True  # ggi.py: enable_tiling
    release_text_encoder: bool = True  # drop T5 (9.5 GB) after encoding; prompts are cached
    caption_max_tokens: int = 30  # BLIP-2 caption length
    # speed (videofrom3d.speed): a preset and its switches; None = the preset's choice
    preset: Literal["none", "exact", "fast"] = "none"
    cfg_batch: bool | None = None  # both CFG passes in one batch of 2 (False halves activation memory)
    compile: bool | None = None  # regional torch.compile of the CogVideoX blocks
    attention: str | None = None  # "auto", "native" or a torch SDPA kernel ("_native_flash", "_native_cudnn"...)
    fp8_matmul: bool | None = None  # torchao float8 matmuls (GPU with compute capability >= 8.9)
    cache: Literal["none", "first_block", "taylorseer"] | None = None  # diffusers step-cache hooks
    cache_threshold: float = 0.05  # first-block cache (diffusers' default; ParaAttention)
    cache_interval: int = 3  # TaylorSeer: full compute every n steps
    cache_start_step: int = 3  # full steps first: the layout is set in the first steps

    def __post_init__(self):
        if self.steps < 1:
            raise InbetweenError(f"[inbetween].steps must be >= 1, got {self.steps}")
        if not 0.0 <= self.degradation <= 1.0:
            raise InbetweenError(f"[inbetween].degradation must be in [0, 1], got {self.degradation}")
        if self.guidance_scale < 0:
            raise InbetweenError(f"[inbetween].guidance_scale must be >= 0, got {self.guidance_scale}")
        from videofrom3d.speed import check_speed_options

        try:
            check_speed_options(self, "inbetween")
        except ValueError as e:
            raise InbetweenError(str(e)) from None
        if self.transformer == "checkpoint" and not self.checkpoint_path:
            raise InbetweenError('[inbetween].transformer = "checkpoint" needs checkpoint_path = "/path/to/folder"')
