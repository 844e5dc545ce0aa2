"""The bundled example (examples/town): loads, has the promised size, and make_town.py regenerates it exactly."""

from __future__ import annotations

import importlib.util
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


def _make_town():
    spec = importlib.util.spec_from_file_location("make_town", EXAMPLES / "make_town.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_camera_json_format():
    doc = json.loads((TOWN / "camera.json").read_text())
    assert doc["fps"] == 8 and doc["fov_y"] == 50
    keys = doc["keys"]
    times = np.array([k["time"] for k in keys])
    assert times[0] == 0 and times[-1] == pytest.approx(135 / 8)  # 136 frames at 8 fps
    assert np.all(np.diff(times) > 0)
    pos = np.array([k["position"] for k in keys])
    look = np.array([k["look_at"] for k in keys])
    assert np.allclose(pos[:, 1], 2.0)  # eye height
    step = np.linalg.norm(np.diff(pos, axis=0), axis=1) / np.diff(times) / doc["fps"]
    assert step.max() < 0.25  # metres per frame: a walk, so consecutive frames overlap
    assert np.linalg.norm(look - pos, axis=1).min() > 1.0


def test_job_cameras_follow_the_designed_walk():
    """The trajectory reader turns camera.json into the per-frame path make_town.py designed."""
    from videofrom3d.job import job_cameras

    cams = job_cameras(load_job(paths.example_job()))
    assert len(cams) == 136 and (cams[0].width, cams[0].height) == (720, 480)
    fy = 240 / np.tan(np.radians(25))  # 50 degrees vertical
    assert cams[0].K[1, 1] == pytest.approx(fy, rel=1e-6)
    pos, view = _make_town().camera_frames()
    centres = np.array([c.center for c in cams])
    forward = np.array([c.world_to_cam[2, :3] for c in cams])
    assert np.abs(centres - pos).max() < 0.02
    assert np.degrees(np.arccos(np.clip((forward * view).sum(1), -1, 1))).max() < 0.5


def test_walk_sees_the_town_and_never_enters_it():
    """Coarse ray casting along the whole path: every frame mostly hits geometry, nothing within 1.5 m of
    the eye in view, and the only thing below the eye is the ground about 2 m down."""
    trimesh = pytest.importorskip("trimesh")
    from trimesh.ray.ray_pyembree import RayMeshIntersector

    from videofrom3d.job import job_cameras

    scene = load_scene(TOWN / "town.glb")
    rays = RayMeshIntersector(trimesh.Trimesh(scene.vertices, scene.faces, process=False))
    cams = job_cameras(load_job(paths.example_job()))
    w, h = 36, 24
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    for cam in cams[::3]:
        K = cam.K * np.array([[w / cam.width], [h / cam.height], [1]])
        d_cam = np.stack([(xs - K[0, 2]) / K[0, 0], (ys - K[1, 2]) / K[1, 1], np.ones_like(xs)], -1).reshape(
            -1, 3
        )
        d_world = d_cam @ cam.world_to_cam[:3, :3]
        origins = np.repeat(cam.center[None], len(d_world), 0)
        _, hit_ray, loc = rays.intersects_id(origins, d_world, multiple_hits=False, return_locations=True)
        depth = (loc - cam.center) @ cam.world_to_cam[2, :3]
        assert len(hit_ray) / len(d_world) > 0.6
        assert depth.min() > 1.5
        down = rays.intersects_location(cam.center[None], np.array([[0.0, -1.0, 0.0]]))[0]
        assert 1.8 < cam.center[1] - down[:, 1].max() < 2.1


def test_make_town_regenerates_identical_files(tmp_path):
    subprocess.run(
        [sys.executable, str(EXAMPLES / "make_town.py"), "--out", str(tmp_path)], check=True, timeout=120
    )
    for name in ("town.glb", "camera.json", "job.toml"):
        assert (tmp_path / name).read_bytes() == (TOWN / name).read_bytes(), (
            f"{name} differs from examples/town/{name}: rerun `python examples/make_town.py` and commit"
        )
    # PNG bytes depend on the zlib build; the pixels must not.
    from videofrom3d.io import read_image

    assert np.array_equal(read_image(tmp_path / "style.png"), read_image(TOWN / "style.png"))
