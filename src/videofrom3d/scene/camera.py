"""Pinhole cameras in the OpenCV convention, and exact converters from the conventions users bring.

Inside videofrom3d a camera is OpenCV: x right, y down, +z forward; ``K`` in pixels with the centre of the
top-left pixel at (0.5, 0.5) (so a centred principal point is ``(W/2, H/2)`` and array pixel ``[y, x]`` is
the continuous point ``(x + 0.5, y + 0.5)``); ``world_to_cam`` is a 4x4 rigid transform.

Conventions converted here (matrices act on column vectors):

- ``F = diag(1, -1, -1, 1)`` flips OpenGL camera axes (x right, y up, looking down -z; used by glTF,
  Blender, nerfstudio, instant-ngp) to OpenCV camera axes and back (it is its own inverse):
  ``cam_to_world_cv = cam_to_world_gl @ F`` and ``world_to_cam_cv = F @ world_to_cam_gl``.
- ``C`` maps a Blender Z-up world to a glTF Y-up world, ``(x, y, z) -> (x, z, -y)``; ``C^-1 = C^T``.

Which function for which source:

- glTF camera node world matrix ``M``, nerfstudio / instant-ngp ``transform_matrix`` (both OpenGL
  camera-to-world): :func:`opengl_to_opencv` gives ``world_to_cam = F @ inv(M)``.
- Blender ``matrix_world`` (OpenGL camera axes in a Z-up world): :func:`blender_to_opencv`, ``F @ inv(M)``,
  or ``F @ inv(C @ M)`` to land in a Y-up world like the scene a glTF export gives.
- COLMAP ``images.txt`` (q, t): already OpenCV world-to-camera, :func:`colmap_to_opencv` = ``[R(q) | t]``.
- Intrinsics: glTF ``yfov`` -> :func:`intrinsics_from_fov`; Blender lens/sensor ->
  :func:`intrinsics_from_focal` with ``focal_mm``, or :func:`blender_intrinsics` for every camera field
  (sensor fit, shift, pixel aspect) exactly as Blender builds its view plane; COLMAP / nerfstudio ``fl_x, fl_y, cx, cy`` are pixels
  with the same pixel-centre convention as ours and are used as they are.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])
"""F: OpenGL <-> OpenCV camera axes; its own inverse."""

BLENDER_TO_GLTF_WORLD = np.array(
    [[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)
"""C: Blender Z-up world -> glTF Y-up world, (x, y, z) -> (x, z, -y)."""


@dataclass(frozen=True, eq=False)
class Camera:
    """A pinhole camera: ``K`` (3, 3) pixels, ``world_to_cam`` (4, 4) OpenCV, image size in pixels."""

    K: np.ndarray
    world_to_cam: np.ndarray
    width: int
    height: int

    def __post_init__(self) -> None:
        K = np.asarray(self.K, dtype=np.float64)
        w2c = np.asarray(self.world_to_cam, dtype=np.float64)
        if K.shape != (3, 3) or w2c.shape != (4, 4):
            raise ValueError(f"Camera needs K (3, 3) and world_to_cam (4, 4), got {K.shape} and {w2c.shape}")
        if not (np.isfinite(K).all() and np.isfinite(w2c).all()):
            raise ValueError("Camera has NaN or inf in K or world_to_cam")
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "world_to_cam", w2c)

    @property
    def cam_to_world(self) -> np.ndarray:
        """(4, 4) inverse of ``world_to_cam``, computed exactly for a rigid transform."""
        return rigid_inverse(self.world_to_cam)

    @property
    def center(self) -> np.ndarray:
        """(3,) camera centre in world coordinates."""
        R, t = self.world_to_cam[:3, :3], self.world_to_cam[:3, 3]
        return -R.T @ t

    @property
    def forward(self) -> np.ndarray:
        """(3,) unit viewing direction (+z of the camera) in world coordinates."""
        return self.world_to_cam[2, :3] / np.linalg.norm(self.world_to_cam[2, :3])

    @property
    def fov_x_deg(self) -> float:
        return math.degrees(2.0 * math.atan(self.width / (2.0 * self.K[0, 0])))

    @property
    def fov_y_deg(self) -> float:
        return math.degrees(2.0 * math.atan(self.height / (2.0 * self.K[1, 1])))

    def resized(self, width: int, height: int) -> Camera:
        """The same camera seen at another resolution (K scaled per axis; pixel-centre convention kept)."""
        sx, sy = width / self.width, height / self.height
        K = self.K.copy()
        K[0] *= sx
        K[1] *= sy
        return Camera(K, self.world_to_cam.copy(), int(width), int(height))

    def to_dict(self) -> dict:
        """The ``trajectory export`` schema of one frame: ``{"K": 3x3, "world_to_cam": 4x4}``."""
        return {"K": self.K.tolist(), "world_to_cam": self.world_to_cam.tolist()}

    @classmethod
    def from_dict(cls, d: dict, width: int, height: int) -> Camera:
        return cls(np.array(d["K"], dtype=np.float64), np.array(d["world_to_cam"], dtype=np.float64), width, height)


def rigid_inverse(T: np.ndarray) -> np.ndarray:
    """(..., 4, 4) inverse of a rigid transform [R | t] as [R^T | -R^T t]."""
    out = np.zeros_like(T, dtype=np.float64)
    R = T[..., :3, :3]
    Rt = np.swapaxes(R, -1, -2)
    out[..., :3, :3] = Rt
    out[..., :3, 3] = -(Rt @ T[..., :3, 3:4])[..., 0]
    out[..., 3, 3] = 1.0
    return out


# ----------------------------------------------------------------------------------------------- intrinsics


def intrinsics_from_fov(
    width: int, height: int, fov_y_deg: float | None = None, fov_x_deg: float | None = None
) -> np.ndarray:
    """(3, 3) K with square pixels and a centred principal point from a vertical or horizontal fov."""
    if (fov_y_deg is None) == (fov_x_deg is None):
        raise ValueError("give exactly one of fov_y_deg and fov_x_deg")
    if fov_y_deg is not None:
        if not 0.0 < fov_y_deg < 180.0:
            raise ValueError(f"fov_y_deg must be in (0, 180), got {fov_y_deg}")
        f = height / (2.0 * math.tan(math.radians(fov_y_deg) / 2.0))
    else:
        if not 0.0 < fov_x_deg < 180.0:
            raise ValueError(f"fov_x_deg must be in (0, 180), got {fov_x_deg}")
        f = width / (2.0 * math.tan(math.radians(fov_x_deg) / 2.0))
    return intrinsics_from_focal(width, height, focal_px=f)


def intrinsics_from_focal(
    width: int,
    height: int,
    focal_px: float | None = None,
    focal_mm: float | None = None,
    sensor_mm: float = 36.0,
    sensor_fit: str = "auto",
    principal: tuple[float, float] | None = None,
) -> np.ndarray:
    """(3, 3) K from a focal length in pixels, or in mm with a sensor size (Blender's sensor fit rules).

    ``sensor_fit``: "auto" (sensor spans the larger image side, Blender's default), "horizontal", "vertical".
    """
    if (focal_px is None) == (focal_mm is None):
        raise ValueError("give exactly one of focal_px and focal_mm")
    if focal_mm is not None:
        span = {"auto": max(width, height), "horizontal": width, "vertical": height}.get(sensor_fit)
        if span is None:
            raise ValueError(f"sensor_fit must be auto, horizontal or vertical, got {sensor_fit!r}")
        focal_px = focal_mm / sensor_mm * span
    if not focal_px > 0:
        raise ValueError(f"focal length must be positive, got {focal_px}")
    cx, cy = principal if principal is not None else (width / 2.0, height / 2.0)
    return np.array([[focal_px, 0.0, cx], [0.0, focal_px, cy], [0.0, 0.0, 1.0]])


def blender_intrinsics(
    width: int,
    height: int,
    lens_mm: float,
    sensor_width_mm: float = 36.0,
    sensor_height_mm: float = 24.0,
    sensor_fit: str = "AUTO",
    shift_x: float = 0.0,
    shift_y: float = 0.0,
    pixel_aspect: tuple[float, float] = (1.0, 1.0),
) -> np.ndarray:
    """(3, 3) K of a Blender perspective camera rendering ``width`` x ``height`` pixels (percentage applied).

    Blender's view plane (``BKE_camera_params_compute_viewplane``): with ``ycor = aspect_y / aspect_x``,
    AUTO fit is HORIZONTAL when ``aspect_x * W >= aspect_y * H``, else VERTICAL; the sensor side is
    ``sensor_width`` for AUTO and HORIZONTAL, ``sensor_height`` for VERTICAL; the fitted span in pixels is
    ``S = W`` (horizontal) or ``ycor * H`` (vertical). Then ``f_x = lens / sensor * S``,
    ``f_y = f_x / ycor``, ``c_x = W / 2 - shift_x * S``, ``c_y = H / 2 + shift_y * S / ycor`` (shift is in
    units of the fitted span; image y runs down, Blender's shift_y up). Pixel centres at +0.5, as ours.
    """
    fit = str(sensor_fit).upper()
    if fit not in ("AUTO", "HORIZONTAL", "VERTICAL"):
        raise ValueError(f"sensor_fit must be AUTO, HORIZONTAL or VERTICAL, got {sensor_fit!r}")
    ax, ay = (float(a) for a in pixel_aspect)
    if not (lens_mm > 0 and sensor_width_mm > 0 and sensor_height_mm > 0 and ax > 0 and ay > 0):
        raise ValueError("lens, sensor sizes and pixel aspect must be positive")
    ycor = ay / ax
    if fit == "AUTO":
        fit = "HORIZONTAL" if ax * width >= ay * height else "VERTICAL"
        sensor = sensor_width_mm
    else:
        sensor = sensor_width_mm if fit == "HORIZONTAL" else sensor_height_mm
    span = width if fit == "HORIZONTAL" else ycor * height
    fx = lens_mm / sensor * span
    return np.array(
        [[fx, 0.0, width / 2.0 - shift_x * span], [0.0, fx / ycor, height / 2.0 + shift_y * span / ycor], [0.0, 0.0, 1.0]]
    )


# ------------------------------------------------------------------------------------------------ extrinsics


def resize_intrinsics(K: np.ndarray, own_size: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """K at ``own_size`` -> K at ``size``: per-axis scale when the aspect matches, else the vertical field of
    view and the pixel aspect are kept (f_x, f_y, c_y scale with the height, c_x with the width)."""
    (W, H), (w, h) = own_size, size
    if (W, H) == (w, h):
        return np.array(K, np.float64)
    sx, sy = w / W, h / H
    out = np.array(K, np.float64)
    if abs(sx - sy) <= 1e-9 * max(sx, sy):
        out[0] *= sx
        out[1] *= sy
    else:
        out[0, 0] *= sy
        out[0, 1] *= sy
        out[0, 2] *= sx
        out[1] *= sy
    return out


def look_at(position, target, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """(4, 4) OpenCV world_to_cam for a camera at ``position`` looking at ``target`` with world ``up``."""
    eye = np.asarray(position, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - eye
    n = np.linalg.norm(z)
    if n < 1e-12:
        raise ValueError("look_at: position and target coincide")
    z /= n
    up = np.asarray(up, dtype=np.float64)
    x = np.cross(z, up)  # camera right; then y = z x x points down, as OpenCV wants
    if np.linalg.norm(x) < 1e-9:  # looking straight along up: pick any perpendicular
        x = np.cross(z, np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 0.0, 1.0]))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])  # rows: camera axes in world coordinates
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = -R @ eye
    return T


def opengl_to_opencv(cam_to_world_gl: np.ndarray) -> np.ndarray:
    """OpenGL/glTF/nerfstudio camera-to-world (4, 4) -> OpenCV world_to_cam: ``F @ inv(c2w_gl)``."""
    return GL_TO_CV @ rigid_inverse(np.asarray(cam_to_world_gl, dtype=np.float64))


def opencv_to_opengl(world_to_cam_cv: np.ndarray) -> np.ndarray:
    """OpenCV world_to_cam -> OpenGL camera-to-world: ``inv(w2c_cv) @ F``."""
    return rigid_inverse(np.asarray(world_to_cam_cv, dtype=np.float64)) @ GL_TO_CV


def blender_to_opencv(matrix_world: np.ndarray, to_y_up: bool = False) -> np.ndarray:
    """Blender camera ``matrix_world`` (OpenGL axes, Z-up world, scale removed) -> OpenCV world_to_cam.

    With ``to_y_up`` the world is also rotated to glTF's Y-up by ``C``: ``w2c = F @ inv(C @ M)``.
    """
    M = remove_scale(np.asarray(matrix_world, dtype=np.float64))
    if to_y_up:
        M = BLENDER_TO_GLTF_WORLD @ M
    return opengl_to_opencv(M)


def opencv_to_blender(world_to_cam_cv: np.ndarray, from_y_up: bool = False) -> np.ndarray:
    """Inverse of :func:`blender_to_opencv`: OpenCV world_to_cam -> Blender camera ``matrix_world``."""
    M = opencv_to_opengl(world_to_cam_cv)
    if from_y_up:
        M = BLENDER_TO_GLTF_WORLD.T @ M
    return M


def colmap_to_opencv(q_wxyz, t) -> np.ndarray:
    """COLMAP ``images.txt`` pose (Hamilton quaternion w first, translation) -> OpenCV world_to_cam
    ``[R(q) | t]``: COLMAP already stores world-to-camera in OpenCV axes."""
    w, x, y, z = np.asarray(q_wxyz, dtype=np.float64)
    T = np.eye(4)
    T[:3, :3] = quat_to_matrix(np.array([x, y, z, w]))
    T[:3, 3] = np.asarray(t, dtype=np.float64)
    return T


def opencv_to_colmap(world_to_cam_cv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`colmap_to_opencv`: (4,) quaternion w, x, y, z (w >= 0) and (3,) translation."""
    T = np.asarray(world_to_cam_cv, dtype=np.float64)
    x, y, z, w = matrix_to_quat(T[:3, :3])
    return np.array([w, x, y, z]), T[:3, 3].copy()


def remove_scale(M: np.ndarray) -> np.ndarray:
    """(4, 4) transform with the scale of each rotation column divided out."""
    out = M.copy()
    out[:3, :3] = M[:3, :3] / np.linalg.norm(M[:3, :3], axis=0, keepdims=True)
    return out


# ------------------------------------------------------------------------------------------------ projection


def project(points_world: np.ndarray, cam: Camera) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) world points -> (N, 2) continuous pixel coordinates and (N,) depth along +z."""
    p = np.asarray(points_world, dtype=np.float64)
    pc = p @ cam.world_to_cam[:3, :3].T + cam.world_to_cam[:3, 3]
    z = pc[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = (pc @ cam.K.T)[:, :2] / z[:, None]
    return uv, z


def unproject(pixels: np.ndarray, depth: np.ndarray, cam: Camera) -> np.ndarray:
    """(N, 2) continuous pixel coordinates and (N,) depth along +z -> (N, 3) world points."""
    uv = np.asarray(pixels, dtype=np.float64)
    d = np.asarray(depth, dtype=np.float64)
    ones = np.ones((uv.shape[0], 1))
    rays = np.concatenate([uv, ones], axis=1) @ np.linalg.inv(cam.K).T  # z = 1
    pc = rays * d[:, None]
    c2w = cam.cam_to_world
    return pc @ c2w[:3, :3].T + c2w[:3, 3]


def pixel_grid(width: int, height: int) -> np.ndarray:
    """(H, W, 2) continuous coordinates of the pixel centres, ``[y, x] -> (x + 0.5, y + 0.5)``."""
    xs = np.arange(width, dtype=np.float64) + 0.5
    ys = np.arange(height, dtype=np.float64) + 0.5
    gx, gy = np.meshgrid(xs, ys)
    return np.stack([gx, gy], axis=-1)


def rotate_points(points: np.ndarray, R: np.ndarray) -> np.ndarray:
    """(..., 3) float32/64 points or directions -> ``points @ R.T`` for a (3, 3) ``R`` (a rotation at every
    call site; OpenCV's transform, since numpy's matmul is several times slower on long, 3-wide arrays)."""
    p = np.ascontiguousarray(points)
    out = cv2.transform(p.reshape(-1, 1, 3), np.asarray(R, dtype=p.dtype))
    return out.reshape(p.shape)


def camera_rays(cam: Camera) -> np.ndarray:
    """(H, W, 3) float32 camera-space directions through the pixel centres, scaled to z = 1 (cached)."""
    key = (cam.width, cam.height, cam.K.tobytes())
    rays = _RAYS.get(key)
    if rays is None:
        Kinv = np.linalg.inv(cam.K)
        grid = pixel_grid(cam.width, cam.height)
        rays = (grid[..., 0:1] * Kinv[:, 0] + grid[..., 1:2] * Kinv[:, 1] + Kinv[:, 2]).astype(np.float32)
        if len(_RAYS) > 8:
            _RAYS.clear()
        _RAYS[key] = rays
    return rays


_RAYS: dict = {}


# ------------------------------------------------------------------------------------------------ rotations


def quat_to_matrix(q_xyzw: np.ndarray) -> np.ndarray:
    """(..., 4) unit quaternions (x, y, z, w; glTF order) -> (..., 3, 3) rotation matrices."""
    q = np.asarray(q_xyzw, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> (4,) unit quaternion (x, y, z, w) with w >= 0."""
    R = np.asarray(R, dtype=np.float64)
    t = np.trace(R)
    if t > 0:
        s = math.sqrt(t + 1.0) * 2
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s]
    elif R[0, 0] > R[1, 1] and R[0, 0] > R[2, 2]:
        s = math.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2]) * 2
        q = [0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s, (R[2, 1] - R[1, 2]) / s]
    elif R[1, 1] > R[2, 2]:
        s = math.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2]) * 2
        q = [(R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s, (R[0, 2] - R[2, 0]) / s]
    else:
        s = math.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1]) * 2
        q = [(R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s, (R[1, 0] - R[0, 1]) / s]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return q if q[3] >= 0 else -q


# ------------------------------------------------------------------------------------------------ files


def save_cameras(path: str | os.PathLike, cameras) -> Path:
    """The ``trajectory export`` JSON (stable): ``{"width", "height", "frames": [{"K", "world_to_cam"}, ...]}``."""
    from videofrom3d.io.atomic import atomic_write_text

    if not cameras:
        raise ValueError("no cameras to save")
    doc = {"width": cameras[0].width, "height": cameras[0].height, "frames": [c.to_dict() for c in cameras]}
    return atomic_write_text(path, json.dumps(doc, indent=1))


def load_cameras(path: str | os.PathLike) -> list[Camera]:
    """Cameras written by :func:`save_cameras`."""
    doc = json.loads(Path(path).read_text())
    w, h = int(doc["width"]), int(doc["height"])
    return [Camera.from_dict(f, w, h) for f in doc["frames"]]
