"""The server's scheduler: its jobs on the batch worker pool (:class:`~videofrom3d.batch.pool.LocalPool`, one
worker per GPU plus a CPU lane for previews), a thread turning pool results into job states. A finished job
gets its report viewer (``work/report/``, :func:`videofrom3d.report.write_report`) before it is marked done."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from videofrom3d.batch.pool import Device, LocalPool
from videofrom3d.batch.tasks import OFFLOAD_SETTINGS
from videofrom3d.server.store import JobStore

POLL_S = 0.1


class Dispatcher:
    def __init__(self, data: Path, store: JobStore, gpus: list[str], models: str = "real"):
        self.data, self.store, self.models = Path(data), store, models
        self.gpu_lane = bool(gpus)
        devices = [Device("gpu", i, g) for i, g in enumerate(gpus)] + [Device("cpu", 0)]
        self.pool = LocalPool(self.data / "queue", devices)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._retried: set[str] = set()
        self._thread = threading.Thread(target=self._loop, name="videofrom3d-dispatch", daemon=True)
        self._reports = ThreadPoolExecutor(1, thread_name_prefix="videofrom3d-report")

    def start(self) -> Dispatcher:
        self.pool.start()  # a fresh queue: a killed server's is rebuilt from the job states below
        for job_id in self.store.unfinished():  # queued, and running when the server died: resumed
            self.store.update(job_id, state="queued", device=None)
            self.submit(job_id)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._reports.shutdown(wait=True, cancel_futures=True)
        self.pool.close()

    def _task(self, job_id: str, extra: dict | None = None) -> dict:
        folder = self.store.folder(job_id)
        engine = self.store.state(job_id)["engine"]
        spec = {"id": job_id, "job": str(folder / "inputs" / "job.toml"), "out": str(folder / "work"), "set": {},
                "base": str(folder)}
        lane = "gpu" if self.gpu_lane and engine != "preview" else "cpu"
        return {"id": job_id, "kind": "render", "spec": spec, "engine": engine, "models": self.models,
                "styles": str(self.data / "styles"), "events": str(folder / "events.jsonl"), "set": extra or {},
                "lane": lane}

    def submit(self, job_id: str, extra: dict | None = None) -> None:
        with self._lock:
            self.pool.submit(self._task(job_id, extra), 0)

    def cancel(self, job_id: str, wait_s: float = 15.0) -> dict:
        """Cancel a queued or running job; returns its state (``cancelled`` once the worker is stopped)."""
        with self._lock:
            found = self.pool.cancel(job_id)
        t0 = time.time()
        while found and time.time() - t0 < wait_s and self.store.state(job_id)["state"] not in ("cancelled", "done",
                                                                                                 "failed"):
            time.sleep(0.05)
        return self.store.state(job_id)

    def queue_length(self) -> int:
        return len(self.pool.pending())

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                results = self.pool.poll()
                running = self.pool.running()
            for job_id, device in running.items():
                st = self.store.state(job_id)
                if st["state"] == "queued":
                    self.store.update(job_id, state="running", device=device)
            for r in results:
                self._finish(r)
            time.sleep(POLL_S)

    def _finish(self, r: dict) -> None:
        job_id = r["id"]
        if r["status"] == "retry" and job_id not in self._retried:  # out of memory: once more, with offload
            self._retried.add(job_id)
            self.submit(job_id, OFFLOAD_SETTINGS if self.store.state(job_id)["engine"] != "preview" else None)
            return
        status = {"done": "done", "cancelled": "cancelled"}.get(r["status"], "failed")
        if status == "done":  # the viewer first, off this thread (a big scene takes seconds to decimate)
            self._reports.submit(self._report_then_done, job_id, r)
            return
        self.store.update(job_id, state=status, device=r.get("device"), seconds=r.get("seconds"),
                          error=r.get("error") if status == "failed" else None, code=r.get("code"))

    def _report_then_done(self, job_id: str, r: dict) -> None:
        from videofrom3d.report import write_report

        note = None
        try:
            write_report(self.store.work(job_id))
        except Exception as e:  # noqa: BLE001 - a missing viewer never fails a rendered job
            note = f"no report viewer: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        self.store.update(job_id, state="done", device=r.get("device"), seconds=r.get("seconds"), error=None,
                          note=note)
