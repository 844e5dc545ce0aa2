"""Batch renders (issue 18): jobs.jsonl planning, the local worker pool over fake GPUs and Ray actors; every
job must equal a serial render byte for byte, a killed worker's job must finish elsewhere, each style must be
aligned once, and a bad job must fail alone in one line."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from test_pipeline_jobs import make_job, tree_digests, write_cameras, write_scene
from videofrom3d.batch import build_job, plan_jobs, read_jobs, read_results, run_batch
from videofrom3d.cli import main
from videofrom3d.pipeline import render
from videofrom3d.pipeline.style_cache import alignments

SKIP = ("manifest.json", "render.log", "events.jsonl")


def _style(path: Path, colour) -> Path:
    import cv2

    img = np.zeros((48, 64, 3), np.uint8)
    img[:16] = colour
    img[16:] = (40, 90, 60)
    cv2.imwrite(str(path), img)
    return path


def _setup(tmp: Path, scenes: int, arcs: int = 2, frames_per_arc: int = 4, size=(64, 48)) -> Path:
    make_job(tmp, width=size[0], height=size[1], frames_per_arc=frames_per_arc, arcs=arcs)
    for i in range(1, scenes):
        write_scene(tmp / f"scene{i}.glb", seed=i)
    return tmp / "job.toml"


def _serial(jobs: Path, ids=None) -> dict[str, dict]:
    """Each job rendered in this process, one after another, into serial/<id> -> its files' hashes."""
    out = {}
    for spec in read_jobs(jobs):
        if ids is not None and spec.id not in ids:
            continue
        job = dataclasses.replace(build_job(spec), out=jobs.parent / "serial" / spec.id)
        render(job, engine="preview", progress=False, log=lambda s: None)
        out[spec.id] = tree_digests(job.work_dir, skip=SKIP)
    return out


def _kill_when_started(queue_workers: Path, work: Path, killed: dict, timeout: float = 60.0) -> None:
    """Kill (SIGKILL) the worker rendering into ``work`` once its first arc is prepared."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if (work / "prepare" / "arc000").is_dir() and not (work / "video.mp4").exists():
            log = (work / "events.jsonl").read_text() if (work / "events.jsonl").exists() else ""
            for w in queue_workers.glob("*.json"):
                info = json.loads(w.read_text())
                running = info["device"] in _devices_running(log)
                if running:
                    os.kill(info["pid"], signal.SIGKILL)
                    killed["device"] = info["device"]
                    return
        time.sleep(0.005)


def _devices_running(events_text: str) -> set[str]:
    return {json.loads(line).get("device") for line in events_text.splitlines() if '"state"' in line} - {None}


def test_plan_writes_the_product_with_stable_ids(tmp_path):
    job = _setup(tmp_path, scenes=2)
    specs = plan_jobs(tmp_path / "jobs.jsonl", job=job, scenes=[tmp_path / "scene.glb", tmp_path / "scene1.glb"],
                      seeds=[0, 5])
    lines = [json.loads(x) for x in (tmp_path / "jobs.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == ["scene-s0", "scene-s5", "scene1-s0", "scene1-s5"]
    assert lines[3] == {"id": "scene1-s5", "job": "job.toml", "set": {"scene.path": "scene1.glb", "seed": 5},
                        "out": "runs/scene1-s5"}
    again = plan_jobs(tmp_path / "jobs2.jsonl", job=job, scenes=[tmp_path / "scene.glb", tmp_path / "scene1.glb"],
                      seeds=[0, 5])
    assert [s.id for s in again] == [s.id for s in specs]
    built = build_job(read_jobs(tmp_path / "jobs.jsonl")[3])
    assert built.seed == 5 and built.scene.path == tmp_path / "scene1.glb" and built.work_dir == tmp_path / "runs/scene1-s5"


def test_local_pool_spreads_jobs_equals_serial_and_a_bad_job_fails_alone(tmp_path):
    job = _setup(tmp_path, scenes=3)
    plan_jobs(tmp_path / "jobs.jsonl", job=job, scenes=[tmp_path / f"scene{s}.glb" for s in ("", 1, 2)], seeds=[0, 1])
    with open(tmp_path / "jobs.jsonl", "a") as f:  # a seventh job whose scene is missing
        f.write(json.dumps({"id": "bad", "job": "job.toml", "set": {"scene.path": "missing.glb"}, "out": "runs/bad"}) + "\n")
    rc = main(["batch", "run", str(tmp_path / "jobs.jsonl"), "--gpus", "0,1", "--engine", "preview", "--quiet"])
    assert rc == 1  # a job failed
    results = {r["id"]: r for r in read_results(tmp_path / "results.jsonl")}
    assert len(results) == 7 and results["bad"]["status"] == "failed"
    assert "scene file not found" in results["bad"]["error"] and "\n" not in results["bad"]["error"]
    good = {k: r for k, r in results.items() if k != "bad"}
    assert all(r["status"] == "done" for r in good.values())
    assert {r["device"] for r in good.values()} == {"cuda:0", "cuda:1"}  # both fake GPUs worked
    serial = _serial(tmp_path / "jobs.jsonl", ids=set(good))
    for jid, digests in serial.items():
        assert digests and tree_digests(tmp_path / "runs" / jid, skip=SKIP) == digests, jid
    assert not (tmp_path / "runs" / "bad").exists() or not any((tmp_path / "runs" / "bad").rglob("*.png"))
    # a re-run skips what is done and tries the bad job again
    assert main(["batch", "run", str(tmp_path / "jobs.jsonl"), "--gpus", "0,1", "--engine", "preview", "--quiet"]) == 1
    last = read_results(tmp_path / "results.jsonl")[7:]
    assert sorted(r["status"] for r in last) == ["failed"] + ["skipped"] * 6


def test_two_styles_three_scenes_align_exactly_twice(tmp_path):
    job = _setup(tmp_path, scenes=3)
    styles = [_style(tmp_path / "red.png", (30, 30, 220)), _style(tmp_path / "blue.png", (220, 60, 30))]
    plan_jobs(tmp_path / "jobs.jsonl", job=job, scenes=[tmp_path / f"scene{s}.glb" for s in ("", 1, 2)], styles=styles)
    lines = run_batch(tmp_path / "jobs.jsonl", gpus="0,1", engine="preview", progress=False)
    assert [r["status"] for r in lines] == ["done"] * 6
    made = alignments(tmp_path / "styles")
    assert len(made) == 2 and len({m["key"] for m in made}) == 2
    for spec in read_jobs(tmp_path / "jobs.jsonl"):
        item = json.loads((spec.out / "manifest.json").read_text())["stages"]["align"]["items"]["preview"]
        assert item["made"] is False and Path(item["style_cache"]).name in {m["key"] for m in made}
    palettes = {(spec.out / "align" / "preview_style.json").read_bytes() for spec in read_jobs(tmp_path / "jobs.jsonl")}
    assert len(palettes) == 2  # one per style, shared by its three scenes


def _run_in_thread(**kw):
    box = {}
    t = threading.Thread(target=lambda: box.setdefault("lines", run_batch(**kw)), daemon=True)
    t.start()
    return t, box


def test_a_worker_killed_mid_job_has_its_job_finish_elsewhere_with_the_same_bytes(tmp_path):
    job = _setup(tmp_path, scenes=2, arcs=6, frames_per_arc=6, size=(96, 64))
    plan_jobs(tmp_path / "jobs.jsonl", job=job, scenes=[tmp_path / "scene.glb"], seeds=[0, 1])
    target = read_jobs(tmp_path / "jobs.jsonl")[0]
    t, box = _run_in_thread(jobs=tmp_path / "jobs.jsonl", gpus="0,1", engine="preview", progress=False)
    killed = {}
    _kill_when_started(tmp_path / ".jobs.batch" / "queue" / "workers", target.out, killed)
    t.join(120)
    assert killed, "the job ended before a worker could be killed"
    results = {r["id"]: r for r in box["lines"]}
    assert results[target.id]["status"] == "done" and results[target.id]["device"] != killed["device"]
    assert tree_digests(target.out, skip=SKIP) == _serial(tmp_path / "jobs.jsonl", ids={target.id})[target.id]


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'videofrom3d[ray]')")
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, object_store_memory=100 * 2**20,
             log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_actors_distinct_devices_same_bytes_bad_job_alone_and_a_killed_actor(tmp_path, local_ray):
    job = _setup(tmp_path, scenes=2, arcs=6, frames_per_arc=6, size=(96, 64))
    plan_jobs(tmp_path / "jobs.jsonl", job=job, scenes=[tmp_path / "scene.glb", tmp_path / "scene1.glb"], seeds=[0, 1])
    with open(tmp_path / "jobs.jsonl", "a") as f:
        f.write(json.dumps({"id": "bad", "job": "job.toml", "set": {"scene.path": "missing.glb", "seed": 0},
                            "out": "runs/bad"}) + "\n")
    target = read_jobs(tmp_path / "jobs.jsonl")[0]
    t, box = _run_in_thread(jobs=tmp_path / "jobs.jsonl", scheduler="ray", gpus="0,1", engine="preview", progress=False)
    killed = {}
    _kill_when_started(tmp_path / ".jobs.batch" / "workers", target.out, killed)
    t.join(180)
    assert killed, "the job ended before an actor could be killed"
    results = {r["id"]: r for r in box["lines"]}
    assert results["bad"]["status"] == "failed" and "scene file not found" in results["bad"]["error"]
    good = {k: r for k, r in results.items() if k != "bad"}
    assert [r["status"] for r in good.values()] == ["done"] * 4
    assert {r["device"] for r in good.values()} == {"cuda:0", "cuda:1"}  # Ray gave the actors distinct GPUs
    assert results[target.id]["device"] != killed["device"]
    assert len(alignments(tmp_path / "styles")) == 2  # one style, two seeds (the bad job shares seed 0's)
    for jid, digests in _serial(tmp_path / "jobs.jsonl", ids=set(good)).items():
        assert tree_digests(tmp_path / "runs" / jid, skip=SKIP) == digests, jid


class _ScriptedPool:
    """A pool whose workers answer from a script: the first render attempt of each job is out of memory,
    and the job 'bad-input' fails on its input."""

    def __init__(self):
        self.submitted, self._out = [], []

    def submit(self, task, priority=0):
        self.submitted.append((priority, task))
        seen = sum(t["id"] == task["id"] for _, t in self.submitted)
        if task["kind"] == "align":
            status, error = "done", None
        elif task["spec"]["id"] == "bad-input":
            status, error = "failed", "scene file not found: x.glb"
        else:
            status, error = ("retry", "OutOfMemoryError: CUDA out of memory") if seen == 1 else ("done", None)
        self._out.append({"id": task["id"], "status": status, "seconds": 1.0, "device": "cuda:0", "node": "n",
                          "error": error})

    def poll(self):
        out, self._out = self._out, []
        return out


def test_out_of_memory_is_retried_once_with_offload_and_bad_input_never(tmp_path):
    _setup(tmp_path, scenes=1)
    with open(tmp_path / "jobs.jsonl", "w") as f:
        for jid, arcs in (("short", 1), ("long", 3), ("bad-input", 2)):
            cams = f"cams{arcs}.json"
            write_cameras(tmp_path / cams, 4 * arcs + 1, 64, 48)
            f.write(json.dumps({"id": jid, "job": "job.toml", "set": {"trajectory.path": cams}, "out": f"runs/{jid}"}) + "\n")
    pool = _ScriptedPool()
    lines = run_batch(tmp_path / "jobs.jsonl", engine="diffusion", models="tiny-random", progress=False, pool=pool)
    status = {r["id"]: r["status"] for r in lines}
    assert status == {"short": "done", "long": "done", "bad-input": "failed"}
    renders = [(p, t) for p, t in pool.submitted if t["kind"] == "render"]
    first = [t["spec"]["id"] for p, t in sorted(renders[:3], key=lambda pt: pt[0])]
    assert first == ["long", "bad-input", "short"]  # longest first (13, 9, 5 frames)
    tries = {jid: [t["set"] for _, t in renders if t["spec"]["id"] == jid] for jid in status}
    assert tries["bad-input"] == [{}]  # never retried
    assert tries["long"] == [{}, {"anchors.memory": "model", "inbetween.memory": "model"}]  # once, with offload
    assert [t["kind"] for _, t in pool.submitted][0] == "align" and len([1 for _, t in pool.submitted if t["kind"] == "align"]) == 1


def test_a_worker_that_cannot_start_stops_the_pool_with_one_line(tmp_path):
    from videofrom3d.batch import BatchError
    from videofrom3d.batch.pool import Device, LocalPool

    pool = LocalPool(tmp_path / "q", [Device("cpu")], env={**os.environ, "PYTHONHOME": str(tmp_path / "none")})
    pool.start()
    try:
        pool.submit({"id": "t1", "kind": "render"}, 1)
        t0 = time.time()
        with pytest.raises(BatchError, match="exits as soon as it starts"):
            while time.time() - t0 < 30:
                pool.poll()
                time.sleep(0.05)
        assert pool.pending() == ["t1"]  # the task was never taken
    finally:
        pool.close()


def test_one_pool_per_queue_folder(tmp_path):
    from videofrom3d.batch import BatchError
    from videofrom3d.batch.pool import Device, LocalPool

    with LocalPool(tmp_path / "q", [Device("cpu")]):
        with pytest.raises(BatchError, match="one at a time"):
            LocalPool(tmp_path / "q", [Device("cpu")]).start()
    LocalPool(tmp_path / "q", [Device("cpu")]).start().close()  # free again once closed
