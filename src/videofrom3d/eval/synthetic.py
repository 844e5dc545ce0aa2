"""A small analytic scene rendered exactly, written as a work folder: a textured back wall and a nearer
textured card, seen by a camera sliding sideways. Tests and the eval self-check use it where a rendered
example is not at hand; frames, depth, flows and edges are exact, so every metric has a known answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from videofrom3d.io.images import write_image
from videofrom3d.io.workfolder import WorkFolder
from videofrom3d.prepare.arcs import PreparedArc
from videofrom3d.prepare.flow import reprojection_flow
from videofrom3d.scene.camera import Camera, intrinsics_from_fov, pixel_grid


def _texture(seed: int, size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tex = rng.random((size, size, 3)).astype(np.float32)
    return cv2.GaussianBlur(tex, (0, 0), 0.8)


def _sample(tex: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear, wrapping texture lookup at texel coordinates (u, v)."""
    return cv2.remap(tex, u.astype(np.float32), v.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


def render_view(cam: Camera, wall_z: float = 6.0, card: tuple[float, float, float, float, float] = (-0.8, 0.8, -0.6, 0.6, 3.0),
                seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact render of the scene: (H, W, 3) image, (H, W) depth along +z, (H, W) object id (0 wall, 1 card).

    The wall is the plane z = ``wall_z``; the card spans x0..x1, y0..y1 on the plane z = ``card[4]``.
    Cameras must look along +z without rotation (world_to_cam rotation = identity)."""
    w, h = cam.width, cam.height
    uv = pixel_grid(w, h)
    c = cam.center
    rays = (uv - cam.K[:2, 2]) / np.array([cam.K[0, 0], cam.K[1, 1]])  # direction (x, y, 1)
    x0, x1, y0, y1, cz = card
    # card hit
    tc = cz - c[2]
    px, py = c[0] + rays[..., 0] * tc, c[1] + rays[..., 1] * tc
    on_card = (px >= x0) & (px <= x1) & (py >= y0) & (py <= y1)
    tw = wall_z - c[2]
    wx, wy = c[0] + rays[..., 0] * tw, c[1] + rays[..., 1] * tw
    scale = 12.0  # texels per world unit
    wall = _sample(_texture(seed), wx * scale, wy * scale)
    card_img = _sample(_texture(seed + 1), px * scale * 1.5, py * scale * 1.5) * np.array([1.0, 0.6, 0.4], np.float32)
    img = np.where(on_card[..., None], card_img, wall).astype(np.float32)
    depth = np.where(on_card, tc, tw).astype(np.float32)
    obj = on_card.astype(np.int32)
    return img, depth, obj


def geometry_edge_map(depth: np.ndarray) -> np.ndarray:
    """Soft edge map (H, W) of depth discontinuities, about 3 px wide."""
    d = depth.astype(np.float32)
    gx = np.abs(np.diff(d, axis=1, append=d[:, -1:]))
    gy = np.abs(np.diff(d, axis=0, append=d[-1:, :]))
    edge = ((gx > 0.05 * d) | (gy > 0.05 * d)).astype(np.float32)
    edge = cv2.dilate(edge, np.ones((3, 3), np.uint8))
    return cv2.GaussianBlur(edge, (0, 0), 0.6)


def make_synthetic_work(
    work: str | Path, arcs: int = 2, frames_per_arc: int = 4, width: int = 96, height: int = 64,
    step: float = 0.06, seed: int = 0, style: bool = True,
) -> tuple[Path, np.ndarray]:
    """Write ``work`` (prepare/arcNNN, anchors, frames, manifest, style.png) and return (path, (T, H, W, 3)
    exact frames), T = arcs * frames_per_arc + 1. The camera slides by ``step`` world units per frame."""
    work = Path(work)
    n = frames_per_arc
    total = arcs * n + 1
    K = intrinsics_from_fov(width, height, fov_y_deg=50.0)
    cams, frames, depths, objs = [], [], [], []
    for t in range(total):
        w2c = np.eye(4)
        w2c[0, 3] = -(t - total / 2) * step  # camera centre x = (t - T/2) * step
        cam = Camera(K, w2c, width, height)
        img, d, o = render_view(cam, seed=seed)
        cams.append(cam)
        frames.append(img)
        depths.append(d)
        objs.append(o)
    frames = np.stack(frames)
    for k in range(arcs):
        sl = range(k * n, (k + 1) * n + 1)
        dep = np.stack([depths[i] for i in sl])
        cam_k = tuple(cams[i] for i in sl)
        fwd, fwd_valid = zip(*(reprojection_flow(dep[i], cam_k[i], dep[i + 1], cam_k[i + 1]) for i in range(n)))
        e2s, e2s_valid = reprojection_flow(dep[n], cam_k[n], dep[0], cam_k[0])
        normals = np.zeros((n + 1, height, width, 3), np.float32)
        normals[..., 2] = -1.0
        arc = PreparedArc(
            index=k, first_frame=k * n, cameras=cam_k,
            edge_maps=np.stack([geometry_edge_map(d) for d in dep]), depth=dep, normals=normals,
            object_ids=np.stack([objs[i] for i in sl]), flow_forward=np.stack(fwd),
            flow_forward_valid=np.stack(fwd_valid), flow_end_to_start=e2s, flow_end_to_start_valid=e2s_valid,
        )
        arc.save(WorkFolder(work).arc(k))
    replace_work_frames(work, frames)
    for k in range(arcs + 1):
        write_image(WorkFolder(work).anchor(k), frames[k * n])
    doc = {"frames_per_arc": n, "frames": total}
    if style:
        write_image(work / "style.png", frames[total // 2])
        doc["style"] = {"image": "style.png"}
    (work / "manifest.json").write_text(json.dumps(doc))
    return work, frames


def replace_work_frames(work: str | Path, frames) -> None:
    """Replace WORK/frames with ``frames`` (T, H, W, 3)."""
    folder = Path(work) / "frames"
    folder.mkdir(parents=True, exist_ok=True)
    for p in folder.glob("*.png"):
        p.unlink()
    for t, img in enumerate(frames):
        write_image(folder / f"{t:04d}.png", img)
