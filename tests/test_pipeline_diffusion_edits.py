"""Edits and resume on the diffusion engine (tiny random models, CPU): an edited render equals a fresh render
with the same edit given from the start, byte for byte, and a run killed mid-arc resumes to the same bytes.
With the default chaining (arc k starts from arc k-1's last generated frame) an anchor edit changes every
later arc, so each later arc must be redone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from test_pipeline_jobs import make_job, tree_digests
from test_pipeline_resume import KILLER

pytestmark = pytest.mark.torch

TINY = (
    "[align]\nsteps = 1\nresolution = 32\nrank = 2\nmax_sequence_length = 16\n"
    "[anchors]\nsteps = 2\nmax_sequence_length = 16\n"
    '[inbetween]\nsteps = 1\nprompt = "a tiny town"\n[noise]\nlatent_frames = 3\n'
)
RUN = {"engine": "diffusion", "models": "tiny-random", "progress": False, "log": lambda s: None}


def _job(folder):
    from videofrom3d.job import load_job

    return load_job(make_job(folder, width=32, height=32, frames_per_arc=8, arcs=3, extra=TINY))


@pytest.fixture(scope="module")
def edit_image(tmp_path_factory):
    from videofrom3d.io.images import write_image

    path = tmp_path_factory.mktemp("edit") / "mine.png"
    write_image(path, np.random.default_rng(4).random((32, 32, 3)).astype(np.float32))
    return path


@pytest.mark.parametrize("edit", ["anchor", "reseed"])
def test_edited_render_equals_a_fresh_render_with_the_edit(tmp_path, edit_image, edit):
    from videofrom3d.pipeline import render

    given = {"anchor_images": {1: edit_image}} if edit == "anchor" else {"reseed_anchor": (1, 77)}
    job = _job(tmp_path / "edited")
    render(job, **RUN)
    edited = render(job, **RUN, **given)
    # anchor 1 and every arc after it (arc 0 ends on anchor 1; arcs 1, 2 start from frames that changed)
    assert edited.stage("anchors").ran == ["anchor001"]
    assert edited.stage("inbetween").ran == ["arc000", "arc001", "arc002"]
    fresh_job = _job(tmp_path / "fresh")
    render(fresh_job, **RUN, **given)
    assert tree_digests(job.work_dir) == tree_digests(fresh_job.work_dir)
    # and dropping the edit brings the first render back
    back = render(job, **RUN, reset_edits=True)
    assert back.stage("anchors").ran == ["anchor001"] and back.stage("inbetween").ran == ["arc000", "arc001", "arc002"]


def test_killed_diffusion_run_resumes_to_identical_bytes(tmp_path):
    from videofrom3d.pipeline import render

    reference = _job(tmp_path / "reference")
    render(reference, **RUN)
    job_file = make_job(tmp_path / "killed", width=32, height=32, frames_per_arc=8, arcs=3, extra=TINY)
    killer = KILLER.replace('"--engine", "preview"', '"--engine", "diffusion", "--models", "tiny-random"')
    env = {**os.environ, "TQDM_DISABLE": "1"}
    killed = subprocess.run([sys.executable, "-c", killer, str(job_file), "mid-write", "inbetween", "", "12"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    work = tmp_path / "killed" / "work"
    assert not (work / "inbetween" / "arc001").exists() and list((work / "inbetween").glob(".arc001.*"))
    resumed = render(_job(tmp_path / "killed"), **RUN)
    assert resumed.stage("inbetween").reused == ["arc000"] and resumed.stage("align").ran == []
    assert tree_digests(work) == tree_digests(reference.work_dir)  # the style LoRA too (made in another process)


def test_anchors_are_made_at_one_and_a_half_the_job_size(tmp_path):
    """FLUX anchors at 1.5x the job size rounded to 16 (the authors' 1072x720 for 720x480), from edge maps and
    an end->start flow rendered at that size; the frames stay at the job size."""
    from videofrom3d.io.images import read_image
    from videofrom3d.io.workfolder import WorkFolder
    from videofrom3d.pipeline import render
    from videofrom3d.prepare.anchor_inputs import AnchorViews

    job = _job(tmp_path)
    res = render(job, **RUN)
    work = WorkFolder(job.work_dir)
    assert [read_image(p).shape for p in res.anchors] == [(48, 48, 3)] * 4
    views = AnchorViews.load(work.anchor_views(1))
    assert views.size == (48, 48) and views.flow_end_to_start.shape == (48, 48, 2)
    assert read_image(work.frame(8)).shape == (32, 32, 3)
    # [anchors] size overrides the rule; the views follow, the prepared arcs do not
    from videofrom3d.job import load_job

    job_file = make_job(tmp_path / "sized", width=32, height=32, frames_per_arc=8, arcs=3,
                        extra=TINY.replace("[anchors]\n", "[anchors]\nsize = [64, 64]\n"))
    res = render(load_job(job_file), **RUN, until="anchors")
    assert read_image(res.anchors[0]).shape == (64, 64, 3)
    assert res.stage("prepare").ran[:3] == ["arc000", "noise000", "views000"]
