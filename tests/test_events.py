"""The one event schema: render()'s progress hook, `render --events FILE`, and the Blender client reading it
from the real CLI."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from test_pipeline_jobs import make_job
from videofrom3d.events import STAGE_WEIGHTS, make_event, read_events, stage_fraction
from videofrom3d.job import load_job
from videofrom3d.pipeline import render

ROOT = Path(__file__).resolve().parents[1]


def test_make_event_refuses_unknown_types_and_fields():
    assert make_event("state", state="done", job="j")["state"] == "done"
    with pytest.raises(ValueError, match="type"):
        make_event("progres")
    with pytest.raises(ValueError, match="percent"):
        make_event("progress", percent=3)
    assert stage_fraction("prepare", 0.0) == 0.0 and stage_fraction("video", 1.0) == pytest.approx(1.0)
    assert stage_fraction("anchors", 0.0) == pytest.approx(STAGE_WEIGHTS["prepare"] + STAGE_WEIGHTS["align"])


def test_render_reports_every_stage_item_and_frame_in_order(tmp_path):
    job = load_job(make_job(tmp_path, width=64, height=48, frames_per_arc=4, arcs=2))
    events = []
    render(job, engine="preview", progress=False, log=lambda s: None, events=events.append)
    fractions = [e["fraction"] for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    frames = [(e["arc"], e["step"]) for e in events if e["stage"] == "inbetween" and "arc" in e]
    assert frames == [(k, i) for k in range(2) for i in range(1, 6)]  # 5 frames per arc, both arcs
    assert [e["step"] for e in events if e["stage"] == "anchors" and "step" in e] == [1, 2, 3]
    assert all(e["arcs"] == 2 for e in events if "arc" in e)


def test_blender_client_follows_the_real_clis_events(tmp_path):
    spec = importlib.util.spec_from_file_location("vf3d_blender_client", ROOT / "blender/videofrom3d/client.py")
    client = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(client)
    job = make_job(tmp_path, width=64, height=48, frames_per_arc=4, arcs=2)
    runner = client.LocalRunner([sys.executable, "-m", "videofrom3d"], job, tmp_path / "w", engine="preview", arcs=2,
                                poll_s=0.05)
    events = list(runner.events())
    assert runner.events_file is not None  # the CLI offers --events
    assert events[-1]["state"] == "done" and (tmp_path / "w" / "video.mp4").is_file()
    stages = [e["stage"] for e in events if e["type"] == "progress"]
    assert {"prepare", "anchors", "inbetween", "video"} <= set(stages)
    written = [e for _, e in read_events(runner.events_file)]
    assert written[-1] == {**written[-1], "type": "output", "name": "video.mp4"}
    assert all(json.dumps(e) for e in written)
