"""The server's disk-backed jobs: ``DATA/jobs/<id>/`` holds ``inputs/`` (the uploads under server-chosen
names and ``job.toml``), ``state.json`` (written atomically), ``events.jsonl`` (:mod:`videofrom3d.events`)
and ``work/`` (the normal resumable work folder). Ids sort by creation time, so the queue survives a restart
in order.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
import tomllib
from pathlib import Path

from videofrom3d.errors import VideoFrom3DError
from videofrom3d.events import FINAL_STATES, append_event, make_event
from videofrom3d.io.atomic import atomic_write_text

ID = re.compile(r"^[0-9]{13}[0-9a-f]{8}$")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class SubmitError(VideoFrom3DError, ValueError):
    """A submission the server refuses (HTTP 422), one line."""


def safe_name(client_name: str | None, index: int) -> str:
    """The server's name for an upload: the client name's last component with only ``[A-Za-z0-9_.-]``, no
    leading dot (``../../x`` -> ``x``); ``upload<index>`` when nothing is left."""
    base = (client_name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _SAFE.sub("_", base).lstrip(".")
    return base[:100] or f"upload{index}"


class JobStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def folder(self, job_id: str) -> Path:
        if not ID.match(job_id):
            raise KeyError(job_id)
        path = self.root / job_id
        if not (path / "state.json").is_file():
            raise KeyError(job_id)
        return path

    def events(self, job_id: str) -> Path:
        return self.folder(job_id) / "events.jsonl"

    def work(self, job_id: str) -> Path:
        return self.folder(job_id) / "work"

    def ids(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if ID.match(p.name) and (p / "state.json").is_file())

    # --------------------------------------------------------------------------------------------- create
    def create(self, job_toml: str, uploads: list[tuple[str | None, bytes]], engine: str) -> str:
        """Check a submission and write it (all or nothing) -> its id. ``uploads``: (client name, bytes)."""
        from videofrom3d.job import load_job

        try:
            doc = tomllib.loads(job_toml)
        except tomllib.TOMLDecodeError as e:
            raise SubmitError(f"job: not valid TOML ({e})") from None
        if "out" in doc:
            raise SubmitError("job: out is chosen by the server; leave it out")
        for key, value in (doc.get("models") or {}).items():
            if isinstance(value, str) and (value.startswith(("/", ".", "~")) or "\\" in value):
                raise SubmitError(f"job: [models] {key} names a local folder; the server uses its own weights")
        job_id = f"{int(time.time() * 1000):013d}{secrets.token_hex(4)}"
        tmp = self.root / f".{job_id}.tmp"
        inputs = tmp / "inputs"
        try:
            inputs.mkdir(parents=True)
            names = set()
            for i, (client, data) in enumerate(uploads):
                name = safe_name(client, i)
                if name in names or name == "job.toml":
                    raise SubmitError(f"files: two uploads (or an upload and the job) named {name!r}")
                names.add(name)
                (inputs / name).write_bytes(data)
            (inputs / "job.toml").write_text(job_toml)
            job = load_job(inputs / "job.toml")
            _check_inside(job, inputs)
            state = {"id": job_id, "state": "queued", "engine": engine, "name": job.name, "error": None,
                     "device": None, "created": round(time.time(), 3)}
            atomic_write_text(tmp / "state.json", json.dumps(state))
            append_event(tmp / "events.jsonl", make_event("state", state="queued", job=job_id))
            tmp.rename(self.root / job_id)
        except VideoFrom3DError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise SubmitError(str(e).replace(str(inputs) + "/", "").splitlines()[0]) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return job_id

    # --------------------------------------------------------------------------------------------- state
    def state(self, job_id: str) -> dict:
        return json.loads((self.folder(job_id) / "state.json").read_text())

    def update(self, job_id: str, **changes) -> dict:
        """Change the state file; a new ``state`` is also an event (with the error as an ``error`` event)."""
        st = {**self.state(job_id), **changes}
        atomic_write_text(self.folder(job_id) / "state.json", json.dumps(st))
        if "state" in changes:
            if changes["state"] == "done":
                append_event(self.events(job_id), make_event("output", name="video.mp4", job=job_id))
            if changes.get("error"):
                append_event(self.events(job_id), make_event("error", code=changes.get("code") or "render",
                                                             message=changes["error"], job=job_id))
            append_event(self.events(job_id), make_event("state", state=changes["state"], job=job_id))
        return st

    def unfinished(self) -> list[str]:
        return [i for i in self.ids() if self.state(i)["state"] not in FINAL_STATES]

    def outputs(self, job_id: str) -> list[str]:
        """Every file the job's work folder holds (relative, ``/``-separated), hidden ones left out."""
        work = self.work(job_id)
        if not work.is_dir():
            return []
        out = []
        # os.walk, not rglob: a running job renames its temporaries away while we list (a folder that vanished
        # is skipped, not an error), and hidden folders are never entered
        for root, dirs, files in os.walk(work):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            rel = Path(root).relative_to(work)
            out += [(rel / f).as_posix() for f in files if not f.startswith(".")]
        return sorted(out)

    def output_path(self, job_id: str, name: str) -> Path:
        """The file ``name`` of the job's work folder; KeyError unless it resolves to a listed file inside it."""
        work = self.work(job_id).resolve()
        if any(part in ("", ".", "..") or part.startswith(".") for part in name.split("/")):
            raise KeyError(name)
        try:
            path = (work / name).resolve(strict=True)
        except (FileNotFoundError, RuntimeError):
            raise KeyError(name) from None
        if not path.is_relative_to(work) or not path.is_file():
            raise KeyError(name)
        return path


def _check_inside(job, inputs: Path) -> None:
    """No job reads outside its folder: every file it names must be one of its uploads."""
    root = inputs.resolve()
    paths = [("scene.path", job.scene.path)]
    if job.trajectory.path is not None:
        paths.append(("trajectory.path", job.trajectory.path))
    paths += [(f"style[{i}].image", s.image) for i, s in enumerate(job.styles)]
    for key, p in paths:
        resolved = Path(p).resolve()
        if not resolved.is_relative_to(root):
            raise SubmitError(f"job: [{key}] must name an uploaded file, got {Path(p).name!r} outside the job")
        if not resolved.exists():
            raise SubmitError(f"job: [{key}] names {resolved.name!r}, which was not uploaded")
