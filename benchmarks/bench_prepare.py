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
