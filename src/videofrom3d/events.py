"""One event schema for every front end: ``render --events FILE``, the batch runner and the server's SSE
(and the Blender extension's client, which reads the same fields).

An event is a JSON object; every field but ``type`` and ``time`` is optional::

    {"type": "state", "state": "queued" | "running" | "done" | "failed" | "cancelled"}
    {"type": "progress", "stage": "inbetween", "arc": 1, "arcs": 3, "step": 4, "steps": 6, "fraction": 0.71}
    {"type": "output", "name": "video.mp4"}
    {"type": "error", "code": "input" | "transient" | "internal" | "worker", "message": "one line"}

plus ``job`` (the job's id, where one is known), ``device`` (on a ``running`` state: the worker's, e.g.
``cuda:1``) and ``time`` (Unix seconds). In a file, events are JSON
lines appended with one ``write`` each (so several processes may append to the same file); an event's
sequence number is its line number from 1 (the SSE ``id:``), never stored.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

TYPES = ("state", "progress", "output", "error")
STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL_STATES = ("done", "failed", "cancelled")
FIELDS = ("type", "job", "device", "state", "stage", "arc", "arcs", "step", "steps", "fraction", "name", "code", "message",
          "time")
# Share of a render each stage takes (the preview engine's order of work; the Blender client uses the same).
STAGE_WEIGHTS = {"prepare": 0.2, "align": 0.05, "anchors": 0.25, "inbetween": 0.45, "video": 0.05}

Sink = Callable[[dict], None]


def make_event(type: str, **fields) -> dict:
    """An event of ``type`` with ``fields`` (None values dropped) and the current time."""
    if type not in TYPES:
        raise ValueError(f"event type must be one of {TYPES}, got {type!r}")
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown event field(s) {sorted(unknown)}; known: {FIELDS}")
    ev = {"type": type, **{k: v for k, v in fields.items() if v is not None}}
    ev.setdefault("time", round(time.time(), 3))
    return ev


def stage_fraction(stage: str, done: float) -> float:
    """Fraction of a whole render when ``stage`` is ``done`` (0..1) through (stages weighted by
    :data:`STAGE_WEIGHTS`)."""
    before = 0.0
    for name, weight in STAGE_WEIGHTS.items():
        if name == stage:
            return round(before + weight * min(max(done, 0.0), 1.0), 4)
        before += weight
    return round(before, 4)


def append_event(path: str | os.PathLike, event: dict) -> None:
    """Append one event as one JSON line with a single write (O_APPEND: concurrent writers never interleave)."""
    data = (json.dumps(event, separators=(",", ":")) + "\n").encode()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def file_sink(path: str | os.PathLike, job: str | None = None) -> Sink:
    """A sink appending every event (tagged with ``job`` when given) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def sink(event: dict) -> None:
        append_event(path, {**event, "job": job} if job is not None and "job" not in event else event)

    return sink


def read_events(path: str | os.PathLike, after: int = 0) -> list[tuple[int, dict]]:
    """``[(seq, event), ...]`` of the complete lines of ``path`` after line ``after`` (seq = line number)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    data = data[: data.rfind(b"\n") + 1]
    out = []
    for seq, line in enumerate(data.splitlines(), start=1):
        if seq > after:
            try:
                out.append((seq, json.loads(line)))
            except ValueError:
                continue
    return out
