"""Reading a rendered work folder for evaluation (layout: :mod:`videofrom3d.io.workfolder`): the prepared
arcs, the anchors, the global frames (or the video when they are gone) and the manifest."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from videofrom3d.errors import VideoFrom3DError
from videofrom3d.io.images import read_image, resize
from videofrom3d.io.workfolder import WorkFolder

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


class EvalInputError(VideoFrom3DError):
    """A work folder that cannot be evaluated (no frames, frames and arcs that disagree)."""


@dataclass(frozen=True)
class RunFolder:
    """A work folder to evaluate; ``style`` overrides the style image the manifest names."""

    path: Path
    style_override: Path | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def layout(self) -> WorkFolder:
        return WorkFolder(self.path)

    @cached_property
    def manifest(self) -> dict:
        p = self.layout.manifest
        if p.is_file():
            try:
                return json.loads(p.read_text())
            except (OSError, ValueError):
                return {}
        return {}

    @cached_property
    def arc_dirs(self) -> list[Path]:
        return self.layout.arcs()

    @cached_property
    def frame_paths(self) -> list[Path]:
        return self.layout.frames()

    @cached_property
    def _video(self) -> np.ndarray | None:
        p = self.layout.video
        if self.frame_paths or not p.is_file():
            return None
        from videofrom3d.io.video import read_video

        return read_video(p)

    @property
    def frame_count(self) -> int:
        if self.frame_paths:
            return len(self.frame_paths)
        return 0 if self._video is None else len(self._video)

    def check(self) -> None:
        if not self.path.is_dir():
            raise EvalInputError(f"{self.path}: not a folder")
        if self.frame_count == 0:
            raise EvalInputError(f"{self.path}: no frames (frames/NNNN.png or video.mp4); render the job first")

    def frame(self, index: int, size: tuple[int, int] | None = None) -> np.ndarray:
        """Global frame ``index`` as (H, W, 3) float32; ``size`` = (W, H) resizes."""
        if self.frame_paths:
            p = self.layout.frame(index)
            if not p.is_file():
                if index >= len(self.frame_paths):
                    raise EvalInputError(f"{self.path}: frame {index} missing (only {len(self.frame_paths)} frames)")
                p = self.frame_paths[index]
            return read_image(p, size=size)
        video = self._video
        if video is None or index >= len(video):
            raise EvalInputError(f"{self.path}: frame {index} missing")
        img = video[index].astype(np.float32) / 255.0
        return img if size is None or (img.shape[1], img.shape[0]) == tuple(size) else resize(img, size)

    def anchor(self, k: int, size: tuple[int, int] | None = None) -> np.ndarray | None:
        """Anchor k (WORK/anchors/NNN.png) or None when absent."""
        p = self.layout.anchor(k)
        return read_image(p, size=size) if p.is_file() else None

    @cached_property
    def style_path(self) -> Path | None:
        """``--style`` if given, else the first existing image a manifest key containing "style" names,
        else ``WORK/style.png``."""
        if self.style_override is not None:
            return Path(self.style_override)
        for cand in _style_candidates(self.manifest):
            for base in (self.path, Path.cwd()):
                p = Path(os.path.expanduser(cand))
                p = p if p.is_absolute() else base / p
                if p.is_file():
                    return p
        fallback = self.path / "style.png"
        return fallback if fallback.is_file() else None


def _style_candidates(doc, under_style: bool = False) -> list[str]:
    out: list[str] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _style_candidates(v, under_style or "style" in str(k).lower())
    elif isinstance(doc, list):
        for v in doc:
            out += _style_candidates(v, under_style)
    elif isinstance(doc, str) and under_style and doc.lower().endswith(IMAGE_SUFFIXES):
        out.append(doc)
    return out
