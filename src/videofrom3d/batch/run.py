"""``batch run``: every line of jobs.jsonl rendered over a worker pool (local processes or Ray actors).

Order: each distinct style is aligned once first (an ``align`` task per style key, cached in the style cache
folder: :mod:`videofrom3d.pipeline.style_cache`); a job is queued when its style is ready, longest jobs
(most frames) first. A failure is final unless it is transient (out of memory): then the job is retried
once, with model CPU offload on the diffusion engine. ``results.jsonl`` beside the jobs file gets one line
per job as it ends: ``{"id", "status": "done" | "failed" | "skipped", "seconds", "device", "node", "error"}``;
a re-run skips the jobs whose last line says done. Each job's work folder is a normal resumable one
(plus ``render.log`` and ``events.jsonl``).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from videofrom3d.batch.jobs import JobSpec, build_job, read_jobs
from videofrom3d.batch.tasks import OFFLOAD_SETTINGS, one_line
from videofrom3d.errors import USER_ERRORS
from videofrom3d.io.manifest import digest_json

RESULT_FIELDS = ("id", "status", "seconds", "device", "node", "error")
POLL_S = 0.1


def results_path(jobs: str | os.PathLike) -> Path:
    return Path(jobs).with_name("results.jsonl")


def read_results(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _append(path: Path, result: dict) -> dict:
    line = {k: result.get(k) for k in RESULT_FIELDS}
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")
    return line


def _job_frames(job) -> int:
    from videofrom3d.job import job_cameras

    return len(job_cameras(job))


def make_pool(scheduler: str, state: Path, gpus=None, workers: int | None = None, ray_address: str | None = None):
    from videofrom3d.batch.pool import LocalPool, devices_for

    devices = devices_for(gpus, workers)
    if scheduler == "local":
        return LocalPool(state / "queue", devices)
    if scheduler == "ray":
        from videofrom3d.batch.ray_pool import RayPool

        return RayPool(state / "workers", devices, address=ray_address)
    raise ValueError(f"--scheduler must be local or ray, got {scheduler!r}")


@dataclass
class _Render:
    spec: JobSpec
    task: dict
    frames: int  # its length: longest first
    diffusion: bool  # whether offload helps on a retry
    align: str | None = None  # the align task it waits for
    tries: int = 0


@dataclass
class _Align:
    task: dict
    waiting: list[str] = field(default_factory=list)
    tries: int = 0


def plan_tasks(specs: list[JobSpec], engine: str, models: str, styles: Path) -> tuple[dict, dict, list]:
    """-> ({render task id: _Render}, {align task id: _Align}, [(spec, one-line error)] of jobs that cannot
    even be read). One align task per distinct style key; a job whose style cannot be keyed gets none and
    fails in its worker with the real error."""
    renders: dict[str, _Render] = {}
    aligns: dict[str, _Align] = {}
    bad = []
    for spec in specs:
        try:
            job = build_job(spec)
            frames = _job_frames(job)
        except USER_ERRORS as e:
            bad.append((spec, one_line(e)))
            continue
        tid = "r" + digest_json(spec.id)[:15]  # task ids name queue files: fixed-length hex, never a user string
        task = {"id": tid, "kind": "render", "spec": spec.as_task(), "engine": engine, "models": models,
                "styles": str(styles), "events": str(spec.out / "events.jsonl"), "set": {}}
        r = renders[tid] = _Render(spec, task, frames, _is_diffusion(job, engine, models))
        key = _style_key(job, engine, models)
        if key is not None:
            r.align = "a" + key[:15]
            aligns.setdefault(r.align, _Align({**task, "id": r.align, "kind": "align", "events": None}))
            aligns[r.align].waiting.append(tid)
    return renders, aligns, bad


class _Driver:
    """Feeds a pool: align tasks first, each job once its style is ready, longest first; one result line
    per job."""

    def __init__(self, pool, renders: dict[str, _Render], aligns: dict[str, _Align], record):
        self.pool, self.renders, self.aligns, self.record = pool, renders, aligns, record
        order = sorted(renders, key=lambda t: (-renders[t].frames, renders[t].spec.id))
        self.priority = {t: i + 1 for i, t in enumerate(order)}  # align tasks go before all (0)
        self.outstanding = len(aligns) + len(renders)

    def run(self) -> None:
        for a in self.aligns.values():
            self.pool.submit(a.task, 0)
        for tid, r in self.renders.items():
            if r.align is None:
                self.pool.submit(r.task, self.priority[tid])
        while self.outstanding:
            results = self.pool.poll()
            if not results:
                time.sleep(POLL_S)
            for res in results:
                (self._aligned if res["id"] in self.aligns else self._rendered)(res)

    def _aligned(self, res: dict) -> None:
        a = self.aligns[res["id"]]
        if res["status"] == "retry" and a.tries == 0:
            a.tries += 1
            self.pool.submit(a.task, 0)
            return
        self.outstanding -= 1
        for tid in a.waiting:
            if res["status"] == "done":
                self.pool.submit(self.renders[tid].task, self.priority[tid])
            else:
                self.outstanding -= 1
                self.record(self.renders[tid].spec, status="failed", device=res.get("device"),
                            error=f"style alignment failed: {res.get('error')}")

    def _rendered(self, res: dict) -> None:
        r = self.renders[res["id"]]
        if res["status"] == "retry" and r.tries == 0:  # transient (out of memory): once more, with offload
            r.tries += 1
            if r.diffusion:
                r.task = {**r.task, "set": {**r.task["set"], **OFFLOAD_SETTINGS}}
            self.pool.submit(r.task, self.priority[res["id"]])
            return
        self.outstanding -= 1
        status = "done" if res["status"] == "done" else "failed"
        self.record(r.spec, status=status, seconds=res.get("seconds", 0.0), device=res.get("device"),
                    node=res.get("node"), error=res.get("error") if status == "failed" else None)


def run_batch(jobs: str | os.PathLike, scheduler: str = "local", gpus=None, workers: int | None = None,
              ray_address: str | None = None, engine: str = "auto", models: str = "real",
              style_cache: str | os.PathLike | None = None, progress: bool = True, pool=None) -> list[dict]:
    """Render every job of ``jobs`` (jsonl) -> the results lines written this run (see module doc).
    ``pool``: an already started pool to use instead of making one (tests)."""
    from tqdm.auto import tqdm

    jobs = Path(jobs).resolve()
    specs = read_jobs(jobs)
    out_path = results_path(jobs)
    styles = Path(style_cache).resolve() if style_cache is not None else jobs.with_name("styles")
    finished = {r["id"] for r in read_results(out_path) if r.get("status") == "done"}
    lines: list[dict] = []
    node = socket.gethostname()
    bar = tqdm(total=len(specs), desc="batch", unit="job", disable=not progress, file=sys.stderr)

    def record(spec: JobSpec, **r) -> None:
        r = {k: v for k, v in r.items() if v is not None}
        lines.append(_append(out_path, {"id": spec.id, "node": node, "seconds": 0.0, "device": None,
                                        "error": None, **r}))
        bar.update(1)

    for spec in specs:
        if spec.id in finished:
            record(spec, status="skipped")
    renders, aligns, bad = plan_tasks([s for s in specs if s.id not in finished], engine, models, styles)
    for spec, err in bad:
        record(spec, status="failed", error=err)
    own_pool = pool is None and bool(renders)
    if own_pool:
        pool = make_pool(scheduler, jobs.with_name(f".{jobs.stem}.batch"), gpus, workers, ray_address).start()
    try:
        if renders:
            _Driver(pool, renders, aligns, record).run()
    finally:
        if own_pool:
            pool.close()
        bar.close()
    return lines


def _style_key(job, engine: str, models: str) -> str | None:
    from videofrom3d.pipeline.style_cache import style_key

    try:
        return style_key(job, engine, models)
    except USER_ERRORS:
        return None


def _is_diffusion(job, engine: str, models: str) -> bool:
    from videofrom3d.pipeline.plan import choose_engine

    try:
        return choose_engine(engine, models, job)[0] == "diffusion"
    except USER_ERRORS:
        return False
