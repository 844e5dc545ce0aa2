"""On the bundled example rendered by the preview engine (reduced: 192x128, arcs of 8 frames, 17 frames),
the weight-free metrics rank deliberately broken videos below the real one."""

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from videofrom3d.eval import evaluate_run
from videofrom3d.eval.synthetic import replace_work_frames
from videofrom3d.io.images import read_image

N = 8


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    pipeline = pytest.importorskip("videofrom3d.pipeline")
    from videofrom3d.job import load_job
    from videofrom3d.paths import example_job

    job = load_job(example_job())
    job = dataclasses.replace(
        job, width=192, height=128, frames_per_arc=N,
        trajectory=dataclasses.replace(job.trajectory, frames=2 * N + 1),
        out=tmp_path_factory.mktemp("example") / "town",
    )
    res = pipeline.render(job, engine="preview", progress=False, log=lambda s: None)
    frames = np.stack([read_image(p) for p in sorted((res.work_dir / "frames").glob("*.png"))])
    return res.work_dir, frames, job.styles[0].image


def _variant(example, tmp_path, name, frames):
    dst = tmp_path / name
    shutil.copytree(example[0], dst)
    replace_work_frames(dst, frames)
    return evaluate_run(dst, style=example[2])


def test_broken_videos_rank_below_the_real_one(example, tmp_path):
    work, frames, style = example
    assert len(frames) == 2 * N + 1
    real = evaluate_run(work, style=style)
    shuffled = _variant(example, tmp_path, "shuffled", frames[np.random.default_rng(0).permutation(len(frames))])
    # "flow ignored": each arc cross-fades from its start anchor to its end anchor without moving
    fade = frames.copy()
    for k in range(2):
        a, b = frames[k * N], frames[(k + 1) * N]
        for i in range(1, N):
            fade[k * N + i] = (1 - i / N) * a + i / N * b
    crossfade = _variant(example, tmp_path, "crossfade", fade)
    for bad in (shuffled, crossfade):
        assert bad["warp_error"] > 2 * real["warp_error"]
        assert bad["flow_epe"] > 1.5 * real["flow_epe"] and bad["flow_under_1px"] < real["flow_under_1px"]
        assert bad["edge_recall"] < real["edge_recall"] and bad["edge_chamfer"] > real["edge_chamfer"]
        assert bad["psnr"] < real["psnr"] and bad["ssim"] < real["ssim"]
    assert real["color_swd"] is not None and real["arcs"] == 2


def test_eval_command_takes_the_style_from_the_job(example, tmp_path):
    import json

    from videofrom3d.cli import main
    from videofrom3d.paths import example_job

    out = tmp_path / "e.json"
    assert main(["eval", str(example[0]), "--job", str(example_job()), "--no-models", "--quiet", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())[0]
    assert doc["style"] == str(example[2]) and doc["color_swd"] > 0


def test_eval_finds_the_style_the_render_used(example):
    """render records its style images in the manifest, so eval needs neither --style nor --job."""
    doc = evaluate_run(example[0])
    assert doc["style"] == str(Path(example[2]).resolve()) and doc["color_swd"] > 0


def test_reprojection_flow_agrees_with_the_prepare_stage_flow(example):
    from videofrom3d.io.workfolder import WorkFolder
    from videofrom3d.prepare.arcs import PreparedArc
    from videofrom3d.prepare.flow import reprojection_flow

    arc = PreparedArc.load(WorkFolder(example[0]).arc(1), with_noise=False)
    for i in (0, N // 2, N - 1):
        flow, valid = reprojection_flow(arc.depth[i], arc.cameras[i], arc.depth[i + 1], arc.cameras[i + 1])
        both = valid & arc.flow_forward_valid[i]
        assert (valid == arc.flow_forward_valid[i]).mean() > 0.97
        assert np.abs(flow[both] - arc.flow_forward[i][both]).max() < 0.05
