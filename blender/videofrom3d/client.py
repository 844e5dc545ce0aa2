# SPDX-License-Identifier: GPL-3.0-or-later
"""Talking to videofrom3d without bpy: a local CLI run or a ``videofrom3d serve`` job, one event schema.

Events (the schema the CLI's ``--events`` and the server's SSE share; every field but seq/type optional)::

    {"seq": 3, "type": "state", "state": "queued" | "running" | "done" | "failed" | "cancelled"}
    {"seq": 4, "type": "progress", "stage": "inbetween", "arc": 1, "arcs": 3, "step": 31, "steps": 50,
     "fraction": 0.41, "eta_s": 312}
    {"seq": 5, "type": "output", "name": "anchors/003.png"}
    {"seq": 6, "type": "error", "code": "cli", "message": "one line"}

A runner's ``events()`` yields them until a final ``state`` (done, failed, cancelled); ``cancel()`` may be
called from another thread. This module never imports bpy (it is tested in the main test environment).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

FINAL_STATES = ("done", "failed", "cancelled")
# Share of the run each stage takes with the preview engine's order of work (paper's stages, 3.1-3.4).
STAGE_WEIGHTS = (("prepare", 0.2), ("align", 0.05), ("anchors", 0.25), ("inbetween", 0.45), ("video", 0.05))


class ClientError(RuntimeError):
    """A one-line failure to show in the panel."""


# ------------------------------------------------------------------------------------------------ local CLI


def progress_from_work(work: Path, arcs: int) -> dict:
    """A progress event guessed from what the render has written so far (for a CLI without ``--events``)."""
    work = Path(work)
    done = {
        "prepare": len([p for p in (work / "prepare").glob("arc*") if p.is_dir()]) / arcs,
        "align": float(any((work / "align").glob("*"))),
        "anchors": len(list((work / "anchors").glob("*.png"))) / (arcs + 1),
        "inbetween": len([p for p in (work / "inbetween").glob("arc*") if p.is_dir()]) / arcs,
        "video": float((work / "video.mp4").is_file()),
    }
    fraction, stage = 0.0, STAGE_WEIGHTS[0][0]
    for name, weight in STAGE_WEIGHTS:
        part = min(1.0, done[name])
        fraction += weight * part
        if part > 0:
            stage = name
    return {"type": "progress", "stage": stage, "fraction": round(min(fraction, 0.99), 4)}


_EVENTS_SUPPORT: dict[tuple[str, ...], bool] = {}


def cli_has_events(cli: list[str]) -> bool:
    """Whether ``CLI render`` takes ``--events FILE`` (JSON lines in the schema above); cached per command."""
    key = tuple(cli)
    if key not in _EVENTS_SUPPORT:
        try:
            r = subprocess.run([*cli, "render", "--help"], capture_output=True, text=True, timeout=60)
            _EVENTS_SUPPORT[key] = r.returncode == 0 and "--events" in r.stdout
        except (OSError, subprocess.TimeoutExpired):
            _EVENTS_SUPPORT[key] = False
    return _EVENTS_SUPPORT[key]


class LocalRunner:
    """``CLI render JOB --out WORK --engine ENGINE`` as a subprocess in its own process group. Progress comes
    from the CLI's ``--events`` file where it has one, else from what the run has written to WORK."""

    def __init__(self, cli: list[str], job: Path, work: Path, engine: str = "preview", arcs: int = 1,
                 until: str = "render", env: dict | None = None, poll_s: float = 0.25):
        self.cli, self.job, self.work = list(cli), Path(job), Path(work)
        self.engine, self.arcs, self.until, self.env, self.poll_s = engine, max(1, arcs), until, env, poll_s
        self.proc: subprocess.Popen | None = None
        self.events_file: Path | None = None
        self._cancelled = threading.Event()
        self._seq = 0

    def command(self) -> list[str]:
        cmd = [*self.cli, self.until, str(self.job), "--out", str(self.work), "--engine", self.engine, "--quiet"]
        if self.until == "prepare":
            cmd.append("--no-noise")
        if self.events_file is not None:
            cmd += ["--events", str(self.events_file)]
        return cmd

    def _event(self, **fields) -> dict:
        self._seq += 1
        return {**fields, "seq": self._seq}

    def events(self) -> Iterator[dict]:
        self.work.mkdir(parents=True, exist_ok=True)
        log = self.work / "blender_cli.log"
        if cli_has_events(self.cli):
            self.events_file = self.work / "blender_events.jsonl"
            self.events_file.unlink(missing_ok=True)
        try:
            with open(log, "wb") as out:
                self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT, env=self.env,
                                             start_new_session=True)
        except OSError as e:
            yield self._event(type="error", code="cli", message=f"cannot run {self.cli[0]!r}: {e}")
            yield self._event(type="state", state="failed")
            return
        yield self._event(type="state", state="running")
        last, offset = None, 0
        while True:
            finished = self.proc.poll() is not None
            if self.events_file is not None:
                lines, offset = _new_lines(self.events_file, offset)
                for ev in lines:
                    if not (ev.get("type") == "state" and ev.get("state") in FINAL_STATES + ("running",)):
                        yield self._event(**ev)
            elif self.until != "prepare":
                p = progress_from_work(self.work, self.arcs)
                if p != last:
                    last = p
                    yield self._event(**p)
            if finished:
                break
            time.sleep(self.poll_s)
        if self._cancelled.is_set():
            yield self._event(type="state", state="cancelled")
        elif self.proc.returncode == 0:
            yield self._event(type="progress", stage="video", fraction=1.0)
            yield self._event(type="state", state="done")
        else:
            yield self._event(type="error", code="cli", message=last_error_line(log, self.proc.returncode))
            yield self._event(type="state", state="failed")

    def cancel(self) -> None:
        """SIGTERM to the run's process group, SIGKILL after 10 s (the work folder stays resumable)."""
        self._cancelled.set()
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _new_lines(path: Path, offset: int) -> tuple[list[dict], int]:
    """Complete JSON lines appended to ``path`` since byte ``offset``; the new offset."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1
    events = []
    for line in data[:end].splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict):
            ev.pop("seq", None)
            events.append(ev)
    return events, offset + end


def last_error_line(log: Path, returncode: int) -> str:
    lines = [ln.strip() for ln in Path(log).read_text(errors="replace").splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    text = (errors or lines or [f"the CLI exited with code {returncode}"])[-1]
    return text[:300]


# -------------------------------------------------------------------------------------------------- server


def read_server_json(path: Path) -> tuple[str, str]:
    """``(url, token)`` from the ``server.json`` that ``videofrom3d serve`` writes."""
    doc = json.loads(Path(path).read_text())
    return str(doc["url"]), str(doc.get("token", ""))


class JobClient:
    """The ``/v1`` routes of ``videofrom3d serve`` over urllib (Bearer token on every route but health)."""

    def __init__(self, url: str, token: str = "", timeout: float = 30.0):
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout

    def _request(self, method: str, route: str, data: bytes | None = None, headers: dict | None = None,
                 timeout: float | None = None, auth: bool = True):
        h = dict(headers or {})
        if auth and self.token:
            h["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + route, data=data, method=method, headers=h)
        try:
            return urllib.request.urlopen(req, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as e:
            detail = e.read()[:300].decode("utf-8", "replace")
            raise ClientError(f"server: {method} {route} -> {e.code} {detail}") from e
        except (urllib.error.URLError, OSError) as e:
            raise ClientError(f"server {self.url} unreachable: {getattr(e, 'reason', e)}") from e

    def _json(self, method: str, route: str, **kw) -> dict:
        with self._request(method, route, **kw) as r:
            return json.loads(r.read() or b"{}")

    def health(self, timeout: float = 0.5) -> dict:
        """Sub-second liveness check (no token)."""
        return self._json("GET", "/v1/health", timeout=timeout, auth=False)

    def submit(self, job_toml: str, files: list[Path], engine: str | None = None) -> str:
        """POST the job's TOML text, its uploads (referred to by file name) and optionally the engine as
        multipart; returns the job id."""
        boundary = uuid.uuid4().hex
        parts = [_form_part(boundary, "job", "job.toml", job_toml.encode(), "application/toml")]
        if engine:
            parts.append(_form_part(boundary, "engine", None, engine.encode(), "text/plain"))
        parts += [_form_part(boundary, "files", Path(f).name, Path(f).read_bytes()) for f in files]
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        doc = self._json("POST", "/v1/jobs", data=body,
                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        if "id" not in doc:
            raise ClientError(f"server: no job id in {doc}")
        return str(doc["id"])

    def status(self, job_id: str) -> dict:
        return self._json("GET", f"/v1/jobs/{urllib.parse.quote(job_id)}")

    def cancel(self, job_id: str) -> dict:
        return self._json("POST", f"/v1/jobs/{urllib.parse.quote(job_id)}/cancel", data=b"")

    def events(self, job_id: str, last_event_id: int | None = None) -> Iterator[dict]:
        """The job's server-sent events (``data:`` lines holding one JSON event; ``id:`` = seq)."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        with self._request("GET", f"/v1/jobs/{urllib.parse.quote(job_id)}/events", headers=headers) as r:
            yield from parse_sse(r)

    def download(self, job_id: str, name: str, dest: Path) -> Path:
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".part")
        quoted = "/".join(urllib.parse.quote(p) for p in name.split("/"))
        with self._request("GET", f"/v1/jobs/{urllib.parse.quote(job_id)}/files/{quoted}") as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)
        os.replace(tmp, dest)
        return dest


def _form_part(boundary: str, field: str, filename: str | None, data: bytes,
               ctype: str = "application/octet-stream") -> bytes:
    name = f'name="{field}"' + (f'; filename="{filename}"' if filename is not None else "")
    head = f"--{boundary}\r\nContent-Disposition: form-data; {name}\r\nContent-Type: {ctype}\r\n\r\n"
    return head.encode() + data + b"\r\n"


def parse_sse(stream) -> Iterator[dict]:
    """Events from a text/event-stream byte stream; comments (heartbeats) skipped, ``id:`` kept as seq."""
    data, event_id = [], None
    for raw in stream:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                ev = json.loads("\n".join(data))
                if event_id is not None and "seq" not in ev:
                    ev["seq"] = int(event_id)
                yield ev
            data, event_id = [], None
        elif line.startswith(":"):
            continue
        else:
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "data":
                data.append(value)
            elif key == "id":
                event_id = value


class ServerRunner:
    """A job on ``videofrom3d serve``: submit, follow its events (reconnecting with Last-Event-ID, polling
    when the stream breaks), then download ``video.mp4`` and the listed edge maps into ``work``."""

    def __init__(self, client: JobClient, job_toml: str, files: list[Path], work: Path, engine: str | None = None,
                 poll_s: float = 1.0):
        self.client, self.job_toml, self.files, self.work, self.poll_s = client, job_toml, files, Path(work), poll_s
        self.engine = engine
        self.job_id: str | None = None
        self._cancelled = threading.Event()

    def events(self) -> Iterator[dict]:
        self.job_id = self.client.submit(self.job_toml, self.files, self.engine)
        yield {"seq": 0, "type": "state", "state": "queued", "job_id": self.job_id}
        last_seq, state = None, None
        while state not in FINAL_STATES:
            try:
                for ev in self.client.events(self.job_id, last_seq):
                    last_seq = ev.get("seq", last_seq)
                    if ev.get("type") == "state":
                        state = ev.get("state")
                        if state == "done":
                            break  # downloads come first; "done" is yielded after them
                    yield ev
                    if state in FINAL_STATES:
                        return
            except ClientError:
                pass
            if state != "done":
                status = self.client.status(self.job_id)
                state = status.get("state")
                if state in ("failed", "cancelled"):
                    if status.get("error"):
                        yield {"seq": last_seq, "type": "error", "code": "server", "message": str(status["error"])}
                    yield {"seq": last_seq, "type": "state", "state": state}
                    return
                if state != "done":
                    time.sleep(self.poll_s)
        status = self.client.status(self.job_id)
        self.client.download(self.job_id, "video.mp4", self.work / "video.mp4")
        for name in status.get("outputs", []) or []:
            if "/edges/" in str(name):
                self.client.download(self.job_id, str(name), self.work / str(name))
        yield {"seq": last_seq, "type": "state", "state": "done"}

    def cancel(self) -> None:
        self._cancelled.set()
        if self.job_id is not None:
            self.client.cancel(self.job_id)
