"""The trajectory picture (``videofrom3d trajectory preview``, ``WORK/trajectory.png``): the camera path seen
from above beside the first view rendered from the G-buffer."""

from __future__ import annotations

import sys
from pathlib import Path


def write_trajectory_preview(job, out_png: str | Path, backend: str = "auto") -> Path:
    """The trajectory picture of ``job`` (``videofrom3d trajectory preview``): top-down plan with the path,
    anchor frustums and arcs, beside the first frame rendered with depth + normal shading."""
    from videofrom3d.job import job_cameras
    from videofrom3d.scene.mesh import load_scene
    from videofrom3d.scene.plot import PANEL_W, shade_gbuffer, trajectory_picture, write_png

    scene = load_scene(job.scene.path, up=job.scene.up, unit_scale=job.scene.unit_scale)
    cameras = job_cameras(job)
    cam = cameras[0].resized(PANEL_W, max(1, round(cameras[0].height * PANEL_W / cameras[0].width)))
    try:
        from videofrom3d.prepare.gbuffer import make_renderer

        gb = make_renderer(scene, backend=backend).render(cam)
        view = shade_gbuffer(gb.depth, gb.normal, gb.hit, gb.object_id)
    except Exception as e:  # the plan alone is still useful
        print(f"note: first view not rendered ({type(e).__name__}: {e}); the plan alone", file=sys.stderr)
        view = None
    title = f"{job.name}  -  camera path over {job.scene.path.name}, seen from above"
    return write_png(out_png, trajectory_picture(scene, cameras, job.frames_per_arc, title=title, view=view))
