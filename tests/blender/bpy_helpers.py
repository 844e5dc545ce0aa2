"""Helpers for the tests that run inside bpy (the .venv-bpy environment): a private Blender user folder,
the extension enabled the way Blender enables an installed one, and the scenes the tests build."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "blender" / "videofrom3d"
REPO = "vf3dtest"
MODULE = f"bl_ext.{REPO}.videofrom3d"

_USER = Path(tempfile.mkdtemp(prefix="vf3d-blender-user-"))
for _k in ("CONFIG", "SCRIPTS", "EXTENSIONS"):  # before bpy is imported: never touch the real user folder
    os.environ.setdefault(f"BLENDER_USER_{_k}", str(_USER / _k.lower()))
for _d in ("blender_org", "user_default"):
    (Path(os.environ["BLENDER_USER_EXTENSIONS"]) / _d).mkdir(parents=True, exist_ok=True)

import bpy  # noqa: E402  (after the user folders are set; bpy puts addon_utils on the path)


def reset() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)


def enable_extension(cli: str | None = None):
    """Symlink blender/videofrom3d into a local extension repository and enable it as ``bl_ext.vf3dtest.videofrom3d``."""
    repos = bpy.context.preferences.extensions.repos
    repo = repos.get(REPO) if hasattr(repos, "get") else None
    if repo is None:
        folder = _USER / "repo"
        folder.mkdir(exist_ok=True)
        repo = repos.new(name=REPO, module=REPO, custom_directory=str(folder), source="USER")
    link = Path(repo.directory) / "videofrom3d"
    if not link.exists():
        link.symlink_to(SOURCE, target_is_directory=True)
    bpy.ops.extensions.repo_refresh_all()
    import addon_utils

    mod = addon_utils.enable(MODULE, default_set=True, handle_error=_raise)
    if mod is None:
        raise RuntimeError(f"could not enable {MODULE}")
    if cli is not None:
        bpy.context.preferences.addons[MODULE].preferences.cli = cli
    return mod


def disable_extension() -> None:
    import addon_utils

    addon_utils.disable(MODULE, default_set=True, handle_error=_raise)


def _raise(e):
    raise e


def camera_scene(width=720, height=480, frames=48, lens=35.0, sensor=(36.0, 24.0), fit="AUTO", shift=(0.1, -0.05),
                 pixel_aspect=(1.0, 1.0), percentage=100, fps=24):
    """Two boxes and a camera with keyed location and lens, aimed by a Track-To constraint at an empty."""
    reset()
    scene = bpy.context.scene
    r = scene.render
    r.resolution_x, r.resolution_y, r.resolution_percentage = width, height, percentage
    r.pixel_aspect_x, r.pixel_aspect_y = pixel_aspect
    r.fps, r.fps_base = fps, 1.0
    scene.frame_start, scene.frame_end = 1, frames
    bpy.ops.mesh.primitive_cube_add(size=2.0, location=(0.0, 0.0, 1.0))
    bpy.ops.mesh.primitive_cube_add(size=1.0, location=(3.0, 1.0, 0.5))
    data = bpy.data.cameras.new("Camera")
    data.lens, (data.sensor_width, data.sensor_height), data.sensor_fit = lens, sensor, fit
    data.shift_x, data.shift_y = shift
    cam = bpy.data.objects.new("Camera", data)
    scene.collection.objects.link(cam)
    scene.camera = cam
    target = bpy.data.objects.new("Target", None)
    target.location = (0.5, 0.5, 0.8)
    scene.collection.objects.link(target)
    c = cam.constraints.new("TRACK_TO")
    c.target, c.track_axis, c.up_axis = target, "TRACK_NEGATIVE_Z", "UP_Y"
    mid = max(2, frames // 2)
    for f, loc, mm in ((1, (9.0, -7.0, 3.0), lens), (mid, (1.0, -10.0, 4.5), lens * 1.3), (frames, (-8.0, -6.0, 2.0), lens)):
        cam.location = loc
        cam.keyframe_insert("location", frame=f)
        data.lens = mm
        data.keyframe_insert("lens", frame=f)
    return scene, cam
