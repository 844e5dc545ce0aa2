"""Camera paths: the :class:`Trajectory` representation, spline interpolation, resampling to any frame
count, and the orbit and flythrough generators. The readers and the writer of the file formats are in
:mod:`videofrom3d.scene.trajectory_formats`.

A :class:`Trajectory` holds keys with a camera centre, an OpenCV camera-to-world rotation (quaternion x,
y, z, w), intrinsics ``K`` in pixels at the trajectory's own image size, and optional times.

Image size: ``K`` is stored at the trajectory's own size (the file's, else the size asked for, else
720x480). Asking for another size with the same aspect scales ``K``; another aspect keeps the vertical
field of view and the pixel aspect (``f_x, f_y, c_y`` scale with the height, ``c_x`` with the width), as
glTF's ``yfov`` and Blender's vertical sensor fit do.

Timing: a path that carries its own times (a glTF animation, JSON keys with ``time``, per-frame lists such
as transforms.json and COLMAP) is sampled evenly in time ("keys"), so an artist's ease-in/out survives;
keys without times are re-parametrised to constant speed along the position spline ("constant-speed").
``timing="auto"`` picks between the two; either can be forced.

Interpolation: positions follow a C1 cubic Hermite spline through the keys (Catmull-Rom tangents over the
key parameter); orientations are slerped between keys, or, when every key has a ``look_at`` point, the
targets follow their own spline and the camera looks at them (no roll, smooth turns); ``look = "ahead"``
points the camera along the path. Intrinsics are interpolated linearly.
"""
from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from videofrom3d.errors import VideoFrom3DError
from videofrom3d.scene.camera import (
    Camera,
    intrinsics_from_fov,
    look_at,
    quat_to_matrix,
    resize_intrinsics,
)

TIMINGS = ("auto", "keys", "constant-speed")
DEFAULT_SIZE = (720, 480)  # paper 4.1
DEFAULT_FPS = 8.0  # CogVideoX-5B's native frame rate
DEFAULT_FRAMES_PER_ARC = 45  # paper 3.3
DEFAULT_FOV_X = 60.0  # the official example camera: 31.177 mm lens on a 36 mm sensor, 720 px wide
KEYFRAME_FORMAT = "videofrom3d-keyframes"


class TrajectoryError(VideoFrom3DError, ValueError):
    """A camera path that cannot be used; the message names the file (or key) and the problem."""


# ------------------------------------------------------------------------------------------------ the path


@dataclass(frozen=True, eq=False)
class Trajectory:
    """Camera keys: ``positions`` (n, 3) camera centres in the world, ``rotations`` (n, 4) quaternions
    (x, y, z, w) of the OpenCV camera-to-world rotation, ``K`` (n, 3, 3) pixels at ``width`` x ``height``.

    ``times`` (n,) seconds, strictly increasing, or None. ``orientation``: "rotations" (slerp the keys),
    "targets" (look at ``targets`` (n, 3), splined), "ahead" (look along the path). ``per_frame``: the keys
    are the frames (transforms.json, COLMAP, a resampled path). ``frames``/``fps``: what the file states.
    ``evaluator``: exact poses at times (glTF animations), used instead of the spline through the keys.
    """

    positions: np.ndarray
    rotations: np.ndarray
    K: np.ndarray
    width: int
    height: int
    times: np.ndarray | None = None
    targets: np.ndarray | None = None
    orientation: str = "rotations"
    up: tuple[float, float, float] = (0.0, 1.0, 0.0)
    per_frame: bool = False
    frames: int | None = None
    fps: float | None = None
    source: str = ""
    evaluator: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None

    def __post_init__(self) -> None:
        p = np.asarray(self.positions, np.float64).reshape(-1, 3)
        q = np.asarray(self.rotations, np.float64).reshape(-1, 4)
        K = np.asarray(self.K, np.float64).reshape(-1, 3, 3)
        n = len(p)
        where = self.source or "trajectory"
        if n == 0:
            raise TrajectoryError(f"{where}: no camera keys")
        if len(q) != n or len(K) != n:
            raise TrajectoryError(f"{where}: {n} positions but {len(q)} rotations and {len(K)} intrinsics")
        if not (np.isfinite(p).all() and np.isfinite(q).all() and np.isfinite(K).all()):
            raise TrajectoryError(f"{where}: NaN or inf in a camera key")
        object.__setattr__(self, "positions", p)
        object.__setattr__(self, "rotations", q / np.linalg.norm(q, axis=1, keepdims=True))
        object.__setattr__(self, "K", K)
        if self.times is not None:
            t = np.asarray(self.times, np.float64).reshape(-1)
            if len(t) != n or not np.isfinite(t).all() or (n > 1 and np.any(np.diff(t) <= 0)):
                raise TrajectoryError(f"{where}: key times must be {n} finite, strictly increasing seconds")
            object.__setattr__(self, "times", t)
        if self.targets is not None:
            object.__setattr__(self, "targets", np.asarray(self.targets, np.float64).reshape(n, 3))
        if self.orientation not in ("rotations", "targets", "ahead"):
            raise TrajectoryError(f"{where}: orientation must be rotations, targets or ahead")
        if self.orientation == "targets" and self.targets is None:
            raise TrajectoryError(f"{where}: orientation 'targets' needs targets")
        object.__setattr__(self, "up", tuple(float(x) for x in self.up))

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def timed(self) -> bool:
        return self.times is not None

    @property
    def duration(self) -> float:
        return float(self.times[-1] - self.times[0]) if self.times is not None else 0.0

    def cameras(self, width: int | None = None, height: int | None = None) -> list[Camera]:
        """One camera per key, at ``width`` x ``height`` (default: the trajectory's own size)."""
        w, h = width or self.width, height or self.height
        return cameras_from_poses(self.positions, self.rotations, self.K, (self.width, self.height), (w, h))

    def resolve_timing(self, timing: str = "auto") -> str:
        """"auto" -> "keys" for paths with times or one key per frame, else "constant-speed"."""
        if timing not in TIMINGS:
            raise TrajectoryError(f"timing must be one of {', '.join(TIMINGS)}, got {timing!r}")
        if timing == "auto":
            return "keys" if (self.timed or self.per_frame or self.evaluator is not None) else "constant-speed"
        return timing

    def natural_frames(self, fps: float | None = None, frames_per_arc: int = DEFAULT_FRAMES_PER_ARC) -> int:
        """The frame count the path asks for by itself: the file's ``frames``; one per key for per-frame
        lists; ``duration * fps + 1`` for timed paths (the file's fps, else ``fps``, else 8); else one arc
        of ``frames_per_arc`` per key interval."""
        if self.frames is not None:
            return int(self.frames)
        if self.per_frame:
            return len(self)
        if self.timed:
            rate = self.fps or fps or DEFAULT_FPS
            return max(2, int(round(self.duration * rate)) + 1)
        return max(2, (len(self) - 1) * frames_per_arc + 1)

    def resample(self, frames: int, timing: str = "auto") -> Trajectory:
        """``frames`` cameras spread evenly in time / key parameter ("keys") or in distance travelled
        ("constant-speed"), as a per-frame Trajectory."""
        if not isinstance(frames, int | np.integer) or frames < 1:
            raise TrajectoryError(f"frames must be a positive integer, got {frames!r}")
        timing = self.resolve_timing(timing)
        curve = self._curve(timing)
        u0, u1 = curve.domain
        if timing == "constant-speed":
            u = _constant_speed_parameters(curve, frames, self.source)
        else:
            u = np.linspace(u0, u1, frames)
        p, q, K = curve.poses(u)
        times = u if (timing == "keys" and self.timed) else None
        if times is not None and frames > 1 and np.any(np.diff(times) <= 0):
            times = None
        return Trajectory(
            p, q, K, self.width, self.height, times=times, up=self.up, per_frame=True, frames=frames,
            fps=self.fps, source=self.source,
        )

    def _curve(self, timing: str) -> _Curve:
        if self.evaluator is not None:
            return _Curve((float(self.times[0]), float(self.times[-1])), self.evaluator)
        n = len(self)
        if timing == "keys":
            u = self.times if self.timed else np.arange(n, dtype=np.float64)
        else:  # chord length; a tiny floor keeps repeated positions (turning on the spot) ordered
            step = np.linalg.norm(np.diff(self.positions, axis=0), axis=1)
            floor = 1e-6 * max(float(step.sum()), 1e-9)
            u = np.concatenate([[0.0], np.cumsum(np.maximum(step, floor))])
        return _Curve((float(u[0]), float(u[-1])), _key_interpolator(self, u))


class _Curve:
    """A pose function over a parameter domain: ``poses(u) -> (positions, rotations, K)``."""

    def __init__(self, domain: tuple[float, float], poses: Callable):
        self.domain = domain
        self.poses = poses

    def positions(self, u: np.ndarray) -> np.ndarray:
        fn = getattr(self.poses, "positions", None)
        return fn(u) if fn is not None else self.poses(u)[0]


def _hermite(u: np.ndarray, values: np.ndarray):
    """C1 cubic Hermite spline through ``values`` (n, d) at parameters ``u`` (n,), Catmull-Rom tangents."""
    from scipy.interpolate import CubicHermiteSpline

    n = len(u)
    if n == 1:
        const = values[0]
        return lambda x, nu=0: np.broadcast_to(const if nu == 0 else np.zeros_like(const), (len(x), len(const))).copy()
    tangents = np.empty_like(values)
    tangents[0] = (values[1] - values[0]) / (u[1] - u[0])
    tangents[-1] = (values[-1] - values[-2]) / (u[-1] - u[-2])
    if n > 2:
        tangents[1:-1] = (values[2:] - values[:-2]) / (u[2:] - u[:-2])[:, None]
    spline = CubicHermiteSpline(u, values, tangents, axis=0)
    lo, hi = u[0], u[-1]
    return lambda x, nu=0: spline(np.clip(x, lo, hi), nu)


def _key_interpolator(traj: Trajectory, u: np.ndarray):
    """Poses between keys at parameters ``u``: position spline, slerp / target spline / look-ahead, linear K."""
    from scipy.spatial.transform import Rotation, Slerp

    pos = _hermite(u, traj.positions)
    Kflat = traj.K.reshape(len(u), 9)
    up = np.array(traj.up)
    if traj.orientation == "rotations" and len(u) > 1:
        slerp = Slerp(u, Rotation.from_quat(traj.rotations))
    tgt = _hermite(u, traj.targets) if traj.orientation == "targets" else None

    def poses(x: np.ndarray):
        x = np.clip(np.asarray(x, np.float64), u[0], u[-1])
        p = pos(x)
        if traj.orientation == "targets":
            q = _look_at_quats(p, tgt(x), up)
        elif traj.orientation == "ahead":
            d = pos(x, 1)
            q = _look_at_quats(p, p + _nonzero_directions(d, traj.positions), up)
        elif len(u) > 1:
            q = slerp(x).as_quat()
        else:
            q = np.repeat(traj.rotations[:1], len(x), axis=0)
        K = np.stack([np.interp(x, u, Kflat[:, i]) for i in range(9)], axis=1).reshape(-1, 3, 3)
        return p, q, K

    poses.positions = pos
    return poses


def _nonzero_directions(d: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Replace zero tangents (a path that stops) by the nearest non-zero one, else the first key step."""
    norm = np.linalg.norm(d, axis=1)
    ok = norm > 1e-12
    if not ok.any():
        step = keys[-1] - keys[0] if len(keys) > 1 else np.array([0.0, 0.0, 1.0])
        return np.repeat(step[None], len(d), axis=0)
    idx = np.where(ok, np.arange(len(d)), -1)
    idx = np.maximum.accumulate(idx)
    first = int(np.argmax(ok))
    idx[idx < 0] = first
    return d[idx]


def _look_at_quats(positions: np.ndarray, targets: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(m, 3) camera centres and look-at points -> (m, 4) OpenCV camera-to-world quaternions (x, y, z, w)."""
    from scipy.spatial.transform import Rotation

    z = np.asarray(targets, np.float64) - positions
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    x = np.cross(z, up)
    bad = np.linalg.norm(x, axis=1) < 1e-9
    if bad.any():  # looking along up: the single-camera rule of look_at
        x[bad] = [look_at(p, t, up)[0, :3] for p, t in zip(positions[bad], targets[bad], strict=True)]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.cross(z, x)
    return Rotation.from_matrix(np.stack([x, y, z], axis=2)).as_quat()  # columns: camera axes in the world


def _constant_speed_parameters(curve: _Curve, frames: int, where: str) -> np.ndarray:
    """Parameters at which the camera has travelled equal distances (dense arc-length table, inverted)."""
    u0, u1 = curve.domain
    dense = np.linspace(u0, u1, 8192)
    p = curve.positions(dense)
    length = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])
    if length[-1] <= 1e-12:
        note(f"{where or 'trajectory'}: the camera does not move; timing falls back to the keys")
        return np.linspace(u0, u1, frames)
    return np.interp(np.linspace(0.0, length[-1], frames), length, dense)


def cameras_from_poses(
    positions: np.ndarray,
    rotations: np.ndarray,
    K: np.ndarray,
    own_size: tuple[int, int],
    size: tuple[int, int] | None = None,
) -> list[Camera]:
    """(n, 3) centres, (n, 4) OpenCV camera-to-world quaternions, (n, 3, 3) K at ``own_size`` -> cameras."""
    W, H = own_size
    w, h = size or own_size
    R_c2w = quat_to_matrix(rotations)
    cams = []
    for p, R, k in zip(positions, R_c2w, K, strict=True):
        w2c = np.eye(4)
        w2c[:3, :3] = R.T
        w2c[:3, 3] = -R.T @ p
        cams.append(Camera(resize_intrinsics(k, (W, H), (w, h)), w2c, int(w), int(h)))
    return cams


def note(message: str) -> None:
    """A one-line notice for the user (stderr), for choices made on their behalf."""
    print(f"videofrom3d: note: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------- generators


def orbit(
    center=(0.0, 0.0, 0.0),
    radius: float = 10.0,
    height: float = 3.0,
    degrees: float = 360.0,
    start: float = 0.0,
    target=None,
    fov_y: float | None = None,
    fov_x: float | None = None,
    up=(0.0, 1.0, 0.0),
    frames: int | None = None,
    size: tuple[int, int] = DEFAULT_SIZE,
) -> Trajectory:
    """A circular path around ``center`` (Y up) at ``height`` above it, sweeping ``degrees`` counter-clockwise
    seen from above from the angle ``start`` (0 = on the +z side), looking at ``target`` (default ``center``).
    Keys every degree; constant speed."""
    c = _vector(center, "[trajectory].center")
    tgt = c if target is None else _vector(target, "[trajectory].target")
    if not radius > 0:
        raise TrajectoryError(f"[trajectory].radius must be positive, got {radius}")
    if degrees == 0:
        raise TrajectoryError("[trajectory].degrees must not be 0")
    n = max(8, int(math.ceil(abs(degrees))) + 1)
    a = np.radians(start + np.linspace(0.0, degrees, n))
    P = np.stack([c[0] + radius * np.sin(a), np.full(n, c[1] + height), c[2] + radius * np.cos(a)], axis=1)
    T = np.repeat(tgt[None], n, axis=0)
    return _generated(P, T, "targets", fov_y, fov_x, up, frames, size, "orbit")


def flythrough(
    waypoints,
    targets=None,
    fov_y: float | None = None,
    fov_x: float | None = None,
    up=(0.0, 1.0, 0.0),
    frames: int | None = None,
    size: tuple[int, int] = DEFAULT_SIZE,
) -> Trajectory:
    """A path through ``waypoints`` (>= 2), looking at ``targets`` (one per waypoint, or one for all),
    or along the path when there are none. Constant speed."""
    P = np.array(waypoints, dtype=np.float64) if waypoints is not None else np.zeros((0, 3))
    if P.ndim != 2 or P.shape[1] != 3 or len(P) < 2 or not np.isfinite(P).all():
        raise TrajectoryError("[trajectory].waypoints must be a list of at least two [x, y, z] points")
    if targets is None:
        return _generated(P, None, "ahead", fov_y, fov_x, up, frames, size, "flythrough")
    T = np.array(targets, dtype=np.float64)
    if T.shape == (3,):
        T = np.repeat(T[None], len(P), axis=0)
    if T.shape != P.shape or not np.isfinite(T).all():
        raise TrajectoryError("[trajectory].targets must be one [x, y, z] point or one per waypoint")
    if np.any(np.linalg.norm(T - P, axis=1) < 1e-9):
        raise TrajectoryError("[trajectory].targets must differ from their waypoints")
    return _generated(P, T, "targets", fov_y, fov_x, up, frames, size, "flythrough")


def _generated(P, T, orientation, fov_y, fov_x, up, frames, size, name) -> Trajectory:
    w, h = size
    if fov_y is not None and fov_x is not None:
        raise TrajectoryError("[trajectory]: give fov_y or fov_x, not both")
    try:
        if fov_y is not None:
            K = intrinsics_from_fov(w, h, fov_y_deg=float(fov_y))
        else:
            K = intrinsics_from_fov(w, h, fov_x_deg=float(fov_x if fov_x is not None else DEFAULT_FOV_X))
    except ValueError as e:
        raise TrajectoryError(f"[trajectory]: {e}") from e
    upv = _vector(up, "[trajectory].up")
    if orientation == "targets":
        Q = _look_at_quats(P, T, upv)
    else:
        d = _nonzero_directions(_hermite(np.arange(len(P), dtype=np.float64), P)(np.arange(len(P)), 1), P)
        Q = _look_at_quats(P, P + d, upv)
    return Trajectory(
        P, Q, np.repeat(K[None], len(P), axis=0), w, h, targets=T, orientation=orientation, up=tuple(upv),
        frames=frames, source=name,
    )


GENERATORS = {"orbit": orbit, "flythrough": flythrough}
EYE_HEIGHT = 1.6  # metres (scene units): a standing person's eye height, for the flythrough default


def generator_defaults(name: str, bounds: np.ndarray) -> dict:
    """The keys of generator ``name`` that a job may leave out, from the scene's (2, 3) bounds (Y up, scene
    units). Orbit: ``center`` = the middle of the footprint on the ground (lowest y), ``radius`` = the
    footprint's half diagonal (the path clears its corners), ``height`` = half the scene's height, at least
    :data:`EYE_HEIGHT`. Flythrough: ``waypoints`` = across the footprint's longer side through its middle,
    :data:`EYE_HEIGHT` above the ground."""
    lo, hi = np.asarray(bounds, np.float64)
    mid = (lo + hi) / 2
    size = hi - lo
    if name == "orbit":
        return {"center": [float(mid[0]), float(lo[1]), float(mid[2])],
                "radius": max(float(np.hypot(size[0], size[2])) / 2, 1e-3),
                "height": max(float(size[1]) / 2, EYE_HEIGHT)}
    if name == "flythrough":
        eye = float(lo[1]) + EYE_HEIGHT
        if size[0] >= size[2]:
            ends = [[float(lo[0]), eye, float(mid[2])], [float(hi[0]), eye, float(mid[2])]]
        else:
            ends = [[float(mid[0]), eye, float(lo[2])], [float(mid[0]), eye, float(hi[2])]]
        return {"waypoints": ends}
    return {}


# ---------------------------------------------------------------------------------------------- validation


def _vector(v, where: str, n: int = 3) -> np.ndarray:
    try:
        a = np.array(v, dtype=np.float64)
    except (TypeError, ValueError):
        a = None
    if a is None or a.shape != (n,) or not np.isfinite(a).all():
        raise TrajectoryError(f"{where} must be a list of {n} finite numbers, got {v!r}")
    return a


def poses_from_world_to_cam(w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, 4, 4) OpenCV world_to_cam -> (n, 3) centres and (n, 4) camera-to-world quaternions (x, y, z, w)."""
    from scipy.spatial.transform import Rotation

    w2c = np.asarray(w2c, np.float64).reshape(-1, 4, 4)
    R = w2c[:, :3, :3]
    Rt = np.swapaxes(R, 1, 2)
    centres = -(Rt @ w2c[:, :3, 3:4])[..., 0]
    return centres, Rotation.from_matrix(Rt).as_quat()
