"""Export oracle (runs in the bpy environment): build the test scenes, export them with the extension's
``bpy.ops.videofrom3d.export`` and record where Blender's own ``world_to_camera_view`` puts test points.

    .venv-bpy/bin/python tests/blender/make_oracle.py OUT        # OUT/<case>/{scene.glb, camera.json, oracle.json}
    .venv-bpy/bin/python tests/blender/make_oracle.py --regen    # the committed tests/fixtures/blender

oracle.json: {"points_blender": (P, 3) Blender world points, "frames": {frame: (P, 2) pixels, top-left
origin, pixel centres at +0.5 (u = x * W, v = (1 - y) * H)}, "size": [W, H]}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bpy_helpers as h  # noqa: E402

CASES = {
    # lens, sensor, shift and a Track-To constraint keyed over 48 frames (issue 17)
    "track_to": dict(),
    # vertical sensor fit, non-square pixels, 50 % resolution, another frame rate
    "vertical_aspect": dict(width=640, height=512, frames=12, lens=50.0, sensor=(32.0, 18.0), fit="VERTICAL",
                            shift=(-0.05, 0.08), pixel_aspect=(1.0, 1.25), percentage=50, fps=30),
}
ORACLE_FRAMES = (0, 0.4, 1.0)  # fractions of the range


def make_case(out: Path, **kw) -> None:
    import numpy as np
    from bpy_extras.object_utils import world_to_camera_view
    from mathutils import Vector

    bpy = h.bpy
    scene, cam = h.camera_scene(**kw)
    h.enable_extension()
    result = bpy.ops.videofrom3d.export(directory=str(out))
    assert result == {"FINISHED"}, result
    r = scene.render
    W, H = r.resolution_x * r.resolution_percentage // 100, r.resolution_y * r.resolution_percentage // 100
    pts = np.random.default_rng(0).uniform((-2.0, -2.0, 0.0), (4.0, 3.0, 2.5), (64, 3))
    frames = {}
    for a in ORACLE_FRAMES:
        f = round(scene.frame_start + a * (scene.frame_end - scene.frame_start))
        scene.frame_set(f)
        bpy.context.view_layer.update()
        uv = []
        for p in pts:
            v = world_to_camera_view(scene, cam, Vector(p))
            uv.append([v.x * W, (1.0 - v.y) * H])
        frames[str(f)] = uv
    doc = {"points_blender": pts.tolist(), "frames": frames, "size": [W, H]}
    (out / "oracle.json").write_text(json.dumps(doc, indent=1))
    h.disable_extension()


def main(argv: list[str]) -> int:
    out = h.ROOT / "tests" / "fixtures" / "blender" if argv[:1] == ["--regen"] else Path(argv[0])
    for name, kw in CASES.items():
        make_case(out / name, **kw)
        print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
