"""``render()``: job -> prepare -> align -> anchors -> inbetween -> video, through a resumable work folder.

Work folder (``WORK`` = the job's ``out``, by default ``work/<job name>``; a stable interface)::

    WORK/manifest.json             input/output hashes of every stage item, anchor edits, run history
    WORK/prepare/arcNNN/           edge maps, depth, normals, object ids, flows (+ noise.npy, noise.mp4)
    WORK/align/preview_style.json  preview engine: palette and sky colours of the style image(s)
    WORK/align/lora.safetensors    diffusion engine: the style LoRA (paper 3.2)
    WORK/anchors/NNN.png           anchor k, the view at global frame k*N
    WORK/edits/anchorNNN.png       a user's replacement for anchor k (``--anchor K image.png``)
    WORK/edits/unedited/           edited anchors as they would be without the edit (they guide the next one)
    WORK/inbetween/arcNNN/NNNN.png the F = N+1 frames of arc k (local index; frame 0 and N are the anchors' views)
    WORK/frames/NNNN.png           the video's frames, global index from 0, shared arc ends once
    WORK/video.mp4                 H.264 at the job's fps

Reuse: every item (an arc, an anchor, an arc's frames, the video) is recorded in the manifest with the hash
of what it reads (the job fields it uses, the hashes of its upstream outputs, the code version, the engine
and model ids) and the hash of what it wrote. A re-run recomputes exactly the items whose input hash changed
or whose output is missing or altered. Outputs are written under temporary names and renamed, and recorded
only after that, so a run killed at any point resumes where it stopped and ends with the same bytes as an
uninterrupted run (the engines are deterministic, and every stage reads its upstream outputs back from disk,
never from a float copy an interrupted run would not have).

Arc-level editing: ``reseed_anchor=(K, SEED)`` or ``anchor_images={K: path}`` redo anchor K and the arcs
K-1 and K that touch it. With sparse appearance guidance anchor K+1 is generated from anchor K; it is always
guided by anchor K *without its edit* (kept in ``WORK/edits/unedited/``), so its input hash (the unedited
chain) tells the truth, it is the same whether it was made before or after the edit, and an edit never
ripples down the trajectory.
Edits are remembered in the manifest; ``reset_edits=True`` drops them (the default anchors come back).
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from videofrom3d.errors import VideoFrom3DError
from videofrom3d.io.atomic import atomic_path
from videofrom3d.io.images import read_image, resize, write_image
from videofrom3d.io.manifest import Manifest, digest_file, digest_json, digest_path
from videofrom3d.io.video import write_video

STAGES = ("prepare", "align", "anchors", "inbetween", "video")
ENGINES = ("auto", "preview", "diffusion")
MODEL_MODES = ("real", "tiny-random")
# Bump a stage's number when a code change alters its outputs, so old work folders recompute it.
CODE_REVISION = {"prepare": 1, "noise": 1, "align": 1, "anchors": 1, "inbetween": 1, "video": 1}
# Weights the diffusion engine needs; the inbetween stage needs cogvideox and one of ggi / flow_lora.
DIFFUSION_MODELS = ("flux", "controlnet_hed", "cogvideox")
INBETWEEN_WEIGHTS = ("ggi", "flow_lora")


ARC_CACHE_BYTES = 3 * 2**30  # prepared arcs kept in memory between stages (one 720x480 arc: ~0.5 GiB)
# Files of a prepared arc's folder that are not part of its recorded hash: the previews, and the warped noise
# (its own manifest item).
ARC_EXTRAS = ("preview.mp4", "noise.npy", "noise.mp4")


def _arc_bytes(arc) -> int:
    return sum(getattr(arc, f).nbytes for f in ("edge_maps", "depth", "normals", "object_ids", "flow_forward",
                                                "flow_forward_valid"))


class PipelineError(VideoFrom3DError, ValueError):
    """A render that cannot start or go on (bad edit, bad option, missing upstream output)."""


@dataclass
class StageResult:
    """One stage of one run: seconds, which items ran and which were reused, where they are."""

    name: str
    seconds: float = 0.0
    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    note: str = ""


@dataclass
class RenderResult:
    work_dir: Path
    engine: str
    engine_reason: str
    models: str
    stages: list[StageResult]
    manifest: Path
    video: Path | None = None
    frames: Path | None = None
    anchors: list[Path] = field(default_factory=list)
    arcs: list[Path] = field(default_factory=list)

    def stage(self, name: str) -> StageResult:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def redone(self) -> dict[str, list[str]]:
        return {s.name: list(s.ran) for s in self.stages}

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.stages)

    def summary(self) -> str:
        """The closing table: each stage's time, what ran or was reused, and where it wrote."""
        rows = [f"{'stage':<10} {'time':>8}  {'ran':>4} {'reused':>6}  output"]
        for s in self.stages:
            where = _short_outputs(s.outputs, self.work_dir)
            rows.append(f"{s.name:<10} {s.seconds:>7.1f}s  {len(s.ran):>4} {len(s.reused):>6}  {where}{s.note}")
        rows.append(f"{'total':<10} {self.seconds:>7.1f}s")
        rows.append(f"engine: {self.engine} ({self.engine_reason})")
        rows.append(f"work folder: {self.work_dir}")
        if self.video is not None:
            rows.append(f"video: {self.video}")
        rows.append(f"manifest: {self.manifest}")
        return "\n".join(rows)


def _short_outputs(paths: list[Path], work: Path) -> str:
    if not paths:
        return "-"
    rel = [str(p.relative_to(work)) if p.is_relative_to(work) else str(p) for p in paths]
    return rel[0] if len(rel) == 1 else f"{rel[0]} .. {rel[-1]} ({len(rel)})"


# ------------------------------------------------------------------------------------------------ helpers


def derive_seed(seed: int, *parts: Any) -> int:
    """A seed for one random draw of one item, from the job's seed and a name (e.g. ``"anchor", 2``)."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") % (2**31)


def anchor_prompt(job, k: int) -> str:
    """The anchor's text: the (first) style's identifier prompt, plus the job's post-prompt for anchor k."""
    base = job.styles[0].identifier_prompt if job.styles else ""
    extra = job.anchor_prompt(k)
    return ", ".join(p for p in (base, extra) if p)


def cuda_status() -> tuple[bool, str]:
    """(whether a CUDA GPU is usable, a short description or the reason not)."""
    try:
        import torch
    except ImportError:
        return False, "torch is not installed (pip install 'videofrom3d[diffusion]')"

    if not torch.cuda.is_available():
        return False, f"no CUDA GPU visible to torch {torch.__version__}"
    name = torch.cuda.get_device_name(0)
    mem = torch.cuda.get_device_properties(0).total_memory / 2**30
    return True, f"{name}, {mem:.0f} GiB"


def missing_diffusion_weights(job=None) -> list[str]:
    """Registry keys of the weights the diffusion engine needs that are not on this machine."""
    from videofrom3d import models as registry

    def override(key):
        return job.model(key) if job is not None else None

    missing = [k for k in DIFFUSION_MODELS if registry.find(k, override(k)) is None]
    if all(registry.find(k, override(k)) is None for k in INBETWEEN_WEIGHTS):
        missing.append(" or ".join(INBETWEEN_WEIGHTS))
    return missing


def choose_engine(engine: str = "auto", models: str = "real", job=None) -> tuple[str, str]:
    """-> (``"preview"`` | ``"diffusion"``, why). ``auto`` picks diffusion when every weight it needs is found
    and a CUDA GPU is present (or when ``models="tiny-random"``, which needs neither), else preview."""
    if engine not in ENGINES:
        raise PipelineError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if models not in MODEL_MODES:
        raise PipelineError(f"--models must be one of {', '.join(MODEL_MODES)}, got {models!r}")
    if engine == "preview":
        return "preview", "asked for with --engine preview"
    if engine == "diffusion":
        return "diffusion", "asked for with --engine diffusion" + (" (tiny random models)" if models == "tiny-random" else "")
    if models == "tiny-random":
        return "diffusion", "auto: --models tiny-random runs the diffusion code path on tiny random models"
    missing = missing_diffusion_weights(job)
    gpu, gpu_text = cuda_status()
    if not missing and gpu:
        return "diffusion", f"auto: every weight found and a CUDA GPU ({gpu_text})"
    why = []
    if missing:
        why.append(f"missing weights: {', '.join(missing)} (see `videofrom3d doctor`)")
    if not gpu:
        why.append(gpu_text)
    return "preview", "auto: " + "; ".join(why)


def _scene_files(path: Path) -> list[Path]:
    """The scene file and the side files its geometry may live in (the .bin buffers beside a .gltf)."""
    files = [path]
    if path.suffix.lower() == ".gltf":
        files += sorted(path.parent.glob("*.bin"))
    return files


def _asdict(cfg) -> dict:
    return json_ready(dataclasses.asdict(cfg)) if dataclasses.is_dataclass(cfg) else json_ready(cfg)


def json_ready(x):
    if isinstance(x, dict):
        return {str(k): json_ready(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_ready(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, np.generic):
        return x.item()
    return x


def _config(cls, job, section: str, defaults: Mapping[str, Any] | None = None):
    """The stage's frozen config from the job's ``[section]`` table (one-line errors naming the key)."""
    from videofrom3d.job import JobError, config_from_options

    options = {**(defaults or {}), **job.options(section)}
    try:
        return config_from_options(cls, options, section)
    except ValueError as e:
        if isinstance(e, VideoFrom3DError):
            raise
        raise JobError(str(e)) from e


def _normalise_edits(reseed_anchor, anchor_images) -> tuple[list[tuple[int, int]], list[tuple[int, Path]]]:
    def pairs(x):
        if x is None:
            return []
        if isinstance(x, Mapping):
            return list(x.items())
        x = list(x)
        if len(x) == 2 and not isinstance(x[0], list | tuple):
            return [tuple(x)]
        return [tuple(p) for p in x]

    reseeds = []
    for k, s in pairs(reseed_anchor):
        try:
            reseeds.append((int(k), int(s)))
        except (TypeError, ValueError):
            raise PipelineError(f"--reseed-anchor wants two integers K SEED, got {k!r} {s!r}") from None
    images = []
    for k, p in pairs(anchor_images):
        try:
            images.append((int(k), Path(p)))
        except (TypeError, ValueError):
            raise PipelineError(f"--anchor wants an anchor index and an image path, got {k!r} {p!r}") from None
    return reseeds, images


def _remove_stale_temporaries(work: Path) -> None:
    """Temporary files and folders a killed run left (``.name.<random>.tmp*``, see :func:`atomic_path`); nothing
    trusts them, removing them only frees the space. One render per work folder at a time."""
    found = list(work.glob(".*.tmp*"))
    for name in (*STAGES, "edits", "frames"):
        if (work / name).is_dir():
            found += list((work / name).rglob(".*.tmp*"))
    for p in found:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink()


def encode_video(frames_dir: Path, count: int, fps: float, out: Path, progress=None) -> Path:
    """``frames_dir/0000.png ..`` -> H.264 mp4 at ``fps``, written atomically and reproducibly."""
    frames = (read_image(frames_dir / f"{g:04d}.png") for g in range(count))
    return write_video(out, progress(frames, "video", total=count, leave=False) if progress else frames, fps=fps)


def write_trajectory_preview(job, out_png: str | Path, backend: str = "auto") -> Path:
    """The trajectory picture of ``job`` (``videofrom3d trajectory preview``): top-down plan with the path,
    anchor frustums and arcs, beside the first frame rendered with depth + normal shading."""
    from videofrom3d.job import job_cameras
    from videofrom3d.scene.mesh import load_scene
    from videofrom3d.scene.plot import PANEL_W, shade_gbuffer, trajectory_picture, write_png

    scene = load_scene(job.scene.path, up=job.scene.up, unit_scale=job.scene.unit_scale)
    cameras = job_cameras(job)
    cam = cameras[0].resized(PANEL_W, max(1, round(cameras[0].height * PANEL_W / cameras[0].width)))
    try:
        from videofrom3d.prepare.gbuffer import make_renderer

        gb = make_renderer(scene, backend=backend).render(cam)
        view = shade_gbuffer(gb.depth, gb.normal, gb.hit, gb.object_id)
    except Exception as e:  # the plan alone is still useful
        print(f"note: first view not rendered ({type(e).__name__}: {e}); the plan alone", file=sys.stderr)
        view = None
    title = f"{job.name}  -  camera path over {job.scene.path.name}, seen from above"
    return write_png(out_png, trajectory_picture(scene, cameras, job.frames_per_arc, title=title, view=view))


@dataclass(frozen=True)
class AnchorView:
    """What anchor k is made from: its arc and local frame, prompt, whether SAG guides it by anchor k-1, its
    unedited input hash, and the user's edit (None when there is none)."""

    k: int
    arc: int
    frame: int
    prompt: str
    guided: bool
    base: str
    edit: dict | None


# ------------------------------------------------------------------------------------------------ render


def render(
    job,
    until: str = "video",
    engine: str = "auto",
    models: str = "real",
    reseed_anchor=None,
    anchor_images=None,
    export_official: str | Path | None = None,
    progress: bool = True,
    with_noise: bool | None = None,
    reset_edits: bool = False,
    log: Callable[[str], None] | None = None,
) -> RenderResult:
    """Run the stages up to ``until`` (``prepare``, ``align``, ``anchors``, ``inbetween`` or ``video``),
    reusing what the work folder already holds for the same inputs.

    ``engine``: ``auto`` | ``preview`` | ``diffusion`` (auto prints which it chose and why). ``models``:
    ``real`` weights or ``tiny-random`` models (a smoke test of the diffusion code path).
    ``reseed_anchor``: ``(K, SEED)`` or a list of them; ``anchor_images``: ``{K: image path}`` or a list of
    pairs; both redo only anchor K and the two arcs that touch it (see the module docstring).
    ``export_official``: also write the prepared arcs in the authors' folder layout there.
    ``with_noise``: compute the warped noise in ``prepare`` (default: when the engine is diffusion or an
    official export is asked for). ``log`` receives the lines the command prints (default: stdout)."""
    if until not in STAGES:
        raise PipelineError(f"until must be one of {', '.join(STAGES)}, got {until!r}")
    log = log or (lambda s: print(s, flush=True))
    chosen, reason = choose_engine(engine, models, job)
    run = _Run(job, chosen, reason, models, progress, log)
    run.plan(reseed_anchor, anchor_images, reset_edits, until)
    log(f"engine: {chosen} ({reason})")
    steps = {
        "prepare": lambda: run.prepare(with_noise, export_official),
        "align": run.align,
        "anchors": run.anchors,
        "inbetween": run.inbetween,
        "video": run.video,
    }
    results = []
    try:
        for name in STAGES[: STAGES.index(until) + 1]:
            t0 = time.perf_counter()
            res = steps[name]()
            res.seconds = time.perf_counter() - t0
            items = run.manifest.items(name)
            stage_key = digest_json(sorted((i, rec.get("key")) for i, rec in items.items()))
            run.manifest.finish_stage(name, res.ran, res.reused, res.seconds, key=stage_key)
            run.manifest.note_redone(name, res.ran)
            results.append(res)
            log(f"{name:<10} {res.seconds:6.1f}s  ran {len(res.ran)}, reused {len(res.reused)}")
    finally:
        run.close()  # models and arcs are freed on errors too
    out = RenderResult(
        work_dir=run.work,
        engine=chosen,
        engine_reason=reason,
        models=models,
        stages=results,
        manifest=run.manifest.path,
        video=run.work / "video.mp4" if until == "video" else None,
        frames=run.work / "frames" if until == "video" else None,
        anchors=[run.anchor_path(k) for k in range(run.n_anchors)] if STAGES.index(until) >= 2 else [],
        arcs=[run.arc_folder(k) for k in range(run.n_arcs)],
    )
    return out


def prepare(job, **kw) -> RenderResult:
    """Edge maps, depth, flows (and warped noise) of every arc: ``render(job, until="prepare")``."""
    return render(job, until="prepare", **kw)


def align(job, **kw) -> RenderResult:
    """The style LoRA (diffusion) or the style palette (preview): ``render(job, until="align")``."""
    return render(job, until="align", **kw)


def generate_anchors(job, **kw) -> RenderResult:
    """Anchor views: ``render(job, until="anchors")``."""
    return render(job, until="anchors", **kw)


def inbetween(job, **kw) -> RenderResult:
    """Frames of every arc: ``render(job, until="inbetween")``."""
    return render(job, until="inbetween", **kw)


class _Run:
    """State of one render: the job, the work folder and its manifest, the chosen engine, loaded arcs."""

    def __init__(self, job, engine: str, reason: str, models: str, progress: bool, log):
        from videofrom3d import __version__

        self.job = job
        self.engine = engine
        self.reason = reason
        self.models = models
        self.progress = progress
        self.log = log
        self.version = __version__
        self.work = Path(job.work_dir)
        self.manifest: Manifest | None = None
        self._arcs: OrderedDict[int, Any] = OrderedDict()
        self._engines: dict[str, Any] = {}
        self.digests: dict[str, str] = {}

    # ----------------------------------------------------------------------------------------- planning
    def plan(self, reseed_anchor, anchor_images, reset_edits: bool, until: str = "video") -> None:
        """Cameras and arcs from the job, options, weights and anchor edits checked, all before anything is
        written."""
        from videofrom3d.job import job_cameras
        from videofrom3d.prepare.arcs import arc_ranges, check_cameras

        job = self.job
        for s in job.styles:
            if not Path(s.image).is_file():
                raise PipelineError(f"style image not found: {s.image}")
        from videofrom3d.scene.mesh import SUPPORTED_SUFFIXES

        if not Path(job.scene.path).is_file():
            raise PipelineError(f"scene file not found: {job.scene.path}")
        if Path(job.scene.path).suffix.lower() not in SUPPORTED_SUFFIXES:
            raise PipelineError(f"{job.scene.path}: unsupported scene format; use one of {', '.join(SUPPORTED_SUFFIXES)}")
        cameras = job_cameras(job)
        try:
            self.ranges = arc_ranges(len(cameras), job.frames_per_arc)
        except ValueError as e:
            raise PipelineError(str(e)) from None
        check_cameras(cameras)
        self.cameras = cameras
        self.n_arcs = len(self.ranges)
        self.n_anchors = self.n_arcs + 1
        self._check_options()
        self._check_weights(until)
        reseeds, images = _normalise_edits(reseed_anchor, anchor_images)
        size = (job.width, job.height)
        new_images = []
        for k, seed in reseeds:
            self._check_anchor_index(k, "--reseed-anchor")
            if seed < 0:
                raise PipelineError(f"--reseed-anchor {k}: the seed must be >= 0, got {seed}")
        for k, p in images:
            self._check_anchor_index(k, "--anchor")
            try:
                img = read_image(p)
            except (FileNotFoundError, ValueError) as e:
                raise PipelineError(f"--anchor {k}: {e}") from None
            h, w = img.shape[:2]
            if abs(w / h - size[0] / size[1]) > 0.01 * size[0] / size[1]:
                self.log(f"note: --anchor {k}: {p} is {w}x{h}, the job {size[0]}x{size[1]}; it is stretched to fit")
            new_images.append((k, resize(img, size) if (w, h) != size else img))
        # everything checked: now the work folder may change
        self.work.mkdir(parents=True, exist_ok=True)
        _remove_stale_temporaries(self.work)
        self.manifest = Manifest.load(self.work)
        edits = self.manifest.edits("anchors")
        if reset_edits:
            edits.clear()
        for k, seed in reseeds:
            edits[str(k)] = {"seed": seed}
        for k, img in new_images:
            path = self.work / "edits" / f"anchor{k:03d}.png"
            write_image(path, img)
            edits[str(k)] = {"image": str(path.relative_to(self.work)), "digest": digest_file(path)}
        self.manifest.data["job"] = job.name
        # what eval compares colours and CLIP-I against, so `videofrom3d eval WORK` needs no --style
        self.manifest.data["style_images"] = [str(Path(s.image).resolve()) for s in job.styles]
        self.manifest.begin_run(engine=self.engine, engine_reason=self.reason, models=self.models,
                                edits={k: dict(v) for k, v in edits.items()})

    def _check_options(self) -> None:
        """Every stage table of the job this engine reads, checked before any stage runs (one-line errors)."""
        from videofrom3d.prepare.arcs import PrepareConfig

        _config(PrepareConfig, self.job, "prepare")
        self._noise_config()  # prepare computes the noise for either engine when asked
        if self.engine == "preview":
            self._preview_config()
            return
        if not self.job.styles:
            raise PipelineError("the diffusion engine needs a style image: add [[style]] image = ... and "
                                "identifier = ... to the job (or --style IMAGE --identifier TEXT)")
        from videofrom3d.align import AlignConfig
        from videofrom3d.anchors import AnchorConfig
        from videofrom3d.inbetween import InbetweenConfig

        for cls, section in ((AlignConfig, "align"), (AnchorConfig, "anchors"), (InbetweenConfig, "inbetween")):
            _config(cls, self.job, section)

    def _check_weights(self, until: str) -> None:
        """With real models, every weight the stages up to ``until`` need must be here (one line that points
        to ``doctor``, instead of a failure after the earlier stages ran)."""
        if self.engine != "diffusion" or self.models != "real":
            return
        from videofrom3d import models as registry
        from videofrom3d.inbetween import InbetweenConfig

        stage = STAGES.index(until)
        needed = ["flux", "controlnet_hed"] if stage >= STAGES.index("align") else []
        if stage >= STAGES.index("inbetween"):
            needed.append("cogvideox")
            transformer = _config(InbetweenConfig, self.job, "inbetween").transformer
            needed += {"ggi": ["ggi"], "flow_lora": ["flow_lora"]}.get(transformer, [])
        missing = [k for k in needed if registry.find(k, self.job.model(k)) is None]
        if missing:
            ids = ", ".join(f"{k} ({registry.MODELS[k].repo_id})" for k in missing)
            raise PipelineError(f"the diffusion engine needs weights that are not on this machine: {ids}; "
                                "`videofrom3d doctor` shows where each was looked for and how to get it, "
                                "`--engine preview` renders without weights")

    def _check_anchor_index(self, k: int, flag: str) -> None:
        if not 0 <= k < self.n_anchors:
            raise PipelineError(
                f"{flag} {k}: this job has {self.n_anchors} anchors (0..{self.n_anchors - 1}), one per arc end"
            )

    # ----------------------------------------------------------------------------------------- paths
    def arc_folder(self, k: int) -> Path:
        return self.work / "prepare" / f"arc{k:03d}"

    def anchor_path(self, k: int) -> Path:
        return self.work / "anchors" / f"{k:03d}.png"

    def frames_folder(self, k: int) -> Path:
        return self.work / "inbetween" / f"arc{k:03d}"

    def _bar(self, items: Iterable, desc: str, total: int | None = None, leave: bool = True):
        from tqdm.auto import tqdm

        return tqdm(items, desc=desc, total=total, disable=not self.progress, leave=leave, unit="item",
                    file=sys.stderr, dynamic_ncols=True)

    def _common(self, stage: str) -> dict:
        return {"stage": stage, "code": self.version, "revision": CODE_REVISION[stage]}

    def load_arc(self, k: int):
        """Arc k as written on disk (never the float copy that was saved: a resumed run must see the same)."""
        from videofrom3d.prepare.arcs import PreparedArc

        if k in self._arcs:
            self._arcs.move_to_end(k)
            return self._arcs[k]
        arc = PreparedArc.load(self.arc_folder(k), with_noise=self.engine == "diffusion")
        self._arcs[k] = arc
        while len(self._arcs) > 1 and sum(_arc_bytes(a) for a in self._arcs.values()) > ARC_CACHE_BYTES:
            self._arcs.popitem(last=False)
        return arc

    def _prune(self, stage: str, prefix: str, keep: int, path_of: Callable[[int], Path]) -> None:
        """Drop items (and their files) of indices beyond ``keep`` left by an earlier, longer trajectory."""
        items = self.manifest.items(stage)
        for name in list(items):
            if name.startswith(prefix) and name[len(prefix):].isdigit() and int(name[len(prefix):]) >= keep:
                items.pop(name)
        k = keep
        while path_of(k).exists():
            p = path_of(k)
            shutil.rmtree(p) if p.is_dir() else p.unlink()
            k += 1

    # ----------------------------------------------------------------------------------------- prepare
    def prepare(self, with_noise: bool | None, export_official) -> StageResult:
        from videofrom3d.prepare.arcs import PrepareConfig

        job = self.job
        res = StageResult("prepare")
        cfg = _config(PrepareConfig, job, "prepare")
        need_noise = (self.engine == "diffusion") if with_noise is None else bool(with_noise)
        need_noise = need_noise or export_official is not None
        scene_digest = digest_json([digest_file(p) for p in _scene_files(Path(job.scene.path))]
                                   + [job.scene.up, job.scene.unit_scale])
        rec = self.manifest.stage("prepare")
        scene_info = rec.get("scene")
        if not scene_info or scene_info.get("digest") != scene_digest:
            scene_info = None
        self._scene = None
        self._renderer = None

        def scene():
            if self._scene is None:
                from videofrom3d.scene.mesh import load_scene

                self._scene = load_scene(job.scene.path, up=job.scene.up, unit_scale=job.scene.unit_scale)
            return self._scene

        cfg_dict = _asdict(cfg)
        cfg_dict.pop("preview", None)  # the preview mp4 is a by-product, not an input of later stages
        noise_cfg = self._noise_config() if need_noise else None
        bar = self._bar(range(self.n_arcs), "prepare", total=self.n_arcs)
        for k in bar:
            a, b = self.ranges[k]
            cams = self.cameras[a : b + 1]
            folder = self.arc_folder(k)
            key = digest_json({
                **self._common("prepare"), "scene": scene_digest, "cameras": [c.to_dict() for c in cams],
                "size": [job.width, job.height], "config": cfg_dict, "index": k, "first_frame": a,
            })
            item = f"arc{k:03d}"
            if self.manifest.is_current("prepare", item, key, folder, verify=True, exclude=ARC_EXTRAS):
                res.reused.append(item)
            else:
                t0 = time.perf_counter()
                from videofrom3d.prepare import make_renderer, prepare_arc
                from videofrom3d.prepare.arcs import write_arc_preview

                if self._renderer is None:
                    self._renderer = make_renderer(scene(), backend=cfg.backend)
                arc = prepare_arc(self._renderer, scene(), cams, cfg, index=k, first_frame=a)
                arc.save(folder)
                if cfg.preview:
                    write_arc_preview(arc, folder / "preview.mp4", fps=job.fps)
                del arc
                out = digest_path(folder, exclude=ARC_EXTRAS)
                self.manifest.record("prepare", item, key, out, time.perf_counter() - t0)
                res.ran.append(item)
            self.digests[item] = self.manifest.item("prepare", item)["output"]
            if need_noise:
                self._noise(k, noise_cfg, res, preview=cfg.preview)
            res.outputs.append(folder)
        if scene_info is None:
            lo, hi = scene().bounds
            rec["scene"] = {"digest": scene_digest, "extent": float(np.linalg.norm(np.asarray(hi) - np.asarray(lo)))}
            self.manifest.save()
        self.scene_extent = float(rec["scene"]["extent"])
        if need_noise:
            from videofrom3d.prepare.noise_warp import release_buffers

            release_buffers()  # the noise kernel keeps its buffers from arc to arc
        self._prune("prepare", "arc", self.n_arcs, self.arc_folder)
        self._prune("prepare", "noise", self.n_arcs, lambda k: self.arc_folder(k) / "noise.npy")
        if export_official is not None:
            res.outputs.append(self._export_official(Path(export_official), cfg, scene()))
        self._scene = self._renderer = None
        return res

    def _noise_config(self):
        from videofrom3d.prepare.noise_warp import NoiseConfig

        return _config(NoiseConfig, self.job, "noise",
                       defaults={"latent_size": [self.job.height // 8, self.job.width // 8]})

    def _noise(self, k: int, cfg, res: StageResult, preview: bool = True) -> None:
        """Warped noise of arc k into ``arc/noise.npy`` (its own manifest item, so a preview run's arcs gain
        noise later without being prepared again)."""
        from videofrom3d.prepare.noise_warp import warped_noise_for_arc, write_noise_preview

        item = f"noise{k:03d}"
        seed = derive_seed(self.job.seed, "noise", k)
        key = digest_json({**self._common("noise"), "arc": self.digests[f"arc{k:03d}"], "config": _asdict(cfg),
                           "seed": seed, "frames_per_arc": self.job.frames_per_arc})
        path = self.arc_folder(k) / "noise.npy"
        if self.manifest.is_current("prepare", item, key, path, verify=True):
            res.reused.append(item)
        else:
            t0 = time.perf_counter()
            from videofrom3d.prepare.arcs import load_flows

            f = load_flows(self.arc_folder(k), end_to_start=False)
            flows, valid = f["forward"], f["forward_valid"]
            noise = warped_noise_for_arc(flows, self.job.frames_per_arc, cfg, seed, valid=valid)
            with atomic_path(path) as tmp:
                np.save(tmp, np.asarray(noise, np.float32).astype(np.float16))
            if preview:  # see it move with the camera
                write_noise_preview(noise, path.with_suffix(".mp4"), fps=4.0)
            self.manifest.record("prepare", item, key, digest_file(path), time.perf_counter() - t0, seed=seed)
            res.ran.append(item)
        self.digests[item] = self.manifest.item("prepare", item)["output"]

    def _export_official(self, out: Path, cfg, scene) -> Path:
        """The prepared arcs (with their warped noise) in the authors' folder layout under ``out``."""
        from videofrom3d.prepare.arcs import PreparedArc
        from videofrom3d.prepare.official import export_official

        arcs = [PreparedArc.load(self.arc_folder(k)) for k in range(self.n_arcs)]
        export_official(arcs, scene, out, cfg, renderer=self._renderer)
        return out

    # ----------------------------------------------------------------------------------------- align
    def _style_digests(self) -> list:
        return [[digest_file(s.image), s.identifier_prompt] for s in self.job.styles]

    def align(self) -> StageResult:
        res = StageResult("align")
        if self.engine == "preview":
            from videofrom3d.preview import style_from_files

            cfg = self._preview_config()
            path = self.work / "align" / "preview_style.json"
            key = digest_json({**self._common("align"), "engine": "preview", "styles": self._style_digests(),
                               "palette_size": cfg.palette_size, "seed": self.job.seed})
            if self.manifest.is_current("align", "preview", key, path, verify=True):
                res.reused.append("preview")
            else:
                t0 = time.perf_counter()
                style = style_from_files([s.image for s in self.job.styles], cfg.palette_size, seed=self.job.seed)
                style.save(path)
                self.manifest.record("align", "preview", key, digest_file(path), time.perf_counter() - t0)
                res.ran.append("preview")
            if not self.job.styles:
                res.note = " (no style image in the job: default palette)"
        else:
            path = self._align_diffusion(res)
        self.digests["align"] = self.manifest.item("align", self.engine)["output"]
        res.outputs.append(path)
        return res

    def _align_diffusion(self, res: StageResult) -> Path:
        from videofrom3d.align import AlignConfig, train_style_lora

        job = self.job
        if not job.styles:
            raise PipelineError("the diffusion engine needs a style image: add [[style]] image = ... to the job "
                                "(or --style IMAGE)")
        cfg = _config(AlignConfig, job, "align")
        model_ids = {k: job.model(k) for k in ("flux", "controlnet_hed", "hed")}
        key = digest_json({**self._common("align"), "engine": "diffusion", "models": self.models,
                           "model_ids": model_ids, "styles": self._style_digests(), "config": _asdict(cfg),
                           "seed": job.seed})
        out_dir = self.work / "align"
        path = out_dir / "lora.safetensors"
        if self.manifest.is_current("align", "diffusion", key, path, verify=True):
            res.reused.append("diffusion")
            return path
        # the trainer keeps checkpoints in align/checkpoints/ and resumes from them when its own fingerprint
        # of the inputs matches, so a killed alignment goes on where it stopped
        t0 = time.perf_counter()
        lora = Path(train_style_lora(job, cfg, out_dir, models=self.models, progress=self.progress))
        if lora != path:
            shutil.copyfile(lora, path)
        self.manifest.record("align", "diffusion", key, digest_file(path), time.perf_counter() - t0)
        res.ran.append("diffusion")
        return path

    # ----------------------------------------------------------------------------------------- engines
    def _preview_config(self):
        from videofrom3d.preview import PreviewConfig

        return _config(PreviewConfig, self.job, "preview")

    def _preview_common(self) -> dict:
        cfg = self._preview_config()
        fog = cfg.fog_distance if cfg.fog_distance is not None else self.scene_extent
        return {"engine": "preview", "config": _asdict(cfg), "fog_distance": fog, "style": self.digests["align"]}

    def _preview_engine(self, cls):
        """``cls`` (PreviewAnchors or PreviewInbetweener) with the aligned style; fog over the scene's diagonal
        unless ``[preview] fog_distance`` says otherwise."""
        from videofrom3d.preview import PreviewStyle

        style = PreviewStyle.load(self.work / "align" / "preview_style.json")
        return cls(style, self._preview_config(), fog_distance=self.scene_extent)

    def anchor_engine(self):
        if "anchors" not in self._engines:
            if self.engine == "preview":
                from videofrom3d.preview import PreviewAnchors

                self._engines["anchors"] = self._preview_engine(PreviewAnchors)
            else:
                from videofrom3d.anchors import AnchorConfig, load_anchor_generator

                cfg = _config(AnchorConfig, self.job, "anchors")
                self._engines["anchors"] = load_anchor_generator(
                    self.job, cfg, models=self.models, lora_path=self.work / "align" / "lora.safetensors"
                )
        return self._engines["anchors"]

    def inbetween_engine(self):
        if "inbetween" not in self._engines:
            self._close("anchors")  # one diffusion model in memory at a time
            if self.engine == "preview":
                from videofrom3d.preview import PreviewInbetweener

                self._engines["inbetween"] = self._preview_engine(PreviewInbetweener)
            else:
                from videofrom3d.inbetween import InbetweenConfig, load_inbetweener

                cfg = _config(InbetweenConfig, self.job, "inbetween")
                self._engines["inbetween"] = load_inbetweener(self.job, cfg, models=self.models)
        return self._engines["inbetween"]

    def _engine_common(self, stage: str) -> dict:
        if self.engine == "preview":
            return {**self._common(stage), **self._preview_common()}
        keys = ("flux", "controlnet_hed") if stage == "anchors" else ("cogvideox", "ggi", "flow_lora", "blip2")
        return {**self._common(stage), "engine": "diffusion", "models": self.models,
                "model_ids": {k: self.job.model(k) for k in keys}, "options": json_ready(self.job.options(stage)),
                "align": self.digests["align"] if stage == "anchors" else None}

    def _close(self, name: str) -> None:
        eng = self._engines.pop(name, None)
        if eng is not None and hasattr(eng, "close"):
            eng.close()

    def close(self) -> None:
        for name in list(self._engines):
            self._close(name)
        self._arcs.clear()

    # ----------------------------------------------------------------------------------------- anchors
    def anchor_view(self, k: int) -> tuple[int, int]:
        """(arc, local frame) of anchor k: the first frame of arc 0, then the last frame of arc k-1 (the same
        camera as arc k's first frame, and the arc whose end->start flow links anchor k-1 to anchor k)."""
        return (0, 0) if k == 0 else (k - 1, self.job.frames_per_arc)

    def anchors(self) -> StageResult:
        """Anchor k from the view at global frame k*N; from k = 1 on guided by anchor k-1 (SAG) read back from
        disk. Every anchor uses the job's seed (the authors' "same initial noise") unless reseeded."""
        res = StageResult("anchors")
        job = self.job
        common = self._engine_common("anchors")
        edits = self.manifest.edits("anchors")
        cfg = None
        if self.engine == "diffusion":
            from videofrom3d.anchors import AnchorConfig

            cfg = _config(AnchorConfig, job, "anchors")
        prev_base = prev_prompt = None
        self.anchor_base: list[str] = []
        views: list[AnchorView] = []
        bar = self._bar(range(self.n_anchors), "anchors", total=self.n_anchors)
        for k in bar:
            arc_k, frame = self.anchor_view(k)
            prompt = self._anchor_prompt(k, cfg)
            guided = k > 0 and (cfg is None or self._use_replacement(cfg, k, prompt, prev_prompt))
            base = digest_json({**common, "view": [self.digests[f"arc{arc_k:03d}"], frame], "prompt": prompt,
                                "seed": job.seed, "previous": prev_base if guided else None})
            edit = edits.get(str(k))
            views.append(AnchorView(k, arc_k, frame, prompt, guided, base, edit))
            key = digest_json({"base": base, "edit": edit})
            path = self.anchor_path(k)
            item = f"anchor{k:03d}"
            if self.manifest.is_current("anchors", item, key, path, verify=True):
                res.reused.append(item)
            else:
                t0 = time.perf_counter()
                seed = job.seed
                unedited = self.unedited_anchor_path(k, base)
                if edit and not unedited.is_file() and self.manifest.is_current(
                    "anchors", item, digest_json({"base": base, "edit": None}), path, verify=True
                ):  # keep the unedited anchor: the anchor after it is guided by it
                    unedited.parent.mkdir(parents=True, exist_ok=True)
                    with atomic_path(unedited) as tmp:
                        shutil.copyfile(path, tmp)
                if edit and "image" in edit:
                    src = self.work / edit["image"]
                    if not src.is_file() or digest_file(src) != edit["digest"]:
                        raise PipelineError(f"anchor {k}: the edit image {src} is missing or changed; "
                                            f"give it again with --anchor {k} IMAGE")
                    image = read_image(src, size=(job.width, job.height))
                else:
                    if edit and "seed" in edit:
                        seed = int(edit["seed"])
                    image = self._generate_anchor(views, k, seed, cfg)
                write_image(path, image)
                self.manifest.record("anchors", item, key, digest_file(path), time.perf_counter() - t0,
                                     seed=seed, prompt=prompt, edit=edit)
                res.ran.append(item)
            self.digests[item] = self.manifest.item("anchors", item)["output"]
            self.anchor_base.append(base)
            res.outputs.append(path)
            prev_base, prev_prompt = base, prompt
        self._prune("anchors", "anchor", self.n_anchors, self.anchor_path)
        keep = {self.unedited_anchor_path(v.k, v.base) for v in views if v.edit}
        for stale in set((self.work / "edits" / "unedited").glob("*.png")) - keep:
            stale.unlink()
        return res

    def unedited_anchor_path(self, k: int, base: str) -> Path:
        """Where anchor k is kept as it would be without its edit, named by its input hash (never stale)."""
        return self.work / "edits" / "unedited" / f"{k:03d}-{base[:16]}.png"

    def _generate_anchor(self, views: list[AnchorView], k: int, seed: int, cfg) -> np.ndarray:
        """Anchor k from its view, guided (SAG) by anchor k-1 *without its edit*, read back from disk: an edit
        applies to its own anchor only, so the anchors after it come out the same whether they were made
        before or after the edit, and a resumed run sees exactly what this one sees."""
        view = views[k]
        arc = self.load_arc(view.arc)
        guide = self._guide(self._unedited_anchor(views, k - 1, cfg), arc, cfg) if view.guided else None
        extra = {"frame": view.frame} if self.engine == "preview" else {}
        return self.anchor_engine().generate(arc.edge_maps[view.frame], view.prompt, seed, guide, arc=arc, **extra)

    def _unedited_anchor(self, views: list[AnchorView], k: int, cfg) -> np.ndarray:
        """Anchor k as it is without edits: its file when it has none, else the kept unedited copy
        (generated now, once, when an edit was given before the anchor was ever made)."""
        if not views[k].edit:
            return read_image(self.anchor_path(k))
        path = self.unedited_anchor_path(k, views[k].base)
        if not path.is_file():
            write_image(path, self._generate_anchor(views, k, self.job.seed, cfg))
        return read_image(path)

    def _anchor_prompt(self, k: int, cfg) -> str:
        if cfg is None:
            return anchor_prompt(self.job, k)
        from videofrom3d.anchors import anchor_prompt as diffusion_prompt

        try:
            return diffusion_prompt(self.job, k, cfg)
        except ValueError as e:
            raise PipelineError(str(e)) from None

    @staticmethod
    def _use_replacement(cfg, k: int, prompt: str, previous_prompt: str | None) -> bool:
        from videofrom3d.anchors import use_replacement

        return use_replacement(cfg, k, prompt, previous_prompt)

    def _guide(self, previous: np.ndarray, arc, cfg):
        """Anchor k-1 warped into anchor k's view by the arc's exact end->start flow, with its observed mask."""
        if self.engine == "preview":
            from videofrom3d.prepare.flow import backward_warp
            from videofrom3d.preview import PreviewGuide

            warped, observed = backward_warp(previous, arc.flow_end_to_start, arc.flow_end_to_start_valid)
            return PreviewGuide(warped, observed)
        from videofrom3d.anchors import make_anchor_guide

        return make_anchor_guide(previous, arc, cfg.mask_erode_px)

    # ----------------------------------------------------------------------------------------- inbetween
    def inbetween(self) -> StageResult:
        """Frames of arc k between its start (anchor k; with the diffusion engine's ``chain = "generated"``,
        the authors' choice, arc k-1's last frame as written) and anchor k+1, with seed ``job.seed + k``.

        An arc's input hash is its unedited chain (prepared arc, the anchors' unedited hashes, the previous
        arc's for generated chaining, prompt, seed, options) plus the hashes of the two anchors it touches, so
        an anchor edit redoes exactly the two arcs at that anchor."""
        res = StageResult("inbetween")
        job = self.job
        common = self._engine_common("inbetween")
        chain, chain_frame, cfg = "anchor", "last_kept", None
        if self.engine == "diffusion":
            from videofrom3d.inbetween import InbetweenConfig

            cfg = _config(InbetweenConfig, job, "inbetween")
            chain, chain_frame = cfg.chain, cfg.chain_frame
        prompt = self._inbetween_prompt(cfg)
        tails = chain == "generated" and chain_frame == "last_decoded"
        prev_base = None
        bar = self._bar(range(self.n_arcs), "inbetween", total=self.n_arcs)
        for k in bar:
            item = f"arc{k:03d}"
            folder = self.frames_folder(k)
            seed = job.seed + k
            from_anchor = k == 0 or chain == "anchor"
            upstream = [self.digests[f"arc{k:03d}"], self.digests.get(f"noise{k:03d}") if self.engine == "diffusion" else None]
            start_token = self.anchor_base[k] if from_anchor else ["generated", chain_frame, prev_base]
            base = digest_json({**common, "arc": upstream, "start": start_token, "end": self.anchor_base[k + 1],
                                "prompt": prompt, "seed": seed})
            key = digest_json({"base": base, "anchors": [self.digests[f"anchor{k:03d}"], self.digests[f"anchor{k + 1:03d}"]]})
            tail = self.work / "inbetween" / "tails" / f"arc{k:03d}.png"
            current = self.manifest.is_current("inbetween", item, key, folder, verify=True)
            if current and (not tails or tail.is_file()):
                res.reused.append(item)
            else:
                t0 = time.perf_counter()
                arc = self.load_arc(k)
                if from_anchor:
                    start = read_image(self.anchor_path(k))
                elif tails:
                    start = read_image(self.work / "inbetween" / "tails" / f"arc{k - 1:03d}.png")
                else:
                    start = read_image(self.frames_folder(k - 1) / f"{job.frames_per_arc:04d}.png")
                end = read_image(self.anchor_path(k + 1))
                eng = self.inbetween_engine()
                with atomic_path(folder, suffix="") as tmp:
                    tmp.mkdir(parents=True)
                    if hasattr(eng, "iter_frames"):
                        frames = eng.iter_frames(start, end, arc.edge_maps, seed, arc)
                    else:
                        frames = eng.inbetween(start, end, arc.edge_maps, arc.warped_noise, prompt, seed, arc=arc)
                    count = 0
                    for i, frame in enumerate(self._bar(frames, f"arc {k}", total=arc.frame_count, leave=False)):
                        write_image(tmp / f"{i:04d}.png", frame)
                        count += 1
                    if count != arc.frame_count:
                        raise PipelineError(f"inbetween of arc {k} gave {count} frames, expected {arc.frame_count}")
                if tails:
                    write_image(tail, eng.last_decoded[-1])
                self.manifest.record("inbetween", item, key, digest_path(folder), time.perf_counter() - t0,
                                     seed=seed, prompt=prompt)
                res.ran.append(item)
            self.digests[f"frames{k:03d}"] = self.manifest.item("inbetween", item)["output"]
            res.outputs.append(folder)
            prev_base = base
        self._prune("inbetween", "arc", self.n_arcs, self.frames_folder)
        return res

    def _inbetween_prompt(self, cfg) -> str:
        """The video prompt: none for the preview engine; ``[inbetween] prompt``, else the caption of the first
        anchor (BLIP-2), made once per unedited anchor chain and kept in the manifest."""
        if cfg is None:
            return ""
        if cfg.prompt:
            return cfg.prompt
        key = digest_json({**self._common("inbetween"), "anchor": self.anchor_base[0], "models": self.models,
                           "blip2": self.job.model("blip2")})
        rec = self.manifest.item("inbetween", "caption")
        if rec is not None and rec.get("key") == key:
            return rec["output"]
        text = self.inbetween_engine().resolve_prompt(read_image(self.anchor_path(0)))
        self.manifest.record("inbetween", "caption", key, text)
        return text

    # ----------------------------------------------------------------------------------------- video
    def video(self) -> StageResult:
        res = StageResult("video")
        job = self.job
        frames_dir = self.work / "frames"
        video = self.work / "video.mp4"
        key = digest_json({**self._common("video"), "arcs": [self.digests[f"frames{k:03d}"] for k in range(self.n_arcs)],
                           "fps": job.fps, "frames_per_arc": job.frames_per_arc})
        if (self.manifest.is_current("video", "frames", key, frames_dir, verify=True)
                and self.manifest.is_current("video", "video", key, video, verify=True)):
            res.reused += ["frames", "video"]
        else:
            t0 = time.perf_counter()
            sources = []
            for k in range(self.n_arcs):
                first = 0 if k == 0 else 1  # arc k's frame 0 is arc k-1's last frame
                sources += [self.frames_folder(k) / f"{i:04d}.png" for i in range(first, job.frames_per_arc + 1)]
            with atomic_path(frames_dir, suffix="") as tmp:
                tmp.mkdir(parents=True)
                for g, src in enumerate(sources):
                    shutil.copyfile(src, tmp / f"{g:04d}.png")
            self.manifest.record("video", "frames", key, digest_path(frames_dir), time.perf_counter() - t0,
                                 count=len(sources))
            res.ran.append("frames")
            t0 = time.perf_counter()
            encode_video(frames_dir, len(sources), job.fps, video, progress=self._bar)
            self.manifest.record("video", "video", key, digest_file(video), time.perf_counter() - t0,
                                 frames=len(sources), fps=job.fps)
            res.ran.append("video")
        res.outputs += [frames_dir, video]
        return res
