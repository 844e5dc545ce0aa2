"""Camera checks before work: frames whose camera is inside closed geometry, whose view is mostly a surface
closer than a scene-scale threshold, or mostly empty. Each frame is rendered as a small G-buffer; a kind of
problem is one warning line naming its frame ranges."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from videofrom3d.errors import VideoFrom3DWarning

CHECK_WIDTH = 64  # pixels across the small G-buffer each frame is checked on
MOSTLY = 0.5  # "mostly": more than this fraction of the view's pixels
CLOSE_FRACTION_OF_SCENE = 0.01  # "close": nearer than 1% of the scene's bounding-box diagonal
EMPTY_HIT_FRACTION = 0.2  # "empty": geometry in fewer than 20% of the pixels

KINDS = {
    "inside": "camera inside closed geometry (the view is mostly the back of faces)",
    "close": "view mostly closer than {close:.3g} scene units (1% of the scene's size)",
    "empty": "view mostly empty (geometry in under 20% of it)",
}


def view_flags(depth: np.ndarray, normal: np.ndarray, hit: np.ndarray, ray_dirs: np.ndarray,
               close: float) -> dict[str, bool]:
    """One view's problems. (H, W) depth along +z (0 = miss), (H, W, 3) world normals, (H, W) hit, (H, W, 3)
    world ray directions, ``close`` in scene units -> {"inside", "close", "empty"}: bool ("close" counts front
    faces only). A pixel sees the back of a face when its normal points along the ray (counter-clockwise faces
    face outwards)."""
    pixels = hit.size
    back = hit & (np.einsum("hwc,hwc->hw", normal, ray_dirs) > 0)
    near = hit & ~back & (depth < close)  # inside geometry is its own kind
    return {
        "inside": bool(back.sum() > MOSTLY * pixels),
        "close": bool(near.sum() > MOSTLY * pixels),
        "empty": bool(hit.sum() < EMPTY_HIT_FRACTION * pixels),
    }


def ray_directions(cam) -> np.ndarray:
    """(H, W, 3) world directions of the rays through ``cam``'s pixel centres (OpenCV camera, +z forward)."""
    from videofrom3d.scene.camera import camera_rays

    return camera_rays(cam) @ cam.world_to_cam[:3, :3].astype(np.float32)  # R^T d for each ray


def small(cam, width: int = CHECK_WIDTH):
    """``cam`` resized to ``width`` pixels across (the aspect kept, at least 2 pixels tall)."""
    return cam.resized(width, max(2, round(cam.height * width / cam.width)))


def check_cameras_in_scene(scene, cameras: Sequence, renderer=None, backend: str = "embree") -> dict[str, list[int]]:
    """{kind: [frame, ...]} of every frame with that problem (kinds in :data:`KINDS`; empty lists dropped).
    Without ``renderer`` the small views are ray cast (embree): a rasteriser processes every triangle per
    view whatever its size, ~4x the time here on a 100k-triangle scene."""
    from videofrom3d.prepare.gbuffer import make_renderer

    own = renderer is None
    renderer = renderer or make_renderer(scene, backend=backend)
    close = scene_close_distance(scene)
    found: dict[str, list[int]] = {k: [] for k in KINDS}
    try:
        for i, cam in enumerate(cameras):
            c = small(cam)
            gb = renderer.render(c)
            for kind, bad in view_flags(gb.depth, gb.normal, gb.hit, ray_directions(c), close).items():
                if bad:
                    found[kind].append(i)
    finally:
        if own:
            renderer.close()
    return {k: v for k, v in found.items() if v}


def scene_close_distance(scene) -> float:
    lo, hi = scene.bounds
    return CLOSE_FRACTION_OF_SCENE * float(np.linalg.norm(np.asarray(hi) - np.asarray(lo)))


def frame_ranges(frames: Sequence[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> "0-2, 5, 7-8"."""
    parts, start, prev = [], None, None
    for f in sorted(frames):
        if start is None:
            start = prev = f
        elif f == prev + 1:
            prev = f
        else:
            parts.append(f"{start}-{prev}" if prev > start else f"{start}")
            start = prev = f
    if start is not None:
        parts.append(f"{start}-{prev}" if prev > start else f"{start}")
    return ", ".join(parts)


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def camera_warnings(found: dict[str, list[int]], scene) -> list[str]:
    """One line per kind: ``camera inside closed geometry (...) at 2 frames: 0-1``."""
    close = scene_close_distance(scene)
    return [f"{KINDS[k].format(close=close)} at {plural(len(v), 'frame')}: {frame_ranges(v)}"
            for k, v in found.items()]


CHECKS_REVISION = 2  # bump when a threshold or the test changes, so cached results are redone


def checks_key(scene, cameras: Sequence) -> str:
    """What the checks' result depends on: the geometry, every camera and the checks' revision."""
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    for a in (scene.vertices, scene.faces):
        h.update(np.ascontiguousarray(a).tobytes())
    for c in cameras:
        h.update(np.ascontiguousarray(c.K, np.float64).tobytes())
        h.update(np.ascontiguousarray(c.world_to_cam, np.float64).tobytes())
        h.update(f"{c.width}x{c.height}".encode())
    h.update(f"rev{CHECKS_REVISION}".encode())
    return h.hexdigest()


def warn_cameras(scene, cameras: Sequence, renderer=None, found: dict | None = None) -> dict[str, list[int]]:
    """Run the checks (unless ``found`` holds an earlier result for the same key) and warn
    (:class:`VideoFrom3DWarning`) once per kind; returns what was found."""
    if found is None:
        found = check_cameras_in_scene(scene, cameras, renderer=renderer)
    for line in camera_warnings(found, scene):
        warnings.warn(line, VideoFrom3DWarning, stacklevel=2)
    return found
