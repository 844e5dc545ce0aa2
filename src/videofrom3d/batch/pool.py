"""The local worker pool: one worker process per device, tasks claimed from a queue folder by atomic rename.
Both ``batch run --scheduler local`` and ``videofrom3d serve`` run on it (one scheduler).

::

    QUEUE/pending/<priority>-<task>.json     waiting (lower priority number first; the batch gives longest jobs
                                             the lowest); a worker claims one by renaming it into running/
    QUEUE/running/<priority>-<task>@<worker>.json
    QUEUE/done/<task>.json                   the worker's result
    QUEUE/workers/<worker>.json              {"pid", "device", "lane"} of each live worker
    QUEUE/cancelled/                         pending tasks taken out by a cancel
    QUEUE/stop                               workers exit
    QUEUE.lock                               held by the pool that owns QUEUE (one at a time)

A worker that dies mid-task (killed, crashed) has its task put back, marked to avoid that device while
another worker of its lane lives, and is replaced; a task whose worker died twice fails. Cancel: a pending
task is taken out; a running one has its worker killed (the work folder stays resumable) and replaced.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from videofrom3d.batch.tasks import device_label

MAX_WORKER_DEATHS = 2  # deaths of a task's worker before the task fails
MAX_IDLE_DEATHS = 3  # deaths in a row of a device's worker holding no task
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class Device:
    """One worker's device: ``lane`` "gpu" with ``gpu`` the CUDA_VISIBLE_DEVICES value, or "cpu"."""

    lane: str
    index: int = 0
    gpu: str | None = None

    @property
    def label(self) -> str:
        return f"cuda:{self.gpu}" if self.lane == "gpu" else device_label("cpu", self.index)


def devices_for(gpus: str | list | None, workers: int | None) -> list[Device]:
    """``--gpus 0,1`` -> one GPU worker each; else ``--workers N`` CPU workers (default 1)."""
    if gpus:
        ids = [g.strip() for g in (gpus.split(",") if isinstance(gpus, str) else map(str, gpus)) if str(g).strip()]
        return [Device("gpu", i, g) for i, g in enumerate(ids)]
    return [Device("cpu", i) for i in range(max(1, workers or 1))]


class LocalPool:
    """Worker processes over ``folder``; ``submit`` / ``poll`` / ``cancel`` / ``close``."""

    def __init__(self, folder: str | os.PathLike, devices: list[Device], env: dict | None = None):
        self.folder = Path(folder)
        self.devices = list(devices)
        self.env = env
        self._procs: dict[str, tuple[subprocess.Popen, Device]] = {}
        self._generation = 0
        self._cancelling: set[str] = set()
        self._deaths: dict[str, int] = {}
        self._idle_deaths: dict[str, int] = {}
        self._closed = False
        self._lock = None

    # ---------------------------------------------------------------------------------------------- life
    def start(self) -> LocalPool:
        """A fresh queue (one pool owns its folder: what a killed run left there is dropped; its owner
        submits again what is unfinished) and the workers."""
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.folder.with_name(self.folder.name + ".lock"), "a")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            from videofrom3d.batch.jobs import BatchError

            self._lock.close()
            raise BatchError(f"another batch run or server is using {self.folder}; one at a time") from None
        shutil.rmtree(self.folder, ignore_errors=True)
        for sub in ("pending", "running", "done", "workers", "cancelled"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        for d in self.devices:
            self._spawn(d)
        return self

    def _spawn(self, d: Device) -> None:
        self._generation += 1
        name = f"{d.lane}{d.index}-{self._generation}"
        env = dict(os.environ if self.env is None else self.env)
        if d.lane == "gpu":
            env["CUDA_VISIBLE_DEVICES"] = str(d.gpu)
        cmd = [sys.executable, "-m", "videofrom3d.batch.worker", str(self.folder), "--name", name, "--lane", d.lane,
               "--index", str(d.index), "--parent", str(os.getpid())]
        self._procs[name] = (subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL), d)

    def close(self) -> None:
        """Stop every worker (a running task is killed: its work folder stays resumable)."""
        self._closed = True
        (self.folder / "stop").touch()
        for proc, _ in self._procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc, _ in self._procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._procs.clear()
        if self._lock is not None:
            self._lock.close()  # releases the flock
            self._lock = None

    def __enter__(self) -> LocalPool:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------------------------------------- tasks
    def submit(self, task: dict, priority: int = 0) -> None:
        tid = task["id"]
        if not _SAFE_ID.match(tid):
            raise ValueError(f"task id {tid!r} must match {_SAFE_ID.pattern}")
        (self.folder / "done" / f"{tid}.json").unlink(missing_ok=True)
        target = self.folder / "pending" / f"{priority:08d}-{tid}.json"
        tmp = self.folder / "pending" / f".{target.name}.tmp"
        tmp.write_text(json.dumps(task))
        os.replace(tmp, target)

    def running(self) -> dict[str, str]:
        """{task id: device label} of the tasks being run now."""
        out = {}
        for p in (self.folder / "running").glob("*.json"):
            stem, _, worker = p.stem.partition("@")
            proc = self._procs.get(worker)
            out[stem.split("-", 1)[1]] = proc[1].label if proc else "?"
        return out

    def pending(self) -> list[str]:
        return [p.stem.split("-", 1)[1] for p in sorted((self.folder / "pending").glob("*.json"))]

    def poll(self) -> list[dict]:
        """Results finished since the last poll (including ``cancelled`` and worker-death failures); dead
        workers are handled (their task put back or failed) and replaced."""
        self._reap()
        out = []
        for p in sorted((self.folder / "done").glob("*.json")):
            try:
                out.append(json.loads(p.read_text()))
            except ValueError:
                continue
            p.unlink()
        for r in out:
            if r["id"] in self._cancelling:
                self._cancelling.discard(r["id"])
        return out

    def cancel(self, task_id: str) -> bool:
        """Take a pending task out, or kill the worker running it; its ``cancelled`` result comes from
        :meth:`poll`. False when the task is neither pending nor running."""
        for p in (self.folder / "pending").glob(f"*-{task_id}.json"):
            try:
                os.rename(p, self.folder / "cancelled" / p.name)
            except FileNotFoundError:
                break  # just claimed: kill it below
            self._write_result({"id": task_id, "status": "cancelled"})
            return True
        for p in (self.folder / "running").glob(f"*-{task_id}@*.json"):
            worker = p.stem.partition("@")[2]
            self._cancelling.add(task_id)
            proc = self._procs.get(worker)
            if proc is not None and proc[0].poll() is None:
                proc[0].send_signal(signal.SIGTERM)
            return True
        return False

    # ---------------------------------------------------------------------------------------------- deaths
    def _write_result(self, result: dict) -> None:
        from videofrom3d.batch.worker import write_done

        write_done(self.folder, {"seconds": 0.0, "device": None, "node": None, "error": None, **result})

    def _reap(self) -> None:
        for name, (proc, device) in list(self._procs.items()):
            if proc.poll() is None:
                continue
            del self._procs[name]
            (self.folder / "workers" / f"{name}.json").unlink(missing_ok=True)
            tasks = list((self.folder / "running").glob(f"*@{name}.json"))
            for p in tasks:
                self._task_of_dead_worker(p, device)
            # a worker that dies with no task in hand cannot start (a broken install): stop, do not loop
            self._idle_deaths[device.label] = 0 if tasks else self._idle_deaths.get(device.label, 0) + 1
            if self._idle_deaths[device.label] >= MAX_IDLE_DEATHS:
                from videofrom3d.batch.jobs import BatchError

                raise BatchError(f"the worker for {device.label} exits as soon as it starts (exit code "
                                 f"{proc.returncode}); run `python -m videofrom3d.batch.worker --help` to see why")
            if not self._closed:
                self._spawn(device)

    def _task_of_dead_worker(self, running: Path, device: Device) -> None:
        stem = running.stem.partition("@")[0]
        tid = stem.split("-", 1)[1]
        if (self.folder / "done" / f"{tid}.json").exists():  # it finished just before dying
            running.unlink(missing_ok=True)
            return
        task = json.loads(running.read_text())
        if tid in self._cancelling:
            running.unlink()
            self._write_result({"id": tid, "status": "cancelled", "device": device.label})
            return
        self._deaths[tid] = self._deaths.get(tid, 0) + 1
        if self._deaths[tid] >= MAX_WORKER_DEATHS:
            running.unlink()
            self._write_result({"id": tid, "status": "failed", "device": device.label, "code": "worker",
                                "error": f"its worker died {self._deaths[tid]} times (last on {device.label})"})
            return
        avoid = set(task.get("avoid", [])) | {device.label}
        others = [d for _, d in self._procs.values() if d.lane == device.lane and d.label not in avoid]
        task["avoid"] = sorted(avoid) if others else []
        target = self.folder / "pending" / f"{stem}.json"
        tmp = self.folder / "pending" / f".{target.name}.tmp"
        tmp.write_text(json.dumps(task))
        os.replace(tmp, target)
        running.unlink()

    def remove(self) -> None:
        """Delete the queue folder (after :meth:`close`)."""
        shutil.rmtree(self.folder, ignore_errors=True)
