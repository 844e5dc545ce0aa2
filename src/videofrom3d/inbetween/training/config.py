"""TRAIN.toml <-> frozen configs of GGI training (paper 3.4); importable without torch.

```toml
out = "runs/ggi"              # checkpoints land in OUT/checkpoint-N/transformer/
seed = 0
[data]
videos = "/data/DL3DV-10K"    # mp4 files and/or frame folders (DL3DV: <scene>/images_2/*.png)
[train]
steps = 1300
checkpoint_every = 100
[models]                      # optional: local weight folders (else the registry's places)
cogvideox = "/weights/CogVideoX-5b-I2V"
```
Every key is checked: an unknown key or a wrong type is a one-line error naming ``[table].key``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from videofrom3d.inbetween.config import InbetweenError


class TrainConfigError(InbetweenError):
    """A TRAIN.toml key that cannot be used; the message names it."""


@dataclass(frozen=True)
class DataConfig:
    """Training clips and their cached conditions (research/ggi-and-noise-warping.md section 3)."""

    videos: str = ""  # folder of mp4 files and/or frame folders (searched recursively)
    cache: str = ""  # prepared clips; default OUT/data
    frames: int = 46  # paper 3.4: the first 46 frames (N = 45) of each DL3DV-10K scene
    stride: int = 1  # frame interval (authors: 1)
    clips_per_video: int = 1  # authors: one clip, from the first frame
    max_videos: int = 0  # 0: all
    width: int = 720  # CogVideoX-5B-I2V generates 720x480 only
    height: int = 480
    # resized to cover width x height, centre-cropped. The authors crop at random with a 1.1 margin per step;
    # here flow, noise and edges are cached per clip, so the crop is fixed at preparation time.
    flow: Literal["auto", "raft", "dis"] = "auto"  # auto: RAFT (torchvision) when it imports, else OpenCV DIS
    flow_scale: float = 0.5  # authors: RAFT on 240x360 frames
    noise_grid_factor: int = 4  # authors: the 1920x2880 warper (4 x 480x720)
    noise_backend: Literal["auto", "numpy", "torch"] = "auto"  # auto: torch on the process's GPU, else numpy
    hed_resolution: int = 512  # HED detect resolution (ControlNet annotator default)
    prompt: str = ""  # caption when a clip has none (caption.txt in a frame folder, NAME.txt beside NAME.mp4)
    validation_clips: int = 1  # held out from training (the last clips in sorted order); 0: none

    def __post_init__(self):
        if self.frames < 2 or self.stride < 1 or self.clips_per_video < 1:
            raise TrainConfigError("[data] frames must be >= 2, stride and clips_per_video >= 1")
        if self.width % 16 or self.height % 16:
            raise TrainConfigError(f"[data] width and height must be multiples of 16, got {self.width}x{self.height}")
        if not 0 < self.flow_scale <= 1:
            raise TrainConfigError(f"[data] flow_scale must be in (0, 1], got {self.flow_scale}")
        if self.validation_clips < 0 or self.max_videos < 0 or self.noise_grid_factor < 1:
            raise TrainConfigError("[data] validation_clips and max_videos must be >= 0, noise_grid_factor >= 1")


@dataclass(frozen=True)
class OptimConfig:
    """The optimisation of GGI (paper 3.4; the authors' run T073-000, research/ggi-and-noise-warping.md 3)."""

    steps: int = 1300  # paper 3.4: 1,300 iterations (the released checkpoint is step 1350)
    checkpoint_every: int = 100
    validate_every: int = 100  # 0: no validation
    validation_steps: int = 30  # sampler steps of the validation clip (paper 4.1: 30 DDIM steps)
    validation_guidance: float = 6.0  # ggi.py: CFG 6
    learning_rate: float = 5e-5  # paper 3.4 / T073-000
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW betas (T073-000)
    weight_decay: float = 1e-4  # T073-000
    adam_eps: float = 1e-8  # torch default
    warmup_steps: int = 800  # T073-000
    lr_cycles: int = 1  # cosine with (hard) restarts, diffusers' default of one cycle
    max_grad_norm: float = 1.0  # gradient clip 1 (T073-000)
    batch_size: int = 1  # per process (T073-000: 1 per GPU)
    gradient_accumulation: int = 4  # T073-000: x4, so 4 GPUs give the paper's batch of 16
    mode: Literal["full", "lora"] = "full"  # full: every weight but the flow LoRA (paper Eq. 3); lora: smaller GPUs
    lora_rank: int = 128  # mode = "lora": rank (alpha = rank) of the trained LoRA
    mixed_precision: Literal["bf16", "fp16", "no"] = "bf16"  # autocast; master weights stay fp32
    gradient_checkpointing: bool = True  # T073-000
    degradation: tuple[float, float] = (0.0, 1.0)  # alpha ~ U(lo, hi) mixes fresh noise into the warped noise
    endpoint_noise: tuple[float, float] = (-3.0, 0.5)  # endpoint pixel noise sigma = exp(N(mean, std)) (authors)
    flow_lora_rank: int = 4  # --models tiny-random only: rank of the random stand-in flow LoRA
    device: str = "auto"  # "cpu" forces CPU processes (gloo) even where CUDA exists

    def __post_init__(self):
        if self.steps < 1 or self.checkpoint_every < 1:
            raise TrainConfigError("[train] steps and checkpoint_every must be >= 1")
        if self.batch_size < 1 or self.gradient_accumulation < 1 or self.lora_rank < 1:
            raise TrainConfigError("[train] batch_size, gradient_accumulation and lora_rank must be >= 1")
        if self.learning_rate <= 0 or self.validate_every < 0 or self.validation_steps < 1:
            raise TrainConfigError("[train] learning_rate must be > 0, validate_every >= 0, validation_steps >= 1")
        if len(self.betas) != 2 or len(self.degradation) != 2 or len(self.endpoint_noise) != 2:
            raise TrainConfigError("[train] betas, degradation and endpoint_noise are pairs")
        if not 0 <= self.degradation[0] <= self.degradation[1] <= 1:
            raise TrainConfigError(f"[train] degradation must be 0 <= lo <= hi <= 1, got {list(self.degradation)}")


@dataclass(frozen=True)
class TrainConfig:
    out: Path
    data: DataConfig
    train: OptimConfig
    models: dict[str, str] = field(default_factory=dict)  # registry key -> local folder
    seed: int = 0
    source: Path | None = None

    @property
    def cache(self) -> Path:
        return Path(self.data.cache) if self.data.cache else self.out / "data"


MODEL_KEYS = ("cogvideox", "flow_lora", "depth", "hed")
TOP_KEYS = {"out", "seed", "data", "train", "models"}


def train_config_from_dict(doc: dict, base: str | os.PathLike = ".", source: Path | None = None) -> TrainConfig:
    """A :class:`TrainConfig` from a parsed TRAIN.toml; relative paths are relative to ``base``."""
    from videofrom3d.job import JobError, config_from_options

    base = Path(base)
    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise TrainConfigError(f"unknown key(s) {sorted(unknown)}; known: {sorted(TOP_KEYS)}")
    for table in ("data", "train", "models"):
        if not isinstance(doc.get(table, {}), dict):
            raise TrainConfigError(f"[{table}] must be a table")
    if "out" not in doc or not isinstance(doc["out"], str):
        raise TrainConfigError('out = "FOLDER" is required (checkpoints land in OUT/checkpoint-N/transformer/)')
    if not isinstance(doc.get("seed", 0), int) or isinstance(doc.get("seed", 0), bool):
        raise TrainConfigError(f"seed must be an integer, got {doc['seed']!r}")
    try:
        data = config_from_options(DataConfig, doc.get("data", {}), "data")
        train = config_from_options(OptimConfig, doc.get("train", {}), "train")
    except JobError as e:
        raise TrainConfigError(str(e)) from None
    if not data.videos:
        raise TrainConfigError('[data] videos = "FOLDER" is required (mp4 files or frame folders)')
    models = doc.get("models", {})
    bad = sorted(set(models) - set(MODEL_KEYS))
    if bad:
        raise TrainConfigError(f"[models] unknown key(s) {bad}; known: {list(MODEL_KEYS)}")
    if any(not isinstance(v, str) for v in models.values()):
        raise TrainConfigError("[models] values are folder paths (strings)")

    def path(p: str) -> str:
        q = Path(os.path.expanduser(p))
        return str(q if q.is_absolute() else base / q)

    data = dataclasses.replace(data, videos=path(data.videos), cache=path(data.cache) if data.cache else "")
    models = {k: (path(v) if v.startswith((".", "/", "~")) or (base / v).exists() else v) for k, v in models.items()}
    return TrainConfig(out=Path(path(doc["out"])), data=data, train=train, models=models,
                       seed=int(doc.get("seed", 0)), source=source)


def load_train_config(path: str | os.PathLike) -> TrainConfig:
    """Read TRAIN.toml; errors name the file and the key."""
    from videofrom3d.job import read_toml

    path = Path(path)
    doc = read_toml(path, TrainConfigError, "training file")
    try:
        return train_config_from_dict(doc, base=path.resolve().parent, source=path)
    except TrainConfigError as e:
        raise TrainConfigError(f"{path}: {e}") from None
