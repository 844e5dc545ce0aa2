"""The trajectory picture (``videofrom3d trajectory preview``, ``WORK/trajectory.png``): the camera path seen
from above beside a thumbnail of every anchor view rendered from the G-buffer, with the camera checks."""

from __future__ import annotations

import sys
from pathlib import Path

THUMB_WIDTH = 240  # pixels across each anchor view before it is fitted into the grid


def write_trajectory_preview(job, out_png: str | Path, backend: str = "auto") -> Path:
    """The trajectory picture of ``job`` (``videofrom3d trajectory preview``): top-down plan with the path,
    anchor frustums and arcs, beside every anchor view (frame k*N) shaded by depth and normals; the camera
    checks warn (one line per kind) and mark the anchor views they flag."""
    from videofrom3d.job import job_cameras
    from videofrom3d.prepare.camera_checks import KINDS, warn_cameras
    from videofrom3d.scene.mesh import load_scene, warn_scale
    from videofrom3d.scene.plot import shade_gbuffer, trajectory_picture, write_png

    scene = load_scene(job.scene.path, up=job.scene.up, unit_scale=job.scene.unit_scale)
    warn_scale(scene)
    cameras = job_cameras(job, bounds=scene.bounds)
    n = job.frames_per_arc
    anchors = list(range(0, len(cameras), n))
    views = []
    try:
        from videofrom3d.prepare.gbuffer import make_renderer

        renderer = make_renderer(scene, backend=backend)
        try:
            found = warn_cameras(scene, cameras, renderer=renderer)
            for k, f in enumerate(anchors):
                c = cameras[f]
                gb = renderer.render(c.resized(THUMB_WIDTH, max(1, round(c.height * THUMB_WIDTH / c.width))))
                kinds = [kind for kind in KINDS if f in found.get(kind, ())]
                label = f"anchor {k} (frame {f})" + (f": {', '.join(kinds)}" if kinds else "")
                views.append((label, shade_gbuffer(gb.depth, gb.normal, gb.hit, gb.object_id), bool(kinds)))
        finally:
            renderer.close()
    except (ImportError, RuntimeError) as e:  # no G-buffer backend: the plan alone is still useful
        print(f"videofrom3d: note: anchor views not rendered ({e}); the plan alone", file=sys.stderr)
    title = f"{job.name}  -  camera path over {job.scene.path.name}, seen from above"
    return write_png(out_png, trajectory_picture(scene, cameras, n, title=title, views=views))
