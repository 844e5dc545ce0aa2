"""The prepare stage's preview mp4s (by-products written on a background thread): written beside each arc,
made again when missing from a reused arc (a run killed before them), and a failed one is an error that
leaves its arc unrecorded, so the next run redoes it."""

from __future__ import annotations

import json

import pytest

from test_pipeline_jobs import make_job
from videofrom3d.cli import main


def _job(tmp_path):
    job = make_job(tmp_path, arcs=2)
    job.write_text(job.read_text().replace("preview = false", "preview = true"))
    return job


def _prepare(job) -> list[str]:
    assert main(["prepare", str(job), "--engine", "preview", "--quiet"]) == 0
    manifest = json.loads((job.parent / "work" / "manifest.json").read_text())
    return manifest["runs"][-1]["redone"]["prepare"]


def test_previews_are_written_and_made_again_when_missing(tmp_path):
    job = _job(tmp_path)
    arcs = tmp_path / "work" / "prepare"
    assert _prepare(job) == ["arc000", "noise000", "arc001", "noise001"]
    previews = {p: p.stat().st_size for k in (0, 1) for p in (arcs / f"arc{k:03d}").glob("*.mp4")}
    assert sorted(p.name for p in previews) == ["noise.mp4", "noise.mp4", "preview.mp4", "preview.mp4"]
    (arcs / "arc001" / "preview.mp4").unlink()
    (arcs / "arc000" / "noise.mp4").unlink()
    assert _prepare(job) == []  # nothing recomputed, the two previews made again from the files
    assert (arcs / "arc001" / "preview.mp4").stat().st_size > 0 and (arcs / "arc000" / "noise.mp4").stat().st_size > 0


def test_a_failed_preview_is_an_error_and_its_arc_is_redone(tmp_path, monkeypatch):
    from videofrom3d.prepare import arcs as arcs_module

    job = _job(tmp_path)
    original = arcs_module.write_arc_preview

    def broken(arc, path, **kw):
        if arc.index == 1:
            raise OSError("disk full")
        return original(arc, path, **kw)

    monkeypatch.setattr(arcs_module, "write_arc_preview", broken)
    with pytest.raises(OSError, match="disk full"):
        main(["prepare", str(job), "--engine", "preview", "--quiet"])
    monkeypatch.setattr(arcs_module, "write_arc_preview", original)
    assert _prepare(job) == ["arc001", "noise001"]
