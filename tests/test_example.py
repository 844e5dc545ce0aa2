"""The bundled example (examples/town): loads, has the promised size, and make_town.py regenerates it exactly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from videofrom3d import paths
from videofrom3d.job import load_job
from videofrom3d.scene.mesh import load_scene

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TOWN = EXAMPLES / "town"


def test_paths_find_the_bundled_example():
    assert paths.repo_root() == EXAMPLES.parent
    assert paths.examples_dir() == EXAMPLES
    assert paths.example_job() == TOWN / "job.toml"


def test_examples_env_override_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.EXAMPLES_ENV, str(tmp_path))
    assert paths.examples_dir() == tmp_path
    with pytest.raises(paths.ExampleNotFoundError, match="job.toml"):
        paths.example_job()
    monkeypatch.setenv(paths.EXAMPLES_ENV, str(tmp_path / "missing"))
    with pytest.raises(paths.ExampleNotFoundError, match="not a folder"):
        paths.examples_dir()


def test_job_file_loads():
    job = load_job(paths.example_job())
    assert job.name == "town"
    assert job.scene.path == TOWN / "town.glb" and job.scene.path.is_file()
    assert job.trajectory.path == TOWN / "camera.json" and job.trajectory.path.is_file()
    assert job.trajectory.frames == 136
    assert (job.width, job.height, job.frames_per_arc, job.seed) == (720, 480, 45, 0)
    assert len(job.styles) == 1 and job.styles[0].image.is_file()
    assert job.styles[0].identifier_prompt == "a painting of sks town"
    assert (job.trajectory.frames - 1) % job.frames_per_arc == 0  # whole arcs with shared ends


def test_scene_size_and_objects():
    scene = load_scene(TOWN / "town.glb")
    assert 50_000 <= scene.triangle_count <= 200_000
    assert len(scene.object_names) >= 10
    assert (TOWN / "town.glb").stat().st_size < 3_000_000
    lo, hi = scene.bounds
    assert lo[1] == pytest.approx(0.0, abs=1e-6)  # Y-up, standing on the ground
    assert 15.0 < hi[1] < 40.0  # a few storeys, in metres
    names = set(scene.object_names)
    assert {"ground", "plaza", "fountain", "town_hall"} <= names
    assert sum(n.startswith("tree_") for n in names) >= 4


def test_camera_json_format():
    doc = json.loads((TOWN / "camera.json").read_text())
    assert doc["fps"] == 8 and doc["fov_y_deg"] == 50
    keys = doc["keyframes"]
    times = np.array([k["time"] for k in keys])
    assert times[0] == 0 and times[-1] == pytest.approx(135 / 8)  # 136 frames at 8 fps
    assert np.all(np.diff(times) > 0)
    pos = np.array([k["position"] for k in keys])
    look = np.array([k["look_at"] for k in keys])
    assert np.allclose(pos[:, 1], 2.0)  # eye height
    step = np.linalg.norm(np.diff(pos, axis=0), axis=1) / np.diff(times) / doc["fps"]
    assert step.max() < 0.25  # metres per frame: a walk, so consecutive frames overlap
    assert np.linalg.norm(look - pos, axis=1).min() > 1.0


def test_make_town_regenerates_identical_files(tmp_path):
    subprocess.run(
        [sys.executable, str(EXAMPLES / "make_town.py"), "--out", str(tmp_path)], check=True, timeout=120
    )
    for name in ("town.glb", "style.png", "camera.json", "job.toml"):
        assert (tmp_path / name).read_bytes() == (TOWN / name).read_bytes(), (
            f"{name} differs from examples/town/{name}: rerun `python examples/make_town.py` and commit"
        )
