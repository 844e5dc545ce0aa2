"""The stable foundation commands: `scene info --json`, `trajectory export`, `trajectory preview`."""

import json

import cv2
import numpy as np
import pytest
import trimesh

from videofrom3d.cli import main


@pytest.fixture
def town(tmp_path):
    """Two boxes on a ground plate as a glb, a keyframe path, and a job file using both."""
    ground = trimesh.creation.box(extents=[40, 0.2, 40])
    ground.apply_translation([0, -0.1, 0])
    a = trimesh.creation.box(extents=[4, 6, 4])
    a.apply_translation([-6, 3, -6])
    b = trimesh.creation.box(extents=[3, 9, 5])
    b.apply_translation([7, 4.5, -2])
    scene = trimesh.Scene()
    for name, m in (("ground", ground), ("tower", a), ("hall", b)):
        scene.add_geometry(m, node_name=name, geom_name=name)
    scene.export(tmp_path / "town.glb")
    keys = [{"position": [x, 1.7, z], "look_at": [0, 2, -8]} for x, z in ((0, 15), (4, 10), (2, 4), (-3, 0))]
    (tmp_path / "cam.json").write_text(json.dumps({"keys": keys, "fov_y": 50}))
    (tmp_path / "job.toml").write_text(
        'name = "mini"\n[scene]\npath = "town.glb"\n[trajectory]\npath = "cam.json"\nframes = 21\n'
        "[size]\nwidth = 160\nheight = 96\n[arcs]\nframes_per_arc = 10\n"
    )
    return tmp_path


def test_scene_info_json_is_exactly_the_stable_object(town, capsys):
    assert main(["scene", "info", str(town / "town.glb"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert list(info) == ["triangles", "objects", "bounds"]
    assert info["triangles"] == 36 and info["objects"] == 3
    assert np.allclose(info["bounds"], [[-20, -0.2, -20], [20, 9, 20]])
    assert main(["scene", "info", str(town / "town.glb")]) == 0
    assert "triangles  36" in capsys.readouterr().out


def test_scene_info_error_is_one_line(town, capsys):
    assert main(["scene", "info", str(town / "missing.glb")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing.glb: file not found" in err


def test_trajectory_export_of_a_job_writes_the_schema(town, capsys):
    out = town / "cams.json"
    assert main(["trajectory", "export", str(town / "job.toml"), "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert list(doc) == ["width", "height", "frames"] and (doc["width"], doc["height"]) == (160, 96)
    assert len(doc["frames"]) == 21 and set(doc["frames"][0]) == {"K", "world_to_cam"}
    K, w2c = np.array(doc["frames"][0]["K"]), np.array(doc["frames"][0]["world_to_cam"])
    assert K.shape == (3, 3) and w2c.shape == (4, 4) and np.allclose(K[:2, 2], [80, 48])
    assert np.allclose(-w2c[:3, :3].T @ w2c[:3, 3], [0, 1.7, 15])  # first camera centre
    # OpenCV: the look-at point projects to the image centre, in front of the camera
    p = w2c @ np.array([0, 2, -8, 1.0])
    assert p[2] > 0 and np.allclose((K @ p[:3])[:2] / p[2], [80, 48])
    # --frames and --size override the job
    assert main(["trajectory", "export", str(town / "job.toml"), "-o", str(out), "--frames", "7", "--size", "320x192"]) == 0
    doc = json.loads(out.read_text())
    assert len(doc["frames"]) == 7 and (doc["width"], doc["height"]) == (320, 192)


def test_trajectory_export_of_a_per_frame_file_keeps_its_frames(town):
    frames = []
    for i in range(5):
        M = np.eye(4)
        M[:3, 3] = [i, 2.0, 10.0]
        frames.append({"file_path": f"{i}.png", "transform_matrix": M.tolist()})
    (town / "transforms.json").write_text(json.dumps({"fl_x": 100.0, "fl_y": 100.0, "w": 200, "h": 100, "frames": frames}))
    out = town / "t.json"
    assert main(["trajectory", "export", str(town / "transforms.json"), "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert (doc["width"], doc["height"]) == (200, 100) and len(doc["frames"]) == 5
    w2c = np.array(doc["frames"][3]["world_to_cam"])
    assert np.allclose(w2c, np.diag([1.0, -1, -1, 1]) @ np.linalg.inv(np.array(frames[3]["transform_matrix"])))
    # an export reads back as a per-frame path
    again = town / "again.json"
    assert main(["trajectory", "export", str(out), "-o", str(again)]) == 0
    assert json.loads(again.read_text()) == doc


def test_trajectory_preview_writes_a_picture(town, capsys):
    png = town / "preview.png"
    assert main(["trajectory", "preview", str(town / "job.toml"), "-o", str(png)]) == 0
    img = cv2.imread(str(png))
    assert img is not None and img.shape[0] > 400 and img.shape[1] > 800
    # the path of arc 0 is drawn in its colour (orange, RGB 230 97 1)
    orange = np.all(np.abs(img.astype(int) - [1, 97, 230]) < 12, axis=2)
    assert orange.sum() > 50
