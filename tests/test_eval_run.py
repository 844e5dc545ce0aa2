"""Whole-run evaluation of synthetic work folders (weight-free metrics), reports and the `eval` command."""

import json
import shutil

import numpy as np
import pytest

from videofrom3d.cli import main
from videofrom3d.eval import evaluate_run
from videofrom3d.eval.report import to_json, to_markdown
from videofrom3d.eval.synthetic import make_synthetic_work, replace_work_frames


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return make_synthetic_work(tmp_path_factory.mktemp("eval") / "base")


def _variant(base, tmp_path, name, frames):
    work, _ = base
    dst = tmp_path / name
    shutil.copytree(work, dst)
    replace_work_frames(dst, frames)
    return dst


def test_weight_free_metrics_rank_broken_videos_below_the_real_one(base, tmp_path):
    work, frames = base
    real = evaluate_run(work)
    perm = np.array([7, 0, 1, 4, 2, 5, 8, 6, 3])
    shuffled = evaluate_run(_variant(base, tmp_path, "shuffled", frames[perm]))
    frozen = evaluate_run(_variant(base, tmp_path, "frozen", np.repeat(frames[:1], len(frames), 0)))
    for bad in (shuffled, frozen):
        assert bad["warp_error"] > 2 * real["warp_error"]
        assert bad["flow_epe"] > 3 * real["flow_epe"]
        assert bad["edge_chamfer"] > real["edge_chamfer"]
        assert bad["edge_recall_2px"] < real["edge_recall_2px"]
        assert bad["psnr"] < real["psnr"] - 5 and bad["ssim"] < real["ssim"]
    assert real["flow_epe"] < 0.5 and real["flow_under_1px"] > 0.95
    assert real["psnr"] > 30 and real["ssim"] > 0.95
    assert real["frames"] == 9 and real["arcs"] == 2


def test_colour_drift_scores_worse(base, tmp_path):
    work, frames = base
    real = evaluate_run(work)
    t = np.linspace(0, 1, len(frames))[:, None, None, None]
    drifting = np.clip(frames * (1 - 0.5 * t) + np.array([0.3, 0.1, 0.0]) * t, 0, 1)
    drift = evaluate_run(_variant(base, tmp_path, "drift", drifting))
    assert drift["color_drift"] > 5 * real["color_drift"]
    assert drift["color_swd"] > 5 * real["color_swd"]
    assert drift["color_moments"] > real["color_moments"] and drift["color_chi2"] > real["color_chi2"]
    assert drift["warp_error"] > real["warp_error"]


def test_without_models_every_model_metric_is_null_and_listed(base):
    work, _ = base
    r = evaluate_run(work)
    listed = {m["metric"] for m in r["missing"]}
    for key in ("lpips", "psnr_d", "clip_a", "musiq", "clip_i", "subject_consistency", "background_consistency"):
        assert r[key] is None and key in listed
    assert r["style"].endswith("style.png")
    assert r["color_swd"] is not None and "color_swd" not in listed


def test_no_style_and_no_prepare_folder_are_reported(base, tmp_path):
    work, frames = base
    bare = tmp_path / "bare"
    replace_work_frames(bare, frames)
    r = evaluate_run(bare)
    listed = {m["metric"]: m["reason"] for m in r["missing"]}
    assert r["psnr"] is None and "no prepared arcs" in listed["psnr"]
    assert r["color_swd"] is None and "no style image" in listed["color_swd"]
    assert r["color_drift"] is not None and r["arcs"] == 0


def test_eval_command_writes_json_markdown_and_contact_sheet(base, tmp_path, capsys):
    work, frames = base
    other = _variant(base, tmp_path, "frozen", np.repeat(frames[:1], len(frames), 0))
    out = tmp_path / "out.json"
    md = tmp_path / "out.md"
    rc = main(["eval", str(work), str(other), "--json", str(out), "--markdown", str(md), "--no-models", "--quiet"])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert [d["run"] for d in doc] == [str(work), str(other)]
    assert doc[0]["warp_error"] < doc[1]["warp_error"]
    assert doc[0]["lpips"] is None and any(m["metric"] == "lpips" for m in doc[0]["missing"])
    table = md.read_text()
    assert "| warp err ↓ |" in table and "**" in table and "Not computed:" in table
    from videofrom3d.io.images import read_image

    sheet = read_image(tmp_path / "out_sheet.png")
    assert sheet.shape[0] > 2 * 40 and sheet.shape[1] > 6 * 96
    assert "warp err" in capsys.readouterr().out


def test_eval_command_errors_are_one_line(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nothing"), "--no-models", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("videofrom3d: error:") and "not a folder" in err


def test_json_is_strict_even_with_infinities():
    text = to_json([{"run": "x", "psnr": float("inf"), "ssim": float("nan"), "missing": []}])
    assert json.loads(text) == [{"run": "x", "psnr": "inf", "ssim": None, "missing": []}]
    assert "| frames |" in to_markdown([{"run": "x", "psnr": 1.0, "frames": 3, "missing": []}])
