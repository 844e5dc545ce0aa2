# SPDX-License-Identifier: GPL-3.0-or-later
"""Export the visible scene as ``scene.glb`` (Y-up) and the scene camera as raw per-frame values in
``camera.json`` (schema ``videofrom3d.blender-camera/1``; videofrom3d converts it, never this module)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import bpy

CAMERA_FORMAT = "videofrom3d.blender-camera/1"


class ExportError(RuntimeError):
    """Input the export cannot use; the message is one line for the panel."""


def check_camera(scene) -> bpy.types.Object:
    cam = scene.camera
    if cam is None or cam.type != "CAMERA":
        raise ExportError("the scene has no active camera")
    if cam.data.type != "PERSP":
        raise ExportError(f"camera {cam.name!r} is {cam.data.type.lower()}; only perspective cameras are supported")
    if scene.frame_end < scene.frame_start:
        raise ExportError("the scene's frame range is empty")
    return cam


def frame_numbers(scene) -> list[int]:
    return list(range(scene.frame_start, scene.frame_end + 1, max(1, scene.frame_step)))


def sample_camera(scene, cam=None) -> dict:
    """The camera's raw values at every frame of the scene's range (the current frame is restored)."""
    cam = cam or check_camera(scene)
    r = scene.render
    doc = {
        "format": CAMERA_FORMAT,
        "camera": cam.name,
        "type": cam.data.type,
        "resolution_x": r.resolution_x,
        "resolution_y": r.resolution_y,
        "resolution_percentage": r.resolution_percentage,
        "pixel_aspect": [r.pixel_aspect_x, r.pixel_aspect_y],
        "fps": r.fps,
        "fps_base": r.fps_base,
        "frame_start": scene.frame_start,
        "frame_end": scene.frame_end,
        "frame_step": scene.frame_step,
        "scale_length": scene.unit_settings.scale_length,
        "world": "blender_z_up",
        "glb_world": "y_up",
        "blender_version": bpy.app.version_string,
        "frames": [],
    }
    current = scene.frame_current
    try:
        for f in frame_numbers(scene):
            scene.frame_set(f)
            depsgraph = bpy.context.evaluated_depsgraph_get()
            ev = cam.evaluated_get(depsgraph)
            M = ev.matrix_world.normalized()  # scale removed, rotation and translation kept
            d = ev.data
            doc["frames"].append({
                "frame": f,
                "matrix_world": [list(row) for row in M],
                "lens": d.lens,
                "sensor_width": d.sensor_width,
                "sensor_height": d.sensor_height,
                "sensor_fit": d.sensor_fit,
                "shift_x": d.shift_x,
                "shift_y": d.shift_y,
                "clip_start": d.clip_start,
                "clip_end": d.clip_end,
            })
    finally:
        scene.frame_set(current)
    return doc


def export_scene(context, directory: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``directory/scene.glb`` (visible objects, modifiers applied, Y-up, the camera's animation
    sampled per frame) and ``directory/camera.json``; returns both paths."""
    scene = context.scene
    cam = check_camera(scene)
    folder = Path(bpy.path.abspath(str(directory)))
    folder.mkdir(parents=True, exist_ok=True)
    camera_doc = sample_camera(scene, cam)
    glb = folder / "scene.glb"
    tmp = folder / "scene.tmp.glb"
    bpy.ops.export_scene.gltf(
        filepath=str(tmp),
        export_format="GLB",
        use_visible=True,
        export_apply=True,
        export_yup=True,
        export_cameras=True,
        export_lights=False,
        export_animations=True,
        export_frame_range=True,
        export_force_sampling=True,
        export_materials="NONE",
    )
    os.replace(tmp, glb)
    cam_json = folder / "camera.json"
    tmp_json = folder / "camera.json.tmp"
    tmp_json.write_text(json.dumps(camera_doc, indent=1))
    os.replace(tmp_json, cam_json)
    return glb, cam_json
