"""Camera paths: every reader against poses built in the test, timing rules, generators, the writer."""

import json
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from gltf_writer import GltfBuilder
from videofrom3d.scene import trajectory as tr
from videofrom3d.scene import trajectory_formats as fmt
from videofrom3d.scene.camera import GL_TO_CV, project

F = np.diag([1.0, -1.0, -1.0, 1.0])


def trs(t, q_xyzw, s=(1.0, 1.0, 1.0)):
    """Reference T @ R @ S built with scipy (independent of the package's quaternion code)."""
    M = np.eye(4)
    M[:3, :3] = Rotation.from_quat(q_xyzw).as_matrix() @ np.diag(s)
    M[:3, 3] = t
    return M


def f32(a):
    return np.asarray(a, np.float32).astype(np.float64)


# --------------------------------------------------------------------------------------------------- glTF


def build_animated_glb(path):
    """A rig node (static rotation + scale, animated LINEAR translation) holding a camera node (static offset,
    animated LINEAR rotation), plus a second camera with CUBICSPLINE translation and STEP rotation."""
    rng = np.random.default_rng(3)
    g = GltfBuilder()
    g.node(mesh=g.mesh(np.array([[0, 0, 0], [1, 0, 0], [0, 0, 1.0]]), np.array([[0, 1, 2]])), name="ground")
    rig_rot = f32(Rotation.from_euler("y", [30], degrees=True).as_quat())
    rig = g.node(name="rig", rotation=rig_rot, scale=[2.0, 2.0, 2.0])
    times = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    rig_t = f32(rng.uniform(-5, 5, size=(5, 3)))
    g.animate(rig, "translation", times, rig_t)
    cam = g.node(parent=rig, name="shot", camera=g.camera(0.7, aspect=1.5), translation=[0.0, 1.0, 0.5])
    cam_q = f32(Rotation.from_euler("yx", rng.uniform(-60, 60, size=(5, 2)), degrees=True).as_quat())
    g.animate(cam, "rotation", times, cam_q)

    other = g.node(name="other", camera=g.camera(0.9, name="cubic cam"))
    ctimes = np.array([0.0, 1.0, 3.0])
    cvals = f32(rng.uniform(-3, 3, size=(3, 3, 3)))  # per key: in-tangent, value, out-tangent
    g.animate(other, "translation", ctimes, cvals.reshape(9, 3), "CUBICSPLINE")
    sq = f32(Rotation.from_euler("y", [[0], [90], [180]], degrees=True).as_quat())
    g.animate(other, "rotation", ctimes, sq, "STEP")
    g.write(path)
    return times, rig_rot, rig_t, cam_q, (ctimes, cvals, sq)


def expected_w2c(rig_rot, rig_t_i, cam_q_i):
    world = trs(rig_t_i, rig_rot, (2.0, 2.0, 2.0)) @ trs([0.0, 1.0, 0.5], cam_q_i)
    world[:3, :3] /= np.linalg.norm(world[:3, :3], axis=0)  # the rig's scale is not part of the camera
    return F @ np.linalg.inv(world)


@pytest.mark.parametrize("suffix", [".glb", ".gltf"])
def test_gltf_animated_camera_reads_back_the_built_poses(tmp_path, suffix):
    times, rig_rot, rig_t, cam_q, _ = build_animated_glb(tmp_path / f"anim{suffix}")
    traj = fmt.load_trajectory(tmp_path / f"anim{suffix}", camera="shot", size=(720, 480))
    assert traj.timed and np.allclose(traj.times, times)
    cams = traj.resample(5).cameras()  # evenly in time: exactly the key times
    err = max(np.abs(c.world_to_cam - expected_w2c(rig_rot, rig_t[i], cam_q[i])).max() for i, c in enumerate(cams))
    assert err < 1e-6
    f = 480 / (2 * math.tan(0.35))
    assert np.allclose(cams[0].K, [[f, 0, 360], [0, f, 240], [0, 0, 1]])
    # between keys: LINEAR translation and slerped rotation, composed through the rig at that time
    mid = traj.resample(9).cameras()[1]  # t = 0.25
    q = Rotation.from_quat(cam_q[:2])
    from scipy.spatial.transform import Slerp

    q_mid = Slerp([0, 1], q)([0.5]).as_quat()[0]
    want = expected_w2c(rig_rot, (rig_t[0] + rig_t[1]) / 2, q_mid)
    assert np.abs(mid.world_to_cam - want).max() < 1e-6
    # natural frame count: 2 s at the default 8 fps
    assert traj.natural_frames() == 17


def test_gltf_cubicspline_and_step(tmp_path):
    _, _, _, _, (ctimes, cvals, sq) = build_animated_glb(tmp_path / "anim.glb")
    traj = fmt.load_trajectory(tmp_path / "anim.glb", camera="cubic cam")
    t = 0.4  # inside the first interval (dt = 1)
    cams = traj.resample(int(round(3.0 / 0.1)) + 1).cameras()  # frames every 0.1 s
    cam = cams[4]
    s, dt = t / 1.0, 1.0
    h = [2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2]
    pos = h[0] * cvals[0, 1] + h[1] * dt * cvals[0, 2] + h[2] * cvals[1, 1] + h[3] * dt * cvals[1, 0]
    assert np.abs(cam.center - pos).max() < 1e-6
    # STEP: the rotation of key 0 holds until t = 1
    R_want = Rotation.from_quat(sq[0]).as_matrix() @ GL_TO_CV[:3, :3]
    assert np.abs(cam.cam_to_world[:3, :3] - R_want).max() < 1e-6
    R_after = Rotation.from_quat(sq[1]).as_matrix() @ GL_TO_CV[:3, :3]
    assert np.abs(cams[15].cam_to_world[:3, :3] - R_after).max() < 1e-6


def test_gltf_camera_choice_errors(tmp_path):
    build_animated_glb(tmp_path / "anim.glb")
    with pytest.raises(tr.TrajectoryError, match="2 cameras"):
        fmt.load_trajectory(tmp_path / "anim.glb")
    with pytest.raises(tr.TrajectoryError, match="no camera named 'nope'"):
        fmt.load_trajectory(tmp_path / "anim.glb", camera="nope")
    g = GltfBuilder()
    g.node(name="still", camera=g.camera(0.8))
    g.write(tmp_path / "still.glb")
    with pytest.raises(tr.TrajectoryError, match="not animated"):
        fmt.load_trajectory(tmp_path / "still.glb")


# ------------------------------------------------------------------------------ transforms.json and COLMAP


def random_poses(n, seed=0):
    rng = np.random.default_rng(seed)
    w2c = []
    for _ in range(n):
        R = Rotation.random(random_state=rng).as_matrix()
        T = np.eye(4)
        T[:3, :3] = R
        T[:3, 3] = rng.uniform(-4, 4, 3)
        w2c.append(T)
    return np.array(w2c)


def write_colmap(folder, w2c, fx, fy, cx, cy, w, h, order):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cameras.txt").write_text(f"# Camera list\n1 PINHOLE {w} {h} {fx!r} {fy!r} {cx!r} {cy!r}\n")
    lines = ["# Image list with two lines of data per image:", "#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME"]
    for k, i in enumerate(order):
        x, y, z, qw = Rotation.from_matrix(w2c[i][:3, :3]).as_quat().tolist()
        t = w2c[i][:3, 3].tolist()
        lines.append(f"{k + 1} {qw!r} {x!r} {y!r} {z!r} {t[0]!r} {t[1]!r} {t[2]!r} 1 frame_{i:04d}.png")
        lines.append("" if k % 2 else "10.5 20.25 -1 11.0 3.0 7")  # POINTS2D, sometimes empty
    (folder / "images.txt").write_text("\n".join(lines) + "\n")


def write_transforms(path, w2c, fx, fy, cx, cy, w, h, order):
    frames = [
        {"file_path": f"images/frame_{i:04d}.png", "transform_matrix": (np.linalg.inv(w2c[i]) @ F).tolist()}
        for i in order
    ]
    path.write_text(json.dumps({"fl_x": fx, "fl_y": fy, "cx": cx, "cy": cy, "w": w, "h": h, "camera_model": "OPENCV",
                                "frames": frames}))


def test_transforms_json_and_colmap_agree(tmp_path):
    n, (w, h) = 7, (640, 480)
    fx, fy, cx, cy = 500.0, 505.0, 321.5, 238.25
    w2c = random_poses(n)
    order = np.random.default_rng(1).permutation(n)  # files list the frames out of order
    write_colmap(tmp_path / "colmap", w2c, fx, fy, cx, cy, w, h, order)
    write_transforms(tmp_path / "transforms.json", w2c, fx, fy, cx, cy, w, h, order[::-1])
    a = fmt.load_trajectory(tmp_path / "colmap")
    b = fmt.load_trajectory(tmp_path / "transforms.json")
    assert a.per_frame and b.per_frame and (a.width, a.height) == (b.width, b.height) == (w, h)
    ca, cb = a.cameras(), b.cameras()
    assert len(ca) == len(cb) == n
    for i in range(n):
        assert np.abs(ca[i].world_to_cam - w2c[i]).max() < 1e-9
        assert np.abs(cb[i].world_to_cam - w2c[i]).max() < 1e-9
        assert np.allclose(ca[i].K, [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]) and np.allclose(cb[i].K, ca[i].K)


def test_transforms_camera_angle_and_simple_pinhole(tmp_path):
    w2c = random_poses(2, seed=5)
    frames = [{"file_path": f"{i}.png", "transform_matrix": (np.linalg.inv(w2c[i]) @ F).tolist()} for i in range(2)]
    angle = 0.9
    (tmp_path / "transforms.json").write_text(json.dumps({"camera_angle_x": angle, "w": 800, "h": 600, "frames": frames}))
    cam = fmt.load_trajectory(tmp_path).cameras()[1]  # a folder with transforms.json
    f = 800 / (2 * math.tan(angle / 2))
    assert np.allclose(cam.K, [[f, 0, 400], [0, f, 300], [0, 0, 1]])
    col = tmp_path / "c" / "sparse" / "0"
    col.mkdir(parents=True)
    (col / "cameras.txt").write_text(f"1 SIMPLE_PINHOLE 800 600 {f!r} 400 300\n")
    x, y, z, qw = Rotation.from_matrix(w2c[1][:3, :3]).as_quat()
    t = w2c[1][:3, 3]
    (col / "images.txt").write_text(f"1 {qw} {x} {y} {z} {t[0]} {t[1]} {t[2]} 1 a.png\n\n")
    other = fmt.load_trajectory(tmp_path / "c").cameras()[0]
    assert np.abs(other.world_to_cam - cam.world_to_cam).max() < 1e-9 and np.allclose(other.K, cam.K)


def test_colmap_bad_model_and_distortion_warning(tmp_path):
    (tmp_path / "cameras.txt").write_text("1 OPENCV_FISHEYE 100 100 50 50 50 50 0 0 0 0\n")
    (tmp_path / "images.txt").write_text("1 1 0 0 0 0 0 0 1 a.png\n\n")
    with pytest.raises(tr.TrajectoryError, match="OPENCV_FISHEYE is not supported"):
        fmt.load_trajectory(tmp_path)
    (tmp_path / "cameras.txt").write_text("1 OPENCV 100 100 50 50 50 50 0.1 0 0 0\n")
    with pytest.warns(UserWarning, match="distortion"):
        fmt.load_trajectory(tmp_path / "images.txt")


# --------------------------------------------------------------------------------------------- keyframes


def test_constant_speed_spacing_within_one_percent():
    # keys spaced very unevenly: a short hop then long legs with a turn
    doc = {"keys": [{"position": p, "look_at": [0, 0, 0]} for p in ([0, 1, 10], [1.5, 1, 9.5], [8, 2, 6], [12, 1, -5], [2, 3, -9])]}
    traj = fmt.read_keyframes(doc)
    assert traj.resolve_timing("auto") == "constant-speed"
    p = traj.resample(91).positions
    step = np.linalg.norm(np.diff(p, axis=0), axis=1)
    assert step.max() / step.min() < 1.01
    # the same keys sampled per key ("keys") are far from constant speed
    q = traj.resample(91, timing="keys").positions
    step_keys = np.linalg.norm(np.diff(q, axis=0), axis=1)
    assert step_keys.max() / step_keys.min() > 2


def test_timed_keys_sample_evenly_in_time():
    keys = [
        {"position": [0, 0, 0], "quaternion": [0, 0, 0, 1], "time": 0.0},
        {"position": [1, 0, 0], "quaternion": [0, 0, 0, 1], "time": 0.5},  # fast start
        {"position": [2, 0, 0], "quaternion": [0, 0, 0, 1], "time": 2.0},  # slow end
    ]
    traj = fmt.read_keyframes({"keys": keys, "fps": 4})
    assert traj.natural_frames() == 9 and traj.resolve_timing("auto") == "keys"
    r = traj.resample(9)
    assert np.allclose(r.times, np.linspace(0, 2, 9))
    assert np.allclose(r.positions[2], [1, 0, 0]) and np.allclose(r.positions[8], [2, 0, 0])  # t = 0.5, 2.0
    steps = np.diff(r.positions[:, 0])
    assert steps[0] > 2 * steps[-1]  # the ease survives
    # constant speed can be forced
    c = traj.resample(9, timing="constant-speed").positions
    assert np.ptp(np.diff(c[:, 0])) < 0.01


def test_keyframe_json_round_trip_is_exact(tmp_path):
    rng = np.random.default_rng(2)
    for keys in (
        [{"position": rng.normal(size=3).tolist(), "look_at": rng.normal(size=3).tolist(), "fov_y": 41.3, "time": t}
         for t in (0.0, 0.7, 1.9)],
        [{"position": rng.normal(size=3).tolist(), "quaternion": rng.normal(size=4).tolist(), "focal_mm": 31.177}
         for _ in range(4)],
    ):
        a = fmt.read_keyframes({"keys": keys, "width": 720, "height": 480, "frames": 46})
        fmt.write_keyframes(a, tmp_path / "k.json")
        b = fmt.load_trajectory(tmp_path / "k.json")
        for name in ("positions", "rotations", "K", "times", "targets"):
            x, y = getattr(a, name), getattr(b, name)
            assert (x is None and y is None) or np.array_equal(x, y), name
        assert (b.orientation, b.frames, b.width) == (a.orientation, 46, 720)
        assert all(np.array_equal(c.world_to_cam, d.world_to_cam) for c, d in zip(a.resample(46).cameras(), b.resample(46).cameras()))


def test_look_at_keys_look_at_their_targets():
    traj = fmt.read_keyframes({"keys": [{"position": [10, 2, 0], "look_at": [0, 1, 0]}, {"position": [0, 2, 10], "look_at": [0, 1, 0]}],
                              "fov_x": 60})
    for cam in traj.resample(20).cameras():
        uv, z = project(np.array([[0.0, 1.0, 0.0]]), cam)
        assert np.allclose(uv[0], [360, 240], atol=1e-6) and z[0] > 0
    assert math.isclose(traj.cameras()[0].fov_x_deg, 60.0)


@pytest.mark.parametrize(
    "doc, message",
    [
        ({"keys": []}, "non-empty"),
        ({"keys": [{"look_at": [0, 0, 0]}]}, r"keys\[0\] must be an object with \"position\""),
        ({"keys": [{"position": [0, 0]}]}, r"keys\[0\].position must be a list of 3"),
        ({"keys": [{"position": [0, 0, 1]}]}, "needs \"look_at\" or \"quaternion\""),
        ({"keys": [{"position": [0, 0, 1], "look_at": [0, 0, 1]}]}, "look_at equals position"),
        ({"keys": [{"position": [0, 0, 1], "quaternion": [0, 0, 0, 1], "time": 1}, {"position": [1, 0, 1], "quaternion": [0, 0, 0, 1]}]},
         "every key has \"time\""),
        ({"keys": [{"position": [0, 0, 1], "quaternion": [0, 0, 0, 1], "fov_y": 200}]}, "fov_y_deg must be in"),
        ({"keys": [{"position": [0, 0, 1], "quaternion": [0, 0, 0, 1], "time": 1}, {"position": [1, 0, 1], "quaternion": [0, 0, 0, 1], "time": 1}]},
         "increase strictly"),
    ],
)
def test_keyframe_errors(doc, message):
    with pytest.raises(tr.TrajectoryError, match=message):
        fmt.read_keyframes(doc, "cam.json")


def test_unsupported_and_missing_files(tmp_path):
    with pytest.raises(tr.TrajectoryError, match="file not found"):
        fmt.load_trajectory(tmp_path / "nope.json")
    (tmp_path / "cam.fbx").write_text("x")
    with pytest.raises(tr.TrajectoryError, match="unsupported camera path format"):
        fmt.load_trajectory(tmp_path / "cam.fbx")
    (tmp_path / "other.json").write_text('{"hello": 1}')
    with pytest.raises(tr.TrajectoryError, match="not a camera path we know"):
        fmt.load_trajectory(tmp_path / "other.json")


# -------------------------------------------------------------------------------------- generators, sizes


def test_orbit_circles_the_centre_and_looks_at_it():
    traj = tr.orbit(center=[1, 0, 2], radius=5, height=2, degrees=90, fov_y=45)
    cams = traj.resample(46).cameras()
    for cam in cams:
        c = cam.center
        assert math.isclose(math.hypot(c[0] - 1, c[2] - 2), 5, rel_tol=1e-6) and math.isclose(c[1], 2)
        uv, _ = project(np.array([[1.0, 0.0, 2.0]]), cam)
        assert np.allclose(uv[0], [360, 240], atol=1e-6)
    assert np.allclose(cams[0].center, [1, 2, 7]) and np.allclose(cams[-1].center, [6, 2, 2])
    assert math.isclose(cams[0].fov_y_deg, 45.0)


def test_flythrough_looks_ahead_without_targets():
    traj = tr.flythrough([[0, 1, 0], [0, 1, -10], [10, 1, -20]])
    cams = traj.resample(30).cameras()
    assert np.allclose(cams[0].forward, [0, 0, -1], atol=1e-6)
    assert np.dot(cams[-1].forward, [1, 0, 0]) > 0.5
    with pytest.raises(tr.TrajectoryError, match="waypoints"):
        tr.flythrough([[0, 1, 0]])


def test_other_aspect_keeps_vertical_fov():
    traj = fmt.read_keyframes({"keys": [{"position": [0, 0, 0], "quaternion": [0, 0, 0, 1], "fov_y": 50}], "width": 640, "height": 480})
    same = traj.cameras(320, 240)[0]
    wide = traj.cameras(720, 480)[0]
    assert math.isclose(same.fov_y_deg, 50) and math.isclose(same.fov_x_deg, traj.cameras()[0].fov_x_deg)
    assert math.isclose(wide.fov_y_deg, 50) and np.allclose(wide.K[:2, 2], [360, 240]) and wide.K[0, 0] == wide.K[1, 1]
