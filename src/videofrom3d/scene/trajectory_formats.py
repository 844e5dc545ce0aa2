"""Readers for the camera-path formats users bring, and the writer of our keyframe JSON.

Every reader converts to one representation, :class:`~videofrom3d.scene.trajectory.Trajectory` (OpenCV
cameras; see there for image size, timing and interpolation). The conversions (matrices act on column
vectors; ``F = diag(1, -1, -1, 1)``, see :mod:`videofrom3d.scene.camera`):

- glTF / GLB animated camera: node world matrix ``M(t)`` (parents' T*R*S composed per frame; OpenGL camera
  axes, looking down -z) -> ``world_to_cam = F @ inv(M(t))``; ``f_y = H / (2 tan(yfov / 2))``.
- nerfstudio / instant-ngp ``transforms.json``: ``transform_matrix`` is an OpenGL camera-to-world, so
  ``world_to_cam = F @ inv(transform_matrix)``; ``fl_x``/``fl_y``/``cx``/``cy`` in pixels or
  ``camera_angle_x``/``camera_angle_y``. Poses are kept in the file's world (``applied_transform`` and
  instant-ngp's ``scale``/``offset`` are not undone): the scene must be in that same world.
- COLMAP text model: ``images.txt`` holds ``QW QX QY QZ TX TY TZ``, already an OpenCV world-to-camera
  ``[R(q) | t]``; ``cameras.txt`` PINHOLE / SIMPLE_PINHOLE / SIMPLE_RADIAL / RADIAL / OPENCV.
- Pixel centres: COLMAP, nerfstudio and Blender put the top-left pixel's centre at (0.5, 0.5), as we do,
  so principal points are taken as they are.
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from pathlib import Path

import numpy as np

from videofrom3d.scene.blender_camera import is_blender_camera, read_blender_camera
from videofrom3d.scene.camera import (
    GL_TO_CV,
    intrinsics_from_focal,
    intrinsics_from_fov,
    quat_to_matrix,
    remove_scale,
    resize_intrinsics,
)
from videofrom3d.scene.gltf import local_matrix, parents, read_accessor, read_gltf, trs_matrices
from videofrom3d.scene.trajectory import (
    DEFAULT_FOV_X,
    DEFAULT_SIZE,
    KEYFRAME_FORMAT,
    Trajectory,
    TrajectoryError,
    _hermite,
    _look_at_quats,
    _nonzero_directions,
    _vector,
    note,
    poses_from_world_to_cam,
)

# ------------------------------------------------------------------------------------------------ loading


def load_trajectory(
    path: str | os.PathLike,
    camera: str | None = None,
    size: tuple[int, int] | None = None,
) -> Trajectory:
    """Read a camera path: our keyframe JSON, a ``trajectory export`` JSON, the Blender extension's
    camera.json, a .glb/.gltf with an animated camera (``camera`` picks it by node or camera name), a
    transforms.json, or a COLMAP text model (its folder, or cameras.txt / images.txt). ``size`` is used where the file states no image size."""
    path = Path(path)
    if not path.exists():
        raise TrajectoryError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if path.is_dir():
        if _colmap_files(path) is not None:
            return read_colmap(path)
        if (path / "transforms.json").is_file():
            return read_transforms_json(path / "transforms.json", size=size)
        raise TrajectoryError(f"{path}: a folder must hold a COLMAP text model or a transforms.json")
    if suffix in (".glb", ".gltf"):
        return read_gltf_camera(path, camera=camera, size=size)
    if path.name in ("cameras.txt", "images.txt"):
        return read_colmap(path.parent)
    if suffix == ".bin" and path.stem in ("cameras", "images"):
        raise TrajectoryError(
            f"{path}: binary COLMAP models are not read; convert with "
            "`colmap model_converter --input_path DIR --output_path DIR --output_type TXT`"
        )
    if suffix == ".json":
        doc = _read_json(path)
        if is_blender_camera(doc):
            return read_blender_camera(doc, path)
        if isinstance(doc, dict) and "keys" in doc:
            return read_keyframes(doc, path, size=size)
        frames = doc.get("frames") if isinstance(doc, dict) else None
        if isinstance(frames, list) and frames and isinstance(frames[0], dict):
            if "transform_matrix" in frames[0]:
                return read_transforms_json(path, size=size, doc=doc)
            if "world_to_cam" in frames[0]:
                return read_camera_export(doc, path)
        raise TrajectoryError(
            f"{path}: not a camera path we know (our keyframes have \"keys\"; transforms.json has "
            "\"frames\" with \"transform_matrix\"; a trajectory export has \"frames\" with \"world_to_cam\")"
        )
    raise TrajectoryError(
        f"{path}: unsupported camera path format {suffix or path.name!r}; use our .json keyframes, "
        ".glb/.gltf, transforms.json or a COLMAP text model"
    )


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TrajectoryError(f"{path}: not valid JSON ({e})") from e


# ------------------------------------------------------------------------------------------ our keyframes


def read_keyframes(doc: dict, path: Path | str = "<keyframes>", size: tuple[int, int] | None = None) -> Trajectory:
    """Our keyframe JSON (see :func:`write_keyframes`)::

        {"width": 720, "height": 480, "fps": 8, "frames": 136, "up": [0, 1, 0],
         "keys": [{"position": [x, y, z], "look_at": [x, y, z], "fov_y": 50, "time": 0.0},
                  {"position": [...], "quaternion": [x, y, z, w], "K": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]}]}

    ``quaternion`` is the OpenCV camera-to-world rotation (x right, y down, z forward), x, y, z, w.
    Intrinsics per key: ``K`` (pixels at width x height), ``fov_y`` / ``fov_x`` (degrees) or ``focal_mm``
    (+ ``sensor_mm``, default 36, Blender's auto fit); a key without them keeps the previous key's, the
    first key defaults to the top-level ones, else a 60 degree horizontal field of view.
    ``"look": "ahead"`` lets keys without an orientation look along the path.
    """
    where = str(path)
    if not isinstance(doc.get("keys"), list) or not doc["keys"]:
        raise TrajectoryError(f"{where}: \"keys\" must be a non-empty list of camera keys")
    width = _int_field(doc, "width", where, size[0] if size else DEFAULT_SIZE[0])
    height = _int_field(doc, "height", where, size[1] if size else DEFAULT_SIZE[1])
    up = _vector(doc.get("up", [0.0, 1.0, 0.0]), f"{where}: \"up\"")
    look = doc.get("look", "keys")
    if look not in ("keys", "ahead"):
        raise TrajectoryError(f"{where}: \"look\" must be \"keys\" or \"ahead\", got {look!r}")
    keys = doc["keys"]
    positions, rotations, targets, Ks, times = [], [], [], [], []
    K_prev = _key_intrinsics(doc, width, height, f"{where}: top level", None)
    for i, key in enumerate(keys):
        kw = f"{where}: keys[{i}]"
        if not isinstance(key, dict) or "position" not in key:
            raise TrajectoryError(f"{kw} must be an object with \"position\"")
        p = _vector(key["position"], f"{kw}.position")
        positions.append(p)
        has_target, has_quat = "look_at" in key, "quaternion" in key
        if has_target and has_quat:
            raise TrajectoryError(f"{kw}: give \"look_at\" or \"quaternion\", not both")
        if look == "ahead":
            if has_target or has_quat:
                raise TrajectoryError(f"{kw}: with \"look\": \"ahead\" keys carry no look_at or quaternion")
            rotations.append(None)
        elif has_target:
            t = _vector(key["look_at"], f"{kw}.look_at")
            if np.linalg.norm(t - p) < 1e-12:
                raise TrajectoryError(f"{kw}: look_at equals position")
            targets.append(t)
            rotations.append(_look_at_quats(p[None], t[None], up)[0])
        elif has_quat:
            q = _vector(key["quaternion"], f"{kw}.quaternion", 4)
            if np.linalg.norm(q) < 1e-9:
                raise TrajectoryError(f"{kw}.quaternion must be a unit quaternion (x, y, z, w)")
            rotations.append(q / np.linalg.norm(q))
            targets.append(None)
        else:
            raise TrajectoryError(f"{kw} needs \"look_at\" or \"quaternion\" (or \"look\": \"ahead\" at the top)")
        K_prev = _key_intrinsics(key, width, height, kw, K_prev)
        Ks.append(K_prev)
        if "time" in key:
            times.append(_float(key["time"], f"{kw}.time"))
    if times and len(times) != len(keys):
        raise TrajectoryError(f"{where}: either every key has \"time\" or none does")
    if times and len(times) > 1 and np.any(np.diff(times) <= 0):
        raise TrajectoryError(f"{where}: key times must increase strictly")
    orientation = "ahead" if look == "ahead" else ("targets" if all(t is not None for t in targets) else "rotations")
    P = np.array(positions)
    if orientation == "ahead":
        d = _nonzero_directions(_hermite(np.arange(len(P), dtype=np.float64), P)(np.arange(len(P)), 1), P)
        Q = _look_at_quats(P, P + d, up)
    else:
        Q = np.array(rotations)
    frames = doc.get("frames")
    if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int) or frames < 1):
        raise TrajectoryError(f"{where}: \"frames\" must be a positive integer, got {frames!r}")
    fps = doc.get("fps")
    if fps is not None:
        fps = _float(fps, f"{where}: \"fps\"")
        if fps <= 0:
            raise TrajectoryError(f"{where}: \"fps\" must be positive")
    per_frame = doc.get("per_frame", False)
    if not isinstance(per_frame, bool):
        raise TrajectoryError(f"{where}: \"per_frame\" must be true or false")
    return Trajectory(
        P, Q, np.array(Ks), width, height,
        times=np.array(times) if times else None,
        targets=np.array(targets) if orientation == "targets" else None,
        orientation=orientation, up=tuple(up), per_frame=per_frame, frames=frames, fps=fps, source=where,
    )


def _key_intrinsics(d: dict, width: int, height: int, where: str, previous: np.ndarray | None) -> np.ndarray | None:
    given = [k for k in ("K", "fov_y", "fov_x", "focal_mm") if k in d]
    if len(given) > 1:
        raise TrajectoryError(f"{where}: give one of K, fov_y, fov_x, focal_mm; got {given}")
    try:
        if "K" in d:
            K = np.array(d["K"], dtype=np.float64)
            if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
                raise TrajectoryError(f"{where}.K must be a 3x3 matrix [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]")
            return K
        if "fov_y" in d:
            return intrinsics_from_fov(width, height, fov_y_deg=_float(d["fov_y"], f"{where}.fov_y"))
        if "fov_x" in d:
            return intrinsics_from_fov(width, height, fov_x_deg=_float(d["fov_x"], f"{where}.fov_x"))
        if "focal_mm" in d:
            sensor = _float(d.get("sensor_mm", 36.0), f"{where}.sensor_mm")
            return intrinsics_from_focal(width, height, focal_mm=_float(d["focal_mm"], f"{where}.focal_mm"), sensor_mm=sensor)
    except (ValueError, TypeError) as e:
        if isinstance(e, TrajectoryError):
            raise
        raise TrajectoryError(f"{where}: {e}") from e
    if previous is not None:
        return previous
    return intrinsics_from_fov(width, height, fov_x_deg=DEFAULT_FOV_X)


def write_keyframes(traj: Trajectory, path: str | os.PathLike) -> Path:
    """Write ``traj``'s keys as our keyframe JSON; :func:`load_trajectory` reads back the same arrays
    (positions, quaternions or look-at points, K, times; floats written with full precision)."""
    from videofrom3d.io.atomic import atomic_write_text

    doc: dict = {"format": KEYFRAME_FORMAT, "version": 1, "width": traj.width, "height": traj.height}
    if traj.fps is not None:
        doc["fps"] = traj.fps
    if traj.frames is not None:
        doc["frames"] = int(traj.frames)
    if traj.per_frame:
        doc["per_frame"] = True
    doc["up"] = list(traj.up)
    if traj.orientation == "ahead":
        doc["look"] = "ahead"
    keys = []
    for i in range(len(traj)):
        key: dict = {"position": traj.positions[i].tolist()}
        if traj.orientation == "targets":
            key["look_at"] = traj.targets[i].tolist()
        elif traj.orientation == "rotations":
            key["quaternion"] = traj.rotations[i].tolist()
        key["K"] = traj.K[i].tolist()
        if traj.times is not None:
            key["time"] = float(traj.times[i])
        keys.append(key)
    doc["keys"] = keys
    return atomic_write_text(path, json.dumps(doc, indent=1))


def read_camera_export(doc: dict, path: Path | str) -> Trajectory:
    """The ``trajectory export`` schema ``{"width", "height", "frames": [{"K", "world_to_cam"}]}``, per frame."""
    where = str(path)
    try:
        width, height = int(doc["width"]), int(doc["height"])
        K = np.array([f["K"] for f in doc["frames"]], np.float64).reshape(-1, 3, 3)
        w2c = np.array([f["world_to_cam"] for f in doc["frames"]], np.float64).reshape(-1, 4, 4)
    except (KeyError, TypeError, ValueError) as e:
        raise TrajectoryError(f"{where}: a trajectory export needs width, height and frames of K and world_to_cam ({e})") from e
    p, q = poses_from_world_to_cam(w2c)
    return Trajectory(p, q, K, width, height, per_frame=True, source=where)


# --------------------------------------------------------------------------------------- transforms.json


def read_transforms_json(
    path: str | os.PathLike, size: tuple[int, int] | None = None, doc: dict | None = None
) -> Trajectory:
    """nerfstudio / instant-ngp ``transforms.json``: OpenGL camera-to-world per frame, ``world_to_cam =
    F @ inv(transform_matrix)``. Frames are ordered by ``file_path`` (as nerfstudio does)."""
    path = Path(path)
    where = str(path)
    doc = _read_json(path) if doc is None else doc
    frames = doc.get("frames")
    if not isinstance(frames, list) or not frames:
        raise TrajectoryError(f"{where}: \"frames\" must be a non-empty list")
    if any("file_path" in f for f in frames):
        frames = sorted(frames, key=lambda f: _natural_key(str(f.get("file_path", ""))))
    Ks, sizes, w2cs = [], [], []
    distorted = False
    for i, fr in enumerate(frames):
        fw = f"{where}: frames[{i}]"

        def get(key, fr=fr):
            return fr.get(key, doc.get(key))

        M = np.array(fr.get("transform_matrix"), dtype=np.float64)
        if M.shape == (3, 4):
            M = np.vstack([M, [0.0, 0.0, 0.0, 1.0]])
        if M.shape != (4, 4) or not np.isfinite(M).all():
            raise TrajectoryError(f"{fw}.transform_matrix must be a finite 4x4 (or 3x4) matrix")
        w2cs.append(GL_TO_CV @ _rigid_inverse_checked(M, fw))
        cx, cy = get("cx"), get("cy")
        w, h = get("w"), get("h")
        if w is None:
            w = 2 * cx if cx is not None else (size[0] if size else None)
        if h is None:
            h = 2 * cy if cy is not None else (size[1] if size else None)
        if w is None or h is None:
            w, h = DEFAULT_SIZE
        w, h = int(round(w)), int(round(h))
        fx, fy = get("fl_x"), get("fl_y")
        if fx is None and get("camera_angle_x") is not None:
            fx = w / (2.0 * math.tan(float(get("camera_angle_x")) / 2.0))
        if fy is None and get("camera_angle_y") is not None:
            fy = h / (2.0 * math.tan(float(get("camera_angle_y")) / 2.0))
        fx = fx if fx is not None else fy
        fy = fy if fy is not None else fx
        if fx is None:
            raise TrajectoryError(f"{fw}: no intrinsics (fl_x/fl_y or camera_angle_x)")
        cx = w / 2.0 if cx is None else cx
        cy = h / 2.0 if cy is None else cy
        Ks.append(np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], np.float64))
        sizes.append((w, h))
        distorted |= any(abs(float(get(k) or 0.0)) > 0 for k in ("k1", "k2", "k3", "k4", "p1", "p2"))
    if distorted:
        warnings.warn(f"{where}: lens distortion coefficients are ignored (pinhole cameras only)", stacklevel=2)
    own = sizes[0]
    K = np.stack([resize_intrinsics(k, s, own) for k, s in zip(Ks, sizes, strict=True)])
    p, q = poses_from_world_to_cam(np.stack(w2cs))
    return Trajectory(p, q, K, own[0], own[1], per_frame=True, source=where)


def _rigid_inverse_checked(M: np.ndarray, where: str) -> np.ndarray:
    R = M[:3, :3]
    scale = np.linalg.norm(R, axis=0)
    if np.any(scale < 1e-12):
        raise TrajectoryError(f"{where}: camera matrix has a zero axis")
    if np.abs(scale - 1.0).max() > 1e-4:
        warnings.warn(f"{where}: camera matrix has scale {scale}; removed", stacklevel=3)
        M = remove_scale(M)
    out = np.eye(4)
    out[:3, :3] = M[:3, :3].T
    out[:3, 3] = -M[:3, :3].T @ M[:3, 3]
    return out


def _natural_key(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


# ------------------------------------------------------------------------------------------------- COLMAP

_COLMAP_MODELS = {  # model -> (parameter count, function params -> (fx, fy, cx, cy), distortion slice)
    "SIMPLE_PINHOLE": (3, lambda p: (p[0], p[0], p[1], p[2]), slice(3, 3)),
    "PINHOLE": (4, lambda p: (p[0], p[1], p[2], p[3]), slice(4, 4)),
    "SIMPLE_RADIAL": (4, lambda p: (p[0], p[0], p[1], p[2]), slice(3, 4)),
    "RADIAL": (5, lambda p: (p[0], p[0], p[1], p[2]), slice(3, 5)),
    "OPENCV": (8, lambda p: (p[0], p[1], p[2], p[3]), slice(4, 8)),
    "FULL_OPENCV": (12, lambda p: (p[0], p[1], p[2], p[3]), slice(4, 12)),
}


def _colmap_files(folder: Path) -> tuple[Path, Path] | None:
    for d in (folder, folder / "sparse" / "0", folder / "sparse"):
        if (d / "cameras.txt").is_file() and (d / "images.txt").is_file():
            return d / "cameras.txt", d / "images.txt"
    return None


def read_colmap(folder: str | os.PathLike) -> Trajectory:
    """COLMAP text model: ``images.txt`` (q, t) is the OpenCV world_to_cam ``[R(q) | t]`` (q stored w
    first); ``cameras.txt`` gives K. Images are ordered by name; distortion is ignored with a warning."""
    folder = Path(folder)
    files = _colmap_files(folder)
    if files is None:
        raise TrajectoryError(f"{folder}: no cameras.txt and images.txt (also looked in sparse/0 and sparse)")
    cam_file, img_file = files
    cameras: dict[int, tuple[np.ndarray, tuple[int, int]]] = {}
    distorted = False
    for ln, line in enumerate(cam_file.read_text().splitlines(), 1):
        tok = line.split()
        if not tok or tok[0].startswith("#"):
            continue
        where = f"{cam_file}:{ln}"
        if len(tok) < 4:
            raise TrajectoryError(f"{where}: expected CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]")
        model = tok[1]
        if model not in _COLMAP_MODELS:
            raise TrajectoryError(f"{where}: camera model {model} is not supported; use {', '.join(_COLMAP_MODELS)}")
        count, intr, dist = _COLMAP_MODELS[model]
        try:
            cam_id, w, h = int(tok[0]), int(tok[2]), int(tok[3])
            params = [float(x) for x in tok[4:]]
        except ValueError as e:
            raise TrajectoryError(f"{where}: {e}") from e
        if len(params) != count:
            raise TrajectoryError(f"{where}: {model} needs {count} parameters, got {len(params)}")
        fx, fy, cx, cy = intr(params)
        distorted |= any(abs(x) > 0 for x in params[dist])
        cameras[cam_id] = (np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]), (w, h))
    if not cameras:
        raise TrajectoryError(f"{cam_file}: no cameras")
    lines = [(ln, line) for ln, line in enumerate(img_file.read_text().splitlines(), 1) if not line.startswith("#")]
    entries = []
    for j in range(0, len(lines), 2):  # an image line, then its (possibly empty) POINTS2D line
        ln, line = lines[j]
        tok = line.split()
        if not tok:
            continue
        where = f"{img_file}:{ln}"
        if len(tok) < 10:
            raise TrajectoryError(f"{where}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME")
        try:
            qw, qx, qy, qz, tx, ty, tz = (float(x) for x in tok[1:8])
            cam_id = int(tok[8])
        except ValueError as e:
            raise TrajectoryError(f"{where}: {e}") from e
        if cam_id not in cameras:
            raise TrajectoryError(f"{where}: camera {cam_id} is not in {cam_file.name}")
        R = quat_to_matrix(np.array([qx, qy, qz, qw]))
        w2c = np.eye(4)
        w2c[:3, :3] = R
        w2c[:3, 3] = [tx, ty, tz]
        entries.append((" ".join(tok[9:]), w2c, cam_id))
    if not entries:
        raise TrajectoryError(f"{img_file}: no images")
    if distorted:
        warnings.warn(f"{cam_file}: lens distortion is ignored (pinhole cameras only)", stacklevel=2)
    entries.sort(key=lambda e: _natural_key(e[0]))
    own = cameras[entries[0][2]][1]
    K = np.stack([resize_intrinsics(cameras[c][0], cameras[c][1], own) for _, _, c in entries])
    p, q = poses_from_world_to_cam(np.stack([e[1] for e in entries]))
    return Trajectory(p, q, K, own[0], own[1], per_frame=True, source=str(folder))


# --------------------------------------------------------------------------------------------------- glTF

class _Channel:
    """One animation sampler driving one node property (translation, rotation or scale)."""

    def __init__(self, times: np.ndarray, values: np.ndarray, interpolation: str, path: str, where: str):
        self.times = times
        self.path = path
        self.interpolation = interpolation
        n = len(times)
        if interpolation == "CUBICSPLINE":
            if len(values) != 3 * n:
                raise TrajectoryError(f"{where}: CUBICSPLINE output needs 3 values per key")
            v = values.reshape(n, 3, -1)
            self.in_tangents, self.values, self.out_tangents = v[:, 0], v[:, 1], v[:, 2]
        else:
            if len(values) != n:
                raise TrajectoryError(f"{where}: sampler output has {len(values)} values for {n} times")
            self.values = values
        if n == 0 or (n > 1 and np.any(np.diff(times) < 0)):
            raise TrajectoryError(f"{where}: sampler input times must be non-empty and non-decreasing")

    def __call__(self, t: np.ndarray) -> np.ndarray:
        times, v = self.times, self.values
        if len(times) == 1:
            return np.repeat(v[:1], len(t), axis=0)
        t = np.clip(t, times[0], times[-1])
        i = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 2)
        dt = times[i + 1] - times[i]
        s = np.divide(t - times[i], dt, out=np.zeros_like(t), where=dt > 0)[:, None]
        if self.interpolation == "STEP":
            out = np.where(s >= 1.0, v[i + 1], v[i])
        elif self.interpolation == "CUBICSPLINE":
            s2, s3 = s * s, s * s * s
            out = (
                (2 * s3 - 3 * s2 + 1) * v[i]
                + (s3 - 2 * s2 + s) * dt[:, None] * self.out_tangents[i]
                + (-2 * s3 + 3 * s2) * v[i + 1]
                + (s3 - s2) * dt[:, None] * self.in_tangents[i + 1]
            )
        elif self.path == "rotation":
            out = _slerp(v[i], v[i + 1], s[:, 0])
        else:
            out = (1 - s) * v[i] + s * v[i + 1]
        if self.path == "rotation":
            out = out / np.linalg.norm(out, axis=1, keepdims=True)
        return out


def _slerp(q0: np.ndarray, q1: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Row-wise shortest-path slerp of unit quaternions (the glTF spec's reference formula)."""
    d = np.sum(q0 * q1, axis=1)
    q1 = np.where(d[:, None] < 0, -q1, q1)
    d = np.abs(d)
    theta = np.arccos(np.clip(d, -1.0, 1.0))
    sin = np.sin(theta)
    near = sin < 1e-9
    a = np.where(near, 1 - s, np.sin((1 - s) * theta) / np.where(near, 1.0, sin))
    b = np.where(near, s, np.sin(s * theta) / np.where(near, 1.0, sin))
    return a[:, None] * q0 + b[:, None] * q1


def read_gltf_camera(
    path: str | os.PathLike, camera: str | None = None, size: tuple[int, int] | None = None
) -> Trajectory:
    """An animated perspective camera in a .glb/.gltf: node hierarchy composed at every sampled time
    (translation/rotation/scale samplers, LINEAR/STEP/CUBICSPLINE), ``world_to_cam = F @ inv(M(t))``,
    ``f_y = H / (2 tan(yfov / 2))`` with square pixels. ``camera`` picks a camera node by node name or
    camera name; without it the file must hold exactly one camera node."""
    path = Path(path)
    where = str(path)
    doc, buffers = read_gltf(path, TrajectoryError)
    nodes = doc.get("nodes", [])
    cam_nodes = [i for i, n in enumerate(nodes) if "camera" in n]
    cams = doc.get("cameras", [])

    def label(i: int) -> str:
        n = nodes[i]
        cam_name = cams[n["camera"]].get("name") if n["camera"] < len(cams) else None
        return n.get("name") or cam_name or f"node{i}"

    if not cam_nodes:
        raise TrajectoryError(f"{where}: no camera in the file")
    if camera is not None:
        picked = [
            i for i in cam_nodes if camera in (nodes[i].get("name"), cams[nodes[i]["camera"]].get("name"), f"node{i}")
        ]
        if not picked:
            raise TrajectoryError(f"{where}: no camera named {camera!r}; cameras: {[label(i) for i in cam_nodes]}")
        node = picked[0]
    elif len(cam_nodes) == 1:
        node = cam_nodes[0]
    else:
        raise TrajectoryError(
            f"{where}: {len(cam_nodes)} cameras; pick one with [trajectory] camera = NAME: {[label(i) for i in cam_nodes]}"
        )
    cam = cams[nodes[node]["camera"]]
    if cam.get("type") != "perspective":
        raise TrajectoryError(f"{where}: camera {label(node)!r} is {cam.get('type')}; only perspective cameras are used")
    persp = cam.get("perspective", {})
    yfov = float(persp.get("yfov", 0.0))
    if not 0.0 < yfov < math.pi:
        raise TrajectoryError(f"{where}: camera {label(node)!r} has yfov {yfov}; expected (0, pi) radians")
    width, height = size or DEFAULT_SIZE
    aspect = persp.get("aspectRatio")
    if aspect is not None and abs(float(aspect) - width / height) > 1e-3 * width / height:
        note(
            f"{where}: camera aspect ratio {float(aspect):.4g} differs from {width}x{height}; the vertical "
            "field of view is kept"
        )

    parent = parents(doc)
    chain = [node]
    while chain[-1] in parent:
        chain.append(parent[chain[-1]])
    chain.reverse()  # root first

    # animation channels on the chain: the first animation that moves any node of it
    animations = doc.get("animations", [])
    chosen = None
    for a_i, anim in enumerate(animations):
        if any(ch.get("target", {}).get("node") in chain for ch in anim.get("channels", [])):
            chosen = a_i
            break
    if chosen is None:
        raise TrajectoryError(f"{where}: camera {label(node)!r} is not animated (no animation moves it or its parents)")
    moving = [
        a.get("name", f"animation{i}")
        for i, a in enumerate(animations)
        if i != chosen and any(ch.get("target", {}).get("node") in chain for ch in a.get("channels", []))
    ]
    if moving:
        note(f"{where}: using the first animation that moves the camera; ignored {moving}")
    anim = animations[chosen]
    channels: dict[tuple[int, str], _Channel] = {}
    for c_i, ch in enumerate(anim.get("channels", [])):
        tgt = ch.get("target", {})
        if tgt.get("node") not in chain or tgt.get("path") not in ("translation", "rotation", "scale"):
            continue
        sampler = anim["samplers"][ch["sampler"]]
        cw = f"{where}: animations[{chosen}].channels[{c_i}]"
        try:
            times = read_accessor(doc, buffers, sampler["input"], TrajectoryError)[:, 0]
            values = read_accessor(doc, buffers, sampler["output"], TrajectoryError)
        except TrajectoryError as e:
            raise TrajectoryError(f"{cw}: {e}") from e
        interp = sampler.get("interpolation", "LINEAR")
        if interp not in ("LINEAR", "STEP", "CUBICSPLINE"):
            raise TrajectoryError(f"{cw}: interpolation {interp!r} is not LINEAR, STEP or CUBICSPLINE")
        channels[(tgt["node"], tgt["path"])] = _Channel(times, values, interp, tgt["path"], cw)

    def world(t: np.ndarray) -> np.ndarray:
        M = np.repeat(np.eye(4)[None], len(t), axis=0)
        for i in chain:
            n = nodes[i]
            if not any((i, p) in channels for p in ("translation", "rotation", "scale")):
                local = np.broadcast_to(local_matrix(n, TrajectoryError), (len(t), 4, 4))
            else:
                def prop(p, default, i=i, n=n):
                    if (i, p) in channels:
                        return channels[(i, p)](t)
                    return np.repeat(np.array([n.get(p, default)], np.float64), len(t), axis=0)

                local = trs_matrices(
                    prop("translation", [0.0, 0.0, 0.0]), prop("rotation", [0.0, 0.0, 0.0, 1.0]), prop("scale", [1.0, 1.0, 1.0])
                )
            M = M @ local
        return M

    f = height / (2.0 * math.tan(yfov / 2.0))
    K0 = np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])

    def evaluate(t: np.ndarray):
        from scipy.spatial.transform import Rotation

        M = world(np.atleast_1d(np.asarray(t, np.float64)))
        R = M[:, :3, :3] / np.linalg.norm(M[:, :3, :3], axis=1, keepdims=True)  # scale removed per column
        R_cv = R @ GL_TO_CV[:3, :3]  # c2w_cv = c2w_gl @ F
        return M[:, :3, 3].copy(), Rotation.from_matrix(R_cv).as_quat(), np.repeat(K0[None], len(M), axis=0)

    evaluate.positions = lambda t: world(np.atleast_1d(np.asarray(t, np.float64)))[:, :3, 3]
    key_times = np.unique(np.concatenate([c.times for c in channels.values()]))
    if len(key_times) < 2:
        raise TrajectoryError(f"{where}: the camera animation has a single key time; nothing moves")
    p, q, K = evaluate(key_times)
    return Trajectory(p, q, K, width, height, times=key_times, source=where, evaluator=evaluate)


# ---------------------------------------------------------------------------------------------- validation


def _float(v, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise TrajectoryError(f"{where} must be a finite number, got {v!r}")
    return float(v)


def _int_field(doc: dict, key: str, where: str, default: int) -> int:
    v = doc.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise TrajectoryError(f"{where}: \"{key}\" must be a positive integer, got {v!r}")
    return v
