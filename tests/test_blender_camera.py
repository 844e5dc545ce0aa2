"""The Blender extension's camera.json: our reader against Blender's own projection (committed fixtures made
by bpy, and a live bpy run when the bpy environment exists), the glb's animated camera, the intrinsics
rules, and the CLI / job hooks."""

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bpy_env import BPY_PYTHON, ROOT, bpy_env, require_bpy
from videofrom3d.cli import main
from videofrom3d.scene.blender_camera import read_blender_camera
from videofrom3d.scene.camera import BLENDER_TO_GLTF_WORLD, Camera, blender_intrinsics, load_cameras, project
from videofrom3d.scene.trajectory import TrajectoryError, cameras_from_poses
from videofrom3d.scene.trajectory_formats import load_trajectory

FIXTURES = ROOT / "tests" / "fixtures" / "blender"
CASES = ("track_to", "vertical_aspect")


def oracle_errors(folder: Path) -> tuple[float, float, float]:
    """Max pixel error of our camera.json reader against Blender's world_to_camera_view, max world_to_cam
    difference between the glb's animated camera (our glTF reader) and the camera.json, and max pixel error
    of the glb's poses with the camera.json's intrinsics (glTF has no lens shift)."""
    traj = load_trajectory(folder / "camera.json")
    cams = traj.cameras()
    doc = json.loads((folder / "camera.json").read_text())
    oracle = json.loads((folder / "oracle.json").read_text())
    assert [traj.width, traj.height] == oracle["size"] and len(cams) == len(doc["frames"])
    pts = np.array(oracle["points_blender"]) @ BLENDER_TO_GLTF_WORLD[:3, :3].T  # the glb's Y-up world
    numbers = [f["frame"] for f in doc["frames"]]
    json_err = glb_px = 0.0
    glb = load_trajectory(folder / "scene.glb", size=(traj.width, traj.height))
    p, q, K = glb.evaluator(np.array(numbers, np.float64) / traj.fps)  # glTF-Blender-IO: t = frame / fps
    glb_cams = cameras_from_poses(p, q, K, (traj.width, traj.height))
    pose_err = max(float(np.abs(g.world_to_cam - c.world_to_cam).max()) for g, c in zip(glb_cams, cams, strict=True))
    for f, uv in oracle["frames"].items():
        i = numbers.index(int(f))
        ours, depth = project(pts, cams[i])
        assert (depth > 0).all()
        json_err = max(json_err, float(np.abs(ours - np.array(uv)).max()))
        via_glb, _ = project(pts, Camera(cams[i].K, glb_cams[i].world_to_cam, traj.width, traj.height))
        glb_px = max(glb_px, float(np.abs(via_glb - np.array(uv)).max()))
    return json_err, pose_err, glb_px


@pytest.mark.parametrize("case", CASES)
def test_committed_fixtures_match_blenders_projection(case):
    json_err, pose_err, glb_px = oracle_errors(FIXTURES / case)
    assert json_err < 1e-3
    assert pose_err < 1e-5
    assert glb_px < 1e-3


def test_live_bpy_export_matches_blenders_projection(tmp_path):
    require_bpy()
    r = subprocess.run([str(BPY_PYTHON), str(ROOT / "tests/blender/make_oracle.py"), str(tmp_path)],
                       capture_output=True, text=True, env=bpy_env(), timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    for case in CASES:
        json_err, pose_err, glb_px = oracle_errors(tmp_path / case)
        assert json_err < 1e-3 and pose_err < 1e-5 and glb_px < 1e-3, (case, json_err, pose_err, glb_px)


def test_fixture_carries_the_tested_camera():
    doc = json.loads((FIXTURES / "track_to" / "camera.json").read_text())
    fr = doc["frames"]
    assert len(fr) == 48 and doc["fps"] == 24
    assert fr[0]["shift_x"] == pytest.approx(0.1) and fr[0]["lens"] != fr[23]["lens"]  # lens keyed too
    rot = [np.array(f["matrix_world"])[:3, :3] for f in fr]
    assert np.abs(rot[0] - rot[-1]).max() > 0.5  # the Track-To constraint turns the camera


def test_blender_intrinsics_rules():
    # the official camera: 31.177 mm on a 36 mm sensor, 720 px wide -> 623.5 px, 60 degrees
    K = blender_intrinsics(720, 480, 31.177, 36.0)
    assert K[0, 0] == pytest.approx(623.5, abs=0.05) and K[1, 1] == K[0, 0]
    assert math.degrees(2 * math.atan(360 / K[0, 0])) == pytest.approx(60.0, abs=0.01)
    # shift moves the principal point by shift * the fitted span; image y runs down
    K = blender_intrinsics(720, 480, 50.0, 36.0, 24.0, shift_x=0.1, shift_y=0.1)
    assert K[0, 2] == pytest.approx(360 - 72) and K[1, 2] == pytest.approx(240 + 72)
    # AUTO on a portrait image fits the sensor width to the height
    K = blender_intrinsics(480, 720, 36.0, 36.0, 24.0)
    assert K[0, 0] == pytest.approx(720.0)
    # VERTICAL uses sensor_height over the height; non-square pixels stretch f_y
    K = blender_intrinsics(640, 480, 24.0, 36.0, 24.0, "VERTICAL", pixel_aspect=(1.0, 2.0))
    assert K[0, 0] == pytest.approx(24 / 24 * 2 * 480) and K[1, 1] == pytest.approx(480.0)
    with pytest.raises(ValueError, match="sensor_fit"):
        blender_intrinsics(640, 480, 24.0, sensor_fit="DIAGONAL")


def _doc(**changes):
    doc = json.loads((FIXTURES / "track_to" / "camera.json").read_text())
    doc.update(changes)
    return doc


def test_reader_refuses_what_it_cannot_use():
    with pytest.raises(TrajectoryError, match="only perspective"):
        read_blender_camera(_doc(type="ORTHO"), "c.json")
    with pytest.raises(TrajectoryError, match="update videofrom3d"):
        read_blender_camera(_doc(format="videofrom3d.blender-camera/2"), "c.json")
    doc = _doc()
    del doc["frames"][3]["lens"]
    with pytest.raises(TrajectoryError, match=r"frames\[3\] lacks \['lens'\]"):
        read_blender_camera(doc, "c.json")


def test_reader_keeps_the_timeline():
    traj = read_blender_camera(_doc(fps=30, fps_base=1.001, resolution_percentage=50), "c.json")
    assert (traj.width, traj.height) == (360, 240) and traj.fps == pytest.approx(30 / 1.001)
    assert traj.natural_frames() == 48 and traj.times[1] == pytest.approx(1.001 / 30)


def test_trajectory_export_cli_gives_the_frames_as_they_are(tmp_path, capsys):
    src = FIXTURES / "track_to" / "camera.json"
    assert main(["trajectory", "export", str(src), "-o", str(tmp_path / "cams.json")]) == 0
    cams = load_cameras(tmp_path / "cams.json")
    direct = load_trajectory(src).cameras()
    assert len(cams) == 48 and (cams[0].width, cams[0].height) == (720, 480)
    assert max(np.abs(a.K - b.K).max() + np.abs(a.world_to_cam - b.world_to_cam).max() for a, b in zip(cams, direct)) < 1e-9


def test_job_trajectory_path_accepts_the_camera_json(tmp_path):
    from videofrom3d.job import job_cameras, load_job

    for name in ("camera.json", "scene.glb"):
        (tmp_path / name).write_bytes((FIXTURES / "track_to" / name).read_bytes())
    (tmp_path / "job.toml").write_text(
        'name = "b"\nfps = 24\n[scene]\npath = "scene.glb"\n[trajectory]\npath = "camera.json"\n'
        "[size]\nwidth = 720\nheight = 480\n[arcs]\nframes_per_arc = 47\n"
    )
    cams = job_cameras(load_job(tmp_path / "job.toml"))
    direct = load_trajectory(tmp_path / "camera.json").cameras()
    assert len(cams) == 48
    assert max(np.abs(a.world_to_cam - b.world_to_cam).max() for a, b in zip(cams, direct)) < 1e-9
