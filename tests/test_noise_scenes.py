"""Analytic flow fields for the warped-noise tests and benchmark: zoom, rotation, translation, and a camera
moving past a floating square in front of a wall (parallax, occlusion, disocclusion, pixels leaving the
frame), computed exactly with numpy so the noise tests need nothing from the prepare stage.

Every function returns ``flows`` (F-1, H, W, 2) float32 forward flows ``flow_i_to_{i+1}`` in video pixels and
``valid`` (F-1, H, W) bool, the convention of videofrom3d.prepare.flow.
"""

from __future__ import annotations

import numpy as np

from videofrom3d.scene.camera import Camera, intrinsics_from_fov, look_at, pixel_grid


def _mul(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(N, 3) @ matrix.T without BLAS (einsum is ~7x faster than a skinny matmul here)."""
    return np.einsum("ij,kj->ik", points, matrix)


def _rays(cam: Camera) -> np.ndarray:
    """(H*W, 3) camera-space rays with z = 1 through the pixel centres."""
    uv = pixel_grid(cam.width, cam.height).reshape(-1, 2)
    return _mul(np.concatenate([uv, np.ones((len(uv), 1))], axis=1), np.linalg.inv(cam.K))


def _steady(field: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    flows = np.repeat(field[None].astype(np.float32), steps, axis=0)
    return flows, np.ones(flows.shape[:3], dtype=bool)


def zoom_flows(width: int, height: int, factor_per_step: float = 1.02, steps: int = 45):
    """Scaling about the image centre by ``factor_per_step`` each frame (> 1 zooms in: expansion)."""
    uv = pixel_grid(width, height)
    centre = np.array([width / 2.0, height / 2.0])
    return _steady((factor_per_step - 1.0) * (uv - centre), steps)


def rotation_flows(width: int, height: int, degrees_per_step: float = 1.0, steps: int = 45):
    """Rotation about the image centre by ``degrees_per_step`` each frame."""
    uv = pixel_grid(width, height) - np.array([width / 2.0, height / 2.0])
    t = np.deg2rad(degrees_per_step)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return _steady(uv @ rot.T - uv, steps)


def translation_flows(width: int, height: int, dx: float, dy: float, steps: int = 45):
    """Every pixel moves by (dx, dy) video pixels per frame."""
    field = np.empty((height, width, 2), dtype=np.float32)
    field[..., 0], field[..., 1] = dx, dy
    return _steady(field, steps)


WALL_Z = 12.0  # an infinite wall z = 12 ...
SQUARE_Z = 6.0  # ... and a floating square z = 6, |x|, |y| < SQUARE_HALF, in front of it
SQUARE_HALF = 1.5


def path_cameras(width: int, height: int, frames: int = 46) -> list[Camera]:
    """A camera sliding sideways and forward while panning and bobbing: parallax between square and wall."""
    K = intrinsics_from_fov(width, height, fov_y_deg=50.0)
    cams = []
    for i in range(frames):
        t = i / max(frames - 1, 1)
        eye = (-2.0 + 4.0 * t, 0.4 * np.sin(np.pi * t), 2.0 * t)
        target = (-0.5 + 1.5 * t, 0.2 * t, WALL_Z)
        cams.append(Camera(K, look_at(eye, target, up=(0.0, -1.0, 0.0)), width, height))
    return cams


def depth_map(cam: Camera) -> np.ndarray:
    """(H, W) depth along +z of the nearest of square and wall at each pixel centre (exact ray casting)."""
    dirs = _mul(_rays(cam), cam.cam_to_world[:3, :3])  # world direction per unit camera depth
    c = cam.center
    with np.errstate(divide="ignore", invalid="ignore"):
        s_wall = (WALL_Z - c[2]) / dirs[:, 2]
        s_sq = (SQUARE_Z - c[2]) / dirs[:, 2]
    hit = c[None, :2] + s_sq[:, None] * dirs[:, :2]
    on_sq = (s_sq > 0) & (np.abs(hit) < SQUARE_HALF).all(axis=1)
    depth = np.where(on_sq, s_sq, s_wall)
    return depth.reshape(cam.height, cam.width)


def camera_path_flows(width: int, height: int, frames: int = 46):
    """Exact forward flows along :func:`path_cameras`: ``valid`` where the point is visible in both frames."""
    cams = path_cameras(width, height, frames)
    depths = [depth_map(c) for c in cams]
    uv = pixel_grid(width, height).reshape(-1, 2)
    flows = np.empty((frames - 1, height, width, 2), dtype=np.float32)
    valid = np.empty((frames - 1, height, width), dtype=bool)
    for i in range(frames - 1):
        ci, cj = cams[i], cams[i + 1]
        d = depths[i].reshape(-1)
        pts = _mul(_rays(ci) * d[:, None], ci.cam_to_world[:3, :3]) + ci.cam_to_world[:3, 3]
        pc = _mul(pts, cj.world_to_cam[:3, :3]) + cj.world_to_cam[:3, 3]
        z_j = pc[:, 2]
        uv_j = _mul(pc, cj.K)[:, :2] / z_j[:, None]
        flows[i] = (uv_j - uv).reshape(height, width, 2)
        px = np.floor(uv_j).astype(np.int64)
        inside = (px[:, 0] >= 0) & (px[:, 0] < width) & (px[:, 1] >= 0) & (px[:, 1] < height) & (z_j > 0)
        seen = np.zeros(len(uv), dtype=bool)
        dj = depths[i + 1][px[inside, 1], px[inside, 0]]
        seen[inside] = np.abs(dj - z_j[inside]) < 0.05 * z_j[inside]
        valid[i] = seen.reshape(height, width)
    return flows, valid


def town_flows(width: int, height: int):
    """Forward flows of the bundled example's first arc through the prepare stage (the one scene here that
    is rendered, not analytic); raises whatever a checkout without the example or a renderer raises."""
    from videofrom3d.job import job_cameras, load_job
    from videofrom3d.paths import example_job
    from videofrom3d.prepare.flow import arc_flows
    from videofrom3d.prepare.gbuffer import make_renderer
    from videofrom3d.scene.mesh import load_scene

    job = load_job(example_job())
    scene = load_scene(job.scene.path, up=job.scene.up, unit_scale=job.scene.unit_scale)
    cams = [c.resized(width, height) for c in job_cameras(job)[: job.frames_per_arc + 1]]
    renderer = make_renderer(scene, "auto")
    fwd, fwd_valid, _, _ = arc_flows([renderer.render(c) for c in cams], cams)
    return fwd, fwd_valid
