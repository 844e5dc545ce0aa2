"""GGI training data (paper 3.4): clips from a folder of videos or frame folders, with their cached
conditions, prepared once.

Per clip (``data.frames`` frames, 46 by default) the preparation stores in ``CACHE/<clip>/``:

- ``frames.npy`` (F, H, W, 3) uint8: the frames resized to cover ``width x height`` and centre-cropped;
- ``edges.npy`` (F, H, W) uint8: HED soft edges of the monocular depth of each frame ("HED-S": DPT/MiDaS
  depth through transformers, then the project's HED, as the authors train);
- ``noise.npy`` (T, 16, H/8, W/8) float32: Go-with-the-Flow warped noise along the estimated flow
  (``prepare.noise_warp.warped_noise_for_arc``, the prepare stage's warper), undegraded;
- ``meta.json``: source, first frame, prompt, flow method and the key of everything above.

A clip whose ``meta.json`` key matches is skipped, so a second run does no work and an interrupted one
resumes; each clip folder is written to a temporary name and renamed. ``CACHE/manifest.json`` lists the
training and validation clips and names the flow method (``raft`` or ``dis``), depth and HED models.

Sources: ``*.mp4`` (``.mov .mkv .webm .avi``) files, with an optional caption ``NAME.txt`` beside them, and
folders of images (``.png .jpg .jpeg``), with an optional ``caption.txt``. DL3DV-10K scenes
(``<scene>/images_2/``, ``images_4/``, ...) count once, from ``images_2`` (the authors' 960x540 frames) when
present, else the highest resolution there.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from videofrom3d.inbetween.training.config import DataConfig, TrainConfigError

VIDEO_EXTS = (".mp4", ".mov", ".mkv", ".webm", ".avi")
IMAGE_EXTS = (".png", ".jpg", ".jpeg")
DL3DV_PREFERENCE = ("images_2", "images", "images_4", "images_8")  # authors: images_2 (960x540)
MANIFEST = "manifest.json"
FORMAT = 1


@dataclass(frozen=True)
class Source:
    """A video file or a frame folder; ``name`` is its path relative to the videos folder."""

    path: Path
    name: str
    kind: str  # "video" | "frames"

    def caption(self) -> str | None:
        cap = self.path.with_suffix(".txt") if self.kind == "video" else self.path / "caption.txt"
        if self.kind == "frames" and not cap.is_file() and re.fullmatch(r"images(_\d+)?", self.path.name):
            cap = self.path.parent / "caption.txt"  # DL3DV: caption beside images_2/
        return cap.read_text().strip() if cap.is_file() else None

    def stamp(self) -> list:
        """Size and mtime of the source's files: a changed source is prepared again."""
        files = [self.path] if self.kind == "video" else frame_files(self.path)
        return [len(files), sum(f.stat().st_size for f in files), max(f.stat().st_mtime_ns for f in files)]


def frame_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def find_sources(videos: str | os.PathLike) -> list[Source]:
    """Every video file and frame folder below ``videos``, sorted by relative path."""
    root = Path(videos)
    if not root.is_dir():
        raise TrainConfigError(f"[data] videos: {root} is not a folder")
    found: list[Source] = []
    frame_dirs: dict[Path, list[Path]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        here = Path(dirpath)
        for f in sorted(filenames):
            if f.lower().endswith(VIDEO_EXTS):
                p = here / f
                found.append(Source(p, p.relative_to(root).as_posix(), "video"))
        if any(f.lower().endswith(IMAGE_EXTS) for f in filenames):
            frame_dirs.setdefault(here.parent, []).append(here)
    for dirs in frame_dirs.values():
        dl3dv = [d for d in dirs if re.fullmatch(r"images(_\d+)?", d.name)]
        if len(dl3dv) > 1:  # one scene at several resolutions: take one
            rank = {n: i for i, n in enumerate(DL3DV_PREFERENCE)}
            keep = min(dl3dv, key=lambda d: (rank.get(d.name, len(rank)), d.name))
            dirs = [d for d in dirs if d not in dl3dv] + [keep]
        for d in dirs:
            name = d.relative_to(root).as_posix() if d != root else "."
            found.append(Source(d, name, "frames"))
    return sorted(found, key=lambda s: s.name)


def read_frames(source: Source, start: int, count: int, stride: int) -> np.ndarray:
    """Frames ``start, start + stride, ...`` (``count`` of them) -> (count, H, W, 3) float32 in [0, 1]."""
    wanted = [start + i * stride for i in range(count)]
    if source.kind == "frames":
        from videofrom3d.io.images import read_image

        files = frame_files(source.path)
        return np.stack([read_image(files[i]) for i in wanted])
    import av

    keep, last = set(wanted), wanted[-1]
    frames = []
    with av.open(str(source.path)) as container:
        for i, f in enumerate(container.decode(video=0)):
            if i in keep:
                frames.append(f.to_ndarray(format="rgb24"))
            if i >= last:
                break
    if len(frames) != count:
        raise TrainConfigError(f"{source.path}: could decode {len(frames)} of the {count} frames asked for")
    return np.stack(frames).astype(np.float32) / 255.0


def frame_count(source: Source) -> int:
    if source.kind == "frames":
        return len(frame_files(source.path))
    import av

    with av.open(str(source.path)) as container:
        stream = container.streams.video[0]
        if stream.frames:
            return int(stream.frames)
        return sum(1 for _ in container.decode(video=0))


def cover_crop(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """(F, h, w, 3) -> (F, height, width, 3): scaled to cover the target (area filter when shrinking),
    centre-cropped."""
    h, w = frames.shape[1:3]
    s = max(width / w, height / h)
    rw, rh = max(width, int(round(w * s))), max(height, int(round(h * s)))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC
    top, left = (rh - height) // 2, (rw - width) // 2
    out = [cv2.resize(f, (rw, rh), interpolation=interp)[top : top + height, left : left + width] for f in frames]
    return np.clip(np.stack(out), 0, 1).astype(np.float32)


def clip_starts(total: int, span: int, clips: int) -> list[int]:
    """First frames of ``clips`` windows of ``span`` frames spread over ``total`` (one: frame 0)."""
    if total < span:
        return []
    if clips == 1:
        return [0]
    return sorted({int(round(x)) for x in np.linspace(0, total - span, clips)})


@dataclass(frozen=True)
class ClipSpec:
    name: str  # folder name in the cache
    source: Source
    start: int


def clip_name(source: Source, k: int) -> str:
    from videofrom3d.io.manifest import digest_json

    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", source.name).strip("_")[-48:] or "clip"
    return f"{slug}-{digest_json(source.name)[:8]}-{k}"


def list_clips(cfg: DataConfig) -> tuple[list[ClipSpec], list[str]]:
    """(clips to prepare, one line per source skipped because it is too short)."""
    sources = find_sources(cfg.videos)
    if cfg.max_videos:
        sources = sources[: cfg.max_videos]
    if not sources:
        raise TrainConfigError(f"[data] videos: no video files ({' '.join(VIDEO_EXTS)}) or frame folders in {cfg.videos}")
    span = (cfg.frames - 1) * cfg.stride + 1
    clips, skipped = [], []
    for s in sources:
        starts = clip_starts(frame_count(s), span, cfg.clips_per_video)
        if not starts:
            skipped.append(f"{s.name}: fewer than {span} frames")
        clips += [ClipSpec(clip_name(s, k), s, start) for k, start in enumerate(starts)]
    if not clips:
        raise TrainConfigError(f"[data] videos: no source in {cfg.videos} has {span} frames ({skipped[0]})")
    return clips, skipped


# ------------------------------------------------------------------------------------------ annotators


@dataclass
class Annotators:
    """What preparation runs per clip: flow (RAFT or DIS), depth (DPT) and HED; built on first use."""

    flow: Callable
    depth: Callable
    hed: Callable
    names: dict


def make_annotators(cfg: DataConfig, models: str = "real", paths: dict | None = None, seed: int = 0,
                    device: str = "cpu") -> Annotators:
    """``models="real"``: DPT from ``[models] depth`` (or the registry) and HED weights (``[models] hed``),
    both required; ``"tiny-random"``: a random tiny DPT and a random HED network (tests, smoke runs)."""
    from videofrom3d.annotators.flow import make_flow_estimator
    from videofrom3d.annotators.hed import HEDDetector, build_hed_network, load_hed_network

    paths = paths or {}
    flow = make_flow_estimator(cfg.flow, cfg.flow_scale, device)
    if models == "tiny-random":
        import torch

        from videofrom3d.annotators.depth import tiny_depth_estimator

        depth = tiny_depth_estimator(seed, device)
        torch.manual_seed(seed + 1)
        net = build_hed_network().eval().requires_grad_(False)
        names = {"flow": flow.method, "depth": f"tiny-random(seed={seed})", "hed": f"tiny-random(seed={seed + 1})"}
    elif models == "real":
        from videofrom3d.annotators.depth import load_depth_estimator
        from videofrom3d.annotators.hed import find_hed_weights

        depth = load_depth_estimator(paths.get("depth"), device)
        net = load_hed_network(paths.get("hed"), device)
        names = {"flow": flow.method, "depth": str(paths.get("depth") or "depth"),
                 "hed": str(find_hed_weights(paths.get("hed")))}
    else:
        raise TrainConfigError(f'models must be "real" or "tiny-random", got {models!r}')
    return Annotators(flow, depth, HEDDetector(net, cfg.hed_resolution, device), names)


# ------------------------------------------------------------------------------------------ preparation


def noise_backend(cfg: DataConfig, device: str) -> str:
    """The warper's backend: ``[data] noise_backend``, where "auto" is torch on a GPU, else numpy."""
    if cfg.noise_backend != "auto":
        return cfg.noise_backend
    return "torch" if str(device).startswith("cuda") else "numpy"


def clip_key(spec: ClipSpec, cfg: DataConfig, models: str, seed: int, device: str = "cpu") -> str:
    """What a cached clip depends on: the source's files, the data options that shape it, the models."""
    from videofrom3d.io.manifest import digest_json

    shaping = {k: v for k, v in asdict(cfg).items() if k not in ("videos", "cache", "validation_clips", "max_videos",
                                                                  "clips_per_video", "prompt")}
    return digest_json({"format": FORMAT, "source": spec.source.name, "stamp": spec.source.stamp(),
                        "start": spec.start, "data": shaping, "models": models, "seed": seed,
                        "noise_backend": noise_backend(cfg, device)})


def prepare_clip(spec: ClipSpec, cfg: DataConfig, annotators: Annotators, seed: int, device: str = "cpu") -> dict:
    """The arrays of one clip (see the module docstring) as a dict of numpy arrays."""
    from videofrom3d.annotators.depth import normalized_depth_image
    from videofrom3d.inbetween.conditioning import latent_frame_count
    from videofrom3d.io.manifest import digest_json
    from videofrom3d.prepare.noise_warp import NoiseConfig, warped_noise_for_arc

    frames = cover_crop(read_frames(spec.source, spec.start, cfg.frames, cfg.stride), cfg.width, cfg.height)
    flows = np.stack([annotators.flow(frames[i], frames[i + 1]) for i in range(len(frames) - 1)])
    backend = noise_backend(cfg, device)
    noise_cfg = NoiseConfig(grid_factor=cfg.noise_grid_factor, latent_size=(cfg.height // 8, cfg.width // 8),
                            latent_frames=latent_frame_count(cfg.frames), backend=backend,
                            device=str(device) if backend == "torch" else "cpu")
    noise_seed = int(digest_json([seed, spec.name])[:8], 16)
    noise = warped_noise_for_arc(flows, cfg.frames - 1, noise_cfg, seed=noise_seed)
    depth = annotators.depth(frames)
    edges = np.stack([annotators.hed(normalized_depth_image(d)) for d in depth])
    return {
        "frames": (frames * 255.0 + 0.5).astype(np.uint8),
        "edges": (np.clip(edges, 0, 1) * 255.0 + 0.5).astype(np.uint8),
        "noise": noise.astype(np.float32),
    }


def _is_current(folder: Path, key: str) -> bool:
    meta = folder / "meta.json"
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text()).get("key") == key
    except (OSError, json.JSONDecodeError):
        return False


def prepare_dataset(cfg: DataConfig, cache: str | os.PathLike, models: str = "real", paths: dict | None = None,
                    seed: int = 0, shard: tuple[int, int] = (0, 1), progress: bool = True,
                    device: str = "cpu") -> dict:
    """Prepare every clip of ``cfg.videos`` not already in ``cache``; with ``shard = (rank, world)`` only
    the clips ``i % world == rank`` (each process of a launch takes its share). Returns
    ``{"prepared": [...], "reused": [...], "clips": [...], "skipped": [...]}`` (clip names; this shard's)."""
    from tqdm.auto import tqdm

    from videofrom3d.io.atomic import atomic_path, atomic_write_text

    cache = Path(cache)
    clips, skipped = list_clips(cfg)
    rank, world = shard
    mine = [c for i, c in enumerate(clips) if i % world == rank]
    annotators = None
    prepared, reused = [], []
    for spec in tqdm(mine, desc="prepare clips", unit="clip", disable=not progress):
        folder = cache / spec.name
        key = clip_key(spec, cfg, models, seed, device)
        if _is_current(folder, key):
            reused.append(spec.name)
            continue
        if annotators is None:  # loaded only when some clip needs work
            annotators = make_annotators(cfg, models, paths, seed, device)
        arrays = prepare_clip(spec, cfg, annotators, seed, device)
        with atomic_path(folder, suffix="") as tmp:
            tmp.mkdir(parents=True)
            for name, arr in arrays.items():
                np.save(tmp / f"{name}.npy", arr)
            meta = {"key": key, "source": spec.source.name, "kind": spec.source.kind, "start": spec.start,
                    "stride": cfg.stride, "caption": spec.source.caption(), **annotators.names}
            atomic_write_text(tmp / "meta.json", json.dumps(meta, indent=1))
        prepared.append(spec.name)
    return {"prepared": prepared, "reused": reused, "clips": [c.name for c in clips], "skipped": skipped}


def write_manifest(cache: str | os.PathLike, cfg: DataConfig, clips: list[str], skipped: list[str]) -> Path:
    """``CACHE/manifest.json``: training and validation clips (the last ``validation_clips`` in sorted
    order, when more than one clip exists) and the flow, depth and HED models the clips were made with."""
    from videofrom3d.io.atomic import atomic_write_text

    cache = Path(cache)
    metas = {c: json.loads((cache / c / "meta.json").read_text()) for c in clips}
    held = cfg.validation_clips if len(clips) > cfg.validation_clips else 0
    doc = {
        "format": FORMAT,
        "flow": sorted({m["flow"] for m in metas.values()}),
        "depth": sorted({m["depth"] for m in metas.values()}),
        "hed": sorted({m["hed"] for m in metas.values()}),
        "frames": cfg.frames, "width": cfg.width, "height": cfg.height,
        "train": clips[: len(clips) - held],
        "validation": clips[len(clips) - held :],
        "skipped": skipped,
    }
    doc["flow"] = doc["flow"][0] if len(doc["flow"]) == 1 else doc["flow"]
    return atomic_write_text(cache / MANIFEST, json.dumps(doc, indent=1))


class ClipDataset:
    """Prepared clips: ``dataset[i]`` -> dict of ``frames`` (F, H, W, 3) uint8, ``edges`` (F, H, W) uint8,
    ``noise`` (T, 16, h, w) float32 (memory-mapped) and ``prompt`` (str)."""

    def __init__(self, cache: str | os.PathLike, names: list[str], default_prompt: str = ""):
        self.cache = Path(cache)
        self.names = list(names)
        self.default_prompt = default_prompt
        if not self.names:
            raise TrainConfigError(f"{self.cache}: no prepared clips to train on")

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict:
        folder = self.cache / self.names[i]
        meta = json.loads((folder / "meta.json").read_text())
        item = {k: np.load(folder / f"{k}.npy", mmap_mode="r") for k in ("frames", "edges", "noise")}
        item["prompt"] = meta.get("caption") or self.default_prompt
        item["name"] = self.names[i]
        return item


def load_manifest(cache: str | os.PathLike) -> dict:
    path = Path(cache) / MANIFEST
    if not path.is_file():
        raise TrainConfigError(f"{path}: no prepared dataset (run `videofrom3d train-ggi TRAIN.toml --prepare-only`)")
    return json.loads(path.read_text())
