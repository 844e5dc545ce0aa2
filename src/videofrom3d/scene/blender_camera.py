"""The Blender extension's ``camera.json``: the scene camera's raw values per timeline frame.

Schema ``videofrom3d.blender-camera/1`` (written by ``blender/videofrom3d/export.py``; stable)::

    {"format": "videofrom3d.blender-camera/1", "type": "PERSP", "camera": "Camera",
     "resolution_x": 1920, "resolution_y": 1080, "resolution_percentage": 50, "pixel_aspect": [1, 1],
     "fps": 24, "fps_base": 1.0, "frame_start": 1, "frame_end": 48, "frame_step": 1,
     "scale_length": 1.0, "world": "blender_z_up", "glb_world": "y_up", "blender_version": "4.2.0",
     "frames": [{"frame": 1, "matrix_world": 4x4 rows, "lens": 35.0, "sensor_width": 36.0,
                 "sensor_height": 24.0, "sensor_fit": "AUTO", "shift_x": 0.0, "shift_y": 0.0,
                 "clip_start": 0.1, "clip_end": 100.0}, ...]}

The cameras land in the glTF Y-up world of the ``scene.glb`` exported beside it (``w2c = F @ inv(C @ M)``,
:func:`videofrom3d.scene.camera.blender_to_opencv`), with ``K`` from :func:`blender_intrinsics`. Frames are
kept as they are (one camera per timeline frame, times ``(frame - frame_start) / fps``). ``scale_length`` is
recorded, not applied: the glTF exporter writes Blender units as they are, and so do we.
"""

from __future__ import annotations

import numpy as np

from videofrom3d.scene.camera import blender_intrinsics, blender_to_opencv
from videofrom3d.scene.trajectory import Trajectory, TrajectoryError, poses_from_world_to_cam

BLENDER_CAMERA_FORMAT = "videofrom3d.blender-camera/1"
_FRAME_KEYS = ("frame", "matrix_world", "lens", "sensor_width", "sensor_height", "sensor_fit", "shift_x", "shift_y")


def is_blender_camera(doc) -> bool:
    """True for a document that says it is a Blender camera export (any version, so a newer one is refused
    with a clear message rather than misread as another format)."""
    return isinstance(doc, dict) and str(doc.get("format", "")).startswith("videofrom3d.blender-camera/")


def blender_camera_size(doc: dict) -> tuple[int, int]:
    """The rendered size in pixels: Blender truncates ``resolution * percentage / 100``."""
    pct = int(doc.get("resolution_percentage", 100))
    return int(doc["resolution_x"]) * pct // 100, int(doc["resolution_y"]) * pct // 100


def read_blender_camera(doc: dict, path: str = "<camera.json>"):
    """A ``videofrom3d.blender-camera/1`` document -> per-frame :class:`~videofrom3d.scene.trajectory.Trajectory`
    at the scene's render size, with its fps and frame count."""
    where = str(path)
    if doc.get("format") != BLENDER_CAMERA_FORMAT:
        raise TrajectoryError(f"{where}: format {doc.get('format')!r} is not {BLENDER_CAMERA_FORMAT!r}; update videofrom3d")
    if doc.get("type", "PERSP") != "PERSP":
        raise TrajectoryError(f"{where}: camera type {doc.get('type')}; only perspective cameras are supported")
    try:
        width, height = blender_camera_size(doc)
        aspect = tuple(float(a) for a in doc.get("pixel_aspect", (1.0, 1.0)))
        fps = float(doc["fps"]) / float(doc.get("fps_base", 1.0))
        frames = doc["frames"]
        if not isinstance(frames, list) or not frames:
            raise ValueError("frames must be a non-empty list")
        w2c, K, numbers = [], [], []
        for i, f in enumerate(frames):
            missing = [k for k in _FRAME_KEYS if k not in f]
            if missing:
                raise ValueError(f"frames[{i}] lacks {missing}")
            M = np.array(f["matrix_world"], np.float64)
            if M.shape != (4, 4):
                raise ValueError(f"frames[{i}].matrix_world must be 4x4")
            w2c.append(blender_to_opencv(M, to_y_up=True))
            K.append(
                blender_intrinsics(
                    width, height, float(f["lens"]), float(f["sensor_width"]), float(f["sensor_height"]),
                    f["sensor_fit"], float(f["shift_x"]), float(f["shift_y"]), aspect,
                )
            )
            numbers.append(float(f["frame"]))
    except (KeyError, TypeError, ValueError) as e:
        raise TrajectoryError(f"{where}: not a valid Blender camera export ({e})") from e
    if width < 1 or height < 1 or not fps > 0:
        raise TrajectoryError(f"{where}: render size {width}x{height} and fps {fps} must be positive")
    start = float(doc.get("frame_start", numbers[0]))
    times = (np.array(numbers) - start) / fps
    p, q = poses_from_world_to_cam(np.stack(w2c))
    return Trajectory(
        p, q, np.stack(K), width, height, times=times if len(times) > 1 else None, per_frame=True,
        frames=len(frames), fps=fps, source=where,
    )
