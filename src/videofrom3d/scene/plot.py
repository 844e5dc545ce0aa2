"""The trajectory picture: a top-down plan of the scene with the camera path, plus every anchor's view.

The plan looks straight down the world's -Y axis (Y is up): world +x points right and +z points down in
the picture. Triangles are projected onto the ground plane and painted lowest first, coloured by height
and lit from the north-west; the path is coloured per arc, with a frustum and a number at every anchor
frame (every ``frames_per_arc`` frames, where arcs meet). Drawing uses OpenCV and numpy only.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from videofrom3d.scene.camera import Camera
from videofrom3d.scene.mesh import Scene

# colours are RGB; converted to OpenCV's BGR when drawn
PAPER = (247, 245, 240)
INK = (40, 44, 52)
MUTED = (120, 124, 132)
GROUND_LOW = (226, 222, 212)
ARC_COLOURS = [(230, 97, 1), (0, 114, 178), (204, 51, 139), (0, 158, 115), (213, 94, 0), (86, 70, 180)]
HEIGHT_RAMP = [(214, 210, 200), (176, 190, 204), (120, 142, 170), (70, 86, 118)]  # ground -> tallest
PLAN_MAX = 1000  # longest side of the plan in pixels
PANEL_W = 480
MARGIN = 24


def trajectory_picture(
    scene: Scene,
    cameras: list[Camera],
    frames_per_arc: int,
    title: str = "",
    views: list[tuple[str, np.ndarray, bool]] | None = None,
) -> np.ndarray:
    """(H, W, 3) uint8 picture in OpenCV's BGR order: the plan on the left; on the right the anchor views
    (``views``: (label, (h, w, 3) RGB thumbnail, flagged by a camera check) each, if given) and a legend."""
    import cv2

    n = frames_per_arc
    centres = np.array([c.center for c in cameras])
    region = _plan_region(scene, centres)
    plan, to_px = _plan_image(scene, region)
    _draw_path(plan, cameras, centres, n, to_px, region)
    _draw_scale_bar(plan, region, length_unit(scene))
    _draw_axes(plan)

    ph, pw = plan.shape[:2]
    side = _side_panel(scene, cameras, n, views or [], ph)
    title_h = 46 if title else 0
    H = max(ph, side.shape[0]) + title_h + 2 * MARGIN
    W = pw + side.shape[1] + 3 * MARGIN
    canvas = np.empty((H, W, 3), np.uint8)
    canvas[:] = PAPER
    if title:
        _text(canvas, title, (MARGIN, MARGIN + 22), 0.75, INK, 2, font=cv2.FONT_HERSHEY_DUPLEX)
    y0 = MARGIN + title_h
    canvas[y0 : y0 + ph, MARGIN : MARGIN + pw] = plan
    cv2.rectangle(canvas, (MARGIN - 1, y0 - 1), (MARGIN + pw, y0 + ph), _bgr(MUTED), 1)
    x1 = 2 * MARGIN + pw
    canvas[y0 : y0 + side.shape[0], x1 : x1 + side.shape[1]] = side
    return canvas


# ------------------------------------------------------------------------------------------------ the plan


def _plan_region(scene: Scene, centres: np.ndarray) -> np.ndarray:
    """(2, 2) [[x0, z0], [x1, z1]] of the plan: the path with room around it, within the scene's footprint
    (the whole footprint when it is not much larger than the path)."""
    lo, hi = scene.bounds[:, [0, 2]]
    plo, phi = centres[:, [0, 2]].min(axis=0), centres[:, [0, 2]].max(axis=0)
    extent = max(float((phi - plo).max()), 1e-6)
    pad = max(0.7 * extent, 0.1 * float((hi - lo).max()), 2.0)
    rlo = np.maximum(plo - pad, np.minimum(lo, plo))
    rhi = np.minimum(phi + pad, np.maximum(hi, phi))
    size = rhi - rlo
    if (size < 1e-6).any():
        rlo, rhi = rlo - 1.0, rhi + 1.0
    return np.stack([rlo, rhi])


def _plan_image(scene: Scene, region: np.ndarray):
    """Rasterise the footprint: triangles on the ground plane, lowest first, coloured by height and lit."""
    import cv2

    (x0, z0), (x1, z1) = region
    scale = PLAN_MAX / max(x1 - x0, z1 - z0)
    pw, ph = max(int(round((x1 - x0) * scale)), 64), max(int(round((z1 - z0) * scale)), 64)
    ss = 2  # supersampling for smooth edges
    S = scale * ss

    def to_px(xz: np.ndarray) -> np.ndarray:
        return np.stack([(xz[..., 0] - x0) * scale, (xz[..., 1] - z0) * scale], axis=-1)

    img = np.empty((ph * ss, pw * ss, 3), np.uint8)
    img[:] = _bgr(PAPER)
    tri = scene.vertices[scene.faces]  # (T, 3, 3)
    xz = tri[:, :, [0, 2]]
    e1, e2 = xz[:, 1] - xz[:, 0], xz[:, 2] - xz[:, 0]
    area = np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]) * S * S / 2
    inside = (xz[..., 0].max(1) >= x0) & (xz[..., 0].min(1) <= x1) & (xz[..., 1].max(1) >= z0) & (xz[..., 1].min(1) <= z1)
    keep = inside & (area > 0.05)
    tri, xz = tri[keep], xz[keep]
    normals = scene.face_normals()[keep]
    height = tri[:, :, 1].mean(axis=1)
    ylo, yhi = scene.bounds[0, 1], scene.bounds[1, 1]
    t = np.clip((height - ylo) / max(yhi - ylo, 1e-9), 0.0, 1.0)
    colour = _ramp(t)
    light = np.array([-0.45, 0.8, -0.4])
    light /= np.linalg.norm(light)
    shade = 0.78 + 0.22 * np.abs(normals @ light)
    colour = np.clip(colour * shade[:, None], 0, 255).astype(np.uint8)[:, ::-1]  # RGB -> BGR
    order = np.argsort(tri[:, :, 1].max(axis=1), kind="stable")  # painter: lowest first
    pts = np.round(np.stack([(xz[..., 0] - x0) * S, (xz[..., 1] - z0) * S], axis=-1) * 16).astype(np.int32)
    for i in order:
        cv2.fillConvexPoly(img, pts[i], colour[i].tolist(), lineType=cv2.LINE_8, shift=4)
    img = cv2.resize(img, (pw, ph), interpolation=cv2.INTER_AREA)
    return img, to_px


def _ramp(t: np.ndarray) -> np.ndarray:
    """(T,) heights in [0, 1] -> (T, 3) float RGB along HEIGHT_RAMP."""
    stops = np.array(HEIGHT_RAMP, np.float64)
    x = t * (len(stops) - 1)
    i = np.clip(np.floor(x).astype(int), 0, len(stops) - 2)
    f = (x - i)[:, None]
    return stops[i] * (1 - f) + stops[i + 1] * f


def _draw_path(img, cameras, centres, n, to_px, region) -> None:
    import cv2

    p = to_px(centres[:, [0, 2]])
    count = len(cameras)
    arcs = max(1, (count - 1) // n) if count > n else 1
    frustum_len = 0.07 * max(img.shape[:2])  # pixels
    # path, one colour per arc, over a soft white casing
    for k in range(arcs):
        seg = p[k * n : min((k + 1) * n, count - 1) + 1]
        _polyline(img, seg, PAPER, 7)
    for k in range(arcs):
        seg = p[k * n : min((k + 1) * n, count - 1) + 1]
        _polyline(img, seg, ARC_COLOURS[k % len(ARC_COLOURS)], 3)
    # frustums at anchor frames (arc boundaries)
    anchors = list(range(0, count, n)) if count > n else [0, count - 1]
    if anchors[-1] != count - 1 and count > n:
        anchors.append(count - 1)
    overlay = img.copy()
    tips = {}
    for a_i, f in enumerate(anchors):
        cam = cameras[f]
        colour = ARC_COLOURS[min(a_i, arcs - 1) % len(ARC_COLOURS)]
        half = math.radians(cam.fov_x_deg) / 2
        fwd = cam.forward[[0, 2]]
        if np.linalg.norm(fwd) < 1e-6:  # looking straight down: draw along the camera's up instead
            fwd = -cam.cam_to_world[:3, 1][[0, 2]]
        fwd = fwd / np.linalg.norm(fwd)
        rot = lambda v, a: np.array([v[0] * math.cos(a) - v[1] * math.sin(a), v[0] * math.sin(a) + v[1] * math.cos(a)])  # noqa: E731
        apex = p[f]
        left = apex + rot(fwd, -half) * frustum_len / math.cos(half)
        right = apex + rot(fwd, half) * frustum_len / math.cos(half)
        poly = np.array([apex, left, right])
        cv2.fillConvexPoly(overlay, _fix(poly), _bgr(colour), cv2.LINE_AA, 4)
        tips[f] = (poly, colour)
    cv2.addWeighted(overlay, 0.28, img, 0.72, 0, dst=img)
    for poly, colour in tips.values():
        cv2.polylines(img, [_fix(poly)], True, _bgr(colour), 1, cv2.LINE_AA, 4)
    # arc labels at the middle of each arc, pushed off the path
    for k in range(arcs):
        mid = min(k * n + n // 2, count - 1)
        d = p[min(mid + 1, count - 1)] - p[max(mid - 1, 0)]
        normal = np.array([-d[1], d[0]]) / (np.linalg.norm(d) + 1e-9)
        at = p[mid] + normal * 22
        _label(img, f"arc {k}", at, ARC_COLOURS[k % len(ARC_COLOURS)], 0.5)
    # start marker and anchor numbers
    cv2.circle(img, _fix(p[0]), 6 * 16, _bgr(INK), -1, cv2.LINE_AA, 4)
    for a_i, f in enumerate(anchors):
        cam = cameras[f]
        back = -cam.forward[[0, 2]]
        back = back / (np.linalg.norm(back) + 1e-9)
        at = p[f] + back * 20
        cv2.circle(img, _fix(at), 11 * 16, _bgr(PAPER), -1, cv2.LINE_AA, 4)
        cv2.circle(img, _fix(at), 11 * 16, _bgr(INK), 1, cv2.LINE_AA, 4)
        _text_centered(img, str(a_i), at, 0.45, INK, 1)
    # direction arrow at the end
    if count > 1:
        a, b = p[max(count - 3, 0)], p[count - 1]
        if np.linalg.norm(b - a) > 1e-6:
            d = (b - a) / np.linalg.norm(b - a)
            side = np.array([-d[1], d[0]])
            head = np.array([b + d * 14, b - side * 7, b + side * 7])
            cv2.fillConvexPoly(img, _fix(head), _bgr(INK), cv2.LINE_AA, 4)


def length_unit(scene: Scene) -> str:
    """"m", or "units" when the scene's size suggests it is not in metres (see ``mesh.unit_scale_hint``)."""
    from videofrom3d.scene.mesh import unit_scale_hint

    lo, hi = scene.bounds
    return "m" if unit_scale_hint(float((hi - lo).max())) is None else "units"


def _draw_scale_bar(img, region, unit_name: str = "m") -> None:
    import cv2

    ph, pw = img.shape[:2]
    px_per_m = pw / float(region[1, 0] - region[0, 0])
    target = 0.2 * pw / px_per_m
    exp = 10 ** math.floor(math.log10(target))
    length = max(m * exp for m in (1, 2, 5) if m * exp <= target) if target >= exp else exp
    bar = length * px_per_m
    x0, y0 = 18, ph - 22
    cv2.rectangle(img, (x0 - 8, y0 - 22), (int(x0 + bar + 60), y0 + 10), _bgr(PAPER), -1)
    for i in range(4):  # alternating ink / paper quarters
        xa, xb = x0 + bar * i / 4, x0 + bar * (i + 1) / 4
        cv2.rectangle(img, (int(xa), y0 - 4), (int(xb), y0 + 2), _bgr(INK if i % 2 == 0 else PAPER), -1)
    cv2.rectangle(img, (x0, y0 - 4), (int(x0 + bar), y0 + 2), _bgr(INK), 1)
    unit = f"{length:g} {unit_name}"
    _text(img, "0", (x0 - 4, y0 - 9), 0.4, INK, 1)
    _text(img, unit, (int(x0 + bar) - 4, y0 - 9), 0.4, INK, 1)


def _draw_axes(img) -> None:
    """A small axis glyph in the top-right corner: +x right, +z down (looking down -Y)."""
    import cv2

    ph, pw = img.shape[:2]
    o = np.array([pw - 70.0, 22.0])
    cv2.rectangle(img, (pw - 84, 8), (pw - 8, 84), _bgr(PAPER), -1)
    cv2.arrowedLine(img, _fix(o), _fix(o + [40, 0]), _bgr(INK), 1, cv2.LINE_AA, 4, 0.25)
    cv2.arrowedLine(img, _fix(o), _fix(o + [0, 40]), _bgr(INK), 1, cv2.LINE_AA, 4, 0.25)
    _text(img, "+x", (pw - 36, 40), 0.4, INK, 1)
    _text(img, "+z", (pw - 80, 76), 0.4, INK, 1)


# -------------------------------------------------------------------------------------------- side panel


def shade_gbuffer(
    depth: np.ndarray, normal: np.ndarray, hit: np.ndarray, object_id: np.ndarray | None = None
) -> np.ndarray:
    """(H, W) depth, (H, W, 3) world normals, (H, W) hit, optional (H, W) object ids -> (H, W, 3) uint8 RGB:
    Lambert + ambient, a faint tint per object, fading to a haze with distance; misses are sky."""
    light = np.array([-0.45, 0.8, 0.4])
    light /= np.linalg.norm(light)
    lambert = np.clip(normal @ light, 0.0, 1.0)
    up = np.clip(normal[..., 1], 0.0, 1.0)
    base = 0.35 + 0.5 * lambert + 0.15 * up
    d = depth[hit]
    far = float(np.percentile(d, 98)) if d.size else 1.0
    fog = np.clip(depth / max(far, 1e-9), 0.0, 1.0) ** 1.5 * 0.55
    tint = np.array([222.0, 214.0, 198.0])
    if object_id is not None:  # a faint, fixed tint per object so neighbouring objects separate
        palette = np.array([[222, 214, 198], [206, 214, 222], [218, 206, 200], [206, 220, 206], [224, 218, 200]], float)
        tint = palette[np.where(object_id >= 0, object_id, 0) % len(palette)]
    haze = np.array([232.0, 236.0, 240.0])
    rgb = base[..., None] * tint * (1 - fog[..., None]) + haze * fog[..., None]
    rows = np.linspace(0.0, 1.0, depth.shape[0])[:, None, None]
    sky = np.array([196.0, 214.0, 232.0]) * (1 - rows) + np.array([236.0, 238.0, 240.0]) * rows
    rgb = np.where(hit[..., None], rgb, sky)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def _side_panel(scene: Scene, cameras: list[Camera], n: int, views: list, plan_h: int) -> np.ndarray:
    rows: list[np.ndarray] = []
    width = PANEL_W
    if views:
        head = _blank(width, 26)
        _text(head, "anchor views: depth + normal shading (red: a camera check)", (0, 18), 0.5, INK, 1)
        rows += [head, _thumbnail_grid(views, width), _blank(width, 18)]
    rows.append(_legend(scene, cameras, n, width))
    return np.concatenate(rows, axis=0)


def thumbnail_columns(count: int) -> int:
    """Columns of the anchor-view grid: one view full width, up to 4 in two columns, more in three or four."""
    return 1 if count <= 1 else 2 if count <= 4 else 3 if count <= 12 else 4


def _thumbnail_grid(views: list, width: int) -> np.ndarray:
    """Labelled thumbnails in rows of :func:`thumbnail_columns`, each resized to the column width."""
    import cv2

    cols, gap, label_h = thumbnail_columns(len(views)), 8, 18
    tw = (width - (cols - 1) * gap) // cols
    th = max(1, round(views[0][1].shape[0] * tw / views[0][1].shape[1]))
    rows = -(-len(views) // cols)
    grid = _blank(width, rows * (th + label_h + gap))
    for i, (label, rgb, flagged) in enumerate(views):
        x, y = (i % cols) * (tw + gap), (i // cols) * (th + label_h + gap)
        colour = (200, 30, 30) if flagged else INK
        _text(grid, label, (x, y + 13), 0.4, colour, 1)
        thumb = cv2.resize(rgb[:, :, ::-1], (tw, th), interpolation=cv2.INTER_AREA)
        grid[y + label_h : y + label_h + th, x : x + tw] = thumb
        cv2.rectangle(grid, (x, y + label_h), (x + tw - 1, y + label_h + th - 1), _bgr(colour), 2 if flagged else 1)
    return grid


def _legend(scene: Scene, cameras: list[Camera], n: int, width: int) -> np.ndarray:
    import cv2

    count = len(cameras)
    arcs = max(1, (count - 1) // n) if count > n else 1
    centres = np.array([c.center for c in cameras])
    length = float(np.linalg.norm(np.diff(centres, axis=0), axis=1).sum())
    lines = 7 + arcs
    img = _blank(width, 30 + 24 * lines + 70)
    y = 20
    _text(img, "legend", (0, y), 0.55, INK, 1, font=cv2.FONT_HERSHEY_DUPLEX)
    y += 26
    for k in range(arcs):
        c = ARC_COLOURS[k % len(ARC_COLOURS)]
        cv2.line(img, (4, y - 5), (40, y - 5), _bgr(c), 3, cv2.LINE_AA)
        _text(img, f"arc {k}: frames {k * n}-{min((k + 1) * n, count - 1)}", (52, y), 0.45, INK, 1)
        y += 22
    tri = np.array([[4, y - 5], [40, y - 14], [40, y + 4]], np.int32)
    cv2.fillConvexPoly(img, tri, _bgr((200, 200, 200)), cv2.LINE_AA)
    cv2.polylines(img, [tri], True, _bgr(INK), 1, cv2.LINE_AA)
    _text(img, f"frustum at an anchor frame (every {n} frames), numbered", (52, y), 0.45, INK, 1)
    y += 24
    cv2.circle(img, (22, y - 5), 7, _bgr(INK), -1, cv2.LINE_AA)
    _text(img, "start;  arrow: end", (52, y), 0.45, INK, 1)
    y += 26
    # height ramp
    ylo, yhi = scene.bounds[0, 1], scene.bounds[1, 1]
    ramp = _ramp(np.linspace(0, 1, 160)).astype(np.uint8)[:, ::-1]
    img[y - 12 : y, 4:164] = ramp[None]
    cv2.rectangle(img, (4, y - 12), (163, y), _bgr(MUTED), 1)
    unit = length_unit(scene)
    _text(img, f"height {ylo:.1f} to {yhi:.1f} {unit} (Y is up)", (172, y - 1), 0.45, INK, 1)
    y += 30
    cam = cameras[0]
    facts = [
        f"{count} frames, {arcs} arc{'s' if arcs != 1 else ''} of {n}+1 (shared ends), {cam.width}x{cam.height}",
        f"path length {length:.1f} {unit};  fov {cam.fov_x_deg:.1f} x {cam.fov_y_deg:.1f} deg (h x v)",
        f"scene: {scene.triangle_count:,} triangles, {len(scene.object_names)} objects",
    ]
    if unit != "m":
        facts.append("not metres? set [scene] unit_scale (see the warning)")
    for line in facts:
        _text(img, line, (0, y), 0.45, MUTED, 1)
        y += 22
    return img[: y + 4]


# ----------------------------------------------------------------------------------------------- drawing


def _bgr(rgb) -> tuple[int, int, int]:
    return int(rgb[2]), int(rgb[1]), int(rgb[0])


def _fix(pts: np.ndarray) -> np.ndarray | tuple[int, int]:
    """Float pixel coordinates -> OpenCV fixed point with 4 fractional bits (drawn with shift=4)."""
    a = np.round(np.asarray(pts, np.float64) * 16).astype(np.int32)
    return (int(a[0]), int(a[1])) if a.ndim == 1 else a


def _polyline(img, pts: np.ndarray, colour, thickness: int) -> None:
    import cv2

    if len(pts) >= 2:
        cv2.polylines(img, [_fix(pts)], False, _bgr(colour), thickness, cv2.LINE_AA, 4)


def _text(img, text: str, org, scale: float, colour, thickness: int = 1, font=None) -> None:
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX if font is None else font
    cv2.putText(img, text, (int(org[0]), int(org[1])), font, scale, _bgr(colour), thickness, cv2.LINE_AA)


def _text_centered(img, text: str, centre, scale: float, colour, thickness: int = 1) -> None:
    import cv2

    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    _text(img, text, (centre[0] - tw / 2, centre[1] + th / 2), scale, colour, thickness)


def _label(img, text: str, centre, colour, scale: float) -> None:
    """Text in a small paper box with a coloured border."""
    import cv2

    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = int(centre[0] - tw / 2), int(centre[1] + th / 2)
    cv2.rectangle(img, (x - 5, y - th - 5), (x + tw + 5, y + 5), _bgr(PAPER), -1)
    cv2.rectangle(img, (x - 5, y - th - 5), (x + tw + 5, y + 5), _bgr(colour), 1)
    _text(img, text, (x, y), scale, colour, 1)


def _blank(w: int, h: int) -> np.ndarray:
    img = np.empty((h, w, 3), np.uint8)
    img[:] = _bgr(PAPER)
    return img


def write_png(path: str | os.PathLike, bgr: np.ndarray) -> Path:
    """(H, W, 3) uint8 BGR picture -> PNG, atomically."""
    import cv2

    from videofrom3d.io.atomic import atomic_write_bytes

    ok, data = cv2.imencode(".png", bgr)
    if not ok:
        raise OSError(f"cannot encode {path} as PNG")
    return atomic_write_bytes(path, data.tobytes())
