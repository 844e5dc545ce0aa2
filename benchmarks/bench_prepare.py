"""Per-step times of the preparation stage (paper 3.1) for each G-buffer backend: one 46-frame 720x480 arc
of the bundled example (examples/town) and of a generated scene of >= 100k triangles.

    python benchmarks/bench_prepare.py [--repeat 3] [--frames 46] [--backends moderngl embree]
                                       [--whole-only] [--old REF] [--no-noise]

Steps: G-buffer (render + readback + per-face lookups), edges (pair classification + soft look), flows
(45 consecutive + end->start, with visibility), writing (PreparedArc.save: 46 x 3 PNGs + 2 npz).
Noise is excluded. Each number is the best of ``--repeat`` runs (the machine is shared; best-of filters
other processes out); "cpu" is the process CPU time of the best run (llvmpipe renders on worker threads).

First, the whole of ``videofrom3d prepare`` on the example's first arc (46 frames) as a user runs it: a fresh
process (start, imports, plan and camera checks included) writing everything (arc folder, preview.mp4, warped
noise and noise.mp4, manifest hashes) into a fresh work folder; per part the median of ``--repeat`` runs, for
this tree ("new") and the tree at git ``--old REF`` ("old", exported to a temporary folder; default: the
commit before the prepare-speed work), alternating in the same run, after one warm-up round of each; once with
the noise and once with ``--no-noise`` (only the latter with ``--no-noise``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def generated_scene(min_triangles: int = 100_000):
    """Icospheres, subdivided boxes and a ground slab: >= ``min_triangles`` triangles, one object each."""
    import trimesh

    from videofrom3d.scene.mesh import make_scene

    parts = [trimesh.creation.icosphere(subdivisions=5).apply_translation((i * 2.5 - 4, 1, 0)) for i in range(4)]
    parts.append(trimesh.creation.box((30, 0.2, 30)))
    i = 0
    while sum(len(p.faces) for p in parts) < min_triangles:
        b = trimesh.creation.box((1.5, 2 + (i % 6) * 0.3, 1.5)).subdivide().subdivide().subdivide()
        b.apply_translation(((i % 6) * 2 - 5, 1, -4 - 3 * (i // 6)))
        parts.append(b)
        i += 1
    vs, fs, obj, off = [], [], [], 0
    for k, m in enumerate(parts):
        vs.append(np.asarray(m.vertices))
        fs.append(np.asarray(m.faces) + off)
        obj.append(np.full(len(m.faces), k))
        off += len(m.vertices)
    return make_scene(np.concatenate(vs), np.concatenate(fs), np.concatenate(obj))


def orbit_cameras(n: int, w: int = 720, h: int = 480):
    from videofrom3d.scene.camera import Camera, intrinsics_from_fov, look_at

    return [
        Camera(intrinsics_from_fov(w, h, fov_x_deg=60), look_at((9 * np.sin(a), 3, 9 * np.cos(a)), (0, 0.5, 0)), w, h)
        for a in np.linspace(0, 0.6, n)
    ]


def town(n: int):
    """The bundled example's scene and its first arc's cameras, or None when it is absent."""
    job_path = ROOT / "examples" / "town" / "job.toml"
    if not job_path.is_file():
        return None
    from videofrom3d.job import job_cameras, load_job
    from videofrom3d.scene.mesh import load_scene

    job = load_job(job_path)
    scene = load_scene(job.scene.path, up=job.scene.up, unit_scale=job.scene.unit_scale)
    return scene, job_cameras(job)[:n]


def _clock():
    return time.perf_counter(), time.process_time()


def _since(t):
    w, c = _clock()
    return w - t[0], c - t[1]


def steps(renderer, cameras, cfg):
    """Each step run alone over the whole arc: {step: (wall, cpu)} seconds."""
    from videofrom3d.prepare.edges import classify_edges, render_edge_map, topology_for
    from videofrom3d.prepare.flow import geometric_flow

    ecfg = cfg.edge_config()
    topo = topology_for(renderer, ecfg)
    out = {}
    t = _clock()
    gbs = [renderer.render(c) for c in cameras]
    out["gbuffer"] = _since(t)
    t = _clock()
    masks = [classify_edges(g, c, topo, ecfg) for g, c in zip(gbs, cameras)]
    out["edge types"] = _since(t)
    t = _clock()
    for m in masks:
        render_edge_map(m, ecfg)
    out["edge look"] = _since(t)
    t = _clock()
    for i in range(len(cameras) - 1):
        geometric_flow(gbs[i], cameras[i], gbs[i + 1], cameras[i + 1])
    geometric_flow(gbs[-1], cameras[-1], gbs[0], cameras[0])
    out["flows"] = _since(t)
    return out


def bench(name, scene, cameras, backend, repeat):
    from videofrom3d.prepare import PrepareConfig, make_renderer, prepare_arc

    t = _clock()
    renderer = make_renderer(scene, backend)
    setup = _since(t)
    cfg = PrepareConfig(backend=backend)
    t = _clock()
    prepare_arc(renderer, scene, cameras[:2], cfg)  # warm-up: shaders, caches, welded topology
    warm = _since(t)
    best_steps, best_arc, best_write = None, None, None
    tmp = Path(tempfile.mkdtemp(prefix="bench_prepare_"))
    try:
        for _ in range(repeat):
            st = steps(renderer, cameras, cfg)
            if best_steps is None or sum(v[0] for v in st.values()) < sum(v[0] for v in best_steps.values()):
                best_steps = st
            t = _clock()
            arc = prepare_arc(renderer, scene, cameras, cfg)
            r = _since(t)
            best_arc = r if best_arc is None or r[0] < best_arc[0] else best_arc
            t = _clock()
            arc.save(tmp / "arc000")
            r = _since(t)
            best_write = r if best_write is None or r[0] < best_write[0] else best_write
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "scene": name,
        "triangles": scene.triangle_count,
        "backend": backend,
        **best_steps,
        "prepare_arc": best_arc,
        "write": best_write,
        "setup": (setup[0] + warm[0], setup[1] + warm[1]),
    }


# (owner module, attribute, part): the functions one prepare run spends its time in; owners imported in the
# child process, attributes patched only where the tree has them (an older tree may lack some)
PARTS = (
    ("videofrom3d.prepare", "prepare_arc", "render+edges+flows"),
    ("videofrom3d.prepare.arcs", "PreparedArc.save", "write arc"),
    ("videofrom3d.prepare.arcs", "write_arc_preview", "preview.mp4"),
    ("videofrom3d.io.manifest", "digest_path", "hashes"),
    ("videofrom3d.prepare.arcs", "load_flows", "read flows"),
    ("videofrom3d.prepare.noise_warp", "warped_noise_for_arc", "noise"),
    ("videofrom3d.prepare.noise_warp", "write_noise_preview", "noise.mp4"),
    ("videofrom3d.pipeline.stages", "prepare", "prepare stage"),
)
OLD_REF = "f74539f"  # main before the prepare-speed work (issue 15 item 2)


def _one_run(src: str, job_path: str, work: str, with_noise: bool) -> dict:
    """In a fresh process: ``videofrom3d prepare`` of ``job_path`` with the package from ``src``, timed per
    part (wall seconds); the parent counts the rest of the process ("start+plan": imports, plan, camera checks, exit)."""
    import importlib

    sys.path.insert(0, src)
    timers: dict[str, float] = {}
    for mod, attr, part in PARTS:
        owner = importlib.import_module(mod)
        *outer, name = attr.split(".")
        for o in outer:
            owner = getattr(owner, o)
        fn = owner.__dict__.get(name)
        if fn is None:
            continue

        def timed(*a, _fn=fn, _part=part, **k):
            t0 = time.perf_counter()
            try:
                return _fn(*a, **k)
            finally:
                timers[_part] = timers.get(_part, 0.0) + time.perf_counter() - t0

        setattr(owner, name, timed)
    from videofrom3d.cli import main as cli

    with contextlib.redirect_stdout(sys.stderr):
        rc = cli(["prepare", job_path, "--out", work, *([] if with_noise else ["--no-noise"])])
    if rc:
        raise SystemExit(f"videofrom3d prepare failed ({rc})")
    return timers


def whole_prepare(repeat: int, old_ref: str | None, with_noise: bool = True) -> list[dict] | None:
    """``videofrom3d prepare`` of the example's first arc in a fresh process per run, this tree and the tree at
    ``old_ref`` alternating; per part the median over ``repeat`` runs (seconds, wall) and MB written."""
    import json
    import subprocess

    from videofrom3d.job import job_cameras, load_job
    from videofrom3d.scene.camera import save_cameras

    job_path = ROOT / "examples" / "town" / "job.toml"
    if not job_path.is_file():
        return None
    job = load_job(job_path)
    tmp = Path(tempfile.mkdtemp(prefix="bench_prepare_whole_"))
    try:
        save_cameras(tmp / "first_arc.json", job_cameras(job)[: job.frames_per_arc + 1])
        text = job_path.read_text()
        for key, value in (("path", job.scene.path), ("image", job.styles[0].image)):  # absolute paths
            text = text.replace(f'{key} = "{Path(value).name}"', f'{key} = "{Path(value).resolve()}"', 1)
        text = text.replace('path = "camera.json"', f'path = "{tmp / "first_arc.json"}"', 1)
        text = text.replace("frames = 136", f"frames = {job.frames_per_arc + 1}", 1)
        (tmp / "job.toml").write_text(text)
        trees = {"new": ROOT / "src"}
        if old_ref:
            old = tmp / "old"
            old.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", old_ref, "src"], check=True,
                                     capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            trees["old"] = old / "src"
        runs = {v: [] for v in trees}
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
        for i in range(repeat + 1):  # the first round warms up (numba's cache, the file cache)
            for variant, src in trees.items():
                work = tmp / f"work_{variant}_{i}"
                code = (f"import json, sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import bench_prepare as b; "
                        f"print(json.dumps(b._one_run({str(src)!r}, {str(tmp / 'job.toml')!r}, {str(work)!r}, "
                        f"{with_noise})))")
                t0 = time.perf_counter()
                out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
                total = time.perf_counter() - t0
                if out.returncode:
                    raise SystemExit(f"{variant} run failed:\n{out.stderr[-3000:]}")
                timers = json.loads(out.stdout.strip().splitlines()[-1])
                timers["total"] = total
                timers["start+plan"] = total - timers.pop("prepare stage")
                timers["MB written"] = sum(f.stat().st_size for f in work.rglob("*") if f.is_file()) / 1e6
                if i:
                    runs[variant].append(timers)
                shutil.rmtree(work, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out = []
    for variant in ("old", "new"):
        if variant in runs:
            rs = runs[variant]
            out.append({"variant": variant, **{k: float(np.median([r.get(k, 0.0) for r in rs])) for k in rs[0]}})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--frames", type=int, default=46)
    ap.add_argument("--backends", nargs="+", default=["moderngl", "embree"])
    ap.add_argument("--whole-only", action="store_true", help="only the whole-prepare table")
    ap.add_argument("--old", default=OLD_REF, help=f"git ref of the old tree in the whole-prepare table (default "
                    f"{OLD_REF}); '' for none")
    ap.add_argument("--no-noise", action="store_true", help="the whole-prepare table without the warped noise "
                    "only (default: with it, then without it)")
    args = ap.parse_args(argv)
    for with_noise in (True, False) if not args.no_noise else (False,):
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        whole = whole_prepare(args.repeat, args.old, with_noise=with_noise)
        if whole is None:
            break
        cols = ["start+plan", "render+edges+flows", "write arc", "preview.mp4", "hashes"]
        cols += ["read flows", "noise", "noise.mp4"] if with_noise else []
        cols += ["total", "MB written"]
        load2 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"\n`videofrom3d prepare{'' if with_noise else ' --no-noise'}` of one 46-frame 720x480 arc (the example's "
              f"first) in a fresh process, everything it writes; wall seconds, median of {args.repeat}; "
              f"{os.cpu_count()} cores, load average {load:.1f} before, {load2:.1f} after")
        print(f"{'code':<6} " + " ".join(f"{c:>18}" for c in cols))
        for r in whole:
            print(f"{r['variant']:<6} " + " ".join(f"{r.get(c, 0.0):18.2f}" for c in cols))
    print(f"new: this tree; old: git {args.old}. start+plan: process start, imports, engine choice, plan, camera")
    print("checks and exit; render+edges+flows overlap on threads; hashes: the manifest's digests of the written files; the")
    print("parts do not add up to total: the rest is scene loading, manifest writes, noise.npy, and the previews run")
    print("on a background thread in the new code (overlapping the noise).")
    if args.whole_only:
        return 0

    from videofrom3d.prepare.gbuffer import moderngl_available

    ok, why = moderngl_available()
    backends = [b for b in args.backends if b != "moderngl" or ok]
    if not ok and "moderngl" in args.backends:
        print(f"moderngl skipped: {why}", file=sys.stderr)
    scenes = []
    t = town(args.frames)
    if t is not None:
        scenes.append(("town (example)", *t))
    else:
        print("examples/town/job.toml not found: bundled example skipped", file=sys.stderr)
    scenes.append(("generated", generated_scene(), orbit_cameras(args.frames)))

    rows = [bench(name, s, cams, b, args.repeat) for name, s, cams in scenes for b in backends]
    n = args.frames
    w, h = scenes[0][2][0].width, scenes[0][2][0].height
    cols = ["gbuffer", "edge types", "edge look", "flows", "prepare_arc", "write", "setup"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\none arc of {n} frames at {w}x{h}; seconds as wall/cpu, best of {args.repeat}; noise excluded; "
          f"{os.cpu_count()} cores, load average {load:.1f}")
    print(f"{'scene':<15} {'tris':>7} {'backend':<8} " + " ".join(f"{c:>12}" for c in cols))
    for r in rows:
        cells = " ".join(f"{r[c][0]:5.2f}/{r[c][1]:5.2f}".rjust(12) for c in cols)
        print(f"{r['scene']:<15} {r['triangles']:>7} {r['backend']:<8} {cells}")
    print("gbuffer .. flows: each step alone over the arc (46 renders, 46 edge maps, 45 + 1 flows);")
    print("prepare_arc: the whole step as the pipeline runs it (rendering overlapped with edges and flows on")
    print("worker threads); write: PreparedArc.save; setup: make_renderer + first use (topology, shaders).")
    print("cpu is the process CPU time of all threads (llvmpipe rasterises on its own threads).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
