"""Work folder and resume: a run killed by a signal mid-stage resumes and ends with the same bytes as an
uninterrupted run; re-runs reuse exactly what did not change."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from test_pipeline_jobs import changed, make_job, tree_digests
from videofrom3d.job import load_job
from videofrom3d.pipeline import render

# Runs `videofrom3d render` and kills itself (SIGKILL: no cleanup, no finally blocks) at a chosen point.
KILLER = textwrap.dedent("""
    import os, signal, sys
    job, mode, stage, item, nth = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    from videofrom3d.pipeline import stages
    from videofrom3d.io import manifest
    if mode == "after-record":          # the item is written and recorded, the stage goes on
        original = manifest.Manifest.record
        def record(self, st, it, *a, **k):
            original(self, st, it, *a, **k)
            if (st, it) == (stage, item):
                os.kill(os.getpid(), signal.SIGKILL)
        manifest.Manifest.record = record
    else:                               # mid-write: after the nth image written under `stage`
        original = stages.write_image
        count = [0]
        def write_image(path, *a, **k):
            out = original(path, *a, **k)
            if stage in str(path):
                count[0] += 1
                if count[0] == nth:
                    os.kill(os.getpid(), signal.SIGKILL)
            return out
        stages.write_image = write_image
    from videofrom3d.cli import main
    sys.exit(main(["render", job, "--engine", "preview", "--quiet"]))
""")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted render of the small job."""
    folder = tmp_path_factory.mktemp("reference")
    job = load_job(make_job(folder))
    render(job, engine="preview", progress=False, log=lambda s: None)
    return tree_digests(job.work_dir)


@pytest.mark.parametrize(
    "mode, stage, item, nth",
    [
        ("after-record", "prepare", "arc000", 0),  # mid prepare: arc 0 done, arcs 1-2 not
        ("mid-write", "anchors", "", 2),  # anchor 1 written, not recorded
        ("mid-write", "inbetween", "", 10),  # in the middle of arc 1's frames (7 per arc)
    ],
)
def test_killed_run_resumes_to_identical_bytes(tmp_path, reference, mode, stage, item, nth):
    job_file = make_job(tmp_path)
    work = tmp_path / "work"
    env = {**os.environ, "TQDM_DISABLE": "1"}
    killed = subprocess.run([sys.executable, "-c", KILLER, str(job_file), mode, stage, item, str(nth)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    partial = tree_digests(work)
    assert partial != reference  # it really stopped early
    if mode == "mid-write" and stage == "inbetween":
        assert not (work / "inbetween" / "arc001").exists()  # the half-written arc is only a temp folder
        assert list((work / "inbetween").glob(".arc001.*"))
    resumed = render(load_job(job_file), engine="preview", progress=False, log=lambda s: None)
    assert tree_digests(work) == reference
    assert not [p for p in work.rglob(".*") if p.name != "manifest.json"]  # no temporaries left
    # the resumed run redid only what the killed one had not finished
    if mode == "after-record":
        assert resumed.stage("prepare").reused == ["arc000"]
        assert resumed.stage("prepare").ran == ["arc001", "arc002"]
    if stage == "anchors":
        assert resumed.stage("anchors").reused == ["anchor000"]
    if stage == "inbetween":
        assert resumed.stage("inbetween").reused == ["arc000"]
        assert resumed.stage("prepare").ran == [] and resumed.stage("anchors").ran == []


def test_rerun_reuses_and_recomputes_only_what_changed(tmp_path):
    job_file = make_job(tmp_path)
    quiet = {"engine": "preview", "progress": False, "log": lambda s: None}
    first = render(load_job(job_file), **quiet)
    assert first.stage("prepare").ran == ["arc000", "arc001", "arc002"]
    before = tree_digests(first.work_dir)

    again = render(load_job(job_file), **quiet)
    assert all(s.ran == [] for s in again.stages)
    assert tree_digests(first.work_dir) == before

    # fps is read by the video stage only
    job_file.write_text(job_file.read_text().replace('seed = 3\n', 'seed = 3\nfps = 12\n'))
    r = render(load_job(job_file), **quiet)
    assert [s.name for s in r.stages if s.ran] == ["video"]
    assert changed(before, tree_digests(first.work_dir)) == {"video.mp4"}

    # a preview look option: anchors, frames and video again; prepare and align reused
    job_file.write_text(job_file.read_text() + "[preview]\nline_strength = 0.5\n")
    r = render(load_job(job_file), **quiet)
    assert [s.name for s in r.stages if s.ran] == ["anchors", "inbetween", "video"]
    assert r.stage("anchors").ran == ["anchor000", "anchor001", "anchor002", "anchor003"]

    # an output deleted or altered by hand is recomputed (and comes back with the same bytes)
    now = tree_digests(first.work_dir)
    (first.work_dir / "anchors" / "002.png").unlink()
    (first.work_dir / "inbetween" / "arc001" / "0003.png").write_bytes(b"not a png")
    r = render(load_job(job_file), **quiet)
    assert r.stage("anchors").ran == ["anchor002"]
    assert r.stage("inbetween").ran == ["arc001"]
    assert r.stage("video").ran == []  # same frames as before: the video is still current
    assert tree_digests(first.work_dir) == now

    # so is a prepared arc with a file gone (a by-product beside it does not count; later stages stay: same bytes)
    edges = sorted((first.work_dir / "prepare" / "arc002" / "edges").iterdir())
    edges[3].unlink()
    (first.work_dir / "prepare" / "arc002" / "preview.mp4").write_bytes(b"a by-product, not an input")
    r = render(load_job(job_file), **quiet)
    assert r.stage("prepare").ran == ["arc002"]
    assert [s.name for s in r.stages if s.ran] == ["prepare"]
    assert edges[3].is_file()


def test_longer_then_shorter_trajectory_leaves_no_stale_arcs(tmp_path):
    job_file = make_job(tmp_path, arcs=3)
    quiet = {"engine": "preview", "progress": False, "log": lambda s: None}
    render(load_job(job_file), **quiet)
    from test_pipeline_jobs import write_cameras

    write_cameras(tmp_path / "cams.json", 2 * 6 + 1, 128, 96)
    r = render(load_job(job_file), **quiet)
    work = r.work_dir
    assert sorted(p.name for p in (work / "prepare").iterdir()) == ["arc000", "arc001"]
    assert sorted(p.name for p in (work / "anchors").iterdir()) == ["000.png", "001.png", "002.png"]
    assert sorted(p.name for p in (work / "inbetween").iterdir()) == ["arc000", "arc001"]
    assert len(list((work / "frames").iterdir())) == 13
    import json

    items = json.loads((work / "manifest.json").read_text())["stages"]["anchors"]["items"]
    assert sorted(items) == ["anchor000", "anchor001", "anchor002"]
