"""``videofrom3d report``: a static folder that shows one work folder in any browser, from disk, with no server
and no build step.

Folder written (stable entry point ``index.html``)::

    index.html  viewer.js  viewer.css  three/ (three.js, MIT, LICENSE kept)
    data.js     window.VF3D_DATA = {version, width, height, fps, frames: [{K, world_to_cam}], anchors:
                [{frame, image, edges}], timings, eval, ...}; images as data: URLs
    scene.glb   the decimated scene (our world: Y-up, the cameras' frame); scene.js holds the same bytes
                in base64 (window.VF3D_SCENE_GLB)
    video.mp4   a copy of the work folder's video

Chromium blocks ``fetch`` and ES module imports on file:// pages and refuses file:// images as WebGL textures,
so everything the page reads goes in through classic ``<script>`` tags and data: URLs; only the video is a
plain file (a ``<video>`` element may play it).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np

from videofrom3d.io.atomic import atomic_path
from videofrom3d.report.workfolder import (
    ReportInputError,
    WorkInputs,
    default_report_dir,
    manifest_path,
    read_work,
)

STATIC = Path(__file__).parent / "static"
FORMAT = 1
THUMB_WIDTH = 360  # anchor and edge images on the frustums' far planes


def _data_url(path: Path | None, width: int = THUMB_WIDTH, grey: bool = False) -> str | None:
    if path is None or not path.is_file():
        return None
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)
    if img is None:
        return None
    h, w = img.shape[:2]
    if w > width:
        img = cv2.resize(img, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii") if ok else None


def _eval_rows(path: Path | None, run: Path) -> list[list]:
    """[[metric key, value], ...] of the run's entry in an ``eval --json`` file (numbers only)."""
    if path is None:
        return []
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        warnings.warn(f"{path}: not readable as JSON; the report has no eval table", stacklevel=2)
        return []
    runs = doc if isinstance(doc, list) else [doc]
    entry = next((r for r in runs if isinstance(r, dict) and Path(str(r.get("run", ""))).name == run.name),
                 runs[0] if runs else {})
    return [[k, v] for k, v in entry.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _load_scene(inputs: WorkInputs, scene: tuple[Path, str, float] | None):
    from videofrom3d.scene.mesh import load_scene

    spec = scene or inputs.scene_spec()
    if spec is None:
        warnings.warn(f"{inputs.work}: the manifest names no scene (a render before the report existed); the "
                      "report shows cameras only; pass --job to add the geometry", stacklevel=2)
        return None
    path, up, unit_scale = spec
    if not path.is_file():
        warnings.warn(f"scene {path} is gone; the report shows cameras only; pass --job", stacklevel=2)
        return None
    return load_scene(path, up=up, unit_scale=unit_scale)


def report_data(inputs: WorkInputs) -> dict:
    """The JSON-able object the viewer reads as ``window.VF3D_DATA``."""
    cams = inputs.cameras
    anchors = []
    for k, frame in enumerate(inputs.anchor_frames):
        arc, local = inputs.arc_of(frame)
        if k == len(inputs.anchor_frames) - 1:  # the last anchor is the last frame of the last arc
            arc, local = inputs.arcs[-1], len(inputs.arcs[-1].cameras) - 1
        anchors.append({"frame": frame, "image": _data_url(inputs.anchors[k]),
                        "edges": _data_url(arc.edges(local), grey=True)})
    return {
        "version": FORMAT,
        "title": inputs.manifest.get("job") or inputs.work.name,
        "width": cams[0].width,
        "height": cams[0].height,
        "fps": inputs.fps,
        "frames_per_arc": inputs.frames_per_arc,
        "frames": [c.to_dict() for c in cams],
        "anchors": anchors,
        "video": "video.mp4" if inputs.video is not None else None,
        "timings": inputs.stage_seconds(),
        "eval": _eval_rows(inputs.eval_json, inputs.work),
        "world": "Y-up; cameras OpenCV world_to_cam",
    }


def report_index(work: str | os.PathLike, out: str | os.PathLike | None = None) -> tuple[Path, bool]:
    """``(index.html path, stale)``: stale when the report is missing or older than the work folder's manifest."""
    index = Path(out if out is not None else default_report_dir(work)) / "index.html"
    if not index.is_file():
        return index, True
    m = manifest_path(work)
    return index, m.is_file() and m.stat().st_mtime > index.stat().st_mtime


def write_report(work: str | os.PathLike, out: str | os.PathLike | None = None,
                 scene: tuple[Path, str, float] | None = None, max_faces: int = 30_000) -> Path:
    """Write the report of ``work`` into ``out`` (default ``WORK/report``) and return ``out/index.html``.

    ``scene`` = (path, up, unit_scale) overrides the scene the manifest names. The folder is written under a
    temporary name and renamed, so a failed run leaves the previous report whole."""
    if max_faces < 1:
        raise ReportInputError(f"--max-faces must be a positive number of triangles, got {max_faces}")
    inputs = read_work(work)
    out = Path(out) if out is not None else default_report_dir(inputs.work)
    data = report_data(inputs)
    mesh = _load_scene(inputs, scene)
    with atomic_path(out, suffix="") as tmp:
        shutil.copytree(STATIC, tmp, copy_function=shutil.copyfile)  # fresh times: `view` compares them
        if mesh is not None:
            from videofrom3d.report.scene_glb import scene_glb

            glb, faces = scene_glb(mesh, max_faces)
            (tmp / "scene.glb").write_bytes(glb)
            (tmp / "scene.js").write_text("window.VF3D_SCENE_GLB = \"" + base64.b64encode(glb).decode("ascii") + "\";\n")
            data["scene"] = {"file": "scene.glb", "faces": faces, "source_faces": mesh.triangle_count,
                             "bounds": np.asarray(mesh.bounds).tolist()}
        else:
            (tmp / "scene.js").write_text("window.VF3D_SCENE_GLB = null;\n")
            data["scene"] = None
        if inputs.video is not None:
            shutil.copyfile(inputs.video, tmp / "video.mp4")
        (tmp / "data.js").write_text("window.VF3D_DATA = " + json.dumps(data, separators=(",", ":")) + ";\n")
    return out / "index.html"
