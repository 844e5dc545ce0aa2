"""Structural edge maps (paper 3.1): silhouette, crease, border and intersection lines from a G-buffer,
drawn in the soft white-on-black look of the HED-processed maps the models were trained on.

Classification works on neighbouring pixel pairs (each pixel against its right and lower neighbour) whose
triangle ids differ, which ignores the T-junctions and unwelded seams of real polygon soups:

1. one side is background -> **silhouette**;
   (rules 2, 3 and 5 apply to pairs whose triangles are not connected in the welded mesh)
2. a depth jump -> **silhouette** (occlusion contour), or **border** when the nearer triangle lies on an
   open mesh boundary (a welded edge with one face). The jump test is geometric, not a raw depth
   difference: the pair is continuous if each point lies within ``depth_jump_px`` pixel footprints of the
   other's plane (or one does and their depths differ by less than ``depth_ratio``), so floors seen at
   grazing angles give no false lines;
3. continuous depth, different object ids -> **border** (object boundaries, contacts);
4. same object, triangles sharing an edge (or a corner) in the welded mesh, normals differing by more
   than ``crease_angle_deg`` (40 degrees: Line Art's 140-degree crease angle, used by the authors) ->
   **crease**; connected faces never give another type;
5. continuous depth, same object, sharing no vertex (Line Art's intersection rule), normals differing by more than
   ``intersection_min_angle_deg`` -> **intersection** (surfaces crossing without sharing an edge; coplanar
   non-adjacent triangles are T-junction artefacts and are dropped).

Each type has its own switch and its own look (core width, soft shoulder, peak intensity). Widths are in
pixels at ``reference_height`` (720, the official 1080x720 maps) and scale with the output height. The
defaults reproduce the official sample: outer contours ~7 px of full white with 1-2 px shoulders, inner
lines ~4-5 px peaking near 200/255.

Welding and adjacency are computed once per scene and cached on the renderer (``renderer.cache``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from videofrom3d.prepare.gbuffer import GBuffer
from videofrom3d.scene.camera import Camera, camera_rays, rotate_points
from videofrom3d.scene.mesh import Scene

EDGE_TYPES = ("silhouette", "crease", "border", "intersection")
TYPE_COLORS = {  # debug image colours (RGB)
    "silhouette": (1.0, 1.0, 1.0),
    "crease": (0.2, 0.6, 1.0),
    "border": (1.0, 0.75, 0.1),
    "intersection": (1.0, 0.2, 0.3),
}


@dataclass(frozen=True)
class LineLook:
    """How one line type is drawn: full-intensity ``core`` width and Gaussian ``softness`` (sigma of the
    shoulders) in pixels at the reference height, and the ``intensity`` of its core in [0, 1]."""

    core: float
    softness: float
    intensity: float


@dataclass(frozen=True)
class EdgeConfig:
    """Options of the edge maps (the ``[prepare]`` table's edge keys)."""

    silhouette: bool = True
    crease: bool = True
    border: bool = True
    intersection: bool = True
    crease_angle_deg: float = 40.0  # Line Art crease 140 degrees in the authors' town.blend
    intersection_min_angle_deg: float = 5.0  # coplanar non-adjacent pairs are T-junctions, not lines
    depth_jump_px: float = 2.5  # plane distance, in pixel footprints, that counts as a depth jump
    depth_ratio: float = 0.05  # with one plane test failing, a relative depth step above this is a jump
    weld_tolerance: float = 1e-6  # vertex welding grid, as a fraction of the scene's diagonal
    reference_height: int = 720  # looks are in pixels at this image height (official maps: 1080x720)
    silhouette_look: LineLook = LineLook(core=5.5, softness=0.9, intensity=1.0)
    border_look: LineLook = LineLook(core=2.5, softness=1.0, intensity=0.8)
    crease_look: LineLook = LineLook(core=2.5, softness=1.0, intensity=0.8)
    intersection_look: LineLook = LineLook(core=2.5, softness=1.0, intensity=0.8)

    def enabled(self) -> tuple[str, ...]:
        return tuple(t for t in EDGE_TYPES if getattr(self, t))

    def look(self, kind: str) -> LineLook:
        return getattr(self, f"{kind}_look")


# ------------------------------------------------------------------------------------------------ topology


@dataclass(frozen=True, eq=False)
class MeshTopology:
    """The welded mesh: ``face_vertices`` (T, 3) int32 welded vertex ids per face (two faces are
    edge-adjacent when they share two of them) and ``open_face`` (T,) bool for faces with an edge that no
    other face uses (an open mesh boundary)."""

    face_vertices: np.ndarray
    open_face: np.ndarray

    def shared_vertices(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(n,) int8: how many welded vertices faces ``a[k]`` and ``b[k]`` share (2 = an edge)."""
        fa = np.take(self.face_vertices, a, axis=0)
        fb = np.take(self.face_vertices, b, axis=0)
        b0, b1, b2 = fb[:, 0].copy(), fb[:, 1].copy(), fb[:, 2].copy()
        shared = np.zeros(len(a), np.int8)
        for i in range(3):
            col = fa[:, i].copy()
            shared += (col == b0) | (col == b1) | (col == b2)
        return shared

    def adjacent(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """(n,) bool: faces ``a[k]`` and ``b[k]`` share an edge of the welded mesh."""
        return self.shared_vertices(a, b) >= 2


def mesh_topology(scene: Scene, weld_tolerance: float = 1e-6) -> MeshTopology:
    """Weld vertices by quantised position (grid ``weld_tolerance`` x the scene diagonal); find the
    edges used by a single face."""
    v = scene.vertices
    lo, hi = v.min(axis=0), v.max(axis=0)
    step = max(float(np.linalg.norm(hi - lo)) * weld_tolerance, 1e-12)
    q = np.round((v - lo) / step).astype(np.int64)
    _, weld = np.unique(q, axis=0, return_inverse=True)
    weld = weld.reshape(-1)
    f = weld[scene.faces]  # (T, 3) welded vertex ids
    T = len(f)
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    e.sort(axis=1)
    nv = int(weld.max()) + 1
    ekey = e[:, 0] * nv + e[:, 1]
    _, inverse, counts = np.unique(ekey, return_inverse=True, return_counts=True)
    single = (counts[inverse] == 1).reshape(3, T)
    return MeshTopology(f.astype(np.int32), single.any(axis=0))


def topology_for(renderer, cfg: EdgeConfig) -> MeshTopology:
    """The scene's topology, cached on the renderer (computed once per scene)."""
    key = ("topology", cfg.weld_tolerance)
    topo = renderer.cache.get(key)
    if topo is None:
        topo = mesh_topology(renderer.scene, cfg.weld_tolerance)
        renderer.cache[key] = topo
    return topo


# ------------------------------------------------------------------------------------------------ classify


def classify_edges(gb: GBuffer, cam: Camera, topo: MeshTopology, cfg: EdgeConfig | None = None) -> dict:
    """Crisp line masks ``{type: (H, W) bool}`` for the enabled types; each line marks both pixels of
    a classified pair, so it is centred on the boundary between them."""
    cfg = cfg or EdgeConfig()
    h, w = gb.depth.shape
    tri = gb.triangle_id
    masks = {t: np.zeros((h, w), bool) for t in cfg.enabled()}
    if not masks:
        return masks
    flat_tri = tri.reshape(-1)
    # candidate pairs: (p, q) flat indices, right and lower neighbours
    right = np.flatnonzero((tri[:, :-1] != tri[:, 1:]).reshape(-1))
    p_r = right + right // (w - 1)  # map (y, x) in the (H, W-1) grid to flat (H, W)
    down = np.flatnonzero((tri[:-1] != tri[1:]).reshape(-1))
    p = np.concatenate([p_r, down])
    q = np.concatenate([p_r + 1, down + w])
    if p.size == 0:
        return masks
    tp, tq = flat_tri[p], flat_tri[q]
    hp, hq = tp >= 0, tq >= 0
    kind = np.full(p.shape, -1, np.int8)  # index into EDGE_TYPES, -1 = no line
    kind[~(hp & hq)] = 0  # background on one side -> silhouette

    both = np.flatnonzero(hp & hq)
    if both.size:
        tpb, tqb = tp[both], tq[both]
        normals = gb.normal.reshape(-1, 3)
        np_w = np.take(normals, p[both], axis=0)
        nq_w = np.take(normals, q[both], axis=0)
        cosang = np.einsum("ij,ij->i", np_w, nq_w)
        obj = gb.object_id.reshape(-1)
        same_obj = obj[p[both]] == obj[q[both]]
        # faces of one object sharing an edge (or a corner) meet there: crease or nothing
        adj = same_obj & (topo.shared_vertices(tpb, tqb) >= 1)
        kb = np.full(both.shape, -1, np.int8)
        kb[adj & (cosang < math.cos(math.radians(cfg.crease_angle_deg)))] = 1
        rest = np.flatnonzero(~adj)
        if rest.size:
            pr, qr = p[both[rest]], q[both[rest]]
            rays = camera_rays(cam).reshape(-1, 3)
            depth = gb.depth.reshape(-1)
            zp, zq = depth[pr], depth[qr]
            d = rays[qr] * zq[:, None] - rays[pr] * zp[:, None]
            R = cam.world_to_cam[:3, :3].astype(np.float32)
            np_c, nq_c = rotate_points(np_w[rest], R), rotate_points(nq_w[rest], R)
            d_pq = np.abs(np.einsum("ij,ij->i", np_c, d))
            d_qp = np.abs(np.einsum("ij,ij->i", nq_c, d))
            zmin = np.minimum(zp, zq)
            zmax = np.maximum(zp, zq)
            f = float(min(cam.K[0, 0], cam.K[1, 1]))
            tol = cfg.depth_jump_px * zmin / f
            dmin, dmax = np.minimum(d_pq, d_qp), np.maximum(d_pq, d_qp)
            jump = (dmin > tol) | ((dmax > tol) & (zmax > (1.0 + cfg.depth_ratio) * zmin))
            near_tri = np.where(zp <= zq, tpb[rest], tqb[rest])
            kr = np.full(rest.shape, -1, np.int8)
            kr[jump] = np.where(topo.open_face[near_tri[jump]], 2, 0)
            cont = ~jump
            kr[cont & ~same_obj[rest]] = 2
            inter = cont & same_obj[rest] & (cosang[rest] < math.cos(math.radians(cfg.intersection_min_angle_deg)))
            kr[inter] = 3
            kb[rest] = kr
        kind[both] = kb

    for idx, name in enumerate(EDGE_TYPES):
        if name not in masks:
            continue
        sel = kind == idx
        if sel.any():
            m = masks[name].reshape(-1)
            m[p[sel]] = True
            m[q[sel]] = True
    return masks


# ------------------------------------------------------------------------------------------------ the look


_LUT_STEPS = 16  # look-up table samples per pixel of distance


def line_profile(look: LineLook, scale: float) -> np.ndarray:
    """Intensity against the distance d from a crisp line pixel's centre, sampled every 1/16 px: the line
    centre sits half a pixel from the marked pixel centres, so r = d + 0.5; full ``intensity`` for
    r <= core / 2 (at least the two marked pixels), then a Gaussian fall-off of sigma ``softness``; both
    widths times ``scale``. The last entry is 0."""
    core = max(look.core * scale / 2.0, 0.5)
    sigma = max(look.softness * scale, 0.25)
    reach = core + 3.0 * sigma
    d = np.arange(int(np.ceil(reach * _LUT_STEPS)) + 2, dtype=np.float64) / _LUT_STEPS
    r = d + 0.5
    lut = look.intensity * np.exp(-0.5 * (np.maximum(r - core, 0.0) / sigma) ** 2)
    lut[r > reach] = 0.0
    lut[-1] = 0.0
    return lut.astype(np.float32)


def soft_lines(mask: np.ndarray, look: LineLook, scale: float) -> np.ndarray:
    """(H, W) bool crisp line pixels -> (H, W) float32 soft line of the given look (``scale`` = output
    height / reference height). The core spans ``look.core * scale`` pixels around the line centre (at
    least the two marked pixels), then falls off as a Gaussian of sigma ``look.softness * scale``."""
    if not mask.any():
        return np.zeros(mask.shape, np.float32)
    lut = line_profile(look, scale)
    dist = cv2.distanceTransform((~mask).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5)
    idx = np.minimum(dist * _LUT_STEPS, len(lut) - 1).astype(np.int32)
    return np.take(lut, idx)


def render_edge_map(masks: dict, cfg: EdgeConfig | None = None, height: int | None = None) -> np.ndarray:
    """Crisp masks -> (H, W) float32 soft edge map in [0, 1] (maximum over the types' looks)."""
    cfg = cfg or EdgeConfig()
    shape = next(iter(masks.values())).shape if masks else (height or 1, 1)
    scale = (height or shape[0]) / cfg.reference_height
    out = np.zeros(shape, np.float32)
    groups: dict[LineLook, np.ndarray] = {}
    for name, m in masks.items():
        look = cfg.look(name)
        groups[look] = groups[look] | m if look in groups else m
    for look, m in groups.items():
        np.maximum(out, soft_lines(m, look, scale), out=out)
    return out


def edge_map(gb: GBuffer, cam: Camera, topo: MeshTopology, cfg: EdgeConfig, size: tuple[int, int] | None = None) -> np.ndarray:
    """One frame's (H, W) float32 soft edge map from its G-buffer rendered through ``cam``. With ``size``
    (W, H) smaller than the camera's (a supersampled render), lines are drawn at the render's size and
    area-averaged down to ``size``."""
    e = render_edge_map(classify_edges(gb, cam, topo, cfg), cfg, height=cam.height)
    if size is not None and tuple(size) != (cam.width, cam.height):
        e = cv2.resize(e, tuple(size), interpolation=cv2.INTER_AREA)
    return e


def debug_image(masks: dict) -> np.ndarray:
    """(H, W, 3) float32 RGB: each type's crisp lines in its colour (``TYPE_COLORS``) on black."""
    shape = next(iter(masks.values())).shape
    out = np.zeros(shape + (3,), np.float32)
    for name in EDGE_TYPES:
        if name in masks:
            out[masks[name]] = TYPE_COLORS[name]
    return out


def normal_shading(gb: GBuffer, cam: Camera) -> np.ndarray:
    """(H, W, 3) float32 normal-matcap shading of a G-buffer, black where nothing was hit: the view-space
    normal (turned toward the camera) as colour, Blender axes (x right, y up, z toward the viewer), RGB =
    ((x + 1) / 2, (y + 1) / 2, z). Stands in for the authors' Workbench matcap ``check_normal+y.exr``, a
    normal-coloured matcap (research/geometry.md 1.1); the exact .exr is Blender's and not bundled."""
    n = gb.normal @ cam.world_to_cam[:3, :3].T  # OpenCV camera axes: x right, y down, z forward
    n = np.where(n[..., 2:3] > 0, -n, n)  # face the camera
    rgb = np.stack([(n[..., 0] + 1) / 2, (1 - n[..., 1]) / 2, -n[..., 2]], axis=-1)
    return np.where(gb.hit[..., None], np.clip(rgb, 0, 1), 0.0).astype(np.float32)


def hed_input(gb: GBuffer, cam: Camera, lines: np.ndarray) -> np.ndarray:
    """The image the authors run HED on: :func:`normal_shading` with the white ``lines`` (H, W) in [0, 1]
    drawn over it (alpha = line intensity)."""
    a = np.clip(lines, 0, 1)[..., None]
    return (normal_shading(gb, cam) * (1 - a) + a).astype(np.float32)


def hed_edge_map(gb: GBuffer, cam: Camera, lines: np.ndarray, detector) -> np.ndarray:
    """(H, W) float32 HED edges of :func:`hed_input` (h_i as the authors make it); ``detector`` maps an
    (H, W, 3) image in [0, 1] to (H, W) edges (:class:`videofrom3d.annotators.hed.HEDDetector`)."""
    return np.asarray(detector(hed_input(gb, cam, lines)), np.float32).reshape(lines.shape)
