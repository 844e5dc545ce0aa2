"""The work folder's layout: every path under ``WORK/`` in one place (a stable interface; README "Work folder").

::

    WORK/manifest.json               input/output hashes of every stage item, anchor edits, run history
    WORK/prepare/arcNNN/             one prepared arc: edge maps, depth, normals, object ids, flows
    WORK/prepare/arcNNN/noise.npy    its warped noise (+ noise.mp4 preview); preview.mp4: the arc's debug video
    WORK/prepare/arcNNN/anchor_views.npz   its end views at the anchor size (diffusion: 1.5x the job size)
    WORK/align/preview_style.json    preview engine: palette and sky colours of the style image(s)
    WORK/align/lora.safetensors      diffusion engine: the style LoRA (paper 3.2)
    WORK/align/reference.safetensors diffusion engine, [align] mode = "reference": pooled Redux tokens, no LoRA
    WORK/anchors/NNN.png             anchor k, the view at global frame k*N, at the engine's anchor size
    WORK/edits/anchorNNN.png         a user's replacement for anchor k (``--anchor K image.png``)
    WORK/edits/unedited/NNN-H.png    edited anchor k as it is without the edit (it guides anchor k+1)
    WORK/inbetween/arcNNN/NNNN.png   the N+1 frames of arc k (local index; frames 0 and N are the anchors' views)
    WORK/inbetween/tails/arcNNN.png  the last decoded frame of arc k (chaining from the decoded frame)
    WORK/frames/NNNN.png             the video's frames, global index from 0, shared arc ends once
    WORK/video.mp4                   H.264 at the job's fps
    WORK/eval.json, WORK/report/     `videofrom3d eval --json`, `videofrom3d report` (optional)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Files of a prepared arc's folder outside its recorded hash: previews, and the warped noise (its own item).
ARC_EXTRAS = ("preview.mp4", "noise.npy", "noise.mp4", "anchor_views.npz")
# Top-level folders the runner writes (where a killed run's temporaries can be).
STAGE_FOLDERS = ("prepare", "align", "anchors", "inbetween", "video", "edits", "frames")


@dataclass(frozen=True)
class WorkFolder:
    """Paths of one work folder; pure (nothing is created or read)."""

    root: Path

    def __init__(self, root: str | os.PathLike):
        object.__setattr__(self, "root", Path(root))

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    # prepare
    @property
    def prepare_dir(self) -> Path:
        return self.root / "prepare"

    def arc(self, k: int) -> Path:
        """The prepared arc k (a :class:`~videofrom3d.prepare.arcs.PreparedArc` folder)."""
        return self.prepare_dir / f"arc{k:03d}"

    def noise(self, k: int) -> Path:
        return self.arc(k) / "noise.npy"

    def anchor_views(self, k: int) -> Path:
        """Arc k's end views at the engine's anchor size (:mod:`videofrom3d.prepare.anchor_inputs`)."""
        return self.arc(k) / "anchor_views.npz"

    def arc_preview(self, k: int) -> Path:
        return self.arc(k) / "preview.mp4"

    def edge_map(self, k: int, local: int) -> Path:
        """Arc k's edge map of local frame ``local`` (as PreparedArc.save writes it)."""
        return self.arc(k) / "edges" / f"{local:04d}.png"

    def arcs(self) -> list[Path]:
        """The prepared arc folders on disk, in order."""
        if not self.prepare_dir.is_dir():
            return []
        return sorted(p for p in self.prepare_dir.glob("arc[0-9][0-9][0-9]") if (p / "arc.json").is_file())

    # align
    @property
    def align_dir(self) -> Path:
        return self.root / "align"

    # anchors and edits
    @property
    def anchors_dir(self) -> Path:
        return self.root / "anchors"

    def anchor(self, k: int) -> Path:
        return self.anchors_dir / f"{k:03d}.png"

    def anchors(self) -> list[Path]:
        return sorted(self.anchors_dir.glob("[0-9][0-9][0-9].png")) if self.anchors_dir.is_dir() else []

    def anchor_edit(self, k: int) -> Path:
        return self.root / "edits" / f"anchor{k:03d}.png"

    @property
    def unedited_dir(self) -> Path:
        return self.root / "edits" / "unedited"

    def unedited_anchor(self, k: int, base: str) -> Path:
        """Anchor k as it would be without its edit, named by its unedited input hash (so never stale)."""
        return self.unedited_dir / f"{k:03d}-{base[:16]}.png"

    # inbetween
    def arc_frames(self, k: int) -> Path:
        return self.root / "inbetween" / f"arc{k:03d}"

    def arc_frame(self, k: int, local: int) -> Path:
        return self.arc_frames(k) / f"{local:04d}.png"

    def tail(self, k: int) -> Path:
        return self.root / "inbetween" / "tails" / f"arc{k:03d}.png"

    # video
    @property
    def frames_dir(self) -> Path:
        return self.root / "frames"

    def frame(self, g: int) -> Path:
        return self.frames_dir / f"{g:04d}.png"

    def frames(self) -> list[Path]:
        if not self.frames_dir.is_dir():
            return []
        return sorted(p for p in self.frames_dir.iterdir() if p.suffix.lower() == ".png" and p.stem.isdigit())

    @property
    def video(self) -> Path:
        return self.root / "video.mp4"

    @property
    def contact_sheet(self) -> Path:
        return self.root / "contact_sheet.png"

    @property
    def trajectory_picture(self) -> Path:
        return self.root / "trajectory.png"

    @property
    def eval_json(self) -> Path:
        """``videofrom3d eval WORK --json WORK/eval.json``: the report shows it when present."""
        return self.root / "eval.json"

    @property
    def report_dir(self) -> Path:
        """Where ``videofrom3d report WORK`` writes ``index.html`` unless told otherwise."""
        return self.root / "report"

    def arc_objects(self, k: int, local: int) -> Path:
        """Arc k's 16-bit object id + 1 of local frame ``local`` (0 where nothing was hit)."""
        return self.arc(k) / "objects" / f"{local:04d}.png"

