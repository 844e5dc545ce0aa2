"""Shading one view from its G-buffer: per-object colours from the style palette, ambient + Lambert under
one sun, a sky gradient from the reference's top rows where nothing was hit, distance fog, and edge lines."""

from __future__ import annotations

import hashlib

import numpy as np

from videofrom3d.preview.config import PreviewConfig
from videofrom3d.preview.geometry import view_rays
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
) -> np.ndarray:
    """(H, W, 3) world normals, (H, W) object ids (-1 = miss), (H, W) depth -> (H, W, 3) float32 shaded view
    without lines. Same inputs, same bytes."""
    hit = object_ids >= 0
    rays = view_rays(cam)
    n = normals.astype(np.float32)
    # face the camera: mesh winding is not trusted
    facing = np.einsum("hwc,hwc->hw", n, rays)
    n = np.where((facing > 0)[..., None], -n, n)
    sun = np.asarray(cfg.sun_direction, np.float32)
    sun = sun / max(float(np.linalg.norm(sun)), 1e-9)
    lambert = np.clip(n @ sun, 0.0, None)
    up = n @ UP
    light = cfg.ambient * (0.8 + 0.2 * up) + cfg.diffuse * lambert
    count = int(object_ids.max()) + 1 if hit.any() else 1
    cols = object_colours(style, count, seed, cfg.colour_jitter)
    ids = np.where(hit, object_ids, 0)
    roof = (up > 0.7).astype(np.intp)
    albedo = cols[ids, roof]
    colour = albedo * light[..., None]
    horizon = np.asarray(style.sky_horizon, np.float32)
    if cfg.fog_strength > 0 and fog_distance > 0:
        fog = cfg.fog_strength * (1.0 - np.exp(-depth.astype(np.float32) / np.float32(fog_distance)))
        colour = colour + (horizon - colour) * fog[..., None]
    elevation = np.clip(rays @ UP / 0.6, 0.0, 1.0)[..., None]
    sky = horizon + (np.asarray(style.sky_top, np.float32) - horizon) * np.sqrt(elevation)
    return np.clip(np.where(hit[..., None], colour, sky), 0.0, 1.0).astype(np.float32)


def draw_lines(image: np.ndarray, edge_map: np.ndarray, style: PreviewStyle, strength: float) -> np.ndarray:
    """Blend the line colour over ``image`` by the soft edge map (H, W) in [0, 1]."""
    a = (np.clip(edge_map, 0.0, 1.0) * strength).astype(np.float32)[..., None]
    line = np.asarray(style.line_colour, np.float32)
    return (image + (line - image) * a).astype(np.float32)


def match_objects(
    fresh: np.ndarray, target: np.ndarray, mask: np.ndarray, object_ids: np.ndarray, min_pixels: int = 16
) -> np.ndarray:
    """Per-object colour gain that makes ``fresh`` agree with ``target`` on ``mask`` pixels, applied to all
    of ``fresh``: newly seen parts of an object take the colour that object already has where it was
    observed (the background, id -1, is left as it is)."""
    idx = (object_ids + 1).astype(np.intp)
    n = int(idx.max()) + 1
    m = mask & (idx > 0)
    sel = idx[m]
    counts = np.bincount(sel, minlength=n)
    gain = np.ones((n, 3), np.float32)
    for c in range(3):
        st = np.bincount(sel, weights=target[..., c][m], minlength=n)
        sf = np.bincount(sel, weights=fresh[..., c][m], minlength=n)
        g = (st + 1e-3) / (sf + 1e-3)
        gain[:, c] = np.where(counts >= min_pixels, np.clip(g, 0.02, 50.0), 1.0)
    gain[0] = 1.0
    return np.clip(fresh * gain[idx], 0.0, 1.0).astype(np.float32)
