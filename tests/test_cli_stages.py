"""The stage commands, demo and doctor through `videofrom3d ...`: what they write, what they reuse, and one-line
errors that leave nothing behind for bad job files and bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from test_pipeline_jobs import make_job
from videofrom3d.cli import main
from videofrom3d.models import MODELS


def run(*argv) -> int:
    return main([str(a) for a in argv])


def last_run(work) -> dict:
    return json.loads((work / "manifest.json").read_text())["runs"][-1]


def test_stage_commands_build_on_each_other(tmp_path, capsys):
    job = make_job(tmp_path)
    work = tmp_path / "work"
    assert run("prepare", job, "--engine", "preview", "--quiet", "--no-noise") == 0
    assert sorted(p.name for p in (work / "prepare").iterdir()) == ["arc000", "arc001", "arc002"]
    assert not (work / "anchors").exists() and not (work / "video.mp4").exists()
    assert not (work / "prepare" / "arc000" / "noise.npy").exists()  # --no-noise

    assert run("anchors", job, "--engine", "preview", "--quiet") == 0
    assert last_run(work)["redone"]["prepare"] == []
    assert last_run(work)["redone"]["anchors"] == ["anchor000", "anchor001", "anchor002", "anchor003"]
    assert not (work / "inbetween").exists()

    assert run("inbetween", job, "--engine", "preview", "--quiet", "--reseed-anchor", 1, 7) == 0
    assert last_run(work)["redone"]["anchors"] == ["anchor001"]
    assert len(list((work / "inbetween" / "arc002").glob("*.png"))) == 7

    capsys.readouterr()
    assert run("render", job, "--engine", "preview", "--quiet") == 0
    out = capsys.readouterr().out
    assert "engine: preview (asked for with --engine preview)" in out
    assert f"video: {work / 'video.mp4'}" in out
    assert [r for r in last_run(work)["redone"].values() if r] == [["frames", "video"]]
    assert len(list((work / "frames").glob("*.png"))) == 19

    assert run("prepare", job, "--engine", "preview", "--quiet") == 0  # prepare writes the noise by default
    assert last_run(work)["redone"]["prepare"] == ["noise000", "noise001", "noise002"]
    assert not (work / "prepare" / "arc001" / "noise.mp4").exists()  # the test job sets [prepare] preview = false
    noise = np.load(work / "prepare" / "arc001" / "noise.npy")
    assert noise.shape == (13, 16, 96 // 8, 128 // 8) and noise.dtype == np.float16


def test_flags_stand_in_for_a_job_file(tmp_path):
    make_job(tmp_path)
    out = tmp_path / "flags"
    assert run("prepare", "--scene", tmp_path / "scene.glb", "--trajectory", tmp_path / "cams.json",
               "--size", "128x96", "--out", out, "--engine", "preview", "--quiet") == 0
    # 19 cameras do not split into 45-frame arcs: resampled to one arc of 46 frames (with a note)
    assert sorted(p.name for p in (out / "prepare").iterdir()) == ["arc000"]
    assert len(list((out / "prepare" / "arc000" / "edges").glob("*.png"))) == 46


@pytest.mark.parametrize(
    "flags, message",
    [(["--size", "120x96"], "divisible by 16"), (["--size", "0x0"], "[size.width] must be an integer >= 16"),
     (["--seed", "-1"], "[seed] must be an integer >= 0")],
)
def test_flags_over_a_job_file_are_checked_like_its_keys(tmp_path, capsys, flags, message):
    job = make_job(tmp_path)
    capsys.readouterr()
    assert run("prepare", job, *flags, "--engine", "preview", "--quiet") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "work").exists()


def test_trajectory_flag_replaces_a_generator_and_its_keys(tmp_path):
    job = make_job(tmp_path)
    job.write_text(job.read_text().replace('path = "cams.json"', 'generator = "orbit"\nradius = 9'))
    from videofrom3d.cli import build_parser, job_from_args

    args = build_parser().parse_args(["prepare", str(job), "--trajectory", str(tmp_path / "cams.json")])
    spec = job_from_args(args).trajectory
    assert spec.generator is None and spec.params == () and spec.path == tmp_path / "cams.json"


@pytest.mark.parametrize(
    "case, message",
    [
        ("bad-toml", "not valid TOML"),
        ("no-scene", "scene file not found"),
        ("scene-not-a-mesh", "unsupported scene format"),
        ("bad-size", "divisible by 16"),
        ("bad-option", "[preview] colour: unknown key; did you mean 'colour_jitter'?"),
        ("bad-type", "[prepare].crease_angle_deg must be a number"),
        ("bad-noise-option", "[noise] grid: unknown key; did you mean 'grid_factor'?"),
        ("no-style-file", "style image not found"),
        ("nan-camera", "NaN"),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_work_folder(tmp_path, capsys, case, message):
    job = make_job(tmp_path)
    text = job.read_text()
    if case == "bad-toml":
        job.write_text(text + "[size\n")
    elif case == "no-scene":
        (tmp_path / "scene.glb").unlink()
    elif case == "scene-not-a-mesh":
        job.write_text(text.replace('path = "scene.glb"', 'path = "style.png"'))
    elif case == "bad-size":
        job.write_text(text.replace("width = 128", "width = 120"))
    elif case == "bad-option":
        job.write_text(text + "[preview]\ncolour = 1\n")
    elif case == "bad-type":
        job.write_text(text.replace("preview = false", 'preview = false\ncrease_angle_deg = "big"'))
    elif case == "bad-noise-option":
        job.write_text(text + "[noise]\ngrid = 2\n")
    elif case == "no-style-file":
        (tmp_path / "style.png").unlink()
    elif case == "nan-camera":
        doc = json.loads((tmp_path / "cams.json").read_text())
        doc["frames"][5]["world_to_cam"][0][3] = float("nan")
        (tmp_path / "cams.json").write_text(json.dumps(doc))
    capsys.readouterr()
    assert run("render", job, "--engine", "preview", "--quiet") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("videofrom3d: error: "), err
    assert message in err[0]
    assert not (tmp_path / "work").exists()


def test_doctor_names_every_model_and_its_licence(capsys):
    assert run("doctor") == 0
    out = capsys.readouterr().out
    for key, spec in MODELS.items():
        assert key in out and spec.repo_id in out and spec.licence in out
    assert "Non-Commercial" in out and "CogVideoX License" in out
    assert "would use: preview" in out  # no weights on this machine
    assert run("doctor", "--json") == 0
    report = json.loads(capsys.readouterr().out)
    rows = {m["key"]: m for m in report["models"]}
    assert set(rows) == set(MODELS)
    missing = [m for m in rows.values() if not m["found"]]
    assert all(m["looked"] and m["get"] for m in missing)


def test_doctor_finds_a_model_in_videofrom3d_models(tmp_path, monkeypatch, capsys):
    root = tmp_path / "models"
    (root / "XLabs-AI" / "flux-controlnet-hed-diffusers").mkdir(parents=True)
    (root / "XLabs-AI" / "flux-controlnet-hed-diffusers" / "config.json").write_text("{}")
    monkeypatch.setenv("VIDEOFROM3D_MODELS", str(root))
    assert run("doctor", "--json") == 0
    rows = {m["key"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert rows["controlnet_hed"]["found"] == str(root / "XLabs-AI" / "flux-controlnet-hed-diffusers")
    assert rows["flux"]["found"] is None and str(root / "black-forest-labs" / "FLUX.1-dev") in rows["flux"]["looked"]


def test_doctor_runs_without_torch():
    code = "import sys; sys.modules['torch'] = None; from videofrom3d.cli import main; sys.exit(main(['doctor']))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "torch is not installed" in done.stdout
    assert "flux" in done.stdout


def test_demo_renders_the_example_with_a_contact_sheet(tmp_path, monkeypatch, capsys):
    examples = tmp_path / "examples"
    make_job(examples / "town", out="ignored")
    monkeypatch.setenv("VIDEOFROM3D_EXAMPLES", str(examples))
    out = tmp_path / "demo"
    assert run("demo", "--out", out, "--quiet") == 0
    printed = capsys.readouterr().out
    assert f"contact sheet: {out / 'contact_sheet.png'}" in printed
    assert (out / "video.mp4").is_file() and not (examples / "town" / "ignored").exists()
    from videofrom3d.io import read_image

    sheet = read_image(out / "contact_sheet.png")
    # 4 anchors of 240 px with 6 px gaps; a title bar and three labelled rows of 180 px tiles
    assert sheet.shape[1] == 4 * 240 + 3 * 6
    assert sheet.shape[0] == 22 + 3 * (180 + 22) + 2 * 6
    assert f"trajectory picture: {out / 'trajectory.png'}" in printed
    assert read_image(out / "trajectory.png").shape[0] > 100


def test_prepare_exports_the_official_layout(tmp_path):
    job = make_job(tmp_path, arcs=1)
    official = tmp_path / "official"
    assert run("prepare", job, "--engine", "preview", "--quiet", "--export-official", official) == 0
    # global 1-based frame names, 1080x720 HED maps, the arc's warped noise
    assert sorted(p.name for p in (official / "arc0" / "hed").glob("*.png")) == [f"{i:04d}.png" for i in range(1, 8)]
    from videofrom3d.io import read_image

    assert read_image(official / "arc0" / "hed" / "0001.png").shape == (720, 1080, 3)
    assert (official / "arc0" / "corres_end.png").is_file()
    assert np.load(official / "arc0" / "noises.npy").shape == (13, 96 // 8, 128 // 8, 16)
    assert (tmp_path / "work" / "prepare" / "arc000" / "noise.npy").is_file()


@pytest.mark.slow
def test_demo_of_the_bundled_example(tmp_path, capsys):
    """The README's first command on the real example (3 arcs, 720x480; ~40 s here)."""
    out = tmp_path / "demo"
    assert run("demo", "--out", out, "--quiet") == 0
    assert len(list((out / "frames").glob("*.png"))) == 136
    from videofrom3d.io.video import read_video

    assert read_video(out / "video.mp4").shape == (136, 480, 720, 3)
    assert (out / "contact_sheet.png").is_file() and (out / "trajectory.png").is_file()
    assert run("demo", "--out", out, "--quiet") == 0  # the second time everything is reused
    assert not any(json.loads((out / "manifest.json").read_text())["runs"][-1]["redone"].values())


def test_diffusion_without_weights_fails_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("VIDEOFROM3D_MODELS", raising=False)
    job = make_job(tmp_path)
    assert run("render", job, "--engine", "diffusion", "--quiet") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "flux (black-forest-labs/FLUX.1-dev), controlnet_hed" in err[0] and "ggi (" in err[0]
    assert "videofrom3d doctor" in err[0]
    assert not (tmp_path / "work").exists()
    # prepare alone needs no weights, even for the diffusion engine (it computes the warped noise)
    assert run("prepare", job, "--engine", "diffusion", "--quiet") == 0
    assert (tmp_path / "work" / "prepare" / "arc002" / "noise.npy").is_file()
