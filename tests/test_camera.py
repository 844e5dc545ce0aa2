import numpy as np

from videofrom3d.scene.camera import Camera, intrinsics_from_fov, look_at, project, unproject


def test_look_at_axes():
    w2c = look_at([0, 0, 5], [0, 0, 0], up=[0, 1, 0])
    cam = Camera(intrinsics_from_fov(720, 480, fov_y_deg=60), w2c, 720, 480)
    uv, z = project(np.array([[0.0, 0, 0], [1.0, 0, 0], [0.0, 1, 0]]), cam)
    assert np.allclose(uv[0], [360, 240]) and np.isclose(z[0], 5)
    assert uv[1, 0] > 360  # world +x is image right
    assert uv[2, 1] < 240  # world up is image up


def test_project_unproject_round_trip():
    rng = np.random.default_rng(0)
    cam = Camera(intrinsics_from_fov(640, 480, fov_x_deg=70), look_at([3, 2, 1], [0, 0.5, -2]), 640, 480)
    uv = rng.uniform(0, 640, size=(100, 2))
    d = rng.uniform(0.5, 50, size=100)
    uv2, d2 = project(unproject(uv, d, cam), cam)
    assert np.abs(uv2 - uv).max() < 1e-9 and np.abs(d2 - d).max() < 1e-9
