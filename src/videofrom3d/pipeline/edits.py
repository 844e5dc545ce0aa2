"""Anchor edits (``--anchor K IMAGE``, ``--reseed-anchor K SEED``, ``--reset-edits``): checked before any work,
then remembered in the manifest so later runs keep them.

An edit applies to its own anchor only. Anchor k+1 is always guided by anchor k *without its edit* (kept in
``WORK/edits/unedited/``), so its input hash (the unedited chain) tells the truth, it is the same whether it
was made before or after the edit, and an edit never ripples down the trajectory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videofrom3d.errors import VideoFrom3DError
from videofrom3d.io.images import read_image, resize, write_image
from videofrom3d.io.manifest import Manifest, digest_file
from videofrom3d.io.workfolder import WorkFolder


class PipelineError(VideoFrom3DError, ValueError):
    """A render that cannot start or go on (bad edit, bad option, missing upstream output)."""


@dataclass(frozen=True)
class AnchorEdits:
    """Checked edits of one run: ``reseeds`` [(k, seed)], ``images`` [(k, image at the job's size)]."""

    reseeds: list[tuple[int, int]]
    images: list[tuple[int, np.ndarray]]
    reset: bool = False


def _pairs(x) -> list[tuple]:
    if x is None:
        return []
    if isinstance(x, Mapping):
        return list(x.items())
    x = list(x)
    if len(x) == 2 and not isinstance(x[0], list | tuple):
        return [tuple(x)]
    return [tuple(p) for p in x]


def check_edits(reseed_anchor, anchor_images, reset: bool, n_anchors: int, size: tuple[int, int],
                log: Callable[[str], None]) -> AnchorEdits:
    """``reseed_anchor``: (K, SEED) or a list of them; ``anchor_images``: {K: path} or pairs. Every index,
    seed and image is checked (one-line errors) and every image read and fitted to ``size`` = (W, H)."""

    def index(k, flag: str) -> int:
        if not 0 <= k < n_anchors:
            raise PipelineError(f"{flag} {k}: this job has {n_anchors} anchors (0..{n_anchors - 1}), one per arc end")
        return k

    reseeds = []
    for k, s in _pairs(reseed_anchor):
        try:
            k, s = int(k), int(s)
        except (TypeError, ValueError):
            raise PipelineError(f"--reseed-anchor wants two integers K SEED, got {k!r} {s!r}") from None
        index(k, "--reseed-anchor")
        if s < 0:
            raise PipelineError(f"--reseed-anchor {k}: the seed must be >= 0, got {s}")
        reseeds.append((k, s))
    images = []
    for k, p in _pairs(anchor_images):
        try:
            k, p = int(k), Path(p)
        except (TypeError, ValueError):
            raise PipelineError(f"--anchor wants an anchor index and an image path, got {k!r} {p!r}") from None
        index(k, "--anchor")
        try:
            img = read_image(p)
        except (FileNotFoundError, ValueError) as e:
            raise PipelineError(f"--anchor {k}: {e}") from None
        h, w = img.shape[:2]
        if abs(w / h - size[0] / size[1]) > 0.01 * size[0] / size[1]:
            log(f"note: --anchor {k}: {p} is {w}x{h}, the job {size[0]}x{size[1]}; it is stretched to fit")
        images.append((k, resize(img, size) if (w, h) != size else img))
    return AnchorEdits(reseeds, images, reset)


def apply_edits(manifest: Manifest, work: WorkFolder, edits: AnchorEdits) -> dict:
    """Write the edit images and remember the edits in the manifest; -> the anchors' edits in force."""
    current = manifest.edits("anchors")
    if edits.reset:
        current.clear()
    for k, seed in edits.reseeds:
        current[str(k)] = {"seed": seed}
    for k, img in edits.images:
        path = work.anchor_edit(k)
        write_image(path, img)
        current[str(k)] = {"image": str(path.relative_to(work.root)), "digest": digest_file(path)}
    return current


def edit_image(work: WorkFolder, k: int, edit: dict, size: tuple[int, int]) -> np.ndarray:
    """The user's image for anchor k, checked against the digest recorded when it was given."""
    src = work.root / edit["image"]
    if not src.is_file() or digest_file(src) != edit["digest"]:
        raise PipelineError(f"anchor {k}: the edit image {src} is missing or changed; give it again with --anchor {k} IMAGE")
    return read_image(src, size=size)


def remove_stale_unedited(work: WorkFolder, keep: set[Path]) -> None:
    """Unedited copies of anchors whose edit is gone or whose unedited input changed."""
    for stale in set(work.unedited_dir.glob("*.png")) - keep:
        stale.unlink()
