"""An arc's two end views at the anchor size (paper 3.2; research/official-code.md section 2).

FLUX makes the anchors at 1.5x the job size (the authors: edge maps rendered at 1080x720, floored to 1072x720
for a 720x480 video), so the edge map it is conditioned on and the end->start flow that warps anchor k-1 into
anchor k's view are made at that size here, from G-buffers rendered at that size (not resized from the job-size
arc). The anchors are then resized to the job size for the inbetween stage.

File ``anchor_views.npz`` (beside or inside an arc folder): ``edge_start``, ``edge_end`` (H, W) uint8 (as the
PNG edge maps are stored), ``flow_end_to_start`` (H, W, 2) float32, ``flow_end_to_start_valid`` (H, W) bool.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videofrom3d.io.atomic import atomic_path
from videofrom3d.io.images import to_uint8


@dataclass(frozen=True, eq=False)
class AnchorViews:
    """Arc k's first and last view at the anchor size (W, H): ``edge_start``/``edge_end`` (H, W) float32 in
    [0, 1] (anchor 0 uses arc 0's ``edge_start``, anchor k+1 arc k's ``edge_end``), ``flow_end_to_start``
    (H, W, 2) float32 pixels with ``flow_end_to_start_valid`` (H, W) bool."""

    edge_start: np.ndarray
    edge_end: np.ndarray
    flow_end_to_start: np.ndarray
    flow_end_to_start_valid: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        """(W, H)."""
        return self.edge_end.shape[1], self.edge_end.shape[0]

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (an .npz) atomically; edge maps are quantised to uint8 like the arc's PNGs."""
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, edge_start=to_uint8(self.edge_start), edge_end=to_uint8(self.edge_end),
                     flow_end_to_start=self.flow_end_to_start.astype(np.float32, copy=False),
                     flow_end_to_start_valid=self.flow_end_to_start_valid.astype(bool, copy=False))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> AnchorViews:
        with np.load(Path(path)) as d:
            return cls(d["edge_start"].astype(np.float32) / 255.0, d["edge_end"].astype(np.float32) / 255.0,
                       d["flow_end_to_start"], d["flow_end_to_start_valid"])


def anchor_view_inputs(renderer, camera_start, camera_end, size: tuple[int, int], cfg=None, hed=None) -> AnchorViews:
    """Render the arc's first and last camera at ``size`` (W, H) (intrinsics scaled per axis, as the
    authors stretch 1080x720 to 1072x720) and make their edge maps (drawn lines, or HED of the shaded render
    when ``hed`` is given; the same recipe as :func:`videofrom3d.prepare.arcs.prepare_arc`, supersampling
    included) and the exact end->start flow with visibility."""
    from videofrom3d.prepare.arcs import PrepareConfig, _subsample_into
    from videofrom3d.prepare.edges import edge_map, hed_edge_map, topology_for
    from videofrom3d.prepare.flow import geometric_flow
    from videofrom3d.prepare.gbuffer import GBuffer

    cfg = cfg or PrepareConfig()
    if cfg.edges == "hed" and hed is None:
        raise ValueError('[prepare] edges = "hed" needs a HED detector: pass hed=make_hed_detector(choice)')
    w, h = int(size[0]), int(size[1])
    ecfg = cfg.edge_config()
    topo = topology_for(renderer, ecfg)
    s = cfg.supersample
    views = []
    for cam0 in (camera_start, camera_end):
        cam = cam0.resized(w, h)
        big_cam = cam if s == 1 else cam.resized(w * s, h * s)
        big = renderer.render(big_cam)
        if s == 1:
            gb = big
        else:
            gb = GBuffer(np.empty((h, w), np.float32), np.empty((h, w, 3), np.float32), np.empty((h, w), np.int32),
                         np.empty((h, w), np.int32), np.empty((h, w), bool))
            _subsample_into(big, s, gb)
        lines = edge_map(big, big_cam, topo, ecfg, size=(w, h))
        edges = lines if hed is None else hed_edge_map(gb, cam, lines, hed)
        views.append((gb, cam, edges))
    (gb0, cam0, e0), (gb1, cam1, e1) = views
    flow, valid = geometric_flow(gb1, cam1, gb0, cam0, cfg.depth_tolerance)
    return AnchorViews(e0, e1, flow, valid)
