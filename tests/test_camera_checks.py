"""Camera checks on analytic scenes: a camera inside a closed box, 5 cm from a wall, looking at the sky; each
kind named once with the right frames."""

from __future__ import annotations

import warnings

import numpy as np
import trimesh

from videofrom3d.errors import VideoFrom3DWarning
from videofrom3d.prepare.camera_checks import (
    check_cameras_in_scene,
    frame_ranges,
    scene_close_distance,
    view_flags,
    warn_cameras,
)
from videofrom3d.scene.camera import Camera, intrinsics_from_fov, look_at
from videofrom3d.scene.mesh import make_scene, scale_warning, unit_scale_hint


def box(extents, centre):
    b = trimesh.creation.box(extents, trimesh.transformations.translation_matrix(centre))
    return np.asarray(b.vertices), np.asarray(b.faces)


def scene_of(*boxes):
    verts, faces, offset = [], [], 0
    for v, f in boxes:
        verts.append(v)
        faces.append(f + offset)
        offset += len(v)
    return make_scene(np.concatenate(verts), np.concatenate(faces))


def cam(position, target, w=96, h=64):
    return Camera(intrinsics_from_fov(w, h, fov_y_deg=50), look_at(position, target), w, h)


# a 40 m ground slab, a 10 m x 4 m wall (0.2 m thick, front face at z = -0.1) and a closed 0.7 m pillar
GROUND = box((40, 0.2, 40), (0, -0.1, 0))
WALL = box((10, 4, 0.2), (0, 2, -0.2))
PILLAR = box((0.7, 3, 0.7), (8, 1.5, 8))


def test_each_kind_names_the_right_frames():
    scene = scene_of(GROUND, WALL, PILLAR)
    cams = (
        [cam((0, 1.6, 15 + i), (0, 1.5, 0)) for i in range(3)]  # 0-2: the wall from 15 m, fine
        + [cam((i * 0.5, 1.6, -0.05), (i * 0.5, 1.6, -5)) for i in range(4)]  # 3-6: 5 cm from the wall, facing it
        + [cam((0, 1.6, 12), (0, 50, 11.9))]  # 7: straight up at the sky
        + [cam((-5 + i, 1.6, 12), (-5 + i, 40, 14)) for i in range(2)]  # 8-9: up at the sky
        + [cam((8, 1.5, 8), (8 + i, 1.5, 0)) for i in range(2)]  # 10-11: inside the pillar
        + [cam((0, 1.6, 10), (0, 1.5, 0))]  # 12: fine
    )
    assert check_cameras_in_scene(scene, cams) == {"inside": [10, 11], "close": [3, 4, 5, 6], "empty": [7, 8, 9]}


def test_inside_a_closed_box_is_flagged_and_warned_once_per_kind():
    room = scene_of(box((6, 3, 6), (0, 1.5, 0)))  # outward normals: a solid block, not a room
    cams = [cam((0, 1.5, 0), (np.sin(a), 1.5, np.cos(a))) for a in np.linspace(0, 3, 5)]
    cams.append(cam((0, 1.5, 7), (0, 1.5, 0)))  # outside, looking at it: fine
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = warn_cameras(room, cams)
    assert found == {"inside": [0, 1, 2, 3, 4]}
    lines = [str(w.message) for w in caught if issubclass(w.category, VideoFrom3DWarning)]
    assert lines == ["camera inside closed geometry (the view is mostly the back of faces) at 5 frames: 0-4"]


def test_close_threshold_follows_the_scene_scale():
    # the same wall 5 cm away is "close" in a 40 m scene; scaled by 100 (a 4 km scene in cm) it still is,
    # because the threshold is 1% of the scene's diagonal, not a fixed distance
    scene = scene_of(GROUND, WALL)
    assert np.isclose(scene_close_distance(scene), 0.01 * np.linalg.norm([40, 4.2, 40]))
    big = make_scene(scene.vertices * 100, scene.faces)
    c = cam((0, 160, -5), (0, 160, -500))
    assert check_cameras_in_scene(big, [c]) == {"close": [0]}
    far = cam((0, 160, -200), (0, 160, -500))  # 2 m in a 4 km scene: not close
    assert check_cameras_in_scene(big, [far]) == {}


def test_view_flags_on_buffers():
    h, w = 4, 5
    depth = np.full((h, w), 3.0, np.float32)
    hit = np.ones((h, w), bool)
    rays = np.zeros((h, w, 3), np.float32)
    rays[..., 2] = 1
    facing = np.zeros((h, w, 3), np.float32)
    facing[..., 2] = -1
    assert view_flags(depth, facing, hit, rays, close=1.0) == {"inside": False, "close": False, "empty": False}
    assert view_flags(depth, -facing, hit, rays, close=1.0)["inside"]
    assert view_flags(depth, facing, hit, rays, close=4.0)["close"]
    hit[:, :4] = False
    hit[0, 4] = False  # 3 of 20 pixels hit: under 20%
    assert view_flags(depth, facing, hit, rays, close=1.0)["empty"]


def test_frame_ranges():
    assert frame_ranges([5, 0, 1, 2, 7, 8]) == "0-2, 5, 7-8"
    assert frame_ranges([3]) == "3"


def test_scale_hint():
    assert unit_scale_hint(1472.0) == (0.01, "centimetres")
    assert unit_scale_hint(250_000.0) == (0.001, "millimetres")
    assert unit_scale_hint(40.0) is None and unit_scale_hint(0.5) is None
    level = make_scene(GROUND[0] * 36.8, GROUND[1])  # 1472 units wide
    line = scale_warning(level)
    assert line == ("the scene is 1472 x 7.36 x 1472 units (x, y, z), which as metres is unusually large; if it is "
                    "in centimetres, set [scene] unit_scale = 0.01 (scene info: --unit-scale 0.01)")
    assert scale_warning(scene_of(GROUND)) is None


def test_trajectory_preview_warns_and_shows_every_anchor_view(tmp_path, capsys, monkeypatch):
    """13 frames in arcs of 4 (anchors at frames 0, 4, 8, 12): frames 4-5 inside the pillar, 8 at the sky."""
    from videofrom3d.cli import main
    from videofrom3d.scene import plot
    from videofrom3d.scene.camera import save_cameras

    scene = scene_of(GROUND, WALL, PILLAR)
    trimesh.Trimesh(scene.vertices, scene.faces, process=False).export(tmp_path / "scene.obj")
    cams = [cam((0, 1.6, 15 - i), (0, 1.5, 0)) for i in range(13)]
    cams[4], cams[5] = cam((8, 1.5, 8), (8, 1.5, 0)), cam((8, 1.5, 8), (9, 1.5, 0))
    cams[8] = cam((0, 1.6, 12), (0, 50, 11.9))
    save_cameras(tmp_path / "cams.json", cams)
    (tmp_path / "job.toml").write_text('[scene]\npath = "scene.obj"\n[trajectory]\npath = "cams.json"\n'
                                       "[size]\nwidth = 96\nheight = 64\n[arcs]\nframes_per_arc = 4\n")
    shown = {}
    real = plot.trajectory_picture

    def spy(*a, views=None, **kw):
        shown["views"] = [(label, flagged) for label, _, flagged in views]
        return real(*a, views=views, **kw)

    monkeypatch.setattr(plot, "trajectory_picture", spy)
    assert main(["trajectory", "preview", str(tmp_path / "job.toml"), "-o", str(tmp_path / "p.png")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ["videofrom3d: warning: camera inside closed geometry (the view is mostly the back of faces) at "
                   "2 frames: 4-5",
                   "videofrom3d: warning: view mostly empty (geometry in under 20% of it) at 1 frame: 8"]
    assert shown["views"] == [("anchor 0 (frame 0)", False), ("anchor 1 (frame 4): inside", True),
                              ("anchor 2 (frame 8): empty", True), ("anchor 3 (frame 12)", False)]
    assert (tmp_path / "p.png").is_file()
