"""Aligned styles shared between work folders: the style LoRA (paper 3.2, ~27 min per style) is made once per
style and settings and copied into every work folder that asks for it.

Layout: ``CACHE/<key>/<aligner output>`` (e.g. ``lora.safetensors``; the trainer's checkpoints beside it, so
a killed alignment resumes), ``CACHE/<key>/.lock`` (one maker at a time, across processes on one machine
and on a shared file system with working ``flock``) and ``CACHE/made.jsonl`` (one line each time an
alignment actually ran: key, engine, seconds, device, node). ``key`` is the align stage's item key, so a
work folder's own align item and the cache agree on what "the same style" means.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from videofrom3d.events import append_event
from videofrom3d.io.atomic import atomic_path
from videofrom3d.io.manifest import digest_json


def align_key(aligner, version: str) -> str:
    """The align item's input hash: stage, code version and revision, and the aligner's cache key."""
    from videofrom3d.pipeline.context import CODE_REVISION

    return digest_json({"stage": "align", "code": version, "revision": CODE_REVISION["align"], **aligner.cache_key()})


def job_aligner(job, engine: str = "auto", models: str = "real"):
    """The aligner ``render(job, engine=engine, models=models)`` would use (light: loads no model)."""
    from videofrom3d.engines import EngineContext, get_engine
    from videofrom3d.io.workfolder import WorkFolder
    from videofrom3d.pipeline.plan import choose_engine, stage_configs

    chosen, _ = choose_engine(engine, models, job)
    spec = get_engine(chosen)
    ctx = EngineContext(job=job, models=models, work=WorkFolder(job.work_dir), configs=stage_configs(job, spec))
    return spec.aligner(ctx)


def style_key(job, engine: str = "auto", models: str = "real") -> str:
    """Which cached style ``job`` needs: equal keys share one alignment."""
    from videofrom3d import __version__

    return align_key(job_aligner(job, engine, models), __version__)


@contextmanager
def _locked(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_style(cache: str | os.PathLike, key: str, aligner) -> tuple[Path, bool]:
    """``CACHE/<key>/<output>``, made by ``aligner`` unless present; -> (path, whether it was made now)."""
    folder = Path(cache) / key
    out = folder / aligner.output
    with _locked(folder):
        if out.is_file():
            return out, False
        partial = folder / f".partial.{aligner.output}"  # same suffix: writers pick the format from it
        t0 = time.perf_counter()
        aligner.align(partial)
        os.replace(partial, out)
        append_event(Path(cache) / "made.jsonl", {  # a plain JSON line, not an event: the log of alignments
            "key": key, "engine": getattr(aligner, "item", ""), "seconds": round(time.perf_counter() - t0, 3),
            "device": os.environ.get("CUDA_VISIBLE_DEVICES", "cpu"), "node": socket.gethostname(),
            "time": round(time.time(), 3)})
        return out, True


def copy_style(cache: str | os.PathLike, key: str, aligner, dest: Path) -> dict:
    """The cached style (made first when missing) copied to ``dest``; what the manifest records beside it."""
    src, made = ensure_style(cache, key, aligner)
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return {"style_cache": str(Path(cache).resolve() / key), "made": made}


def alignments(cache: str | os.PathLike) -> list[dict]:
    """The lines of ``CACHE/made.jsonl``: every alignment that ran, oldest first."""
    path = Path(cache) / "made.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
