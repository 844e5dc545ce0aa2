"""Arc-level editing: --reseed-anchor K SEED / --anchor K image.png redo anchor K and only the arcs that touch
it (checked by file hashes); edits persist; bad edits fail before anything is written."""

from __future__ import annotations

import json

import numpy as np
import pytest

from test_pipeline_jobs import changed, make_job, tree_digests
from videofrom3d.io import write_image
from videofrom3d.job import load_job
from videofrom3d.pipeline import PipelineError, render

QUIET = {"engine": "preview", "progress": False, "log": lambda s: None}
N = 6  # frames per arc of the small job; 3 arcs, 4 anchors, 19 frames


def frames_of_arc(k: int, first: bool = True) -> set[str]:
    """frames/ files that come from arc k (its frame 0 belongs to arc k-1 for k > 0)."""
    lo = k * N if (k == 0 or first) else k * N + 1
    return {f"frames/{g:04d}.png" for g in range(lo, (k + 1) * N + 1)}


def allowed(anchor: int, arcs: list[int]) -> set[str]:
    out = {f"anchors/{anchor:03d}.png", "video.mp4"}
    for k in arcs:
        out |= {f"inbetween/arc{k:03d}/{i:04d}.png" for i in range(N + 1)}
        out |= frames_of_arc(k, first=False)
    return out


@pytest.fixture
def rendered(tmp_path):
    job_file = make_job(tmp_path)
    r = render(load_job(job_file), **QUIET)
    return job_file, r.work_dir, tree_digests(r.work_dir)


def test_reseed_first_anchor_redoes_it_and_its_one_arc(rendered):
    job_file, work, before = rendered
    r = render(load_job(job_file), reseed_anchor=(0, 1234), **QUIET)
    assert r.stage("anchors").ran == ["anchor000"]
    assert r.stage("inbetween").ran == ["arc000"]
    assert r.stage("prepare").ran == [] and r.stage("align").ran == []
    diff = changed(before, tree_digests(work))
    assert "anchors/000.png" in diff
    assert {p for p in diff if not p.startswith("edits/unedited/")} <= allowed(0, [0]) | {"edits"}
    assert [p for p in diff if p.startswith("edits/unedited/000-")]  # the unedited anchor 0, which guides anchor 1
    assert {"anchors/001.png", "anchors/002.png", "anchors/003.png"}.isdisjoint(diff)
    assert any(p.startswith("inbetween/arc000/") for p in diff)
    manifest = json.loads((work / "manifest.json").read_text())
    assert manifest["runs"][-1]["redone"]["anchors"] == ["anchor000"]
    assert manifest["runs"][-1]["redone"]["inbetween"] == ["arc000"]
    assert manifest["edits"]["anchors"] == {"0": {"seed": 1234}}
    assert manifest["stages"]["anchors"]["items"]["anchor000"]["seed"] == 1234


def test_anchor_image_for_an_inner_anchor_redoes_two_arcs_and_keeps_later_anchors(rendered, tmp_path):
    job_file, work, before = rendered
    mine = tmp_path / "mine.png"
    write_image(mine, np.tile(np.linspace(0, 1, 64, dtype=np.float32)[None, :, None], (48, 1, 3)))
    r = render(load_job(job_file), anchor_images={2: mine}, **QUIET)
    assert r.stage("anchors").ran == ["anchor002"]
    assert r.stage("inbetween").ran == ["arc001", "arc002"]
    after = tree_digests(work)
    diff = changed(before, after)
    unedited = {p for p in diff if p.startswith("edits/unedited/")}
    assert len(unedited) == 1 and unedited.pop().startswith("edits/unedited/002-")
    assert {p for p in diff if not p.startswith("edits/unedited/")} <= allowed(2, [1, 2]) | {"edits/anchor002.png"}
    assert {"anchors/002.png", "edits/anchor002.png"} <= diff
    # anchor 3 was generated from anchor 2 (SAG chaining) but is kept as it was
    assert "anchors/003.png" not in diff
    # arc 0 and its frames are untouched
    assert not any(p.startswith("inbetween/arc000/") for p in diff)
    assert frames_of_arc(0).isdisjoint(diff)
    # the anchor is the user's image, resized to the job's size; the arcs end and start on it
    from videofrom3d.io import read_image

    anchor = read_image(work / "anchors" / "002.png")
    assert anchor.shape == (96, 128, 3)
    assert np.array_equal(anchor, read_image(work / "inbetween" / "arc001" / f"{N:04d}.png"))
    assert np.array_equal(anchor, read_image(work / "inbetween" / "arc002" / "0000.png"))

    # the edit persists: a plain re-run changes nothing
    again = render(load_job(job_file), **QUIET)
    assert all(s.ran == [] for s in again.stages)
    assert tree_digests(work) == after
    # anchor 3, made again after the edit, is guided by the unedited anchor 2: the same bytes as before
    (work / "anchors" / "003.png").unlink()
    redo = render(load_job(job_file), **QUIET)
    assert redo.stage("anchors").ran == ["anchor003"]
    assert tree_digests(work) == after
    # and --reset-edits brings back the original anchors and frames, byte for byte
    render(load_job(job_file), reset_edits=True, **QUIET)
    final = tree_digests(work)
    assert {k: v for k, v in final.items() if not k.startswith("edits/")} == before


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"reseed_anchor": (4, 1)}, "this job has 4 anchors (0..3)"),
        ({"reseed_anchor": (1, -5)}, "seed must be >= 0"),
        ({"anchor_images": {1: "missing.png"}}, "image not found"),
        ({"reseed_anchor": ("x", 1)}, "two integers"),
    ],
)
def test_bad_edit_is_one_line_and_changes_nothing(rendered, kwargs, message):
    job_file, work, before = rendered
    manifest = (work / "manifest.json").read_bytes()
    with pytest.raises(PipelineError) as e:
        render(load_job(job_file), **kwargs, **QUIET)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert tree_digests(work) == before
    assert (work / "manifest.json").read_bytes() == manifest
