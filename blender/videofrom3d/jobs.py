# SPDX-License-Identifier: GPL-3.0-or-later
"""Runs a render off the main thread and brings its events back by a timer (bpy only on the main thread).

In background mode (``blender -b``, bpy as a module) timers never fire, so :func:`run` consumes the events
synchronously instead; scripts and tests take that path.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import bpy

TICK_S = 0.25


class Job:
    def __init__(self, scene_name: str, runner, on_finish: Callable | None):
        self.scene_name, self.runner, self.on_finish = scene_name, runner, on_finish
        self.events: queue.Queue = queue.Queue()
        self.thread: threading.Thread | None = None
        self.final: str | None = None


_jobs: dict[str, Job] = {}


def _work(job: Job) -> None:
    try:
        for ev in job.runner.events():
            job.events.put(ev)
    except Exception as e:  # noqa: BLE001 - any failure becomes one line in the panel
        job.events.put({"type": "error", "code": "client", "message": str(e).splitlines()[0] if str(e) else repr(e)})
        job.events.put({"type": "state", "state": "failed"})


def apply_event(scene, ev: dict) -> None:
    """One event -> the scene's job properties (main thread)."""
    p = scene.videofrom3d
    kind = ev.get("type")
    if kind == "state":
        p.state = ev.get("state", p.state)
        if ev.get("job_id"):
            p.job_id = str(ev["job_id"])
        if p.state == "done":
            p.fraction = 1.0
    elif kind == "progress":
        if ev.get("fraction") is not None:
            p.fraction = float(ev["fraction"])
        text = ev.get("stage", "")
        if ev.get("arc") is not None and ev.get("arcs"):
            text += f" arc {int(ev['arc']) + 1}/{ev['arcs']}"
        if ev.get("step") is not None and ev.get("steps"):
            text += f" · step {ev['step']}/{ev['steps']}"
        p.stage = text
    elif kind == "error":
        p.message = str(ev.get("message", "failed"))


def running(scene) -> bool:
    job = _jobs.get(scene.name)
    return job is not None and job.final is None


def run(scene, runner, on_finish: Callable | None = None, sync: bool | None = None) -> str | None:
    """Start ``runner`` for ``scene`` on a thread; with ``sync`` (default: in background mode) run it to the
    end here and return the final state."""
    if running(scene):
        raise RuntimeError("a render is already running for this scene")
    job = Job(scene.name, runner, on_finish)
    _jobs[scene.name] = job
    if (bpy.app.background if sync is None else sync):
        _work(job)
        _drain(job)
        return job.final
    job.thread = threading.Thread(target=_work, args=(job,), daemon=True, name="videofrom3d")
    job.thread.start()
    if not bpy.app.timers.is_registered(_tick):
        bpy.app.timers.register(_tick, first_interval=TICK_S, persistent=True)
    return None


def _drain(job: Job) -> None:
    scene = bpy.data.scenes.get(job.scene_name)
    while True:
        try:
            ev = job.events.get_nowait()
        except queue.Empty:
            break
        if scene is not None:
            apply_event(scene, ev)
        if ev.get("type") == "state" and ev.get("state") in ("done", "failed", "cancelled"):
            job.final = ev["state"]
    if job.final is not None:
        _jobs.pop(job.scene_name, None)
        if job.on_finish is not None and scene is not None:
            job.on_finish(scene, job.final)


def _tick():
    for job in list(_jobs.values()):
        _drain(job)
    for window in getattr(bpy.context.window_manager, "windows", []):
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()
    return TICK_S if _jobs else None


def cancel(scene) -> bool:
    job = _jobs.get(scene.name)
    if job is None:
        return False
    threading.Thread(target=job.runner.cancel, daemon=True).start()
    return True


def shutdown() -> None:
    """Cancel every job and remove the timer (unregister)."""
    for job in list(_jobs.values()):
        try:
            job.runner.cancel()
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
    _jobs.clear()
    if bpy.app.timers.is_registered(_tick):
        bpy.app.timers.unregister(_tick)
