"""The Ray scheduler (``[ray]`` extra): one Ray Core actor per GPU (``num_gpus=1``: Ray gives each its own
``CUDA_VISIBLE_DEVICES``) or per CPU worker, each a long-lived process that imports the engines once and
renders many jobs with the same :func:`~videofrom3d.batch.tasks.run_task` as a local worker. Same
``submit`` / ``poll`` / ``cancel`` / ``close`` as :class:`~videofrom3d.batch.pool.LocalPool`, so the batch
driver does not know which it has.

Tasks wait in the driver (lowest priority number first) and go to idle actors; ``ray.wait`` collects
results. An actor that dies mid-task (``RayActorError``) is replaced and its task goes to another actor,
avoiding that device while another lives; twice -> failed. Actors write ``WORKERS/<name>.json``
(``{"pid", "device", "node"}``) like local workers.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from videofrom3d.batch.pool import MAX_WORKER_DEATHS, Device


class _Worker:
    """The actor: runs tasks in its process (models and imports stay warm between jobs)."""

    def __init__(self, name: str, lane: str, index: int, workers_dir: str):
        from videofrom3d.batch.tasks import device_label

        self.device = device_label(lane, index)
        Path(workers_dir).mkdir(parents=True, exist_ok=True)
        info = {"pid": os.getpid(), "device": self.device, "node": socket.gethostname()}
        (Path(workers_dir) / f"{name}.json").write_text(json.dumps(info))

    def info(self) -> str:
        return self.device

    def run(self, task: dict) -> dict:
        from videofrom3d.batch.tasks import run_task

        return run_task(task, self.device)


class RayPool:
    """Ray actors over ``devices`` (connects to ``address``, or starts a local Ray unless one is up)."""

    def __init__(self, workers_dir: str | os.PathLike, devices: list[Device], address: str | None = None):
        self.workers_dir = Path(workers_dir)
        self.devices = list(devices)
        self.address = address
        self._pending: list[tuple[int, dict]] = []
        self._idle: list[tuple[object, str, Device]] = []
        self._busy: dict[object, tuple[object, str, Device, dict]] = {}  # ref -> (actor, name, device, task)
        self._done: list[dict] = []
        self._deaths: dict[str, int] = {}
        self._count = 0
        self._started_ray = False

    def start(self) -> RayPool:
        try:
            import ray
        except ImportError:
            from videofrom3d.batch.jobs import BatchError

            raise BatchError("--scheduler ray needs Ray: pip install 'videofrom3d[ray]'") from None
        if not ray.is_initialized():
            gpus = sum(d.lane == "gpu" for d in self.devices)
            local = {} if self.address else {"num_gpus": gpus or None}  # the GPUs --gpus names, on this machine
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False, **local)
            self._started_ray = True
        self._remote = ray.remote(_Worker)
        for d in self.devices:
            self._idle.append(self._spawn(d))
        ray.get([a.info.remote() for a, _, _ in self._idle])  # every actor up (and its pid written)
        return self

    def _spawn(self, d: Device):
        self._count += 1
        name = f"{d.lane}{d.index}-{self._count}"
        opts = {"num_gpus": 1, "num_cpus": 0} if d.lane == "gpu" else {"num_cpus": 1}
        actor = self._remote.options(name=None, **opts).remote(name, d.lane, d.index, str(self.workers_dir))
        return actor, name, d

    def __enter__(self) -> RayPool:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def submit(self, task: dict, priority: int = 0) -> None:
        self._pending.append((priority, task))
        self._pending.sort(key=lambda pt: pt[0])
        self._dispatch()

    def _dispatch(self) -> None:
        for actor, name, d in list(self._idle):
            label = d.label
            for i, (_, task) in enumerate(self._pending):
                if label in task.get("avoid", ()):
                    continue
                self._pending.pop(i)
                self._idle.remove((actor, name, d))
                self._busy[actor.run.remote(task)] = (actor, name, d, task)
                break

    def running(self) -> dict[str, str]:
        return {t["id"]: d.label for _, _, d, t in self._busy.values()}

    def pending(self) -> list[str]:
        return [t["id"] for _, t in self._pending]

    def poll(self) -> list[dict]:
        import ray

        if self._busy:
            ready, _ = ray.wait(list(self._busy), num_returns=len(self._busy), timeout=0.05)
            for ref in ready:
                actor, name, d, task = self._busy.pop(ref)
                try:
                    self._done.append(ray.get(ref))
                    self._idle.append((actor, name, d))
                except ray.exceptions.RayActorError:
                    self._actor_died(name, d, task)
        self._dispatch()
        out, self._done = self._done, []
        return out

    def _actor_died(self, name: str, d: Device, task: dict) -> None:
        (self.workers_dir / f"{name}.json").unlink(missing_ok=True)
        self._idle.append(self._spawn(d))
        tid = task["id"]
        self._deaths[tid] = self._deaths.get(tid, 0) + 1
        if self._deaths[tid] >= MAX_WORKER_DEATHS:
            self._done.append({"id": tid, "status": "failed", "seconds": 0.0, "device": d.label, "node": None,
                               "code": "worker", "error": f"its worker died {self._deaths[tid]} times (last on {d.label})"})
            return
        avoid = set(task.get("avoid", [])) | {d.label}
        others = [dd for _, _, dd in self._idle if dd.lane == d.lane and dd.label not in avoid]
        others += [dd for _, _, dd, _ in self._busy.values() if dd.lane == d.lane and dd.label not in avoid]
        self._pending.insert(0, (0, {**task, "avoid": sorted(avoid) if others else []}))

    def cancel(self, task_id: str) -> bool:
        import ray

        for i, (_, task) in enumerate(self._pending):
            if task["id"] == task_id:
                self._pending.pop(i)
                self._done.append({"id": task_id, "status": "cancelled", "seconds": 0.0, "device": None,
                                   "node": None, "error": None})
                return True
        for ref, (actor, name, d, task) in list(self._busy.items()):
            if task["id"] == task_id:
                ray.kill(actor)
                del self._busy[ref]
                (self.workers_dir / f"{name}.json").unlink(missing_ok=True)
                self._idle.append(self._spawn(d))
                self._done.append({"id": task_id, "status": "cancelled", "seconds": 0.0, "device": d.label,
                                   "node": None, "error": None})
                return True
        return False

    def close(self) -> None:
        import ray

        for actor, _, _ in self._idle:
            ray.kill(actor)
        for actor, _, _, _ in self._busy.values():
            ray.kill(actor)
        self._idle.clear()
        self._busy.clear()
        if self._started_ray:
            ray.shutdown()
