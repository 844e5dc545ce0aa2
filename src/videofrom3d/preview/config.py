"""Options of the preview engine (the job's ``[preview]`` table)."""

from __future__ import annotations

from dataclasses import dataclass

from videofrom3d.errors import VideoFrom3DError


class PreviewError(VideoFrom3DError, ValueError):
    """The preview engine was called without what it shades from (the prepared arc)."""


@dataclass(frozen=True)
class PreviewConfig:
    """How the weight-free preview engine shades and blends. Every value is a look choice, not a paper value.

    The shading is ambient + Lambert with one sun direction (world, Y up) on per-object colours drawn from the
    style image's k-means palette; the sky is a vertical gradient of the reference's top-row colours;
    distance fades into the horizon colour; the prepared edge maps are drawn as lines."""

    palette_size: int = 6  # k-means clusters of the style image
    sun_direction: tuple[float, ...] = (0.35, 0.85, 0.4)  # world, Y up; normalised
    ambient: float = 0.55
    diffuse: float = 0.55
    colour_jitter: float = 0.08  # per-object brightness jitter drawn from the anchor's seed
    line_strength: float = 0.8  # 0 = no lines, 1 = full line colour on edge pixels
    fog_strength: float = 0.45  # largest share of the horizon colour at infinite distance
    fog_distance: float | None = None  # world units; None = the scene's diagonal
    observed_weight: float = 0.85  # share of the warped previous anchor in observed pixels (pixel-space Eq. 1)
    erode_px: int = 2  # observed mask erosion at 720x480, scaled with the frame height
    feather_px: float = 3.0  # blur of the observed mask's border at 720x480
    depth_tolerance: float = 0.02  # relative depth difference still counted as the same surface
