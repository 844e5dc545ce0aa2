"""Shading one view from its G-buffer: per-object colours from the style palette, ambient + Lambert under
one sun, a sky gradient from the reference's top rows where nothing was hit, distance fog, and edge lines."""

from __future__ import annotations

import hashlib

import numpy as np

from videofrom3d.preview.config import PreviewConfig
from videofrom3d.preview.style import PreviewStyle
from videofrom3d.scene.camera import Camera

UP = np.array([0.0, 1.0, 0.0], np.float32)


def object_colours(style: PreviewStyle, object_count: int, seed: int, jitter: float) -> np.ndarray:
    """(object_count, 2, 3) float32: for each object id a wall colour and a roof/ground colour (surfaces
    facing up), drawn from the palette by a hash of (seed, id) weighted by the palette's cluster sizes."""
    pal = np.asarray(style.palette, np.float32)
    cdf = np.cumsum(np.asarray(style.weights, np.float64))
    cdf /= cdf[-1]
    out = np.empty((max(object_count, 1), 2, 3), np.float32)
    for i in range(out.shape[0]):
        h = hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=12).digest()
        u = [int.from_bytes(h[j : j + 4], "little") / 2**32 for j in (0, 4, 8)]
        wall = pal[min(int(np.searchsorted(cdf, u[0], side="right")), len(pal) - 1)]
        roof = pal[min(int(np.searchsorted(cdf, u[1], side="right")), len(pal) - 1)]
        gain = 1.0 + jitter * (2.0 * u[2] - 1.0)
        out[i, 0] = wall * gain
        out[i, 1] = roof * gain
    return np.clip(out, 0.0, 1.0)


def shade_view(
    normals: np.ndarray,
    object_ids: np.ndarray,
    depth: np.ndarray,
    cam: Camera,
    style: PreviewStyle,
    cfg: PreviewConfig,
    seed: int,
    fog_distance: float,
    return_groups: bool = False,
):
    """(H, W, 3) world normals, (H, W) object ids (-1 = miss), (H, W) depth -> (H, W, 3) float32 shaded view
    without lines. Same inputs, same bytes. ``return_groups`` also returns the (H, W) colour group of each
    pixel (2 * object id + 1 for surfaces facing up; -1 = sky), for :func:`match_objects`."""
    hit = object_ids >= 0
    rx, ry, rz = view_ray_planes(cam)
    nx, ny, nz = (normals[..., c].astype(np.float32) for c in range(3))
    # face the camera: mesh winding is not trusted
    sign = np.where(nx * rx + ny * ry + nz * rz > 0, np.float32(-1), np.float32(1))
    sun = np.asarray(cfg.sun_direction, np.float32)
    sun = sun / max(float(np.linalg.norm(sun)), 1e-9)
    up = sign * ny
    lambert = np.maximum(sign * (nx * sun[0] + ny * sun[1] + nz * sun[2]), 0)
    light = np.float32(cfg.ambient) * (np.float32(0.8) + np.float32(0.2) * up) + np.float32(cfg.diffuse) * lambert
    count = int(object_ids.max()) + 1 if hit.any() else 1
    lut = object_colours(style, count, seed, cfg.colour_jitter).reshape(-1, 3)
    index = np.where(hit, object_ids, 0) * 2 + (up > 0.7)
    colour = np.take(lut, index, axis=0)
    colour *= light[..., None]
    horizon = np.asarray(style.sky_horizon, np.float32)
    if cfg.fog_strength > 0 and fog_distance > 0:
        fog = np.float32(cfg.fog_strength) * (1 - np.exp(depth.astype(np.float32) * np.float32(-1.0 / fog_distance)))
        colour *= (1 - fog)[..., None]
        colour += horizon * fog[..., None]
    miss = ~hit
    if miss.any():
        elevation = np.sqrt(np.clip(ry[miss] * np.float32(1 / 0.6), 0, 1))[:, None]
        colour[miss] = horizon + (np.asarray(style.sky_top, np.float32) - horizon) * elevation
    np.clip(colour, 0.0, 1.0, out=colour)
    if return_groups:
        return colour, np.where(hit, index, -1).astype(np.int32)
    return colour


def view_ray_planes(cam: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit world-space ray directions through every pixel centre (+0.5), as three (H, W) float32 planes x, y, z."""
    R = cam.world_to_cam[:3, :3]
    M = (R.T @ np.linalg.inv(cam.K)).astype(np.float32)
    u = np.arange(cam.width, dtype=np.float32) + np.float32(0.5)
    v = np.arange(cam.height, dtype=np.float32)[:, None] + np.float32(0.5)
    planes = [M[r, 0] * u + M[r, 1] * v + M[r, 2] for r in range(3)]
    inv = 1 / np.sqrt(planes[0] * planes[0] + planes[1] * planes[1] + planes[2] * planes[2])
    return planes[0] * inv, planes[1] * inv, planes[2] * inv


def draw_lines(image: np.ndarray, edge_map: np.ndarray, style: PreviewStyle, strength: float) -> np.ndarray:
    """Blend the line colour over ``image`` by the soft edge map (H, W) in [0, 1]."""
    a = (np.clip(edge_map, 0.0, 1.0) * strength).astype(np.float32)[..., None]
    line = np.asarray(style.line_colour, np.float32)
    return (image + (line - image) * a).astype(np.float32)


def match_objects(
    fresh: np.ndarray, target: np.ndarray, mask: np.ndarray, object_ids: np.ndarray, min_pixels: int = 4
) -> np.ndarray:
    """Per-object colour gain that makes ``fresh`` agree with ``target`` on ``mask`` pixels, applied to all
    of ``fresh``: newly seen parts of an object take the colour that object already has where it was
    observed (the background, id -1, is left as it is). ``object_ids`` may be any grouping (e.g. the colour
    groups of :func:`shade_view`)."""
    idx = (object_ids + 1).astype(np.intp)
    n = int(idx.max()) + 1
    # statistics on every second pixel each way (a per-object mean needs no more)
    sub_idx = idx[::2, ::2]
    m = mask[::2, ::2] & (sub_idx > 0)
    sel = sub_idx[m]
    t_sel = target[::2, ::2][m]
    f_sel = fresh[::2, ::2][m]
    counts = np.bincount(sel, minlength=n)
    gain = np.ones((n, 3), np.float32)
    for c in range(3):
        st = np.bincount(sel, weights=t_sel[:, c], minlength=n)
        sf = np.bincount(sel, weights=f_sel[:, c], minlength=n)
        g = (st + 1e-3) / (sf + 1e-3)
        gain[:, c] = np.where(counts >= min_pixels, np.clip(g, 0.02, 50.0), 1.0)
    gain[0] = 1.0
    return np.clip(fresh * np.take(gain, idx, axis=0), 0.0, 1.0).astype(np.float32)
