"""Cameras: axes, intrinsics, the exact OpenGL / Blender / COLMAP conversions, projection round trips."""

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from videofrom3d.scene.camera import (
    BLENDER_TO_GLTF_WORLD,
    GL_TO_CV,
    Camera,
    blender_to_opencv,
    camera_rays,
    colmap_to_opencv,
    intrinsics_from_focal,
    intrinsics_from_fov,
    look_at,
    matrix_to_quat,
    opencv_to_blender,
    opencv_to_colmap,
    opencv_to_opengl,
    opengl_to_opencv,
    pixel_grid,
    project,
    quat_to_matrix,
    rotate_points,
    unproject,
)


def random_rigid(rng):
    T = np.eye(4)
    T[:3, :3] = Rotation.random(random_state=rng).as_matrix()
    T[:3, 3] = rng.uniform(-5, 5, 3)
    return T


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
    # and the other way: unproject(project(p)) == p
    p = rng.uniform(-3, 3, size=(50, 3)) + np.array([0, 0.5, -2])
    uv3, z3 = project(p, cam)
    assert np.abs(unproject(uv3, z3, cam) - p).max() < 1e-9


def test_opengl_opencv_round_trip_and_axes():
    rng = np.random.default_rng(1)
    for _ in range(5):
        c2w_gl = random_rigid(rng)
        w2c_cv = opengl_to_opencv(c2w_gl)
        assert np.abs(opencv_to_opengl(w2c_cv) - c2w_gl).max() < 1e-12
        assert np.abs(w2c_cv - GL_TO_CV @ np.linalg.inv(c2w_gl)).max() < 1e-12
    # an OpenGL camera at the origin looking down -z: a point at z = -3 is 3 in front, world +y is image up
    w2c = opengl_to_opencv(np.eye(4))
    cam = Camera(intrinsics_from_fov(100, 100, fov_y_deg=90), w2c, 100, 100)
    uv, z = project(np.array([[0.0, 0.0, -3.0], [0.0, 1.0, -3.0]]), cam)
    assert np.allclose(z, 3) and np.allclose(uv[0], [50, 50]) and uv[1, 1] < 50


def test_blender_conversion_matches_gltf_export():
    rng = np.random.default_rng(2)
    M = random_rigid(rng)  # Blender matrix_world, Z-up world
    w2c_z = blender_to_opencv(M)
    w2c_y = blender_to_opencv(M, to_y_up=True)
    p_blender = rng.uniform(-2, 2, size=(10, 3))
    p_gltf = p_blender @ BLENDER_TO_GLTF_WORLD[:3, :3].T  # (x, y, z) -> (x, z, -y)
    assert np.allclose(p_gltf[:, 1], p_blender[:, 2]) and np.allclose(p_gltf[:, 2], -p_blender[:, 1])
    K = intrinsics_from_fov(64, 64, fov_y_deg=60)
    uv_z, _ = project(p_blender, Camera(K, w2c_z, 64, 64))
    uv_y, _ = project(p_gltf, Camera(K, w2c_y, 64, 64))
    assert np.abs(uv_z - uv_y).max() < 1e-9  # the same picture in either world
    assert np.abs(opencv_to_blender(w2c_y, from_y_up=True) - M).max() < 1e-12
    # scale in matrix_world is removed
    S = M @ np.diag([2.0, 2.0, 2.0, 1.0])
    assert np.abs(blender_to_opencv(S) - w2c_z).max() < 1e-12


def test_colmap_round_trip():
    rng = np.random.default_rng(3)
    T = random_rigid(rng)
    q, t = opencv_to_colmap(T)
    assert q[0] >= 0 and np.abs(colmap_to_opencv(q, t) - T).max() < 1e-12
    x, y, z, w = Rotation.from_matrix(T[:3, :3]).as_quat()
    assert np.allclose(quat_to_matrix(np.array([x, y, z, w])), T[:3, :3])
    assert np.allclose(np.abs(matrix_to_quat(T[:3, :3])), np.abs([x, y, z, w]))


def test_intrinsics():
    K = intrinsics_from_fov(720, 480, fov_x_deg=60)
    assert math.isclose(K[0, 0], 360 / math.tan(math.radians(30))) and np.allclose(K[:2, 2], [360, 240])
    # the official camera: 31.177 mm on a 36 mm sensor at 720 px wide -> 623.5 px, 60 degrees horizontal
    K = intrinsics_from_focal(720, 480, focal_mm=31.177, sensor_mm=36.0)
    assert abs(K[0, 0] - 623.5) < 0.05
    assert math.isclose(Camera(K, np.eye(4), 720, 480).fov_x_deg, 60.0, abs_tol=0.01)
    assert intrinsics_from_focal(480, 720, focal_mm=36.0, sensor_fit="vertical")[1, 1] == 720
    with pytest.raises(ValueError):
        intrinsics_from_fov(10, 10, fov_y_deg=180)
    with pytest.raises(ValueError):
        intrinsics_from_focal(10, 10)


def test_pixel_centres_and_resize():
    g = pixel_grid(4, 3)
    assert g.shape == (3, 4, 2) and np.allclose(g[0, 0], [0.5, 0.5]) and np.allclose(g[2, 3], [3.5, 2.5])
    cam = Camera(intrinsics_from_fov(8, 6, fov_y_deg=50), look_at([0, 0, 4], [0, 0, 0]), 8, 6)
    big = cam.resized(16, 12)
    p = np.array([[0.3, -0.2, 0.5]])
    uv, _ = project(p, cam)
    uv2, _ = project(p, big)
    assert np.allclose(uv2, uv * 2)  # continuous coordinates scale exactly with centres at +0.5
    assert Camera.from_dict(cam.to_dict(), 8, 6).K.tolist() == cam.K.tolist()
    with pytest.raises(ValueError):
        Camera(np.eye(3), np.full((4, 4), np.nan), 8, 6)


def test_camera_rays_pass_through_pixel_centres_and_rotate_points_is_a_matmul():
    K = np.array([[100.0, 0.0, 80.0], [0.0, 90.0, 60.0], [0.0, 0.0, 1.0]])
    cam = Camera(K, np.eye(4), 160, 120)
    rays = camera_rays(cam)
    assert rays.shape == (120, 160, 3) and rays.dtype == np.float32
    assert np.allclose(rays[60, 80], [0.5 / 100, 0.5 / 90, 1.0])  # centre (80.5, 60.5)
    assert np.allclose(rays[0, 0], [(0.5 - 80) / 100, (0.5 - 60) / 90, 1.0])
    rng = np.random.default_rng(3)
    R = random_rigid(rng)[:3, :3]
    for dtype in (np.float32, np.float64):
        pts = rng.normal(size=(7, 5, 3)).astype(dtype)
        out = rotate_points(pts, R)
        assert out.dtype == dtype and out.shape == pts.shape
        assert np.allclose(out, pts @ R.T, atol=1e-5 if dtype == np.float32 else 1e-12)
