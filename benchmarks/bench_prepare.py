"""Per-step times of the preparation stage (paper 3.1) for each G-buffer backend: one 46-frame 720x480 arc
of the bundled example (examples/town) and of a generated scene of >= 100k triangles.

    python benchmarks/bench_prepare.py [--repeat 3] [--frames 46] [--backends moderngl embree]

Steps: G-buffer (render + readback + per-face lookups), edges (pair classification + soft look), flows
(45 consecutive + end->start, with visibility), writing (PreparedArc.save: 46 x 3 PNGs + 2 npz).
Noise is excluded. Each number is the best of ``--repeat`` runs (the machine is shared; best-of filters
other processes out); "cpu" is the process CPU time of the best run (llvmpipe renders on worker threads).
"""

from __future__ import annotations

import argparse
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


def bench(name, scene, cameras, backend, repeat):
    from videofrom3d.prepare import PrepareConfig, make_renderer, prepare_arc

    t0 = time.perf_counter()
    renderer = make_renderer(scene, backend)
    setup = time.perf_counter() - t0
    cfg = PrepareConfig(backend=backend)
    prepare_arc(renderer, scene, cameras[:2], cfg)  # warm-up: shaders, caches, welded topology
    best = None
    for _ in range(repeat):
        t = {}
        c0, w0 = time.process_time(), time.perf_counter()
        arc = prepare_arc(renderer, scene, cameras, cfg, timings=t)
        t["total"] = time.perf_counter() - w0
        t["cpu"] = time.process_time() - c0
        if best is None or t["total"] < best["total"]:
            best = t
    tmp = Path(tempfile.mkdtemp(prefix="bench_prepare_"))
    writes = []
    for _ in range(repeat):
        w0 = time.perf_counter()
        arc.save(tmp / "arc000")
        writes.append(time.perf_counter() - w0)
    shutil.rmtree(tmp, ignore_errors=True)
    best["write"] = min(writes)
    best["setup"] = setup
    return (name, scene.triangle_count, backend, best)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--frames", type=int, default=46)
    ap.add_argument("--backends", nargs="+", default=["moderngl", "embree"])
    args = ap.parse_args(argv)

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
    print(f"\none arc of {n} frames at {w}x{h}; seconds, best of {args.repeat}; noise excluded")
    cols = ["gbuffer", "edges", "flows", "total", "cpu", "write", "setup"]
    print(f"{'scene':<16} {'triangles':>9} {'backend':<9} " + " ".join(f"{c:>8}" for c in cols))
    for name, tri, backend, t in rows:
        print(f"{name:<16} {tri:>9} {backend:<9} " + " ".join(f"{t.get(c, 0.0):8.2f}" for c in cols))
    print("total = G-buffers + edges + flows (+ bookkeeping); write = PreparedArc.save; setup = make_renderer")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
