"""What a worker (a pool process or a Ray actor) does with one task, and how a failure is classed.

A task is a JSON-able dict: ``{"id", "kind": "align" | "render", "spec": JobSpec.as_task(), "engine",
"models", "styles": style cache folder, "events": events file or None, "set": extra dotted overrides}``.
The result: ``{"id", "status": "done" | "failed" | "retry", "seconds", "device", "node", "error", "code"}``
where ``retry`` marks a transient failure (out of memory) the scheduler may retry once with offload.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from videofrom3d.errors import USER_ERRORS

# paper-scale models on a smaller GPU: model CPU offload in both diffusion stages (README "GPU memory")
OFFLOAD_SETTINGS = {"anchors.memory": "model", "inbetween.memory": "model"}


def device_label(lane: str, index: int = 0) -> str:
    """``cuda:<CUDA_VISIBLE_DEVICES>`` on a GPU lane (what this process was given), else ``cpu:<index>``."""
    if lane == "gpu":
        return f"cuda:{os.environ.get('CUDA_VISIBLE_DEVICES', '?')}"
    return f"cpu:{index}"


def is_transient(e: BaseException) -> bool:
    """Out of (GPU) memory: the same job may pass again, with offload."""
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError":
        return True
    return isinstance(e, RuntimeError) and "out of memory" in str(e).lower()


def one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if isinstance(e, USER_ERRORS):
        return text or type(e).__name__
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def run_task(task: dict, device: str) -> dict:
    """Run one task here (in this process) -> its result. Never raises for a failure of the task itself."""
    from videofrom3d.batch.jobs import JobSpec, build_job
    from videofrom3d.events import file_sink, make_event

    t0 = time.perf_counter()
    result = {"id": task["id"], "device": device, "node": socket.gethostname(), "error": None, "code": None}
    try:
        spec = JobSpec.from_task(task["spec"])
        job = build_job(spec, task.get("set"))
        if task["kind"] == "align":
            from videofrom3d import __version__
            from videofrom3d.pipeline.style_cache import align_key, ensure_style, job_aligner

            aligner = job_aligner(job, task["engine"], task["models"])
            _, made = ensure_style(task["styles"], align_key(aligner, __version__), aligner)
            result["made"] = made
        else:
            from videofrom3d.pipeline import render

            sink = file_sink(task["events"], job=spec.id) if task.get("events") else None
            if sink is not None:
                sink(make_event("state", state="running", device=device))
            log_path = Path(spec.out) / "render.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "a") as log:
                render(job, engine=task["engine"], models=task["models"], progress=False, events=sink,
                       style_cache=task.get("styles"), log=lambda s: print(s, file=log, flush=True))
        result["status"] = "done"
    except Exception as e:  # noqa: BLE001 - every failure becomes one line in results.jsonl
        result["status"] = "retry" if is_transient(e) else "failed"
        result["code"] = "transient" if is_transient(e) else "input" if isinstance(e, USER_ERRORS) else "internal"
        result["error"] = one_line(e)
    result["seconds"] = round(time.perf_counter() - t0, 3)
    return result
