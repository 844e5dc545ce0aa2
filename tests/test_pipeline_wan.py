"""The diffusion engine with ``[inbetween] model = "wan-vace"`` end to end on tiny random models: FLUX anchors,
then Wan VACE arcs chained without duplicate frames."""

from __future__ import annotations

import json

import pytest

from test_pipeline_jobs import make_job
from tiny_models import one_torch_thread  # noqa: F401

pytestmark = pytest.mark.torch

TINY = (
    "[align]\nsteps = 1\nresolution = 32\nrank = 2\nmax_sequence_length = 16\n"
    "[anchors]\nsteps = 1\nmax_sequence_length = 16\n"
    '[inbetween]\nmodel = "wan-vace"\nsteps = 1\nmax_sequence_length = 16\ncontrol = "edges"\n'
    "warped_noise = true\n"
)


def test_render_wan_vace_three_arcs(tmp_path, monkeypatch):
    from videofrom3d.cli import main
    from videofrom3d.inbetween.wan import engine
    from videofrom3d.io import read_image
    from videofrom3d.io.video import read_video

    arcs = []  # every arc goes through the Wan VACE loop (not GGI's)
    original = engine.wan_vace_arc
    monkeypatch.setattr(engine, "wan_vace_arc", lambda *a, **k: arcs.append(a[1].shape) or original(*a, **k))

    job = make_job(tmp_path, width=32, height=32, frames_per_arc=45, arcs=3, extra=TINY)
    assert main(["render", str(job), "--engine", "diffusion", "--models", "tiny-random", "--quiet"]) == 0
    work = tmp_path / "work"
    frames = sorted((work / "frames").glob("*.png"))
    assert len(frames) == 1 + 3 * 45
    assert read_image(frames[-1]).shape == (32, 32, 3)
    assert read_video(work / "video.mp4").shape == (136, 32, 32, 3)
    for k in range(3):
        assert len(list((work / "inbetween" / f"arc{k:03d}").glob("*.png"))) == 46
    manifest = json.loads((work / "manifest.json").read_text())
    assert manifest["runs"][-1]["engine"] == "diffusion" and arcs == [(32, 32, 3)] * 3


def test_wan_options_are_checked_before_any_work(tmp_path, capsys):
    from videofrom3d.cli import main

    job = make_job(tmp_path, width=32, height=32, frames_per_arc=6, arcs=1,
                   extra=TINY + 'transformer = "ggi"\n')
    assert main(["render", str(job), "--engine", "diffusion", "--models", "tiny-random", "--quiet"]) != 0
    assert 'apply to model = "ggi" only' in capsys.readouterr().err
    assert not (tmp_path / "work").exists()


def test_real_models_name_the_missing_wan_weights(tmp_path, capsys, monkeypatch):
    from videofrom3d.cli import main
    from videofrom3d.diffusion import missing_weights
    from videofrom3d.job import load_job

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("VIDEOFROM3D_MODELS", str(tmp_path / "no-models"))
    job = make_job(tmp_path, width=32, height=32, frames_per_arc=6, arcs=1,
                   extra='[inbetween]\nmodel = "wan-vace"\nvariant = "14b"\n')
    missing = missing_weights(load_job(job))
    assert "wan_vace_14b" in missing and "cogvideox" not in missing and "ggi or flow_lora" not in missing
    assert main(["render", str(job), "--engine", "diffusion", "--quiet"]) != 0
    err = capsys.readouterr().err
    assert "Wan-AI/Wan2.1-VACE-14B-diffusers" in err and "cogvideox" not in err
    assert not (tmp_path / "work").exists()



def test_noise_grid_follows_the_inbetween_model(tmp_path):
    from videofrom3d.engines import get_engine
    from videofrom3d.job import load_job
    from videofrom3d.pipeline.plan import stage_configs

    def noise(extra, n):
        job = load_job(make_job(tmp_path / f"{n}{len(extra)}", width=32, height=48, frames_per_arc=n, arcs=1,
                                extra=extra))
        return stage_configs(job, get_engine("diffusion"))["noise"]

    wan = '[inbetween]\nmodel = "wan-vace"\n'
    assert noise(wan, 80).latent_frames == 21 and noise(wan, 80).latent_size == (6, 4)  # 81 frames at 16 fps
    assert noise(wan, 45).latent_frames == 13 and noise(wan, 40).latent_frames == 11
    assert noise("", 40).latent_frames == 13  # GGI: CogVideoX-5B-I2V's fixed 13
    assert noise(wan + "[noise]\nlatent_frames = 7\n", 40).latent_frames == 7  # the job's own key wins
