"""Arcs: the trajectory cut into clips of N+1 frames that share their end frames (paper 3.3), and the
prepared inputs of one arc with their on-disk layout.

Layout of ``OUT/prepare/arcNNN/`` (stable; other stages and checks rely on it):

- ``cameras.json``  the ``trajectory export`` schema: ``{"width", "height", "frames": [{"K", "world_to_cam"}]}``
- ``edges/NNNN.png``  8-bit edge maps, local frame index from 0000 (white lines on black)
- ``normals/NNNN.png``  8-bit world normals as ``(n + 1) / 2``, black where nothing was hit
- ``objects/NNNN.png``  16-bit object id + 1, 0 where nothing was hit
- ``flow.npz``  forward flows i -> i+1 (F-1, H, W, 2) at 1/64 px fixed point and their bit-packed
  visibility; ``end_to_start`` (H, W, 2) float32 exact (anchors are warped by it) and its visibility
  (coding: :mod:`videofrom3d.io.compact`; read with :func:`load_flows`)
- ``depth.npz``  depth (F, H, W) float32 along +z, 0 where nothing was hit, byte planes (lossless)
- ``noise.npy``  (13, 16, 60, 90) float16 warped noise before degradation (when computed)
- ``preview.mp4``, ``noise.mp4``  for people, not read back: edges | depth | forward flow side by side
  (:func:`write_arc_preview`); noise channels 0-2 as RGB
- ``arc.json``  index, global first frame, frame count, what was computed, and the layout ``format``
  (2; folders without it are format 1, float32 ``forward``/``depth`` arrays, and still read)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from videofrom3d.io import compact
from videofrom3d.io.atomic import atomic_path, atomic_write_text
from videofrom3d.io.images import read_mask, to_uint8
from videofrom3d.scene.camera import Camera, camera_rays, load_cameras, rotate_points, save_cameras


def arc_ranges(frame_count: int, frames_per_arc: int = 45) -> list[tuple[int, int]]:
    """Global frame ranges ``[(k*N, (k+1)*N), ...]`` (inclusive ends) covering ``frame_count`` frames.

    Needs ``frame_count == K*N + 1`` for an integer K >= 1 (consecutive arcs share one frame)."""
    n = frames_per_arc
    if n < 1:
        raise ValueError(f"frames_per_arc must be >= 1, got {n}")
    if frame_count < n + 1 or (frame_count - 1) % n:
        raise ValueError(
            f"a trajectory of {frame_count} frames does not split into arcs of {n}+1 frames with shared ends; "
            f"use K*{n}+1 frames (e.g. {n + 1}, {2 * n + 1}, {3 * n + 1})"
        )
    return [(k * n, (k + 1) * n) for k in range((frame_count - 1) // n)]


ARC_FORMAT = 2  # 1: float32 flow.npz / depth.npz; 2: compact coding (io/compact.py)


def load_flows(folder: str | os.PathLike, end_to_start: bool = True) -> dict[str, np.ndarray]:
    """The flows of a prepared arc folder (either format): ``forward``, ``forward_valid`` and, when asked,
    ``end_to_start``, ``end_to_start_valid``, as float32 / bool arrays."""
    path = Path(folder) / "flow.npz"
    try:
        with np.load(path) as f:
            out = {"forward": compact.decode_flow(f, "forward"), "forward_valid": compact.decode_mask(f, "forward_valid")}
            if end_to_start:
                out["end_to_start"] = compact.decode_flow(f, "end_to_start")
                out["end_to_start_valid"] = compact.decode_mask(f, "end_to_start_valid")
    except (KeyError, ValueError, OSError) as e:
        raise _stale(folder, f"flow.npz unreadable ({type(e).__name__}: {e})") from e
    return out


def _stale(folder, why: str):
    from videofrom3d.errors import VideoFrom3DError

    return VideoFrom3DError(f"{folder}: {why}; re-run `videofrom3d prepare` (delete the folder to force it)")


@dataclass(frozen=True, eq=False)
class PreparedArc:
    """Everything the generation stages read for one arc of F = N+1 frames at H x W.

    ``edge_maps`` (F, H, W) float32 in [0, 1]; ``depth`` (F, H, W) float32, 0 = miss; ``normals`` (F, H, W, 3)
    float32 world normals (0 = miss); ``object_ids`` (F, H, W) int32, -1 = miss; ``flow_forward`` (F-1, H, W, 2)
    frame i -> i+1 in pixels with ``flow_forward_valid``; ``flow_end_to_start`` (H, W, 2) with its valid mask;
    ``warped_noise`` (13, 16, 60, 90) float16 or None.
    """

    index: int
    first_frame: int
    cameras: tuple[Camera, ...]
    edge_maps: np.ndarray
    depth: np.ndarray
    normals: np.ndarray
    object_ids: np.ndarray
    flow_forward: np.ndarray
    flow_forward_valid: np.ndarray
    flow_end_to_start: np.ndarray
    flow_end_to_start_valid: np.ndarray
    warped_noise: np.ndarray | None = None

    @property
    def frame_count(self) -> int:
        return len(self.cameras)

    @property
    def size(self) -> tuple[int, int]:
        """(W, H)."""
        return self.cameras[0].width, self.cameras[0].height

    @property
    def last_frame(self) -> int:
        return self.first_frame + self.frame_count - 1

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the layout above into ``folder`` atomically (a temp folder renamed at the end)."""
        folder = Path(folder)
        with atomic_path(folder, suffix="") as tmp:
            tmp.mkdir(parents=True)
            save_cameras(tmp / "cameras.json", self.cameras)
            for sub in ("edges", "normals", "objects"):
                (tmp / sub).mkdir()
            # the folder is renamed into place as a whole, so files inside are written directly; PNG
            # encoding and the npz writes release the GIL, so a small thread pool overlaps them
            from concurrent.futures import ThreadPoolExecutor

            def frame(i):
                _png(tmp / "edges" / f"{i:04d}.png", to_uint8(self.edge_maps[i]))
                _png(tmp / "normals" / f"{i:04d}.png", _normals_bgr8(self.normals[i], self.object_ids[i]))
                _png(tmp / "objects" / f"{i:04d}.png", (self.object_ids[i] + 1).astype(np.uint16))

            def flows():
                compact.write_npz(tmp / "flow.npz", {
                    **compact.encode_flow(self.flow_forward, "forward"),
                    **compact.encode_mask(self.flow_forward_valid, "forward_valid"),
                    "end_to_start": self.flow_end_to_start.astype(np.float32, copy=False),
                    **compact.encode_mask(self.flow_end_to_start_valid, "end_to_start_valid"),
                })

            def depth():
                compact.write_npz(tmp / "depth.npz", compact.encode_float_planes(self.depth, "depth"))

            with ThreadPoolExecutor(max_workers=4) as pool:
                jobs = [pool.submit(flows), pool.submit(depth)]
                jobs += [pool.submit(frame, i) for i in range(self.frame_count)]
                for j in jobs:
                    j.result()
            if self.warped_noise is not None:
                np.save(tmp / "noise.npy", self.warped_noise.astype(np.float16))
            meta = {
                "index": self.index,
                "first_frame": self.first_frame,
                "frame_count": self.frame_count,
                "has_noise": self.warped_noise is not None,
                "format": ARC_FORMAT,
            }
            atomic_write_text(tmp / "arc.json", json.dumps(meta, indent=1))
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, with_noise: bool = True) -> PreparedArc:
        folder = Path(folder)
        meta_path = folder / "arc.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{folder}: not a prepared arc (no arc.json); run `videofrom3d prepare`")
        meta = json.loads(meta_path.read_text())
        if int(meta.get("format", 1)) > ARC_FORMAT:
            raise _stale(folder, f"layout format {meta['format']} is newer than this videofrom3d reads ({ARC_FORMAT})")
        cameras = load_cameras(folder / "cameras.json")
        n = len(cameras)
        edges = np.stack([read_mask(folder / "edges" / f"{i:04d}.png") for i in range(n)])
        normals = np.stack([_read_normals(folder / "normals" / f"{i:04d}.png") for i in range(n)])
        objects = np.stack([_read_u16(folder / "objects" / f"{i:04d}.png") for i in range(n)]).astype(np.int32) - 1
        normals[objects < 0] = 0.0  # misses are stored black
        flows = load_flows(folder)
        try:
            with np.load(folder / "depth.npz") as d:
                depth = compact.decode_float_planes(d, "depth")
        except (KeyError, ValueError, OSError) as e:
            raise _stale(folder, f"depth.npz unreadable ({type(e).__name__}: {e})") from e
        noise_path = folder / "noise.npy"
        noise = np.load(noise_path) if with_noise and noise_path.is_file() else None
        return cls(
            index=int(meta["index"]),
            first_frame=int(meta["first_frame"]),
            cameras=tuple(cameras),
            edge_maps=edges,
            depth=depth,
            normals=normals,
            object_ids=objects,
            flow_forward=flows["forward"],
            flow_forward_valid=flows["forward_valid"],
            flow_end_to_start=flows["end_to_start"],
            flow_end_to_start_valid=flows["end_to_start_valid"],
            warped_noise=noise,
        )


# deflate level 1 after the "up" row filter: about half the time of libpng's adaptive filter choice, and
# files within a few % of its size on edge, normal and object maps (same pixels either way)
_PNG_FLAGS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]


def _png(path: Path, arr: np.ndarray) -> None:
    if not cv2.imwrite(str(path), arr, _PNG_FLAGS):
        raise OSError(f"cannot write {path}")


def _normals_bgr8(normals: np.ndarray, object_ids: np.ndarray) -> np.ndarray:
    """(H, W, 3) world normals -> 8-bit BGR ``(n + 1) / 2`` (truncated), black where nothing was hit."""
    t = normals * np.float32(127.5)
    t += np.float32(128.0)
    np.clip(t, 0, 255, out=t)
    out = cv2.cvtColor(t.astype(np.uint8), cv2.COLOR_RGB2BGR)
    out[object_ids < 0] = 0
    return out


def _read_normals(path: Path) -> np.ndarray:
    import cv2

    raw = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if raw is None:
        raise FileNotFoundError(f"cannot read {path}")
    rgb = cv2.cvtColor(raw, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    n = rgb * 2.0 - 1.0
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    return np.where(length > 0.5, n / np.maximum(length, 1e-6), 0.0).astype(np.float32)


def _read_u16(path: Path) -> np.ndarray:
    import cv2

    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise FileNotFoundError(f"cannot read {path}")
    return raw


# ------------------------------------------------------------------------------------------------ preparing


@dataclass(frozen=True)
class PrepareConfig:
    """Options of the job's ``[prepare]`` table.

    Edge types and their look follow the authors' Line Art setup (paper 3.1; Blender ``lineart_cpu.c``):
    silhouette, crease at 40 degrees (Line Art's 140-degree crease angle), border and intersection lines.
    A look is ``(core width px, softness px, intensity)`` at 720 px image height, scaled with the height;
    the defaults match the official 1080x720 maps (outer contours ~7 px of white with soft shoulders, inner
    lines ~4 px wide peaking near 200/255). Types sharing a look share one distance transform."""

    backend: Literal["auto", "moderngl", "embree"] = "auto"
    silhouette: bool = True
    crease: bool = True
    border: bool = True
    intersection: bool = True
    crease_angle_deg: float = 40.0
    silhouette_look: tuple[float, ...] = (5.5, 0.9, 1.0)
    border_look: tuple[float, ...] = (2.5, 1.0, 0.8)
    crease_look: tuple[float, ...] = (2.5, 1.0, 0.8)
    intersection_look: tuple[float, ...] = (2.5, 1.0, 0.8)
    line_scale: float = 1.0  # multiplies every width and softness
    supersample: int = 1  # odd factor: edges drawn at s x the size and area-averaged down
    depth_tolerance: float = 0.005  # flow visibility: relative plane distance, plus one pixel footprint
    edges: Literal["auto", "hed", "lines"] = "auto"  # HED of the shaded render as the authors; see prepare.edge_mode
    preview: bool = True  # write preview.mp4 (edges | depth | flow) and noise.mp4 per arc

    def __post_init__(self) -> None:
        if self.supersample < 1 or self.supersample % 2 == 0:
            raise ValueError(f"[prepare].supersample must be an odd integer >= 1, got {self.supersample}")
        for name in ("silhouette_look", "border_look", "crease_look", "intersection_look"):
            if len(getattr(self, name)) != 3:
                raise ValueError(f"[prepare].{name} must be [core_px, softness_px, intensity]")

    def edge_config(self):
        from videofrom3d.prepare.edges import EdgeConfig, LineLook

        def look(v):
            return LineLook(core=v[0] * self.line_scale, softness=v[1] * self.line_scale, intensity=v[2])

        return EdgeConfig(
            silhouette=self.silhouette,
            crease=self.crease,
            border=self.border,
            intersection=self.intersection,
            crease_angle_deg=self.crease_angle_deg,
            silhouette_look=look(self.silhouette_look),
            border_look=look(self.border_look),
            crease_look=look(self.crease_look),
            intersection_look=look(self.intersection_look),
        )


def check_cameras(cameras, first_frame: int = 0) -> None:
    """Raise a user error naming the global frames whose camera has NaN/inf in K or its pose, or whose
    size differs from the first; call it before writing anything."""
    from videofrom3d.errors import VideoFrom3DError

    if len(cameras) == 0:
        raise VideoFrom3DError("no cameras to prepare")
    bad = [first_frame + i for i, c in enumerate(cameras)
           if not (np.isfinite(c.K).all() and np.isfinite(c.world_to_cam).all())]
    if bad:
        raise VideoFrom3DError(f"camera poses with NaN or inf at frame(s) {_frame_list(bad)}; fix the trajectory")
    size = (cameras[0].width, cameras[0].height)
    other = [first_frame + i for i, c in enumerate(cameras) if (c.width, c.height) != size]
    if other:
        raise VideoFrom3DError(f"frame(s) {_frame_list(other)} have another image size than {size}")


def _frame_list(frames: list[int]) -> str:
    return ", ".join(str(f) for f in frames[:20]) + (f" ... ({len(frames)} in all)" if len(frames) > 20 else "")


def view_warnings(gbuffers, cameras, first_frame: int = 0) -> list[str]:
    """Warnings (one string per problem, naming the global frames) for cameras that see nothing, or sit
    inside a closed mesh (every pixel hits the back of a face)."""
    empty, inside = [], []
    for i, (gb, cam) in enumerate(zip(gbuffers, cameras)):
        cover = float(gb.hit.mean())
        if cover == 0.0:
            empty.append(first_frame + i)
            continue
        if cover > 0.99:
            # view ray directions in world space, against the face normals: > 0 means a back face
            rays = rotate_points(camera_rays(cam)[::4, ::4], cam.cam_to_world[:3, :3])
            n = gb.normal[::4, ::4]
            h = gb.hit[::4, ::4]
            back = (np.einsum("ijk,ijk->ij", rays, n) > 0)[h]
            if back.mean() > 0.95:
                inside.append(first_frame + i)
    out = []
    if empty:
        out.append(f"camera sees nothing (no surface hit) at frame(s) {_frame_list(empty)}")
    if inside:
        out.append(f"camera is inside a closed mesh (sees only back faces) at frame(s) {_frame_list(inside)}")
    return out


def prepare_arc(
    renderer,
    scene,
    cameras,
    cfg: PrepareConfig | None = None,
    index: int = 0,
    first_frame: int = 0,
    noise_fn=None,
    timings: dict | None = None,
    hed=None,
) -> PreparedArc:
    """G-buffers, edge maps, exact flows (and warped noise through ``noise_fn``) of one arc (paper 3.1).

    ``renderer`` comes from :func:`videofrom3d.prepare.gbuffer.make_renderer` (built once per scene);
    ``cameras`` are the arc's F = N+1 frames (global frames ``first_frame`` .. ``first_frame + F - 1``).
    ``noise_fn(flow_forward, flow_forward_valid) -> (13, 16, 60, 90)`` computes the warped noise (the
    pipeline binds :func:`videofrom3d.prepare.noise_warp.warped_noise_for_arc` with its config and seed).
    ``hed``: an edge detector ((H, W, 3) [0, 1] -> (H, W)); given, each edge map is HED of the normal-shaded
    render with the lines on top (the authors' h_i, :func:`videofrom3d.prepare.edges.hed_edge_map`), else the
    drawn lines (``cfg.edges`` = "hed" then is an error: :func:`videofrom3d.prepare.edge_mode.choose_edge_mode`
    decides, :func:`make_hed_detector` builds it). Warns (naming the frames) when a camera sees nothing or
    sits inside a closed mesh; raises before any work when a camera has NaN values. ``timings``, when given,
    receives seconds per step."""
    import time
    import warnings

    from videofrom3d.prepare.edges import edge_map, hed_edge_map, topology_for

    cfg = cfg or PrepareConfig()
    if cfg.edges == "hed" and hed is None:
        raise ValueError('[prepare] edges = "hed" needs a HED detector: pass hed=make_hed_detector(choice)')
    cameras = tuple(cameras)
    check_cameras(cameras, first_frame)
    if len(cameras) < 2:
        raise ValueError("an arc needs at least 2 frames")
    ecfg = cfg.edge_config()
    s = cfg.supersample
    t = timings if timings is not None else {}
    t0 = time.perf_counter()
    topo = topology_for(renderer, ecfg)
    t["topology"] = t.get("topology", 0.0) + time.perf_counter() - t0

    from videofrom3d.prepare.flow import geometric_flow
    from videofrom3d.prepare.gbuffer import GBuffer

    n = len(cameras)
    w, h = cameras[0].width, cameras[0].height
    depth = np.empty((n, h, w), np.float32)
    normals = np.empty((n, h, w, 3), np.float32)
    object_ids = np.empty((n, h, w), np.int32)
    tri_ids = np.empty((n, h, w), np.int32)
    hits = np.empty((n, h, w), bool)
    edge_maps = np.empty((n, h, w), np.float32)
    fwd = np.empty((n - 1, h, w, 2), np.float32)
    fwd_valid = np.empty((n - 1, h, w), bool)
    gbuffers = [GBuffer(depth[i], normals[i], tri_ids[i], object_ids[i], hits[i]) for i in range(n)]
    render_cams = [c if s == 1 else c.resized(w * s, h * s) for c in cameras]

    def edges_job(i, big):
        lines = edge_map(big, render_cams[i], topo, ecfg, size=(w, h))
        edge_maps[i] = lines if hed is None else hed_edge_map(gbuffers[i], cameras[i], lines, hed)

    def flow_job(i):
        fwd[i], fwd_valid[i] = geometric_flow(gbuffers[i], cameras[i], gbuffers[i + 1], cameras[i + 1], cfg.depth_tolerance)

    def end_to_start_job():
        return geometric_flow(gbuffers[-1], cameras[-1], gbuffers[0], cameras[0], cfg.depth_tolerance)

    e2s, e2s_valid = _render_overlapped(renderer, render_cams, gbuffers, s, edges_job, flow_job, end_to_start_job, t)

    for msg in view_warnings(gbuffers, cameras, first_frame):
        warnings.warn(f"arc {index}: {msg}", stacklevel=2)

    noise = None
    if noise_fn is not None:
        t0 = time.perf_counter()
        noise = np.asarray(noise_fn(fwd, fwd_valid), np.float32).astype(np.float16)
        t["noise"] = t.get("noise", 0.0) + time.perf_counter() - t0

    return PreparedArc(
        index=index,
        first_frame=first_frame,
        cameras=cameras,
        edge_maps=edge_maps,
        depth=depth,
        normals=normals,
        object_ids=object_ids,
        flow_forward=fwd,
        flow_forward_valid=fwd_valid,
        flow_end_to_start=e2s,
        flow_end_to_start_valid=e2s_valid,
        warped_noise=noise,
    )


def _render_overlapped(renderer, render_cams, gbuffers, s: int, edges_job, flow_job, end_job, t: dict):
    """Render every view of ``render_cams`` into ``gbuffers`` (the 1x buffers; ``s`` the supersampling) while
    two worker threads run ``edges_job(i, big)`` on each frame's render-size G-buffer as it arrives and
    ``flow_job(i)`` once frames i and i + 1 are in; ``end_job()`` runs on this thread after the last frame,
    while the workers finish, and its result is returned. Frame i + 1 is submitted to the renderer (llvmpipe rasterises on its own
    threads, or a GPU does) as soon as frame i is read back; numpy and OpenCV release the GIL.

    Adds to ``t``: "gbuffer" (render and read-back), "edges" and "flows" (busy time of the jobs, which
    overlap the rendering; ``end_job`` counts as a flow) and "wall"."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    busy = {"edges": 0.0, "flows": 0.0}

    def timed(name, fn, *args):
        t0 = time.perf_counter()
        result = fn(*args)
        busy[name] += time.perf_counter() - t0
        return result

    n = len(render_cams)
    t_render = 0.0
    t_start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = []
        renderer.submit(render_cams[0])
        for i in range(n):
            t0 = time.perf_counter()
            if s == 1:
                big = renderer.collect(out=gbuffers[i])
            else:
                big = renderer.collect()
                _subsample_into(big, s, gbuffers[i])
            if i + 1 < n:
                renderer.submit(render_cams[i + 1])
            t_render += time.perf_counter() - t0
            jobs.append(pool.submit(timed, "edges", edges_job, i, big))
            if i > 0:
                jobs.append(pool.submit(timed, "flows", flow_job, i - 1))
        end_result = timed("flows", end_job)
        for j in jobs:
            j.result()
    t["gbuffer"] = t.get("gbuffer", 0.0) + t_render
    t["edges"] = t.get("edges", 0.0) + busy["edges"]
    t["flows"] = t.get("flows", 0.0) + busy["flows"]
    t["wall"] = t.get("wall", 0.0) + time.perf_counter() - t_start
    return end_result


def make_hed_detector(choice, device: str = "auto"):
    """The HED detector an :class:`~videofrom3d.prepare.edge_mode.EdgeChoice` asks for, or None for lines
    (needs torch; CUDA when ``device="auto"`` finds a GPU)."""
    if choice.mode != "hed":
        return None
    from videofrom3d.annotators.hed import make_edge_detector
    from videofrom3d.models import resolve_device

    dev = str(resolve_device(device))
    if choice.hed == "tiny-random":
        return make_edge_detector("tiny-random", device=dev)
    return make_edge_detector("network", weights=choice.weights, device=dev)


def _subsample_into(gb, s: int, out) -> None:
    """Fill ``out`` with the 1x G-buffer inside an s x (odd s) one: the centre sub-pixel of each s x s
    block is exactly the pixel centre of the 1x image."""
    c = s // 2
    for name in ("depth", "normal", "triangle_id", "object_id", "hit"):
        np.copyto(getattr(out, name), getattr(gb, name)[c::s, c::s])


def write_arc_preview(arc: PreparedArc, path: str | os.PathLike, fps: float = 8.0, scale: float = 0.5) -> Path:
    """An mp4 of the arc: edge map | depth (turbo colours of inverse depth) | forward flow (colour wheel),
    side by side, each panel ``scale`` x the arc size. Depth and flow are sampled at the panel size (nearest
    pixel) before colouring, and their colour ranges (1-99 % of inverse depth, 99 % of flow length) taken
    there: ~4x less work at the default scale than colouring the full frames."""
    import cv2

    from videofrom3d.io.video import write_video
    from videofrom3d.prepare.flow import flow_to_color

    w, h = arc.size
    pw, ph = max(2, int(round(w * scale / 2)) * 2), max(2, int(round(h * scale / 2)) * 2)
    ys, xs = _nearest_samples(h, ph), _nearest_samples(w, pw)
    depth = arc.depth[:, ys][:, :, xs]
    flow = arc.flow_forward[:, ys][:, :, xs]
    valid = arc.flow_forward_valid[:, ys][:, :, xs]
    hit = depth > 0
    inv = np.where(hit, 1.0 / np.where(hit, depth, 1.0), 0.0)
    lo, hi = (np.percentile(inv[hit], [1, 99]) if hit.any() else (0.0, 1.0))
    mags = np.linalg.norm(flow[valid], axis=-1)
    max_mag = float(np.percentile(mags, 99)) if mags.size else 1.0

    def frames():
        for i in range(arc.frame_count):
            e = cv2.resize(arc.edge_maps[i], (pw, ph), interpolation=cv2.INTER_AREA)
            dn = np.clip((inv[i] - lo) / max(hi - lo, 1e-9), 0, 1)
            d = cv2.applyColorMap((dn * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1].astype(np.float32) / 255
            d[~hit[i]] = 0.0
            if i < arc.frame_count - 1:
                f = flow_to_color(flow[i], valid[i], max_mag)
            else:
                f = np.zeros((ph, pw, 3), np.float32)
            yield np.concatenate([np.repeat(e[..., None], 3, axis=-1), d, f], axis=1)

    return write_video(path, frames(), fps=fps)


def _nearest_samples(n: int, m: int) -> slice | np.ndarray:
    """Indices of the ``m`` pixels nearest to the centres of ``m`` equal cells over ``n`` pixels (a strided
    slice, which copies nothing, when ``m`` divides ``n``)."""
    if n % m == 0:
        return slice(n // m // 2, None, n // m)
    return np.minimum(((np.arange(m) + 0.5) * n / m).astype(np.intp), n - 1)
