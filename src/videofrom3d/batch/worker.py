"""A pool worker process: ``python -m videofrom3d.batch.worker QUEUE --name W --lane gpu|cpu --index I``.

Claims the first task of its lane in ``QUEUE/pending/`` (names sort longest first) by renaming it to
``QUEUE/running/<task>@<W>.json`` (rename is atomic: two workers never both get one), runs it in this
process, writes ``QUEUE/done/<task>.json`` and removes the running file; exits when ``QUEUE/stop`` exists
or its parent (the pool) dies. It skips tasks whose ``avoid`` list holds its device (a job whose worker
died goes elsewhere).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

POLL_S = 0.05


def _die_with_parent() -> None:
    """SIGKILL this worker when the pool process dies (Linux): a killed server or batch run leaves no render
    running behind it that a restarted one would race in the same work folder."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:
            pass


def claim(queue: Path, name: str, lane: str, device: str) -> tuple[Path, dict] | None:
    """The first pending task of ``lane`` not avoiding ``device``, renamed into running/; None if none."""
    pending = queue / "pending"
    for entry in sorted(os.listdir(pending)):
        if entry.startswith("."):
            continue
        try:
            task = json.loads((pending / entry).read_text())
        except (FileNotFoundError, ValueError):
            continue
        if task.get("lane", lane) != lane or device in task.get("avoid", ()):
            continue
        running = queue / "running" / f"{Path(entry).stem}@{name}.json"
        try:
            os.rename(pending / entry, running)
        except FileNotFoundError:
            continue  # another worker was first
        return running, task
    return None


def write_done(queue: Path, result: dict) -> None:
    done = queue / "done" / f"{result['id']}.json"
    tmp = done.with_name(f".{done.name}.tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, done)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="videofrom3d.batch.worker")
    p.add_argument("queue", type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--lane", choices=["gpu", "cpu"], required=True)
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--parent", type=int, default=0, help="the pool's pid")
    args = p.parse_args(argv)
    _die_with_parent()
    if args.parent and os.getppid() != args.parent:
        return 0  # the pool died before prctl took effect

    from videofrom3d.batch.tasks import device_label, run_task

    queue = args.queue
    device = device_label(args.lane, args.index)
    info = {"pid": os.getpid(), "device": device, "lane": args.lane}
    (queue / "workers" / f"{args.name}.json").write_text(json.dumps(info))
    while not (queue / "stop").exists():
        if args.parent and os.getppid() != args.parent:
            break
        got = claim(queue, args.name, args.lane, device)
        if got is None:
            time.sleep(POLL_S)
            continue
        running, task = got
        write_done(queue, run_task(task, device))
        running.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
