# SPDX-License-Identifier: GPL-3.0-or-later
"""Operators: export, render, preview edges, cancel, import results, open the report viewer."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import urllib.parse
from pathlib import Path

import bpy
from bpy.props import StringProperty

from . import importers, jobs
from .client import JobClient, LocalRunner, ServerRunner
from .export import ExportError, export_scene, frame_numbers
from .prefs import Settings


def arc_length(count: int, wanted: int) -> int:
    """The divisor of ``count - 1`` nearest to ``wanted`` (ties: the larger), so arcs of N+1 frames with
    shared ends cover the timeline exactly (K * N + 1 = count)."""
    n = count - 1
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return min(divisors, key=lambda d: (abs(d - wanted), -d))


def snap16(x: int) -> int:
    return max(16, int(round(x / 16)) * 16)


def _q(s: str) -> str:
    return json.dumps(s)  # a TOML basic string is a JSON string for our characters


def job_toml(name: str, fps: float, frames: int, frames_per_arc: int, size: tuple[int, int], seed: int,
             styles: list[str], prompt: str) -> str:
    """The job file for an exported scene (paths relative to it: scene.glb, camera.json, style files)."""
    lines = [
        f"name = {_q(name)}", f"seed = {seed}", f"fps = {fps!r}", "",
        "[scene]", 'path = "scene.glb"', 'up = "y"', "",
        "[trajectory]", 'path = "camera.json"', f"frames = {frames}", "",
        "[size]", f"width = {size[0]}", f"height = {size[1]}", "",
        "[arcs]", f"frames_per_arc = {frames_per_arc}", "",
    ]
    for s in styles:
        lines += ["[[style]]", f"image = {_q(s)}", f"identifier = {_q(prompt)}", ""]
    return "\n".join(lines)


def work_folder(scene) -> Path:
    """``work_dir/<scene name>``; a ``//`` path in an unsaved file goes to the extension's user folder."""
    wd = scene.videofrom3d.work_dir or "//videofrom3d/"
    if wd.startswith("//") and not bpy.data.filepath:
        if __package__.startswith("bl_ext."):
            base = Path(bpy.utils.extension_path_user(__package__, create=True))
        else:
            base = Path(tempfile.gettempdir()) / "videofrom3d"
    else:
        base = Path(bpy.path.abspath(wd))
    return base / re.sub(r"[^A-Za-z0-9_.-]+", "_", scene.name)


def prepare_inputs(context, folder: Path) -> tuple[str, list[Path], int, int]:
    """Export, copy the style images and write job.toml into ``folder``; (toml, uploads, frames, N)."""
    scene = context.scene
    p = scene.videofrom3d
    glb, cam = export_scene(context, folder)
    frames = len(frame_numbers(scene))
    if frames < 2:
        raise ExportError("the frame range needs at least 2 frames")
    styles = []
    for i, st in enumerate(s for s in p.styles if s.path):
        src = Path(bpy.path.abspath(st.path))
        if not src.is_file():
            raise ExportError(f"style image not found: {src}")
        dst = folder / f"style{i}{src.suffix.lower()}"
        shutil.copyfile(src, dst)
        styles.append(dst)
    r = scene.render
    w, h = r.resolution_x * r.resolution_percentage // 100, r.resolution_y * r.resolution_percentage // 100
    n = arc_length(frames, p.frames_per_arc)
    text = job_toml(scene.name, r.fps / r.fps_base, frames, n, (snap16(w), snap16(h)), p.seed,
                    [s.name for s in styles], p.prompt)
    (folder / "job.toml").write_text(text)
    return text, [glb, cam, *styles], frames, n


def start(context, until: str, on_finish) -> set[str]:
    scene = context.scene
    p = scene.videofrom3d
    settings = Settings(context)
    work = work_folder(scene)
    wm = context.window_manager
    wm.progress_begin(0, 2)
    try:
        text, files, frames, n = prepare_inputs(context, work / "input")
        wm.progress_update(1)
    finally:
        wm.progress_end()
    out = work / ("render" if until == "render" else "edges_preview")
    if settings.mode == "SERVER":
        if until != "render":
            raise ExportError("Preview edges runs in local mode (the server renders whole jobs)")
        server = JobClient(settings.url, settings.token)
        server.health(timeout=0.5)  # sub-second liveness check: a dead server fails here, in one line
        runner = ServerRunner(server, text, files, out, engine=p.engine)
    else:
        runner = LocalRunner(settings.cli, work / "input" / "job.toml", out, engine=p.engine,
                             arcs=(frames - 1) // n, until=until)
    p.state, p.stage, p.fraction, p.message, p.job_id = "queued", "", 0.0, "", ""
    p.frames = frames
    p["_work"] = str(out)
    p["_frames_per_arc"] = n
    jobs.run(scene, runner, on_finish)
    return {"FINISHED"}


def _render_finished(scene, state: str) -> None:
    p = scene.videofrom3d
    if state != "done":
        return
    out = Path(p["_work"])
    p.video = str(out / "video.mp4")
    try:
        folder, _count = importers.collect_edge_maps(out, int(p["_frames_per_arc"]))
        p.edges = str(folder)
    except FileNotFoundError:
        p.edges = ""


def _edges_finished(scene, state: str) -> None:
    p = scene.videofrom3d
    if state != "done":
        return
    folder, count = importers.collect_edge_maps(Path(p["_work"]), int(p["_frames_per_arc"]))
    p.edges = str(folder)
    importers.camera_background_edges(scene, str(folder), count)


class _Base:
    @classmethod
    def poll(cls, context):
        return context.scene is not None


class VIDEOFROM3D_OT_export(_Base, bpy.types.Operator):
    """Write DIR/scene.glb and DIR/camera.json for the active scene and camera"""

    bl_idname = "videofrom3d.export"
    bl_label = "Export scene and camera"
    directory: StringProperty(name="Folder", subtype="DIR_PATH")

    def execute(self, context):
        if not self.directory:
            self.report({"ERROR"}, "videofrom3d: give a directory")
            return {"CANCELLED"}
        try:
            export_scene(context, self.directory)
        except ExportError as e:
            self.report({"ERROR"}, f"videofrom3d: {e}")
            return {"CANCELLED"}
        return {"FINISHED"}


class _RunOperator(_Base):
    until = "render"

    @classmethod
    def poll(cls, context):
        return context.scene is not None and not jobs.running(context.scene)

    def execute(self, context):
        p = context.scene.videofrom3d
        try:
            start(context, self.until, _render_finished if self.until == "render" else _edges_finished)
        except (ExportError, OSError, RuntimeError) as e:
            p.state, p.message = "failed", str(e).splitlines()[0]
            self.report({"ERROR"}, f"videofrom3d: {p.message}")
            return {"CANCELLED"}
        if p.state == "failed":
            self.report({"ERROR"}, f"videofrom3d: {p.message}")
            return {"CANCELLED"}
        return {"FINISHED"}


class VIDEOFROM3D_OT_render(_RunOperator, bpy.types.Operator):
    """Export the scene and camera and render the video (runs in the background; synchronous with -b)"""

    bl_idname = "videofrom3d.render"
    bl_label = "Render"


class VIDEOFROM3D_OT_preview_edges(_RunOperator, bpy.types.Operator):
    """Compute the edge maps the model will see and show them behind the camera"""

    bl_idname = "videofrom3d.preview_edges"
    bl_label = "Preview edges"
    until = "prepare"


class VIDEOFROM3D_OT_cancel(_Base, bpy.types.Operator):
    """Stop the running render (its work folder stays resumable)"""

    bl_idname = "videofrom3d.cancel"
    bl_label = "Cancel"

    def execute(self, context):
        if not jobs.cancel(context.scene):
            self.report({"WARNING"}, "videofrom3d: nothing is running")
        return {"FINISHED"}


class _ResultOperator(_Base):
    @classmethod
    def poll(cls, context):
        p = context.scene.videofrom3d if context.scene else None
        return p is not None and bool(p.video) and Path(bpy.path.abspath(p.video)).is_file()


class VIDEOFROM3D_OT_import_strip(_ResultOperator, bpy.types.Operator):
    """Put the rendered video on the timeline at the scene's start frame"""

    bl_idname = "videofrom3d.import_strip"
    bl_label = "Import as strip"

    def execute(self, context):
        importers.import_strip(context.scene, context.scene.videofrom3d.video)
        return {"FINISHED"}


class VIDEOFROM3D_OT_camera_background(_ResultOperator, bpy.types.Operator):
    """Show the rendered video behind the scene camera"""

    bl_idname = "videofrom3d.camera_background"
    bl_label = "Camera background"

    def execute(self, context):
        if context.scene.camera is None:
            self.report({"ERROR"}, "videofrom3d: the scene has no camera")
            return {"CANCELLED"}
        importers.camera_background_clip(context.scene, context.scene.videofrom3d.video)
        return {"FINISHED"}


class VIDEOFROM3D_OT_open_viewer(_ResultOperator, bpy.types.Operator):
    """Open the render's report viewer in a browser (`videofrom3d report`)"""

    bl_idname = "videofrom3d.open_viewer"
    bl_label = "Open report viewer"

    def execute(self, context):
        settings = Settings(context)
        p = context.scene.videofrom3d
        if settings.mode == "SERVER":
            # the browser cannot send the Bearer header: the server trades ?token= for a cookie once
            url = f"{settings.url.rstrip('/')}/v1/jobs/{p.job_id}/files/report/index.html"
            if settings.token:
                url += "?token=" + urllib.parse.quote(settings.token, safe="")
        else:
            work = Path(bpy.path.abspath(p.video)).parent
            run = subprocess.run([*settings.cli, "report", str(work)], capture_output=True, text=True)
            index = work / "report" / "index.html"
            if run.returncode != 0 or not index.is_file():
                lines = (run.stderr or run.stdout or "no report").strip().splitlines()
                self.report({"ERROR"}, f"videofrom3d: {lines[-1] if lines else 'no report'}")
                return {"CANCELLED"}
            url = index.as_uri()
        bpy.ops.wm.url_open(url=url)
        return {"FINISHED"}


class VIDEOFROM3D_OT_style_add(_Base, bpy.types.Operator):
    """Add a style image slot"""

    bl_idname = "videofrom3d.style_add"
    bl_label = "Add style image"

    def execute(self, context):
        context.scene.videofrom3d.styles.add()
        return {"FINISHED"}


class VIDEOFROM3D_OT_style_remove(_Base, bpy.types.Operator):
    """Remove this style image"""

    bl_idname = "videofrom3d.style_remove"
    bl_label = "Remove style image"
    index: bpy.props.IntProperty()

    def execute(self, context):
        context.scene.videofrom3d.styles.remove(self.index)
        return {"FINISHED"}


classes = (
    VIDEOFROM3D_OT_export, VIDEOFROM3D_OT_render, VIDEOFROM3D_OT_preview_edges, VIDEOFROM3D_OT_cancel,
    VIDEOFROM3D_OT_import_strip, VIDEOFROM3D_OT_camera_background, VIDEOFROM3D_OT_open_viewer,
    VIDEOFROM3D_OT_style_add, VIDEOFROM3D_OT_style_remove,
)
