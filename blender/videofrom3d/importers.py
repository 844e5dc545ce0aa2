# SPDX-License-Identifier: GPL-3.0-or-later
"""Results back into Blender: the video as a movie strip and as the camera's background clip, the edge maps
as the camera's background image sequence."""

from __future__ import annotations

import shutil
from pathlib import Path

import bpy

STRIP_NAME = "videofrom3d"


def collect_edge_maps(work: Path, frames_per_arc: int) -> tuple[Path, int]:
    """``WORK/prepare/arcNNN/edges/NNNN.png`` (local index, arcs share their ends) -> ``WORK/edges/NNNN.png``
    numbered by global frame from 0; returns the folder and the frame count."""
    work = Path(work)
    out = work / "edges"
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    count = 0
    for k, arc in enumerate(sorted(p for p in (work / "prepare").glob("arc*") if p.is_dir())):
        for png in sorted((arc / "edges").glob("*.png")):
            g = k * frames_per_arc + int(png.stem)
            shutil.copyfile(png, out / f"{g:04d}.png")
            count = max(count, g + 1)
    if count == 0:
        raise FileNotFoundError(f"no edge maps under {work / 'prepare'}")
    return out, count


def _strips(scene):
    se = scene.sequence_editor or scene.sequence_editor_create()
    return se.strips if hasattr(se, "strips") else se.sequences  # 5.x renamed Sequence -> Strip


def import_strip(scene, video: str):
    """The video as a movie strip at the scene's start frame, in the first channel above the others."""
    strips = _strips(scene)
    old = strips.get(STRIP_NAME) if hasattr(strips, "get") else None
    if old is not None:
        strips.remove(old)
    channel = 1 + max((s.channel for s in strips), default=0)
    return strips.new_movie(name=STRIP_NAME, filepath=bpy.path.abspath(video), channel=channel,
                            frame_start=scene.frame_start)


def _background(cam_data, kind: str):
    for bg in cam_data.background_images:
        if bg.source == kind:
            return bg
    bg = cam_data.background_images.new()
    bg.source = kind
    return bg


def camera_background_clip(scene, video: str):
    """The video as the scene camera's background movie clip, starting at the scene's start frame."""
    cam = scene.camera
    clip = bpy.data.movieclips.load(bpy.path.abspath(video), check_existing=False)
    clip.frame_start = scene.frame_start
    bg = _background(cam.data, "MOVIE_CLIP")
    bg.clip = clip
    bg.use_camera_clip = False
    bg.alpha = 0.8
    cam.data.show_background_images = True
    return bg


def camera_background_edges(scene, folder: str, count: int):
    """The edge maps (``0000.png``..) as the camera's background image sequence, frame 0 at the scene's start."""
    cam = scene.camera
    first = sorted(Path(bpy.path.abspath(folder)).glob("*.png"))[0]
    img = bpy.data.images.load(str(first), check_existing=False)
    img.source = "SEQUENCE"
    bg = _background(cam.data, "IMAGE")
    bg.image = img
    bg.image_user.frame_start = scene.frame_start
    bg.image_user.frame_duration = count
    bg.image_user.frame_offset = int(first.stem) - 1  # Blender shows file number (frame - start + 1 + offset)
    bg.image_user.use_auto_refresh = True
    bg.alpha = 1.0
    cam.data.show_background_images = True
    return bg
