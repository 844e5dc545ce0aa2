"""Before any work: which engine runs, and every input checked (scene, styles, cameras and arcs, every stage
table the engine reads, weights, anchor edits), so a bad job fails in one line with nothing written."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from videofrom3d.engines import EngineError, get_engine
from videofrom3d.io.manifest import Manifest
from videofrom3d.io.workfolder import STAGE_FOLDERS, WorkFolder
from videofrom3d.pipeline.context import RunContext
from videofrom3d.pipeline.edits import PipelineError, apply_edits, check_edits

ENGINES = ("auto", "preview", "diffusion")
MODEL_MODES = ("real", "tiny-random")


def cuda_status() -> tuple[bool, str]:
    """(whether a CUDA GPU is usable, a short description or the reason not). On Linux with no GPU driver
    loaded it answers without importing torch (about 1.5 s of a `prepare` on a CPU machine)."""
    if not gpu_driver_present():
        return False, "no GPU driver loaded (no /proc/driver/nvidia, /dev/kfd or /dev/dxg)"
    try:
        import torch
    except ImportError:
        return False, "torch is not installed (pip install 'videofrom3d[diffusion]')"

    if not torch.cuda.is_available():
        return False, f"no CUDA GPU visible to torch {torch.__version__}"
    name = torch.cuda.get_device_name(0)
    mem = torch.cuda.get_device_properties(0).total_memory / 2**30
    return True, f"{name}, {mem:.0f} GiB"


def gpu_driver_present() -> bool:
    """False only where torch certainly sees no GPU: Linux with neither the NVIDIA driver, ROCm's /dev/kfd
    nor WSL's /dev/dxg (other systems: True, torch decides)."""
    import sys

    if not sys.platform.startswith("linux"):
        return True
    return any(Path(p).exists() for p in ("/proc/driver/nvidia", "/dev/nvidiactl", "/dev/kfd", "/dev/dxg"))


def choose_engine(engine: str = "auto", models: str = "real", job=None) -> tuple[str, str]:
    """-> (engine name, why). ``auto`` picks diffusion when every weight it needs is found and a CUDA GPU is
    present (or when ``models="tiny-random"``, which needs neither), else preview; any registered engine
    can be named."""
    from videofrom3d.engines import engine_names

    if engine not in ENGINES and engine not in engine_names():
        raise PipelineError(f"--engine must be one of {', '.join(dict.fromkeys([*ENGINES, *engine_names()]))}, got {engine!r}")
    if models not in MODEL_MODES:
        raise PipelineError(f"--models must be one of {', '.join(MODEL_MODES)}, got {models!r}")
    if engine != "auto":
        tiny = " (tiny random models)" if engine == "diffusion" and models == "tiny-random" else ""
        return engine, f"asked for with --engine {engine}{tiny}"
    if models == "tiny-random":
        return "diffusion", "auto: --models tiny-random runs the diffusion code path on tiny random models"
    from videofrom3d.diffusion import missing_weights

    missing = missing_weights(job)
    gpu, gpu_text = cuda_status()
    if not missing and gpu:
        return "diffusion", f"auto: every weight found and a CUDA GPU ({gpu_text})"
    why = []
    if missing:
        why.append(f"missing weights: {', '.join(missing)} (see `videofrom3d doctor`)")
    if not gpu:
        why.append(gpu_text)
    return "preview", "auto: " + "; ".join(why)


def check_scene_and_styles(job) -> None:
    from videofrom3d.pipeline.preflight import check_style_images
    from videofrom3d.scene.mesh import SUPPORTED_SUFFIXES

    check_style_images(job.styles)
    if not Path(job.scene.path).is_file():
        raise PipelineError(f"scene file not found: {job.scene.path}")
    if Path(job.scene.path).suffix.lower() not in SUPPORTED_SUFFIXES:
        raise PipelineError(f"{job.scene.path}: unsupported scene format; use one of {', '.join(SUPPORTED_SUFFIXES)}")


def stage_configs(job, spec, models: str = "real") -> dict:
    """Every stage table this engine reads, parsed once (one-line errors naming the key); ``models`` as
    ``render`` takes it (the engine may shrink its defaults for tiny random models)."""
    from videofrom3d.job import stage_config
    from videofrom3d.prepare.arcs import PrepareConfig
    from videofrom3d.prepare.noise_warp import NoiseConfig

    configs = {"prepare": stage_config(PrepareConfig, job, "prepare")}
    try:
        configs.update(spec.configs(job, models))
    except EngineError as e:
        raise PipelineError(str(e)) from None
    # prepare computes the noise for either engine when asked, so it is checked for both
    defaults = {"latent_size": [job.height // 8, job.width // 8], **spec.noise_defaults(job, configs)}
    configs["noise"] = stage_config(NoiseConfig, job, "noise", defaults=defaults)
    return configs


def plan(job, engine: str, reason: str, models: str, until: str, edits: tuple, progress: bool,
         log: Callable[[str], None], force: bool = False, with_noise: bool | None = None) -> RunContext:
    """Everything checked, then (only then) the work folder opened: stale temporaries removed, the edits
    written and the run begun in the manifest. ``edits`` = (reseed_anchor, anchor_images, reset_edits);
    ``force`` goes on when the memory or disk estimate exceeds the machine."""
    from videofrom3d import __version__
    from videofrom3d.job import job_cameras
    from videofrom3d.pipeline import preflight
    from videofrom3d.prepare.arcs import arc_ranges, check_cameras
    from videofrom3d.prepare.camera_checks import checks_key, warn_cameras
    from videofrom3d.scene.mesh import load_scene, warn_scale

    check_scene_and_styles(job)
    preflight.check_writable(job.work_dir, "work folder")
    scene = load_scene(job.scene.path, up=job.scene.up, unit_scale=job.scene.unit_scale)
    warn_scale(scene)
    cameras = job_cameras(job, bounds=scene.bounds)  # the scene is loaded once a run
    try:
        ranges = arc_ranges(len(cameras), job.frames_per_arc)
    except ValueError as e:
        raise PipelineError(str(e)) from None
    check_cameras(cameras)
    spec = get_engine(engine)
    configs = stage_configs(job, spec, models)
    noise = with_noise if with_noise is not None else spec.needs_noise
    estimate = preflight.estimate_resources(job.width, job.height, job.frames_per_arc, len(ranges),
                                            configs["noise"] if noise else None, job.work_dir)
    preflight.check_resources(estimate, job.width, job.height, job.frames_per_arc, force)
    try:
        spec.check(job, models, until, configs)
    except EngineError as e:
        raise PipelineError(str(e)) from None
    from videofrom3d.prepare.edge_mode import edges_for_job

    # HED or drawn lines, decided before any work (prepare alone never needs HED: it may precede a preview)
    edge_choice = edges_for_job(job, spec.name if until != "prepare" else "preview", models)
    anchor_size = spec.anchor_size(job, configs)
    checked = check_edits(*edits[:2], edits[2], len(ranges) + 1, anchor_size or (job.width, job.height), log)
    camera_key = checks_key(scene, cameras)
    found = warn_cameras(scene, cameras, found=_cached_camera_checks(WorkFolder(job.work_dir), camera_key))
    # everything checked: now the work folder may change
    work = WorkFolder(job.work_dir)
    work.root.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(work)
    manifest = Manifest.load(work.root)
    current = apply_edits(manifest, work, checked)
    manifest.data["job"] = job.name
    # what eval compares colours and CLIP-I against, so `videofrom3d eval WORK` needs no --style
    manifest.data["style_images"] = [str(Path(s.image).resolve()) for s in job.styles]
    # what `videofrom3d report WORK` draws the geometry from
    manifest.data["scene"] = {"path": str(Path(job.scene.path).resolve()), "up": job.scene.up,
                              "unit_scale": job.scene.unit_scale}
    manifest.data["camera_checks"] = {"key": camera_key, "found": found}  # a re-run warns without re-rendering
    manifest.begin_run(engine=engine, engine_reason=reason, models=models, edits={k: dict(v) for k, v in current.items()})
    return RunContext(job=job, spec=spec, engine_reason=reason, models=models, configs=configs, cameras=cameras,
                      ranges=ranges, manifest=manifest, version=__version__, progress=progress, log=log,
                      edge_choice=edge_choice, anchor_size=anchor_size, scene=scene)


def _cached_camera_checks(work: WorkFolder, key: str) -> dict | None:
    """The camera checks an earlier run recorded for the same scene and cameras (read only; None if none)."""
    import json

    try:
        rec = json.loads(work.manifest.read_text()).get("camera_checks") or {}
    except (OSError, ValueError, AttributeError):
        return None
    return {k: list(v) for k, v in rec["found"].items()} if rec.get("key") == key else None


def remove_stale_temporaries(work: WorkFolder) -> None:
    """Temporary files and folders a killed run left (``.name.<random>.tmp*``, see :func:`atomic_path`); nothing
    trusts them, removing them only frees the space. One render per work folder at a time."""
    found = list(work.root.glob(".*.tmp*"))
    for name in STAGE_FOLDERS:
        if (work.root / name).is_dir():
            found += list((work.root / name).rglob(".*.tmp*"))
    for p in found:
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists():
            p.unlink()
