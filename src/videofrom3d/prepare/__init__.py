"""Preprocessing (paper 3.1): G-buffers, structural edge maps, exact flow with visibility, warped noise,
arcs and their on-disk layout, and the export in the authors' folder layout. CPU only, no weights."""

from videofrom3d.prepare.arcs import (
    PrepareConfig,
    PreparedArc,
    arc_ranges,
    check_cameras,
    prepare_arc,
    write_arc_preview,
)
from videofrom3d.prepare.flow import geometric_flow
from videofrom3d.prepare.gbuffer import GBuffer, make_renderer
from videofrom3d.prepare.warp import backward_warp

__all__ = [
    "GBuffer",
    "PrepareConfig",
    "PreparedArc",
    "arc_ranges",
    "backward_warp",
    "check_cameras",
    "geometric_flow",
    "make_renderer",
    "prepare_arc",
    "write_arc_preview",
]
