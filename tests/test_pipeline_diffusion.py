"""The whole diffusion path (style LoRA -> SAG anchors -> GGI frames -> video) end to end on tiny random
models: `render --engine diffusion --models tiny-random`, no weights needed."""

from __future__ import annotations

import json

import pytest

from test_pipeline_jobs import make_job, tree_digests

pytestmark = pytest.mark.torch

TINY = (
    "[align]\nsteps = 1\nresolution = 32\nrank = 2\nmax_sequence_length = 16\n"
    "[anchors]\nsteps = 2\nmax_sequence_length = 16\n"
    "[inbetween]\nsteps = 1\n"
)


def test_render_diffusion_tiny_random_end_to_end(tmp_path, capsys):
    from videofrom3d.cli import main
    from videofrom3d.io import read_image
    from videofrom3d.io.video import read_video

    # the tiny CogVideoX has learned positional embeddings for 49 frames: arcs of 45 + 1 frames, as in the paper
    job = make_job(tmp_path, width=32, height=32, frames_per_arc=45, arcs=1, extra=TINY)
    assert main(["render", str(job), "--engine", "diffusion", "--models", "tiny-random", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "engine: diffusion" in out
    work = tmp_path / "work"
    assert (work / "align" / "lora.safetensors").is_file()
    assert (work / "prepare" / "arc000" / "noise.npy").is_file()  # the diffusion engine needs warped noise
    assert sorted(p.name for p in (work / "anchors").glob("*.png")) == ["000.png", "001.png"]
    assert len(list((work / "inbetween" / "arc000").glob("*.png"))) == 46
    video = read_video(work / "video.mp4")
    assert video.shape == (46, 32, 32, 3)
    assert read_image(work / "frames" / "0045.png").shape == (32, 32, 3)
    manifest = json.loads((work / "manifest.json").read_text())
    assert manifest["runs"][-1]["engine"] == "diffusion" and manifest["runs"][-1]["models"] == "tiny-random"
    assert manifest["stages"]["inbetween"]["items"]["caption"]["output"]  # the tiny captioner's prompt
    assert manifest["stages"]["prepare"]["edges"]["hed"] == "tiny-random"  # the HED code path ran
    before = tree_digests(work)

    # a re-run reuses every stage (no model is even loaded) and changes no byte
    assert main(["render", str(job), "--engine", "diffusion", "--models", "tiny-random", "--quiet"]) == 0
    manifest = json.loads((work / "manifest.json").read_text())
    assert all(not v for v in manifest["runs"][-1]["redone"].values())
    assert tree_digests(work) == before

    # the preview engine can render the same work folder afterwards; without HED weights its edge maps are
    # the drawn lines, not the tiny random HED's, so prepare is redone (with real HED weights both engines
    # use HED and prepare is reused)
    assert main(["render", str(job), "--engine", "preview", "--quiet"]) == 0
    manifest = json.loads((work / "manifest.json").read_text())
    redone = manifest["runs"][-1]["redone"]
    assert redone["prepare"] == ["arc000"] and redone["align"] == ["preview"]
    assert manifest["stages"]["prepare"]["edges"]["mode"] == "lines"
    assert (work / "align" / "lora.safetensors").is_file()
