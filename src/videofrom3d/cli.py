"""The ``videofrom3d`` command: parses arguments and calls the API, nothing more."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from videofrom3d.engines import ENGINE_MODULES

DESCRIPTION = """\
Turn coarse 3D geometry, a camera path and a style image into a style-consistent video (VideoFrom3D).

Stages (each takes a job file, or the equivalent flags, and reuses what earlier runs left in the work folder):
  prepare     edge maps, depth, exact flow and warped noise per arc (CPU, no weights; paper 3.1)
  align       style LoRA on FLUX.1-dev + HED ControlNet ("distribution alignment", paper 3.2)
  anchors     anchor views with sparse appearance-guided sampling (SAG, paper 3.2)
  inbetween   frames between anchors with CogVideoX, edges and warped noise (GGI, paper 3.3)
  render      all of the above, then the video
  demo        render the bundled example into out/demo
  doctor      what this machine has: Python, torch, GPU, and every model weight (found / missing)
  eval        metrics of one or more rendered work folders
  eval-styles render one job with each style mode (lora, quick, reference) and compare them
  train-ggi   train the inbetweening model on a folder of videos (paper 3.4; accelerate launch for GPUs)
  report      a static 3D report of a work folder (opens from disk);  view  serve it on 127.0.0.1
  batch       plan a jobs.jsonl and run it over local GPU/CPU workers or Ray;  serve  the local job server
  scene       inspect a scene file;  trajectory  export or picture a camera path
"""

EPILOG = """\
examples:
  videofrom3d demo                                   # the bundled example, CPU preview engine, ~1 minute
  videofrom3d scene info town.glb --json
  videofrom3d trajectory preview job.toml -o path.png
  videofrom3d render job.toml --engine preview       # no weights needed
  videofrom3d render job.toml --engine diffusion     # FLUX + CogVideoX from local weights, on a GPU
  videofrom3d render job.toml --reseed-anchor 2 1234 # redo anchor 2 and the two arcs that touch it
"""


def add_job_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    """The job file and the flags that stand in for it or override it."""
    p.add_argument("job", nargs=None if required else "?", type=Path, help="job file (TOML); see README 'Job files'")
    g = p.add_argument_group("job overrides (flags win over the job file)")
    g.add_argument("--scene", type=Path, metavar="FILE", help="scene file (.glb .gltf .obj .ply .stl .off)")
    g.add_argument("--trajectory", type=Path, metavar="FILE", help="camera path (our JSON, glTF/GLB camera, transforms.json, COLMAP)")
    g.add_argument("--style", type=Path, action="append", metavar="IMAGE", help="style reference image (repeatable)")
    g.add_argument("--identifier", action="append", metavar="TEXT",
                   help='identifier prompt of each --style, in order, e.g. "a painting of sks town"')
    g.add_argument("--size", metavar="WxH", help='frame size, e.g. 720x480 (the default); multiples of 16')
    g.add_argument("--out", type=Path, metavar="DIR", help="work folder (default work/<job name>)")
    g.add_argument("--seed", type=int, help="seed of every random draw")
    g.add_argument("--frames", type=int, metavar="N", help="frame count ([trajectory] frames; snapped to K*N+1 "
                   "for arcs of N+1 frames, with a note)")


def job_from_args(args: argparse.Namespace):
    """A Job from the job file and/or flags; flags override the file."""
    from videofrom3d.job import JobError, job_from_dict, load_job, override_job, parse_size

    if args.job is not None:
        import dataclasses

        job = load_job(args.job)
        changes = {}
        if args.scene is not None:
            changes["scene"] = dataclasses.replace(job.scene, path=args.scene)
        if args.trajectory is not None:  # a file replaces a generator and its keys
            changes["trajectory"] = dataclasses.replace(job.trajectory, path=args.trajectory, generator=None, params=())
        if args.style:
            changes["styles"] = _styles_from_flags(args)
        if args.size:
            changes["width"], changes["height"] = parse_size(args.size)
        if args.out is not None:
            changes["out"] = args.out
        if args.seed is not None:
            changes["seed"] = args.seed
        if getattr(args, "frames", None) is not None:
            changes["trajectory"] = dataclasses.replace(changes.get("trajectory", job.trajectory), frames=args.frames)
        return override_job(job, **changes) if changes else job
    if args.scene is None or args.trajectory is None:
        raise JobError("give a job file, or at least --scene and --trajectory")
    doc = {
        "name": args.scene.stem,
        "scene": {"path": str(args.scene.resolve())},
        "trajectory": {"path": str(args.trajectory.resolve())},
    }
    if getattr(args, "frames", None) is not None:
        doc["trajectory"]["frames"] = args.frames
    if args.style:
        idents = args.identifier or []
        doc["style"] = [
            {"image": str(s.resolve()), "identifier": idents[i] if i < len(idents) else ""} for i, s in enumerate(args.style)
        ]
    if args.size:
        doc["size"] = args.size
    if args.out is not None:
        doc["out"] = str(args.out.resolve())
    if args.seed is not None:
        doc["seed"] = args.seed
    return job_from_dict(doc, base=Path.cwd())


def _styles_from_flags(args):
    from videofrom3d.job import StyleRef

    idents = args.identifier or []
    return tuple(StyleRef(s, idents[i] if i < len(idents) else "") for i, s in enumerate(args.style))


# --------------------------------------------------------------------------------------------------- commands


def cmd_scene_info(args) -> int:
    from videofrom3d.scene.mesh import load_scene, warn_scale

    scene = load_scene(args.file, up=args.up, unit_scale=args.unit_scale)
    warn_scale(scene)
    info = scene.info()
    if args.json:
        print(json.dumps(info))
    else:
        lo, hi = info["bounds"]
        print(f"{args.file}")
        print(f"  triangles  {info['triangles']:,}")
        print(f"  objects    {info['objects']}")
        print(f"  bounds     min ({lo[0]:.3f}, {lo[1]:.3f}, {lo[2]:.3f})  max ({hi[0]:.3f}, {hi[1]:.3f}, {hi[2]:.3f})")
        print(f"  size       {hi[0] - lo[0]:.3f} x {hi[1] - lo[1]:.3f} x {hi[2] - lo[2]:.3f} (x, y, z; Y is up)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videofrom3d",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from videofrom3d import __version__

    parser.add_argument("--version", action="version", version=f"videofrom3d {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_text: str, description: str | None = None) -> argparse.ArgumentParser:
        return sub.add_parser(
            name, help=help_text, description=description or help_text, formatter_class=argparse.RawDescriptionHelpFormatter
        )

    # scene
    p = add("scene", "inspect a scene file")
    ssub = p.add_subparsers(dest="scene_command", metavar="SUBCOMMAND", required=True)
    q = ssub.add_parser("info", help="triangles, objects and bounds of a scene")
    q.add_argument("file", type=Path)
    q.add_argument("--json", action="store_true", help='print {"triangles", "objects", "bounds"} as JSON')
    q.add_argument("--up", default="y", choices=["y", "z"], help="the file's up axis (default y, glTF)")
    q.add_argument("--unit-scale", type=float, default=1.0, help="multiply coordinates by this")
    q.set_defaults(func=cmd_scene_info)

    _register_trajectory(add)
    _register_stages(add)
    _register_eval(add)
    _register_train_ggi(add)
    _register_report(add)
    _register_batch(add)
    return parser


def _register_batch(add) -> None:
    """batch plan, batch run (many jobs over a worker pool) and serve (the local job server)."""
    p = add("batch", "many renders: plan a jobs.jsonl, run it over local GPU/CPU workers or a Ray cluster")
    bsub = p.add_subparsers(dest="batch_command", metavar="SUBCOMMAND", required=True)
    q = bsub.add_parser("plan", help="write the cartesian product scenes x trajectories x styles x seeds as jobs.jsonl")
    q.add_argument("--job", type=Path, metavar="BASE.toml", help="base job file (sizes, stage options; default: a "
                   "minimal one written beside the output)")
    q.add_argument("--scenes", nargs="+", type=Path, default=[], metavar="FILE")
    q.add_argument("--trajectories", nargs="+", type=Path, default=[], metavar="FILE")
    q.add_argument("--styles", nargs="+", type=Path, default=[], metavar="IMAGE")
    q.add_argument("--seeds", nargs="+", type=int, default=[], metavar="N")
    q.add_argument("--identifier", help="identifier prompt of every style (default: the base job's first)")
    q.add_argument("--out-root", default="runs", metavar="DIR", help="work folders go to DIR/<id>, relative to "
                   "the jobs file (default runs)")
    q.add_argument("-o", "--output", type=Path, required=True, metavar="jobs.jsonl")
    q.set_defaults(func=cmd_batch_plan)
    q = bsub.add_parser("run", help="render every job; results.jsonl beside the jobs file; exit 1 if a job failed",
                        description="Render every line of jobs.jsonl: each style aligned once, longest jobs first, "
                        "a failed job recorded (retried once only when out of memory), finished jobs skipped on "
                        "a re-run. results.jsonl beside the jobs file gets one line per job.")
    q.add_argument("jobs", type=Path, metavar="jobs.jsonl")
    q.add_argument("--scheduler", choices=["local", "ray"], default="local",
                   help="local: one worker process per GPU (or CPU workers); ray: one Ray actor per GPU")
    q.add_argument("--gpus", metavar="LIST", help="GPU ids, one worker each, e.g. 0,1,2,3 (default: CPU workers)")
    q.add_argument("--workers", type=int, metavar="N", help="CPU workers without --gpus (default 1)")
    q.add_argument("--ray-address", metavar="A", help="Ray cluster address (auto: the running cluster; default: "
                   "start a local Ray)")
    q.add_argument("--engine", choices=["auto", *ENGINE_MODULES], default="auto")
    q.add_argument("--models", choices=["real", "tiny-random"], default="real")
    q.add_argument("--style-cache", type=Path, metavar="DIR", help="aligned styles shared between jobs (default "
                   "styles/ beside the jobs file; on a cluster: a shared folder)")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=cmd_batch_run)

    p = add("serve", "the local job server (/v1 API, token in DATA/server.json) on a worker pool",
            "Serve the /v1 job API (README 'Job server'): jobs submitted as a job file plus uploads, a disk-backed\n"
            "queue that resumes unfinished jobs after a restart, one worker per --gpus id plus a CPU lane for\n"
            "previews, progress over SSE and by polling, cancel, downloads scoped to the job. Binds to loopback;\n"
            "every route but /v1/health needs the token of DATA/server.json (mode 0600).")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: a free one)")
    p.add_argument("--data", type=Path, metavar="DIR", help="jobs, queue, styles and server.json (default "
                   "~/.local/share/videofrom3d/server)")
    p.add_argument("--gpus", metavar="LIST", help="GPU ids, one worker each (default: the CPU lane only)")
    p.add_argument("--engine", choices=["auto", "preview", "diffusion"], default="auto",
                   help="engine of jobs that do not name one (default auto)")
    p.add_argument("--models", choices=["real", "tiny-random"], default="real")
    p.add_argument("--max-upload-mb", type=float, default=2048, help="largest submission (default 2048 MB)")
    p.add_argument("--allow-remote", action="store_true", help="allow a --host other than loopback")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    from videofrom3d.server import serve

    gpus = [g.strip() for g in args.gpus.split(",") if g.strip()] if args.gpus else []
    try:
        serve(args.host, args.port, args.data, gpus=gpus, engine=args.engine, models=args.models,
              max_upload_mb=args.max_upload_mb, allow_remote=args.allow_remote,
              on_ready=lambda url: print(f"serving videofrom3d jobs at {url}  (token in server.json; Ctrl-C stops)",
                                         flush=True))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_batch_plan(args) -> int:
    from videofrom3d.batch import plan_jobs

    specs = plan_jobs(args.output, job=args.job, scenes=args.scenes, trajectories=args.trajectories,
                      styles=args.styles, seeds=args.seeds, identifier=args.identifier, out_root=args.out_root)
    print(f"wrote {args.output}: {len(specs)} jobs")
    return 0


def cmd_batch_run(args) -> int:
    from videofrom3d.batch import results_path, run_batch

    lines = run_batch(args.jobs, scheduler=args.scheduler, gpus=args.gpus, workers=args.workers,
                      ray_address=args.ray_address, engine=args.engine, models=args.models,
                      style_cache=args.style_cache, progress=not args.quiet)
    counts = {s: sum(1 for r in lines if r["status"] == s) for s in ("done", "failed", "skipped")}
    for r in lines:
        if r["status"] == "failed":
            print(f"failed {r['id']}: {r['error']}", file=sys.stderr)
    print(f"{counts['done']} done, {counts['failed']} failed, {counts['skipped']} skipped; "
          f"results: {results_path(args.jobs)}")
    return 1 if counts["failed"] else 0


def _register_train_ggi(add) -> None:
    """train-ggi (training the inbetweening model, paper 3.4)."""
    p = add(
        "train-ggi",
        "train the inbetweening model (GGI) on a folder of videos; runs under `accelerate launch` too",
        "Prepare clips from [data] videos (flow, warped noise, depth -> HED edges; cached), then fine-tune\n"
        "CogVideoX-5B-I2V widened to 48 channels with the flow LoRA frozen (paper 3.4). Checkpoints land in\n"
        "OUT/checkpoint-N/transformer/ ([inbetween] checkpoint_path); a re-run resumes. Multi-GPU:\n"
        "  accelerate launch -m videofrom3d train-ggi TRAIN.toml   (README 'Training GGI')",
    )
    p.add_argument("config", type=Path, metavar="TRAIN.toml", help="training file (README 'Training GGI')")
    p.add_argument("--models", choices=["real", "tiny-random"], default="real",
                   help="real weights (default), or tiny random models for a smoke test")
    p.add_argument("--prepare-only", action="store_true", help="prepare and cache the clips, then stop")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train_ggi)


def cmd_train_ggi(args) -> int:
    from videofrom3d.inbetween.training import load_train_config, train_ggi

    result = train_ggi(load_train_config(args.config), models=args.models, prepare_only=args.prepare_only,
                       progress=show_progress(args))
    print(f"clips: {len(result['prepared'])} prepared, {len(result['reused'])} reused (flow: {result['flow']})")
    if result.get("checkpoint"):
        print(f"checkpoint: {result['checkpoint']}")
    return 0


def _register_trajectory(add) -> None:
    """``trajectory export`` and ``trajectory preview`` (foundation)."""
    p = add("trajectory", "export or picture a camera path")
    tsub = p.add_subparsers(dest="trajectory_command", metavar="SUBCOMMAND", required=True)
    q = tsub.add_parser("export", help="write per-frame cameras (OpenCV K and world_to_cam) as JSON")
    q.add_argument("source", type=Path, help="a job file or any supported trajectory file")
    q.add_argument("-o", "--output", type=Path, required=True)
    q.add_argument("--frames", type=int, metavar="N", help="resample to exactly N frames (>= 2)")
    q.add_argument("--size", metavar="WxH", help="frame size, e.g. 720x480 (default: the job's, else the file's)")
    q.add_argument("--camera", metavar="NAME", help="which camera of a file that holds several (a glTF camera "
                   "node or camera name)")
    q.set_defaults(func=cmd_trajectory_export)
    q = tsub.add_parser("preview", help="PNG: top-down plan with the path, frustums, arcs, and every anchor view")
    add_job_args(q)
    q.add_argument("-o", "--output", type=Path, help="PNG to write (default WORK/trajectory.png)")
    q.set_defaults(func=cmd_trajectory_preview)


def _register_stages(add) -> None:
    """prepare, align, anchors, inbetween, render, demo, doctor (pipeline)."""

    def engine_args(p, edits: bool = False) -> None:
        g = p.add_argument_group("engine")
        g.add_argument("--engine", choices=["auto", *ENGINE_MODULES], default="auto",
                       help="auto (default): diffusion when every weight and a CUDA GPU are present, else the CPU "
                       "preview engine; the choice and its reason are printed")
        g.add_argument("--models", choices=["real", "tiny-random"], default="real",
                       help="real weights (default) or tiny random models: a no-weights smoke test of the diffusion path")
        g.add_argument("--quiet", action="store_true", help="no progress bars (none either when stderr is not a "
                       "terminal)")
        g.add_argument("--force", action="store_true", help="go on when the estimated memory or disk for the "
                       "requested size exceeds what this machine has")
        g.add_argument("--events", type=Path, metavar="FILE",
                       help="append progress events to FILE as JSON lines (README 'Events')")
        if edits:
            e = p.add_argument_group("arc-level edits (remembered in the work folder's manifest)")
            e.add_argument("--reseed-anchor", nargs=2, type=int, action="append", metavar=("K", "SEED"),
                           help="redo anchor K with SEED, and the two arcs that touch it (repeatable)")
            e.add_argument("--anchor", nargs=2, action="append", metavar=("K", "IMAGE"),
                           help="use IMAGE as anchor K (resized to the job's size) and redo the two arcs that touch "
                           "it (repeatable)")
            e.add_argument("--reset-edits", action="store_true", help="forget earlier anchor edits (default anchors)")

    stages = {
        "prepare": ("edge maps, depth, exact flow (and warped noise) per arc; CPU, no weights (paper 3.1)",
                    "Writes WORK/prepare/arcNNN/ including the warped noise (noise.npy, about 5-15 s per arc on\n"
                    "a 2-core CPU at the paper's grid; --no-noise skips it). `render` with the preview engine\n"
                    "skips the noise it does not read, unless --noise."),
        "align": ("the style: a LoRA on FLUX.1-dev + HED ControlNet (diffusion), or a palette (preview)",
                  "Distribution alignment (paper 3.2). Runs prepare first if needed. Writes WORK/align/."),
        "anchors": ("anchor views with sparse appearance-guided sampling (SAG, paper 3.2)",
                    "Writes WORK/anchors/NNN.png (anchor k = the view at frame k*N). Runs earlier stages if needed."),
        "inbetween": ("frames between anchors along the exact path (GGI, paper 3.3)",
                      "Writes WORK/inbetween/arcNNN/NNNN.png. Runs earlier stages if needed."),
    }
    for name, (help_text, more) in stages.items():
        p = add(name, help_text, f"{help_text[0].upper()}{help_text[1:]}.\n{more}\n"
                "Stages whose inputs did not change since the last run are reused from the work folder.")
        add_job_args(p)
        engine_args(p, edits=name in ("anchors", "inbetween"))
        if name == "prepare":
            p.add_argument("--export-official", type=Path, metavar="DIR",
                           help="also write the arcs in the authors' layout (hed/, corres/, noises.npy) to DIR")
            p.add_argument("--noise", action=argparse.BooleanOptionalAction, default=True,
                           help="compute the warped noise (default: yes for `prepare`)")
        p.set_defaults(func=cmd_stage, until=name)
    p = add("render", "all stages, then the video: job -> prepare -> align -> anchors -> inbetween -> video",
            "Render a job to WORK/video.mp4 (WORK = --out, else the job's out, else work/<job name>).\n"
            "Every stage writes WORK/<stage>/ and WORK/manifest.json records the hash of its inputs, so a\n"
            "re-run reuses what did not change and a killed run resumes. --reseed-anchor/--anchor redo one\n"
            "anchor and the two arcs that touch it.")
    add_job_args(p)
    engine_args(p, edits=True)
    p.add_argument("--noise", action="store_true", default=None,
                   help="compute the warped noise even for the preview engine")
    p.set_defaults(func=cmd_stage, until="video")

    p = add("demo", "render the bundled example (a town square) into out/demo",
            "Render the bundled example (examples/town) with DIR as the work folder: DIR/video.mp4, the stage\n"
            "folders, DIR/contact_sheet.png (edge maps, anchors, frames) and DIR/trajectory.png.")
    p.add_argument("--out", type=Path, default=Path("out/demo"), metavar="DIR", help="work folder (default out/demo)")
    p.add_argument("--engine", choices=["auto", *ENGINE_MODULES], default="preview",
                   help="preview (default; CPU, no weights, about a minute), diffusion, or auto")
    p.add_argument("--models", choices=["real", "tiny-random"], default="real",
                   help="with --engine diffusion: real weights (default) or tiny random models (a smoke test)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_demo)

    p = add("doctor", "what this machine has: Python, torch, GPU, memory, every model weight (found / missing)",
            "Python, packages, torch/GPU, memory, the G-buffer backend, and every weight videofrom3d can use:\n"
            "found (where) or missing (every place looked, and how to get it), with its licence. Downloads nothing.")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_doctor)


def cmd_stage(args) -> int:
    """prepare / align / anchors / inbetween / render: ``pipeline.render(job, until=...)``."""
    from videofrom3d.events import file_sink, make_event
    from videofrom3d.pipeline import render

    job = job_from_args(args)
    reseed = [tuple(x) for x in (getattr(args, "reseed_anchor", None) or [])]
    images = [tuple(x) for x in (getattr(args, "anchor", None) or [])]
    result = render(
        job,
        until=args.until,
        engine=args.engine,
        models=args.models,
        reseed_anchor=reseed or None,
        anchor_images=images or None,
        export_official=getattr(args, "export_official", None),
        with_noise=getattr(args, "noise", None),
        reset_edits=getattr(args, "reset_edits", False),
        progress=show_progress(args),
        force=args.force,
        events=file_sink(args.events) if args.events else None,
    )
    if args.events and result.video is not None:
        file_sink(args.events)(make_event("output", name=result.video.name))
    print(result.summary())
    return 0


def cmd_demo(args) -> int:
    """``render`` of the bundled example into DIR, plus the contact sheet and the trajectory picture."""
    import dataclasses
    import time

    from videofrom3d.io.workfolder import WorkFolder
    from videofrom3d.job import load_job
    from videofrom3d.paths import example_job
    from videofrom3d.pipeline import render
    from videofrom3d.preview.sheet import write_work_contact_sheet

    t0 = time.perf_counter()
    job = dataclasses.replace(load_job(example_job()), out=args.out)
    result = render(job, until="video", engine=args.engine, models=args.models, progress=show_progress(args))
    work = WorkFolder(args.out)
    sheet = write_work_contact_sheet(work.root, work.contact_sheet, job.frames_per_arc,
                                title=f"videofrom3d demo: {job.name}, {result.engine} engine")
    traj = work.trajectory_picture
    try:
        from videofrom3d.prepare.trajectory_picture import write_trajectory_preview

        write_trajectory_preview(job, traj)
    except ImportError as e:
        traj = None
        print(f"videofrom3d: note: no trajectory picture ({e})", file=sys.stderr)
    print(result.summary())
    print(f"contact sheet: {sheet}")
    if traj is not None:
        print(f"trajectory picture: {traj}")
    print(f"demo finished in {time.perf_counter() - t0:.1f} s; score it with `videofrom3d eval {args.out}`")
    return 0


def show_progress(args) -> bool:
    """Progress bars unless --quiet, and only on a terminal (no escape codes in a log file)."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def cmd_doctor(args) -> int:
    from videofrom3d.doctor import format_report, report

    r = report()
    print(json.dumps(r, indent=1) if args.json else format_report(r))
    return 0


def _register_eval(add) -> None:
    """eval (evaluation)."""
    p = add(
        "eval",
        "metrics of one or more rendered work folders",
        "Score rendered work folders: the paper's Table 2 metrics whose weights are on this machine (pseudo-GT\n"
        "PSNR/SSIM/LPIPS, PSNR-D, CLIP-A, MUSIQ (VBench protocol, SPAQ), CLIP-I, subject/background consistency)\n"
        "and weight-free metrics that always run (warp error along the mesh flow, flow agreement, edge\n"
        "alignment, CIELAB colour distance to the style and colour drift). Missing weights give null values\n"
        "and a 'missing' list naming the model and every place looked.",
    )
    p.add_argument("works", nargs="+", type=Path, metavar="WORK", help="work folders (several: a comparison table)")
    p.add_argument("--json", type=Path, help="write a JSON list with one object per run")
    p.add_argument("--markdown", type=Path, help="write the comparison table as Markdown")
    p.add_argument("--sheet", type=Path, help="contact sheet PNG (default: beside --json/--markdown when comparing runs)")
    p.add_argument("--style", type=Path, help="style reference image (default: the one the manifest names)")
    p.add_argument("--job", type=Path, help="job file whose first style image is the reference (instead of --style)")
    p.add_argument("--models-dir", type=Path, help="folder holding model folders (org/name, name or registry key)")
    p.add_argument("--model", action="append", default=[], metavar="KEY=PATH",
                   help="weight folder of one model (keys: lpips depth clip_l clip_b dino aesthetic musiq)")
    p.add_argument("--no-models", action="store_true", help="weight-free metrics only (no torch needed)")
    p.add_argument("--device", help="torch device for model metrics (default cuda if available, else cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval)

    p = add(
        "eval-styles",
        "render one job with each style mode (lora, quick, reference) and compare them",
        "Render the job once per [align] mode into sibling work folders WORK-style-MODE (a cold shared cache\n"
        "each, so the times are a first job's) and print the table: time to first video, the align stage's\n"
        "time, peak memory, CLIP-I to the style image (with --eval-models and its weights), CIELAB colour\n"
        "distance of the anchors and frames to it, cross-anchor consistency along the mesh flow and edge\n"
        "agreement with the input edge maps. --models tiny-random runs without weights and says so.",
    )
    p.add_argument("job", type=Path, metavar="JOB", help="job file (diffusion engine)")
    p.add_argument("--modes", default="lora,quick,reference", help="comma-separated (default lora,quick,reference)")
    p.add_argument("--models", choices=["real", "tiny-random"], default="real",
                   help="real weights (default) or tiny random models (the plumbing, not the quality)")
    p.add_argument("--until", choices=["anchors", "video"], default="video",
                   help="stop each render after this stage (default video)")
    p.add_argument("--eval-models", action="store_true", help="also the weight metrics (CLIP-I) where weights are here")
    p.add_argument("--models-dir", type=Path, help="folder holding the eval model folders")
    p.add_argument("--json", type=Path, help="write the rows as JSON")
    p.add_argument("--markdown", type=Path, help="write the table as Markdown")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_eval_styles)


def cmd_eval_styles(args) -> int:
    import json

    from videofrom3d.eval.styles import compare_style_modes, to_markdown
    from videofrom3d.io.atomic import atomic_write_bytes
    from videofrom3d.job import load_job

    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    rows = compare_style_modes(load_job(args.job), modes, models=args.models, until=args.until,
                               eval_models=args.eval_models,
                               models_dir=args.models_dir, progress=not args.quiet)
    table = to_markdown(rows)
    print(table, end="")
    if args.json:
        atomic_write_bytes(args.json, json.dumps(rows, indent=2).encode())
        print(f"wrote {args.json}")
    if args.markdown:
        atomic_write_bytes(args.markdown, table.encode())
        print(f"wrote {args.markdown}")
    return 0


def cmd_eval(args) -> int:
    from videofrom3d.eval import evaluate_runs
    from videofrom3d.eval.report import to_markdown, write_json, write_markdown, write_runs_contact_sheet
    from videofrom3d.eval.workfolder import EvalInputError, RunFolder

    overrides = {}
    for item in args.model:
        key, sep, path = item.partition("=")
        if not sep or not key or not path:
            raise EvalInputError(f"--model wants KEY=PATH, got {item!r}")
        overrides[key.strip()] = Path(path)
    style = args.style
    if style is None and args.job is not None:
        from videofrom3d.job import load_job

        styles = load_job(args.job).styles
        style = styles[0].image if styles else None
    results = evaluate_runs(
        args.works, style=style, models_dir=args.models_dir, overrides=overrides,
        use_models=not args.no_models, device=args.device, progress=show_progress(args),
    )
    print(to_markdown(results), end="")
    if args.json:
        print(f"wrote {write_json(args.json, results)}")
    if args.markdown:
        print(f"wrote {write_markdown(args.markdown, results)}")
    sheet = args.sheet
    if sheet is None and len(args.works) > 1 and (args.json or args.markdown):
        ref = args.json or args.markdown
        sheet = ref.with_name(ref.stem + "_sheet.png")
    if sheet is not None:
        print(f"wrote {write_runs_contact_sheet(sheet, [RunFolder(w) for w in args.works])}")
    return 0


def _register_report(add) -> None:
    """report and view (the static 3D report)."""
    for name, text in (("report", "write a static 3D report of a work folder: WORK/report/index.html opens in any "
                                  "browser, from disk"),
                       ("view", "write the report if it is missing or older than the work folder, serve it on "
                                "127.0.0.1 and print the URL")):
        p = add(name, text.split(":")[0], text + ".\n\nThe page shows the scene (decimated), the camera path "
                "with the anchor frustums (anchor images or edge maps on their far planes), the video synced to "
                "a moving frustum, a look-through camera with the video half-transparent over the geometry, "
                "stage timings and WORK/eval.json when present.")
        p.add_argument("work", type=Path, metavar="WORK", help="a rendered (or only prepared) work folder")
        p.add_argument("--out", type=Path, metavar="DIR", help="report folder (default WORK/report)")
        p.add_argument("--job", type=Path, help="take the scene from this job file (default: the one the manifest names)")
        p.add_argument("--max-faces", type=int, default=30_000, help="decimate the scene to about this many "
                       "triangles (default 30000)")
        if name == "view":
            p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
            p.add_argument("--open", action="store_true", help="also open the page in the default browser")
        p.set_defaults(func=cmd_report if name == "report" else cmd_view)


def _write_report(args) -> Path:
    from videofrom3d.report import write_report

    scene = None
    if args.job is not None:
        from videofrom3d.job import load_job

        spec = load_job(args.job).scene
        scene = (Path(spec.path), spec.up, spec.unit_scale)
    return write_report(args.work, args.out, scene=scene, max_faces=args.max_faces)


def cmd_report(args) -> int:
    index = _write_report(args)
    print(f"wrote {index}")
    print(f"open it in a browser: {index.resolve().as_uri()}  (or `videofrom3d view {args.work}`)")
    return 0


def cmd_view(args) -> int:
    from videofrom3d.report.build import report_index
    from videofrom3d.report.serve import serve_forever

    index, stale = report_index(args.work, args.out)
    if stale or args.job:
        index = _write_report(args)
        print(f"wrote {index}")
    try:
        serve_forever(index.parent, args.port, open_browser=args.open,
                      on_ready=lambda url: print(f"serving {index.parent} at {url}  (Ctrl-C stops)", flush=True))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_trajectory_export(args) -> int:
    from videofrom3d.job import export_trajectory
    from videofrom3d.pipeline.preflight import check_writable

    check_writable(args.output.parent, "output folder")
    path = export_trajectory(args.source, args.output, frames=args.frames, size=args.size, camera=args.camera)
    print(f"wrote {path}")
    return 0


def cmd_trajectory_preview(args) -> int:
    from videofrom3d.io.workfolder import WorkFolder
    from videofrom3d.pipeline.preflight import check_writable
    from videofrom3d.prepare.trajectory_picture import write_trajectory_preview

    job = job_from_args(args)
    out = args.output or WorkFolder(job.work_dir).trajectory_picture
    check_writable(Path(out).parent, "output folder")
    write_trajectory_preview(job, out)
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    import warnings

    from videofrom3d.errors import USER_ERRORS, VideoFrom3DWarning

    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        warnings.simplefilter("always", VideoFrom3DWarning)
        # the libraries' notes to their own developers (diffusers' deprecate(), e.g. FluxPosEmbed used inside
        # its ControlNet) are nothing a user can act on
        warnings.filterwarnings("ignore", category=FutureWarning, message=r".*deprecated and will be removed")
        try:
            return int(args.func(args) or 0)
        except USER_ERRORS as e:
            print(f"videofrom3d: error: {_one_line(e)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("videofrom3d: interrupted; re-run the same command to resume", file=sys.stderr)
            return 130


def _one_line(text) -> str:
    return " ".join(str(text).splitlines())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as one line, without Python's source line: ``videofrom3d: warning: ...``."""
    print(f"videofrom3d: warning: {_one_line(message)}", file=sys.stderr if file is None else file, flush=True)


if __name__ == "__main__":
    sys.exit(main())
