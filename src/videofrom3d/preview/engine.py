"""The preview engine (``--engine preview``): the engine interface of :mod:`videofrom3d.engines` with no
weights, CPU only, deterministic (same inputs, same bytes). :class:`PreviewAligner` takes the style image's
palette, :class:`PreviewAnchors` stands in for SAG anchors, :class:`PreviewInbetweener` for GGI."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from videofrom3d.chaining import ArcChaining, ReplacementRule
from videofrom3d.engines import AnchorGuide, EngineContext, EngineSpec, style_digests
from videofrom3d.io.manifest import json_ready
from videofrom3d.job import stage_config
from videofrom3d.prepare.flow import reprojection_flow
from videofrom3d.prepare.warp import backward_warp, remap
from videofrom3d.preview.config import PreviewConfig, PreviewError
from videofrom3d.preview.shading import draw_lines, match_objects, shade_view
from videofrom3d.preview.style import PreviewStyle, style_from_files


class PreviewAligner:
    """The align stage: the palette and sky colours of the job's style images."""

    item = "preview"
    output = "preview_style.json"

    def __init__(self, job, cfg: PreviewConfig):
        self.job, self.cfg = job, cfg
        self.note = "" if job.styles else " (no style image in the job: default palette)"

    def cache_key(self) -> dict:
        return {"engine": "preview", "styles": style_digests(self.job), "palette_size": self.cfg.palette_size,
                "seed": self.job.seed}

    def align(self, out: Path) -> None:
        style_from_files([s.image for s in self.job.styles], self.cfg.palette_size, seed=self.job.seed).save(out)


class _Base:
    def __init__(self, style: PreviewStyle, cfg: PreviewConfig | None = None, fog_distance: float = 0.0,
                 style_digest: str = ""):
        self.style = style
        self.cfg = cfg or PreviewConfig()
        self.fog_distance = float(self.cfg.fog_distance if self.cfg.fog_distance is not None else fog_distance)
        self.style_digest = style_digest

    def cache_key(self) -> dict:
        return {"engine": "preview", "config": json_ready(dataclasses.asdict(self.cfg)),
                "fog_distance": self.fog_distance, "style": self.style_digest}

    def _shade(self, arc, i: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """(shaded view i without lines, its colour groups)."""
        return shade_view(
            arc.normals[i], arc.object_ids[i], arc.depth[i], arc.cameras[i], self.style, self.cfg, seed,
            self.fog_distance, return_groups=True,
        )

    def close(self) -> None:
        """Nothing to free (the diffusion engines release GPU memory here)."""


class PreviewAnchors(_Base):
    """Anchor views shaded from the G-buffer; from the second anchor on, the previous anchor warped with the
    exact flow replaces the observed pixels (the pixel-space form of the paper's Eq. 1: the observed share is
    ``observed_weight``, the mask is eroded and feathered, newly seen parts of an object take its observed
    colour) and only unobserved pixels keep the fresh shading."""

    replacement = ReplacementRule()  # every anchor after the first is guided by the previous one

    def guide(self, previous_anchor: np.ndarray, arc, flow=None) -> AnchorGuide:
        """Anchor k-1 warped into ``arc``'s end view (the mask is eroded and feathered in :meth:`generate`)."""
        warped, observed = backward_warp(previous_anchor, arc.flow_end_to_start, arc.flow_end_to_start_valid)
        return AnchorGuide(warped, observed)

    def render_anchor(self, arc, frame: int, prompt: str, seed: int, guide: AnchorGuide | None = None,
                      edge_map: np.ndarray | None = None) -> np.ndarray:
        """The preview works at the job size: ``edge_map`` is never given (no ``anchor_size``)."""
        return self.generate(arc.edge_maps[frame], prompt, seed, guide, arc=arc, frame=frame)

    def generate(
        self,
        edge_map: np.ndarray,
        prompt: str,
        seed: int,
        guide=None,
        arc=None,
        frame: int | None = None,
    ) -> np.ndarray:
        """(H, W) edge map -> (H, W, 3) float32 anchor. ``arc`` (a PreparedArc) is required; ``frame`` is the
        anchor's frame in it (default: 0 without a guide, the arc's last frame with one, where the guide is
        the arc's start anchor warped by ``flow_end_to_start``). ``prompt`` is ignored."""
        if arc is None:
            raise PreviewError("the preview engine shades anchors from the prepared arc: pass arc=PreparedArc")
        last = arc.frame_count - 1
        i = (0 if guide is None else last) if frame is None else int(frame) % arc.frame_count
        fresh, groups = self._shade(arc, i, seed)
        if guide is not None:
            cfg = self.cfg
            scale = arc.size[1] / 480.0
            warped = np.asarray(guide.warped_previous, np.float32)
            mask = np.asarray(guide.observed_mask, bool)
            r = max(0, round(cfg.erode_px * scale))
            if r:
                mask = cv2.erode(mask.astype(np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)).astype(bool)
            if i == last:
                # pixels that carry the previous view's lines are not surface colour: shade them fresh
                prev_lines = remap(arc.edge_maps[0], arc.flow_end_to_start, border="replicate")
                mask &= prev_lines < 0.15
            fresh = match_objects(fresh, warped, mask, groups)
            soft = _feather(mask, cfg.feather_px * scale) * np.float32(cfg.observed_weight)
            fresh = fresh + (warped - fresh) * soft[..., None]
        out = draw_lines(fresh, edge_map, self.style, self.cfg.line_strength)
        return np.clip(out, 0.0, 1.0).astype(np.float32)


class PreviewInbetweener(_Base):
    """Frames between two anchors: both anchors warped into each inner frame along the exact flow (computed
    from the arc's depth and cameras, with visibility), blended by time, lines redrawn from the frame's own
    edge map, and holes (seen by neither anchor) filled with shading matched per object to what was seen."""

    chaining = ArcChaining("anchor")
    fixed_prompt = ""  # the preview reads no prompt

    def prompt_for(self, first_anchor: np.ndarray) -> str:
        return ""

    def arc_frames(self, start, end, arc, prompt: str, seed: int):
        return self.iter_frames(start, end, arc.edge_maps, seed, arc)

    def last_decoded_frame(self) -> None:
        return None

    def inbetween(
        self,
        start: np.ndarray,
        end: np.ndarray,
        edge_maps: np.ndarray,
        warped_noise=None,
        prompt: str = "",
        seed: int = 0,
        arc=None,
    ) -> np.ndarray:
        """-> (F, H, W, 3) float32 with frame 0 == ``start`` and frame F-1 == ``end`` exactly.
        ``warped_noise`` and ``prompt`` are ignored; ``arc`` is required."""
        if arc is None:
            raise PreviewError("the preview engine inbetweens from the prepared arc: pass arc=PreparedArc")
        return np.stack(list(self.iter_frames(start, end, edge_maps, seed, arc)))

    def iter_frames(self, start, end, edge_maps, seed, arc):
        """The frames of :meth:`inbetween` one at a time (for progress and low memory)."""
        n = len(edge_maps)
        if n != arc.frame_count:
            raise PreviewError(f"{n} edge maps for an arc of {arc.frame_count} frames")
        start = np.asarray(start, np.float32)
        end = np.asarray(end, np.float32)
        tol = self.cfg.depth_tolerance
        yield start
        for i in range(1, n - 1):
            t = np.float32(i / (n - 1))
            f0, v0 = reprojection_flow(arc.depth[i], arc.cameras[i], arc.depth[0], arc.cameras[0], tol)
            f1, v1 = reprojection_flow(arc.depth[i], arc.cameras[i], arc.depth[-1], arc.cameras[-1], tol)
            w0 = v0 * (1 - t)
            w1 = v1 * t
            possible = w0 + w1
            a0 = w0 * np.clip(1.0 - 3.0 * remap(edge_maps[0], f0, border="replicate"), 0.0, 1.0)
            a1 = w1 * np.clip(1.0 - 3.0 * remap(edge_maps[-1], f1, border="replicate"), 0.0, 1.0)
            total = a0 + a1
            warped0 = remap(start, f0, border="replicate")
            warped1 = remap(end, f1, border="replicate")
            blend = (a0[..., None] * warped0 + a1[..., None] * warped1) / np.maximum(total, 1e-6)[..., None]
            seen = total > 1e-3
            fresh, groups = self._shade(arc, i, seed)
            fresh = match_objects(fresh, blend, seen, groups)
            alpha = np.where(seen, total / np.maximum(possible, 1e-6), 0.0).astype(np.float32)[..., None]
            frame = fresh + (blend - fresh) * alpha
            yield np.clip(draw_lines(frame, edge_maps[i], self.style, self.cfg.line_strength), 0.0, 1.0)
        yield end


def _feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Soft version of a bool mask that is 0 outside it and falls off smoothly inside its border."""
    m = mask.astype(np.float32)
    if sigma <= 0:
        return m
    return cv2.GaussianBlur(m, (0, 0), sigmaX=float(sigma)) * m


def _configs(job, models: str = "real") -> dict:
    return {table: stage_config(cls, job, table) for table, cls in ENGINE.tables.items()}


def _styled(cls, ctx: EngineContext):
    """``cls`` with the aligned style; fog over the scene's diagonal unless ``[preview] fog_distance`` says."""
    path, digest = ctx.style
    return cls(PreviewStyle.load(path), ctx.configs["preview"], fog_distance=ctx.scene_extent, style_digest=digest)


ENGINE = EngineSpec(
    name="preview",
    configs=_configs,
    aligner=lambda ctx: PreviewAligner(ctx.job, ctx.configs["preview"]),
    anchors=lambda ctx: _styled(PreviewAnchors, ctx),
    inbetween=lambda ctx: _styled(PreviewInbetweener, ctx),
    tables={"preview": PreviewConfig},
)
