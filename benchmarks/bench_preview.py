"""Speed of the CPU preview engine end to end on the bundled example (3 arcs of 46 frames, 720x480):
``render(job, engine="preview")`` into a fresh work folder, then a second run that reuses everything.

    python benchmarks/bench_preview.py [--out DIR] [--size 720x480] [--keep]

Prints a table of seconds per stage (target: the whole fresh run in <= 60 s on a 2-core laptop-class CPU).
Never asserted in tests.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, help="work folder (default: a temporary one, removed afterwards)")
    ap.add_argument("--size", help='another size than the example, e.g. "360x240"')
    ap.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    args = ap.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")

    t_import = time.perf_counter()
    from videofrom3d.job import load_job, parse_size
    from videofrom3d.paths import example_job
    from videofrom3d.pipeline import render

    t_import = time.perf_counter() - t_import
    work = args.out or Path(tempfile.mkdtemp(prefix="bench_preview_"))
    if work.exists() and args.out:
        shutil.rmtree(work)
    job = load_job(example_job())
    changes = {"out": work}
    if args.size:
        changes["width"], changes["height"] = parse_size(args.size)
    job = dataclasses.replace(job, **changes)

    t0 = time.perf_counter()
    fresh = render(job, engine="preview", progress=False, log=lambda s: None)
    wall_fresh = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = render(job, engine="preview", progress=False, log=lambda s: None)
    wall_again = time.perf_counter() - t0

    frames = len(list((work / "frames").glob("*.png")))
    print(f"preview engine, {job.name} example, {job.width}x{job.height}, {len(fresh.arcs)} arcs, {frames} frames; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"{'stage':<10} {'fresh s':>8} {'items':>6} {'s/item':>7} {'re-run s':>9}")
    for a, b in zip(fresh.stages, again.stages):
        n = len(a.ran)
        per = f"{a.seconds / n:7.2f}" if n else f"{'-':>7}"
        print(f"{a.name:<10} {a.seconds:8.2f} {n:6d} {per} {b.seconds:9.2f}")
    print(f"{'total':<10} {wall_fresh:8.2f} {'':6} {'':7} {wall_again:9.2f}   (+ {t_import:.2f} s imports)")
    print(f"target <= 60 s for the fresh run: {'met' if wall_fresh + t_import <= 60 else 'NOT met'}")
    print(f"work folder: {work}")
    if not args.out and not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
