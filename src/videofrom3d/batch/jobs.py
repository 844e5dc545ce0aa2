"""``jobs.jsonl``: one render a line, ``{"id", "job", "set", "out"}`` (README "Batch renders").

``job`` is a job file and ``out`` the work folder, both relative to the jsonl file; ``set`` overrides job keys
by dotted name (``"scene.path"``, ``"trajectory.path"``, ``"seed"``, ``"style"`` = a list of ``{"image",
"identifier"}`` tables); the paths in ``set`` are relative to the jsonl file too.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videofrom3d.errors import VideoFrom3DError
from videofrom3d.io.atomic import atomic_write_text
from videofrom3d.io.manifest import digest_json

_PATH_KEYS = ("scene.path", "trajectory.path")  # besides style[].image and out


class BatchError(VideoFrom3DError, ValueError):
    """A jobs file or plan option that cannot be used (one line)."""


@dataclass(frozen=True)
class JobSpec:
    """One line of jobs.jsonl, with ``job`` and ``out`` resolved against the jsonl file's folder ``base``."""

    id: str
    job: Path
    out: Path
    set: dict[str, Any] = field(default_factory=dict)
    base: Path = Path(".")

    def to_line(self) -> dict:
        return {"id": self.id, "job": os.path.relpath(self.job, self.base), "set": self.set,
                "out": os.path.relpath(self.out, self.base)}

    def as_task(self) -> dict:
        """The JSON form a worker (process or Ray actor) rebuilds the job from."""
        return {"id": self.id, "job": str(self.job), "out": str(self.out), "set": self.set, "base": str(self.base)}

    @classmethod
    def from_task(cls, d: dict) -> JobSpec:
        return cls(id=d["id"], job=Path(d["job"]), out=Path(d["out"]), set=dict(d.get("set") or {}),
                   base=Path(d["base"]))


def read_jobs(path: str | os.PathLike) -> list[JobSpec]:
    """Every line of a jobs.jsonl file; a bad line is an error naming its number."""
    path = Path(path)
    if not path.is_file():
        raise BatchError(f"jobs file not found: {path}")
    base = path.resolve().parent
    specs, seen = [], set()
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except ValueError as e:
            raise BatchError(f"{path}:{n}: not JSON ({e})") from None
        if not isinstance(d, dict) or not isinstance(d.get("id"), str) or not isinstance(d.get("job"), str) \
                or not isinstance(d.get("out"), str) or not isinstance(d.get("set", {}), dict):
            raise BatchError(f'{path}:{n}: want {{"id": str, "job": path, "set": {{...}}, "out": folder}}, got {line[:120]}')
        if d["id"] in seen:
            raise BatchError(f"{path}:{n}: duplicate id {d['id']!r}")
        seen.add(d["id"])
        specs.append(JobSpec(d["id"], base / d["job"], base / d["out"], dict(d.get("set") or {}), base))
    return specs


def build_job(spec: JobSpec, extra: dict[str, Any] | None = None):
    """The :class:`~videofrom3d.job.Job` of one line: the job file, ``set`` (and ``extra``) applied, ``out``."""
    from videofrom3d.job import job_from_dict, read_toml

    doc = read_toml(spec.job)
    # the job file's own relative paths are relative to it: make them absolute before mixing in ``set``
    _absolute_paths(doc, spec.job.resolve().parent)
    for key, value in {**spec.set, **(extra or {})}.items():
        _set_dotted(doc, key, _absolute_value(key, value, spec.base))
    doc["out"] = str(spec.out)
    return job_from_dict(doc, base=spec.job.resolve().parent, source=spec.job)


def _absolute_value(key: str, value: Any, base: Path) -> Any:
    if key in _PATH_KEYS and isinstance(value, str):
        return str(base / value)
    if key == "style":
        styles = value if isinstance(value, list) else [value]
        return [{**s, "image": str(base / s["image"])} if isinstance(s, dict) and isinstance(s.get("image"), str)
                else s for s in styles]
    return value


def _absolute_paths(doc: dict, base: Path) -> None:
    for key in _PATH_KEYS:
        table, name = key.split(".")
        if isinstance(doc.get(table), str):
            doc[table] = {"path": doc[table]}
        if isinstance(doc.get(table), dict) and isinstance(doc[table].get(name), str):
            doc[table][name] = str(base / doc[table][name])
    styles = doc.get("style")
    for s in styles if isinstance(styles, list) else [styles] if isinstance(styles, dict) else []:
        if isinstance(s, dict) and isinstance(s.get("image"), str):
            s["image"] = str(base / s["image"])


def _set_dotted(doc: dict, key: str, value: Any) -> None:
    parts = key.split(".")
    if not all(parts):
        raise BatchError(f"set: bad key {key!r}; use dotted job keys like \"scene.path\"")
    node = doc
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise BatchError(f"set: {key!r} goes through {p!r}, which is not a table")
    node[parts[-1]] = value


# ------------------------------------------------------------------------------------------------------ plan


def _slug(path: str | os.PathLike) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(path).stem).strip("_.") or "x"


def plan_jobs(out: str | os.PathLike, job: str | os.PathLike | None = None, scenes=(), trajectories=(), styles=(),
              seeds=(), identifier: str | None = None, out_root: str = "runs") -> list[JobSpec]:
    """The cartesian product scenes x trajectories x styles x seeds over a base job, written to ``out``.

    An empty axis keeps the base job's value. Ids are ``scene-trajectory-style-sN`` from the file names (the
    axes given), made unique with a short hash of the line where names collide; the same arguments give the
    same ids. Without ``job`` a minimal base job is written beside ``out`` (``<stem>.base.toml``)."""
    out = Path(out)
    base = out.resolve().parent
    if job is None:
        if not scenes or not trajectories:
            raise BatchError("batch plan: give --job BASE.toml, or --scenes and --trajectories")
        job = out.with_name(out.stem + ".base.toml")
        atomic_write_text(job, 'name = "batch"\n')
    job = Path(job).resolve()
    if not job.is_file():
        raise BatchError(f"base job file not found: {job}")
    for p in [*scenes, *trajectories, *styles]:
        if not Path(p).exists():
            raise BatchError(f"not found: {p}")
    if identifier is None:
        from videofrom3d.job import read_toml

        doc = read_toml(job)
        first = doc.get("style")
        first = first[0] if isinstance(first, list) and first else first
        identifier = first.get("identifier", "") if isinstance(first, dict) else ""

    def rel(p) -> str:
        return os.path.relpath(Path(p).resolve(), base)

    axes = [[("scene.path", rel(s), _slug(s)) for s in scenes] or [None],
            [("trajectory.path", rel(t), _slug(t)) for t in trajectories] or [None],
            [("style", [{"image": rel(s), "identifier": identifier}], _slug(s)) for s in styles] or [None],
            [("seed", int(s), f"s{int(s)}") for s in seeds] or [None]]
    rows = []
    for combo in itertools.product(*axes):
        chosen = [c for c in combo if c is not None]
        sets = {k: v for k, v, _ in chosen}
        rows.append(("-".join(n for _, _, n in chosen) or "job", sets))
    counts: dict[str, int] = {}
    for name, _ in rows:
        counts[name] = counts.get(name, 0) + 1
    specs = []
    for name, sets in rows:
        jid = name if counts[name] == 1 else f"{name}-{digest_json(sets)[:6]}"
        specs.append(JobSpec(jid, job, base / out_root / jid, sets, base))
    atomic_write_text(out, "".join(json.dumps(s.to_line()) + "\n" for s in specs))
    return specs
