"""Exact geometric optical flow between views of the mesh, with visibility; correspondence maps.

``flow_i_to_j[y, x] = (dx, dy)``: the surface point seen at pixel centre (x + 0.5, y + 0.5) of view i is
seen at (x + 0.5 + dx, y + 0.5 + dy) in view j. ``valid`` is True where that point is visible in both views
and lands inside image j.
"""

from __future__ import annotations

import cv2
import numpy as np

from videofrom3d.prepare.gbuffer import GBuffer
from videofrom3d.scene.camera import Camera, camera_rays, pixel_grid, rotate_points

# ------------------------------------------------------------------------------------------------ exact flow

DEPTH_TOLERANCE = 0.005
"""Relative tolerance of the visibility test (a fraction of the depth), on top of one pixel footprint."""


def project_depth(
    depth_i: np.ndarray, cam_i: Camera, cam_j: Camera, dtype=np.float32
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Where the surface seen in view i lands in view j.

    ``depth_i`` (H, W) along +z (0 = miss) -> ``(uj, vj, zj, front)``, each (H, W): continuous pixel
    coordinates in j (pixel centres at +0.5), depth along j's +z, and whether the point was hit in i and lies
    in front of camera j. Each homogeneous coordinate is ``depth * (A @ [u, v, 1]) + m`` with
    ``A = K_j R K_i^-1`` and ``m = K_j t``: planes in (u, v), no (N, 3) matrix products."""
    h, w = depth_i.shape
    T = cam_j.world_to_cam @ cam_i.cam_to_world  # camera i -> camera j
    A = (cam_j.K @ T[:3, :3] @ np.linalg.inv(cam_i.K)).astype(dtype)
    m = (cam_j.K @ T[:3, 3]).astype(dtype)
    u = (np.arange(w, dtype=dtype) + dtype(0.5))[None, :]
    v = (np.arange(h, dtype=dtype) + dtype(0.5))[:, None]
    depth = np.asarray(depth_i, dtype=dtype)
    qx, qy, qz = (depth * (A[k, 0] * u + (A[k, 1] * v + A[k, 2])) + m[k] for k in range(3))
    front = (depth > 0) & (qz > 1e-9)
    inv = np.divide(dtype(1.0), qz, out=np.zeros_like(qz), where=front)
    return qx * inv, qy * inv, qz, front


def reprojection_flow(
    depth_i: np.ndarray, cam_i: Camera, depth_j: np.ndarray, cam_j: Camera, rel_tol: float = 0.01
) -> tuple[np.ndarray, np.ndarray]:
    """Exact flow i -> j from saved depth maps alone (no triangle ids), for stages that read a prepared arc.

    ``flow_i_to_j`` (H, W, 2) float32 (0 where view i has no hit or the point is behind camera j) and
    ``valid`` (H, W) bool: hit in i, in front of and inside j, and not occluded there. Visible means the
    texel of j containing the point has its depth within ``rel_tol``, or the 2x2 texels around it form a
    smooth surface (span < 10 %, no occlusion edge) whose depth range holds the point: a floor seen at a
    grazing angle."""
    h, w = depth_i.shape
    uj, vj, zj, front = project_depth(depth_i, cam_i, cam_j, dtype=np.float64)
    hj, wj = depth_j.shape
    inside = front & (uj >= 0) & (uj <= wj) & (vj >= 0) & (vj <= hj)
    dj_all = np.asarray(depth_j)
    xn = np.clip(np.floor(np.where(inside, uj, 0.5)).astype(np.int64), 0, wj - 1)
    yn = np.clip(np.floor(np.where(inside, vj, 0.5)).astype(np.int64), 0, hj - 1)
    dn = dj_all[yn, xn]
    seen = (dn > 0) & (np.abs(zj - dn) <= rel_tol * dn)
    x0 = np.floor(np.where(inside, uj, 0.5) - 0.5).astype(np.int64)
    y0 = np.floor(np.where(inside, vj, 0.5) - 0.5).astype(np.int64)
    lo = np.full((h, w), np.inf)
    hi = np.zeros((h, w))
    for dy in (0, 1):
        ys = np.clip(y0 + dy, 0, hj - 1)
        for dx in (0, 1):
            dj = dj_all[ys, np.clip(x0 + dx, 0, wj - 1)]
            lo = np.minimum(lo, np.where(dj > 0, dj, 0.0))
            hi = np.maximum(hi, dj)
    smooth = 0.1
    continuous = (lo > 0) & (hi - lo <= smooth * lo)
    seen |= continuous & (zj >= lo * (1 - rel_tol)) & (zj <= hi * (1 + rel_tol))
    flow = np.zeros((h, w, 2), dtype=np.float32)
    flow[..., 0] = np.where(front, uj - (np.arange(w) + 0.5)[None, :], 0.0)
    flow[..., 1] = np.where(front, vj - (np.arange(h) + 0.5)[:, None], 0.0)
    return flow, inside & seen


def geometric_flow(
    gb_i: GBuffer, cam_i: Camera, gb_j: GBuffer, cam_j: Camera, depth_tolerance: float = DEPTH_TOLERANCE
) -> tuple[np.ndarray, np.ndarray]:
    """Exact flow of view i into view j and its visibility.

    The surface point seen at each pixel centre of view i (its depth along the pixel's ray) is projected
    into view j. Returns ``flow_i_to_j`` (H, W, 2) float32 pixels (0 where nothing was hit) and ``valid``
    (H, W) bool: hit in i, in front of camera j, inside image j, and visible there: the pixel of j that
    contains the projection sees the same triangle, or a surface whose plane passes within
    ``depth_tolerance * z + one pixel footprint`` of the point (a crease or a neighbouring triangle of the
    same surface); anything else means the point is hidden in j."""
    h, w = gb_i.depth.shape
    if (cam_i.width, cam_i.height) != (w, h) or (cam_j.width, cam_j.height) != gb_j.depth.shape[::-1]:
        raise ValueError("G-buffer sizes do not match the cameras")
    hj, wj = gb_j.depth.shape
    T = cam_j.world_to_cam @ cam_i.cam_to_world  # camera i -> camera j
    depth = gb_i.depth
    uj, vj, qz, front = project_depth(depth, cam_i, cam_j)
    front &= gb_i.hit
    flow = np.empty((h, w, 2), np.float32)
    np.subtract(uj, (np.arange(w, dtype=np.float32) + 0.5)[None, :], out=flow[..., 0])
    np.subtract(vj, (np.arange(h, dtype=np.float32) + 0.5)[:, None], out=flow[..., 1])
    inside = front & (uj >= 0) & (uj < wj) & (vj >= 0) & (vj < hj)
    xi = np.clip(uj, 0, wj - 1).astype(np.int32)
    yi = np.clip(vj, 0, hj - 1).astype(np.int32)
    flat = yi * wj + xi
    tri_j = np.take(gb_j.triangle_id.reshape(-1), flat)
    zj_seen = np.take(gb_j.depth.reshape(-1), flat)
    fj = np.float32(1.0 / min(cam_j.K[0, 0], cam_j.K[1, 1]))
    tol = qz * (np.float32(depth_tolerance) + fj)
    valid = inside & (tri_j >= 0)
    # same triangle, or the depth j sees at that pixel centre matches within the tolerance: visible
    ok = (tri_j == gb_i.triangle_id) | (np.abs(zj_seen - qz) <= tol)
    check = valid & ~ok
    if check.any():
        # the rest (grazing surfaces, creases): plane test against the surface j sees at that pixel
        idx = flat[check]
        zq = zj_seen[check]
        rays_j = camera_rays(cam_j).reshape(-1, 3)[idx]
        qpt = rays_j * zq[:, None]  # the point j sees, camera j coordinates
        nj = rotate_points(gb_j.normal.reshape(-1, 3)[idx], cam_j.world_to_cam[:3, :3])
        pi = camera_rays(cam_i)[check] * depth[check][:, None]
        pj = rotate_points(pi, T[:3, :3]) + T[:3, 3].astype(np.float32)
        dist = np.abs(np.einsum("ij,ij->i", nj, pj - qpt))
        valid[check] = dist <= tol[check]
    flow[~gb_i.hit] = 0.0
    return flow, valid


def arc_flows(
    gbuffers: list[GBuffer], cameras: list[Camera] | tuple[Camera, ...], depth_tolerance: float = DEPTH_TOLERANCE
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Consecutive flows i -> i+1 and the end -> start flow of one arc.

    Returns ``flow_forward`` (F-1, H, W, 2), ``flow_forward_valid`` (F-1, H, W), ``flow_end_to_start``
    (H, W, 2), ``flow_end_to_start_valid`` (H, W)."""
    n = len(gbuffers)
    h, w = gbuffers[0].depth.shape
    fwd = np.empty((n - 1, h, w, 2), np.float32)
    fwd_valid = np.empty((n - 1, h, w), bool)
    for i in range(n - 1):
        fwd[i], fwd_valid[i] = geometric_flow(gbuffers[i], cameras[i], gbuffers[i + 1], cameras[i + 1], depth_tolerance)
    e2s, e2s_valid = geometric_flow(gbuffers[-1], cameras[-1], gbuffers[0], cameras[0], depth_tolerance)
    return fwd, fwd_valid, e2s, e2s_valid


def correspondence_map(flow_target_to_source: np.ndarray) -> np.ndarray:
    """(H, W, 2) flow of a target view into a source view -> (H, W, 2) continuous source position of each
    target pixel (pixel-centre convention: the centre of source pixel [y, x] is (x + 0.5, y + 0.5))."""
    h, w = flow_target_to_source.shape[:2]
    return pixel_grid(w, h).astype(np.float32) + flow_target_to_source


# ----------------------------------------------------------------------------- official 16-bit correspondence


def encode_correspondence(flow_target_to_source: np.ndarray, valid: np.ndarray, source_size=None) -> np.ndarray:
    """Flow of a target view into its source view -> the authors' 16-bit correspondence image.

    Returns (H, W, 3) uint16 in **BGR** order, as ``cv2.imwrite`` expects and ``cv2.imread(...,
    IMREAD_UNCHANGED)`` gives back: R = x_src / W * 65536, G = 65535 - y_src / H * 65536 (rounded, clipped),
    B = 65535 where valid; all channels 0 where invalid. ``(x_src, y_src)`` is the continuous source
    position (pixel centres at +0.5), so the authors' decoder ``floor(R * W / 65536)`` gives the source
    pixel index. ``source_size`` (W, H) of the source view defaults to the target's."""
    h, w = flow_target_to_source.shape[:2]
    sw, sh = source_size if source_size is not None else (w, h)
    pos = correspondence_map(flow_target_to_source).astype(np.float64)
    r = np.clip(np.round(pos[..., 0] / sw * 65536.0), 0, 65535)
    g = np.clip(65535.0 - np.round(pos[..., 1] / sh * 65536.0), 0, 65535)
    v = np.asarray(valid, bool)
    out = np.zeros((h, w, 3), np.uint16)
    out[..., 2] = np.where(v, r, 0)
    out[..., 1] = np.where(v, g, 0)
    out[..., 0] = np.where(v, 65535, 0)
    return out


def decode_correspondence(bgr: np.ndarray, source_size=None) -> tuple[np.ndarray, np.ndarray]:
    """The authors' 16-bit BGR correspondence image -> (flow_target_to_source (H, W, 2) float32, valid).

    x_src = R / 65536 * W, y_src = (65535 - G) / 65536 * H (continuous, pixel centres at +0.5); valid
    where B == 65535."""
    arr = np.asarray(bgr)
    if arr.dtype != np.uint16 or arr.ndim != 3 or arr.shape[2] < 3:
        raise ValueError(f"a correspondence image is (H, W, 3) uint16, got {arr.shape} {arr.dtype}")
    h, w = arr.shape[:2]
    sw, sh = source_size if source_size is not None else (w, h)
    x = arr[..., 2].astype(np.float64) / 65536.0 * sw
    y = (65535.0 - arr[..., 1].astype(np.float64)) / 65536.0 * sh
    valid = arr[..., 0] == 65535
    grid = pixel_grid(w, h)
    flow = np.stack([x - grid[..., 0], y - grid[..., 1]], axis=-1).astype(np.float32)
    flow[~valid] = 0.0
    return flow, valid


def write_correspondence(path, flow_target_to_source: np.ndarray, valid: np.ndarray, source_size=None):
    """Write :func:`encode_correspondence` as a 16-bit 3-channel PNG, atomically."""
    from videofrom3d.io.atomic import atomic_path

    img = encode_correspondence(flow_target_to_source, valid, source_size)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), img, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
            raise OSError(f"cannot write {path}")
    return path


def read_correspondence(path, source_size=None) -> tuple[np.ndarray, np.ndarray]:
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise FileNotFoundError(f"cannot read {path}")
    return decode_correspondence(raw, source_size)


def flow_to_color(flow: np.ndarray, valid: np.ndarray | None = None, max_magnitude: float | None = None) -> np.ndarray:
    """(H, W, 2) flow -> (H, W, 3) float32 RGB on the usual colour wheel (hue = direction, saturation =
    magnitude / ``max_magnitude``); invalid pixels black."""
    fx, fy = flow[..., 0].astype(np.float32), flow[..., 1].astype(np.float32)
    mag, ang = cv2.cartToPolar(fx, fy, angleInDegrees=True)
    if max_magnitude is None:
        sel = mag[valid] if valid is not None else mag.ravel()
        max_magnitude = float(np.percentile(sel, 99)) if sel.size else 1.0
    hsv = np.empty(flow.shape[:2] + (3,), np.float32)
    hsv[..., 0] = ang
    hsv[..., 1] = np.clip(mag / max(max_magnitude, 1e-6), 0, 1)
    hsv[..., 2] = 1.0
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if valid is not None:
        rgb[~valid] = 0.0
    return rgb
