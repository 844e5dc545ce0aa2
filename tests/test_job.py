"""Job files: every key read, every bad value named, and the cameras a job renders."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from videofrom3d.job import (
    JobError,
    arc_frame_count,
    config_from_options,
    job_cameras,
    job_from_dict,
    load_job,
)

FULL = """
name = "plaza"
seed = 7
out = "work/plaza"
fps = 12

[scene]
path = "town.glb"
up = "z"
unit_scale = 0.01

[trajectory]
generator = "orbit"
center = [0, 0, 0]
radius = 20
height = 6
degrees = 90
fov_y = 50
frames = 91
timing = "constant-speed"

[size]
width = 512
height = 320

[arcs]
frames_per_arc = 45

[[style]]
image = "style.png"
identifier = "a painting of sks town"

[anchor_prompts]
2 = "in winter, snow"

[models]
flux = "/models/flux"

[anchors]
steps = 25
"""


def minimal(**over):
    doc = {"scene": {"path": "s.glb"}, "trajectory": {"generator": "orbit", "radius": 5.0}}
    doc.update(over)
    return doc


def test_full_job_file_reads_every_key(tmp_path):
    (tmp_path / "job.toml").write_text(FULL)
    job = load_job(tmp_path / "job.toml")
    assert (job.name, job.seed, job.fps, job.width, job.height, job.frames_per_arc) == ("plaza", 7, 12.0, 512, 320, 45)
    assert job.out == tmp_path / "work/plaza" and job.work_dir == job.out
    assert job.scene.path == tmp_path / "town.glb" and job.scene.up == "z" and job.scene.unit_scale == 0.01
    t = job.trajectory
    assert (t.generator, t.frames, t.timing) == ("orbit", 91, "constant-speed")
    assert t.param_dict() == {"center": (0, 0, 0), "radius": 20, "height": 6, "degrees": 90, "fov_y": 50}
    assert job.styles[0].image == tmp_path / "style.png" and job.styles[0].identifier_prompt == "a painting of sks town"
    assert job.post_prompt(2) == "in winter, snow" and job.post_prompt(0) == ""
    assert job.model("flux") == "/models/flux" and job.options("anchors") == {"steps": 25}
    json.dumps(job.to_dict())  # hashable view


def test_defaults():
    job = job_from_dict({"scene": "s.glb", "trajectory": "cam.json"}, base=Path("/x"))
    assert (job.width, job.height, job.frames_per_arc, job.fps, job.seed) == (720, 480, 45, 8.0, 0)
    assert job.trajectory.path == Path("/x/cam.json") and job.trajectory.timing == "auto"
    assert job.work_dir == Path("work") / "job"


@pytest.mark.parametrize(
    "change, key",
    [
        ({"name": "a/b"}, "[name]"),
        ({"scene": {"up": "y"}}, "[scene]"),
        ({"scene": {"path": "s.glb", "up": "x"}}, "[scene.up]"),
        ({"scene": {"path": "s.glb", "unit_scale": -1}}, "[scene.unit_scale]"),
        ({"trajectory": {"path": "c.json", "generator": "orbit"}}, "[trajectory]"),
        ({"trajectory": {"path": "c.json", "timing": "fast"}}, "[trajectory.timing]"),
        ({"trajectory": {"path": "c.json", "frames": 1}}, "[trajectory.frames]"),
        ({"trajectory": {"generator": "spiral"}}, "[trajectory.generator]"),
        ({"size": {"width": 721}}, "[size]"),
        ({"size": {"width": "wide"}}, "[size.width]"),
        ({"size": "720by480"}, "[size]"),
        ({"arcs": {"frames_per_arc": 0}}, "[arcs.frames_per_arc]"),
        ({"style": [{"identifier": "x"}]}, "[style[0]]"),
        ({"style": [{"image": "s.png", "identifier": 3}]}, "[style[0].identifier]"),
        ({"anchor_prompts": {"two": "snow"}}, "[anchor_prompts.two]"),
        ({"anchor_prompts": {"-1": "snow"}}, "[anchor_prompts.-1]"),
        ({"models": {"flux": 3}}, "[models]"),
        ({"fps": 0}, "[fps]"),
        ({"seed": -1}, "[seed]"),
        ({"anchors": 3}, "[anchors]"),
    ],
)
def test_validation_errors_name_the_key(change, key):
    with pytest.raises(JobError) as e:
        job_from_dict(minimal(**change), source=Path("job.toml"))
    assert key in str(e.value) and "must be" in str(e.value) and "job.toml" in str(e.value)


def test_unknown_top_level_key_and_bad_files(tmp_path):
    with pytest.raises(JobError, match=r"^scenery: unknown key or table; did you mean 'scene'\?$"):
        job_from_dict(minimal(scenery=1))
    with pytest.raises(JobError, match="job file not found"):
        load_job(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("name = ")
    with pytest.raises(JobError, match="not valid TOML"):
        load_job(tmp_path / "bad.toml")


def test_config_from_options_names_the_key():
    @dataclasses.dataclass(frozen=True)
    class Cfg:
        steps: int = 25
        scale: float = 1.0
        names: tuple[str, ...] = ()

    assert config_from_options(Cfg, {"steps": 3, "scale": 2, "names": ["a"]}, "anchors") == Cfg(3, 2.0, ("a",))
    with pytest.raises(JobError, match=r"\[anchors\].steps must be an integer"):
        config_from_options(Cfg, {"steps": 2.5}, "anchors")
    with pytest.raises(JobError, match=r"^\[anchors\] step: unknown key; did you mean 'steps'\?$"):
        config_from_options(Cfg, {"step": 2}, "anchors")


# -------------------------------------------------------------------------------------------- job cameras


def test_arc_frame_count_rule():
    assert [arc_frame_count(c, 45) for c in (2, 46, 68, 69, 91, 100, 136, 137)] == [46, 46, 46, 91, 91, 91, 136, 136]


def test_job_cameras_snap_to_arcs_with_a_note(capsys):
    job = job_from_dict(minimal(trajectory={"generator": "orbit", "radius": 5.0, "degrees": 90, "frames": 100}))
    cams = job_cameras(job)
    assert len(cams) == 91 and (cams[0].width, cams[0].height) == (720, 480)
    assert "resampled to 91 frames (2 arcs)" in capsys.readouterr().err
    default = job_cameras(job_from_dict(minimal()))  # a generator without frames makes three arcs
    assert len(default) == 3 * 45 + 1


def test_job_cameras_use_per_frame_lists_as_they_are(tmp_path, capsys):
    rng = np.random.default_rng(0)
    frames = []
    for i in range(11):
        M = np.eye(4)
        M[:3, 3] = [i * 0.5, 1.0, rng.uniform()]
        frames.append({"file_path": f"{i:03d}.png", "transform_matrix": M.tolist()})
    (tmp_path / "transforms.json").write_text(json.dumps({"fl_x": 300.0, "w": 640, "h": 480, "frames": frames}))
    job = job_from_dict(
        {"scene": "s.glb", "trajectory": "transforms.json", "arcs": {"frames_per_arc": 5}, "size": "320x240"}, base=tmp_path
    )
    cams = job_cameras(job)  # 11 = 2 * 5 + 1 frames: used frame by frame, K scaled to the job's size
    assert len(cams) == 11 and capsys.readouterr().err == ""
    assert np.allclose([c.center for c in cams], [np.array(f["transform_matrix"])[:3, 3] for f in frames])
    assert np.allclose(cams[0].K, [[150, 0, 160], [0, 150, 120], [0, 0, 1]])
    job3 = dataclasses.replace(job, frames_per_arc=3)  # 11 frames do not split into arcs of 3 + 1
    assert len(job_cameras(job3)) == 10 and "resampled to 10 frames" in capsys.readouterr().err


def test_job_cameras_timed_keys_follow_fps(tmp_path):
    keys = [{"position": [x, 1.0, 0.0], "look_at": [x, 1.0, -5.0], "time": t} for x, t in ((0.0, 0.0), (1.0, 1.0), (4.0, 2.0))]
    (tmp_path / "cam.json").write_text(json.dumps({"keys": keys, "fov_y": 40}))
    job = job_from_dict({"scene": "s.glb", "trajectory": "cam.json", "arcs": {"frames_per_arc": 8}}, base=tmp_path)
    cams = job_cameras(job)  # 2 s at 8 fps -> 17 frames = 2 arcs of 8
    assert len(cams) == 17
    assert np.allclose(cams[8].center, [1, 1, 0]) and np.allclose(cams[16].center, [4, 1, 0])  # t = 1 s, 2 s
    assert abs(cams[0].fov_y_deg - 40) < 1e-9


def test_typed_generator_keys_are_checked_like_options():
    job = job_from_dict(minimal(trajectory={"generator": "orbit", "radius": "far"}))
    with pytest.raises(JobError, match=r"\[trajectory\]\.radius must be a number, got 'far'"):
        job_cameras(job)
