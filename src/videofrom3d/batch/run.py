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


def run_batch(jobs: str | os.PathLike, scheduler: str = "local", gpus=None, workers: int | None = None,
              ray_address: str | None = None, engine: str = "auto", models: str = "real",
              style_cache: str | os.PathLike | None = None, progress: bool = True, pool=None) -> list[dict]:
    """Render every job of ``jobs`` (jsonl) -> the results lines written this run (see module doc).
    ``pool``: an already started pool to use instead of making one (tests, the server)."""
    jobs = Path(jobs).resolve()
    specs = read_jobs(jobs)
    out_path = results_path(jobs)
    state = jobs.with_name(f".{jobs.stem}.batch")
    styles = Path(style_cache).resolve() if style_cache is not None else jobs.with_name("styles")
    finished = {r["id"] for r in read_results(out_path) if r.get("status") == "done"}
    lines: list[dict] = []
    node = socket.gethostname()

    def record(spec: JobSpec, **r) -> None:
        lines.append(_append(out_path, {"id": spec.id, "node": node, "seconds": 0.0, "device": None,
                                        "error": None, **r}))
        bar.update(1)

    from tqdm.auto import tqdm

    bar = tqdm(total=len(specs), desc="batch", unit="job", disable=not progress, file=sys.stderr)
    # ------------------------------------------------------------------ plan: every job, its style, its length
    renders: dict[str, dict] = {}  # task id -> {"spec", "task", "frames", "key", "diffusion", "tries"}
    aligns: dict[str, dict] = {}  # task id -> {"task", "waiting": [render task ids]}
    for spec in specs:
        if spec.id in finished:
            record(spec, status="skipped")
            continue
        try:
            job = build_job(spec)
            frames = _job_frames(job)
        except USER_ERRORS as e:
            record(spec, status="failed", error=one_line(e))
            continue
        tid = "r" + digest_json(spec.id)[:15]
        task = {"id": tid, "kind": "render", "spec": spec.as_task(), "engine": engine, "models": models,
                "styles": str(styles), "events": str(spec.out / "events.jsonl"), "set": {}}
        entry = {"spec": spec, "task": task, "frames": frames, "tries": 0, "align": None,
                 "diffusion": _is_diffusion(job, engine, models)}
        key = _style_key(job, engine, models)
        if key is not None:  # a job whose style cannot be keyed fails in its worker with the real error
            aid = "a" + key[:15]
            if aid not in aligns:
                aligns[aid] = {"task": {**task, "id": aid, "kind": "align", "events": None}, "waiting": [],
                               "tries": 0}
            aligns[aid]["waiting"].append(tid)
            entry["align"] = aid
        renders[tid] = entry
    order = sorted(renders, key=lambda t: (-renders[t]["frames"], renders[t]["spec"].id))
    priority = {t: i + 1 for i, t in enumerate(order)}  # longest first; align tasks go before all (0)

    if not renders:
        bar.close()
        return lines
    own_pool = pool is None
    if own_pool:
        pool = make_pool(scheduler, state, gpus, workers, ray_address).start()
    try:
        for a in aligns.values():
            pool.submit(a["task"], 0)
        for tid, r in renders.items():
            if r["align"] is None:
                pool.submit(r["task"], priority[tid])
        outstanding = len(aligns) + len(renders)
        while outstanding:
            results = pool.poll()
            if not results:
                time.sleep(POLL_S)
            for res in results:
                tid = res["id"]
                if tid in aligns:
                    a = aligns[tid]
                    if res["status"] == "retry" and a["tries"] == 0:
                        a["tries"] += 1
                        pool.submit(a["task"], 0)
                        continue
                    outstanding -= 1
                    for wid in a["waiting"]:
                        if res["status"] == "done":
                            pool.submit(renders[wid]["task"], priority[wid])
                        else:
                            outstanding -= 1
                            record(renders[wid]["spec"], status="failed", device=res.get("device"),
                                   error=f"style alignment failed: {res.get('error')}")
                    continue
                r = renders[tid]
                if res["status"] == "retry" and r["tries"] == 0:
                    r["tries"] += 1  # transient (out of memory): once more, with offload where it helps
                    if r["diffusion"]:
                        r["task"] = {**r["task"], "set": {**r["task"]["set"], **OFFLOAD_SETTINGS}}
                    pool.submit(r["task"], priority[tid])
                    continue
                outstanding -= 1
                status = "done" if res["status"] == "done" else "failed"
                record(r["spec"], status=status, seconds=res.get("seconds", 0.0), device=res.get("device"),
                       node=res.get("node") or node, error=res.get("error") if status == "failed" else None)
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
