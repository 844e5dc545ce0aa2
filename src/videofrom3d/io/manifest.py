"""The work folder's ``manifest.json``: for every stage, and for every item of a stage (an arc, an anchor),
the hash of what it was computed from and the hash of what it wrote.

A re-run recomputes an item exactly when its input hash differs from the recorded one or its output is gone
(or no longer matches its recorded hash); everything else is reused. Outputs are written first (atomically,
through :func:`videofrom3d.io.atomic_path`) and recorded second, so a run killed at any moment leaves either
a recorded, complete output or one the next run recomputes.

Hashes are BLAKE2b-128 in hex. :func:`digest_json` hashes canonical JSON (sorted keys), :func:`digest_path`
hashes files by content and folders by their relative paths and contents; ``.npz`` archives are hashed by
their arrays (names, dtypes, shapes, bytes), since the zip container stores write times.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from videofrom3d.io.atomic import atomic_write_text

MANIFEST_NAME = "manifest.json"
FORMAT = 1


def _hasher():
    return hashlib.blake2b(digest_size=16)


def digest_json(obj: Any) -> str:
    """Hash of a JSON-able value, independent of dict order."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str, allow_nan=True)
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def digest_arrays(*arrays: np.ndarray | None) -> str:
    """Hash of arrays by dtype, shape and bytes (None hashes as a marker)."""
    h = _hasher()
    for a in arrays:
        if a is None:
            h.update(b"<none>")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def json_ready(x: Any) -> Any:
    """``x`` with tuples as lists, paths as strings and numpy scalars as Python numbers (for hashing keys)."""
    if isinstance(x, dict):
        return {str(k): json_ready(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [json_ready(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    if isinstance(x, np.generic):
        return x.item()
    return x


_WRITTEN: dict[tuple, str] = {}  # identity -> digest of the files this process wrote (remember_digest)


def _identity(path: Path) -> tuple:
    st = path.stat()
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def remember_digest(path: str | os.PathLike, digest: str) -> None:
    """Note the digest of a file this process has just written and closed (computed from what it wrote), so
    :func:`digest_file` need not read it back. Keyed by device, inode, size and modification time: a rename
    (the atomic writes) keeps them, any rewrite changes them."""
    if len(_WRITTEN) > 4096:
        _WRITTEN.clear()
    _WRITTEN[_identity(Path(path))] = digest


def digest_file(path: str | os.PathLike) -> str:
    path = Path(path)
    known = _WRITTEN.get(_identity(path))
    if known is not None:
        return known
    if path.suffix == ".npz":
        return _digest_npz(path)
    h = _hasher()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def digest_path(path: str | os.PathLike, exclude: tuple[str, ...] = ()) -> str:
    """Content hash of a file, or of a folder tree (relative paths + file hashes; hidden temp files and the
    top-level names in ``exclude`` skipped)."""
    path = Path(path)
    if path.is_file():
        return digest_file(path)
    if not path.is_dir():
        raise FileNotFoundError(f"nothing to hash at {path}")
    h = _hasher()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        rel = p.relative_to(path)
        if any(part.startswith(".") for part in rel.parts) or rel.parts[0] in exclude:
            continue
        h.update(rel.as_posix().encode() + b"\0" + digest_file(p).encode())
    return h.hexdigest()


def digest_npz_arrays(arrays: dict[str, np.ndarray]) -> str:
    """The digest of an ``.npz`` holding ``arrays`` (what :func:`digest_file` gives for it)."""
    h = _hasher()
    for name in sorted(arrays):
        h.update(name.encode() + b"\0" + digest_arrays(np.asanyarray(arrays[name])).encode())
    return h.hexdigest()


def _digest_npz(path: Path) -> str:
    with np.load(path, allow_pickle=False) as z:
        return digest_npz_arrays(z)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Manifest:
    """``WORK/manifest.json``::

        {"format": 1, "job": "<name>", "style_images": ["/abs/style.png", ...],
         "stages": {"<stage>": {"items": {"<item>": {"key": <input hash>, "output": <output hash>,
                                                     "seconds": s, "at": time, ...extra}},
                                "last_run": {"ran": [...], "reused": [...], "seconds": s, "at": time}}},
         "edits": {"anchors": {"<k>": {"seed": int} | {"image": "edits/anchorNNN.png", "digest": hash}}},
         "runs": [{"at", "until", "engine", "engine_reason", "models", "redone": {stage: [items]}}]}

    Every change is written to disk at once (atomically), so the file always describes the outputs on disk.
    """

    def __init__(self, work: str | os.PathLike, data: dict | None = None):
        self.work = Path(work)
        self.path = self.work / MANIFEST_NAME
        self.data = data if data is not None else {"format": FORMAT, "stages": {}, "edits": {}, "runs": []}
        self.data.setdefault("stages", {})
        self.data.setdefault("edits", {})
        self.data.setdefault("runs", [])

    @classmethod
    def load(cls, work: str | os.PathLike) -> Manifest:
        """The work folder's manifest; a missing or unreadable one starts empty (everything recomputes) and an
        unreadable one is kept beside as ``manifest.json.bad``."""
        work = Path(work)
        path = work / MANIFEST_NAME
        if not path.is_file():
            return cls(work)
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict) or data.get("format") != FORMAT:
                raise ValueError("unknown format")
        except (ValueError, OSError):
            os.replace(path, path.with_name(MANIFEST_NAME + ".bad"))
            return cls(work)
        return cls(work, data)

    def save(self) -> Path:
        self.work.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(self.path, json.dumps(self.data, indent=1, sort_keys=False) + "\n")

    # ----------------------------------------------------------------------------------------- items
    def stage(self, stage: str) -> dict:
        return self.data["stages"].setdefault(stage, {"items": {}})

    def item(self, stage: str, item: str) -> dict | None:
        return self.data["stages"].get(stage, {}).get("items", {}).get(item)

    def is_current(self, stage: str, item: str, key: str, output: str | os.PathLike | None = None,
                   verify: bool = False, exclude: tuple[str, ...] = ()) -> bool:
        """Whether ``item`` of ``stage`` was computed from ``key`` and its ``output`` path still exists (and,
        with ``verify``, still hashes to what was recorded; ``exclude`` as in :func:`digest_path`)."""
        rec = self.item(stage, item)
        if rec is None or rec.get("key") != key:
            return False
        if output is not None:
            out = Path(output)
            if not out.exists():
                return False
            if verify and rec.get("output") is not None and digest_path(out, exclude) != rec["output"]:
                return False
        return True

    def record(self, stage: str, item: str, key: str, output: str | None, seconds: float | None = None,
               **extra: Any) -> None:
        """Record a finished item (call after its output is in place) and write the manifest."""
        rec = {"key": key, "output": output, "at": _now()}
        if seconds is not None:
            rec["seconds"] = round(float(seconds), 3)
        rec.update(extra)
        self.stage(stage)["items"][item] = rec
        self.save()

    def cached(self, stage: str, item: str, key: str, output: str | os.PathLike,
               compute: Callable[[], dict | None], exclude: tuple[str, ...] = ()) -> bool:
        """Reuse ``item`` when :meth:`is_current` (verified), else run ``compute()`` (which writes ``output``
        and may return extra fields to record) and record its time and output hash. True when it ran."""
        if self.is_current(stage, item, key, output, verify=True, exclude=exclude):
            return False
        t0 = time.perf_counter()
        extra = compute() or {}
        self.record(stage, item, key, digest_path(output, exclude), time.perf_counter() - t0, **extra)
        return True

    def items(self, stage: str) -> dict:
        return self.stage(stage)["items"]

    def finish_stage(self, stage: str, ran: list[str], reused: list[str], seconds: float, **extra: Any) -> None:
        self.stage(stage)["last_run"] = {
            "ran": list(ran),
            "reused": list(reused),
            "seconds": round(float(seconds), 3),
            "at": _now(),
            **extra,
        }
        self.save()

    # ----------------------------------------------------------------------------------------- edits, runs
    def edits(self, stage: str) -> dict:
        return self.data["edits"].setdefault(stage, {})

    def begin_run(self, **info: Any) -> dict:
        run = {"at": _now(), **info, "redone": {}}
        self.data["runs"].append(run)
        self.data["runs"] = self.data["runs"][-50:]
        self.save()
        return run

    def note_redone(self, stage: str, items: list[str]) -> None:
        if self.data["runs"]:
            self.data["runs"][-1]["redone"][stage] = list(items)
            self.save()

