"""Checks the plan makes before any work that the job's keys alone cannot: style images that decode, an output
folder that can be written, and the memory and disk one arc needs at the requested size against what the
machine has (refused with the numbers unless ``force``)."""

from __future__ import annotations

import os
import resource
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from videofrom3d.errors import VideoFrom3DWarning
from videofrom3d.pipeline.edits import PipelineError

# Bytes per pixel per frame held while one arc is prepared: edge map, depth, object id (4 each), world normals
# (12), forward flow (8) and its mask (1) = 33 kept in the PreparedArc, plus the G-buffer and edge temporaries.
# Measured: peak RSS of `prepare` on the bundled example grows by ~58 B per pixel-frame from 320x224 to
# 640x448 (46 frames, no noise); rounded up.
ARC_BYTES_PER_PIXEL = 64
# The warped-noise state on its grid (grid_factor^2 cells per pixel, latent_channels float32 each): the state,
# its next step and the scratch of one warp step (measured ~2.9 KB per pixel at the default grid, 3 KB here).
NOISE_COPIES = 3
# Bytes per pixel per frame an arc leaves on disk: flow.npz (9) and depth.npz (4) uncompressed, the edge,
# normal and object PNGs, and the arc's frames.
DISK_BYTES_PER_PIXEL = 20


@dataclass(frozen=True)
class ResourceEstimate:
    """Peak memory of preparing one arc and the disk all arcs take, in bytes, against what the machine has."""

    memory_per_arc: int
    disk_total: int
    memory_available: int | None
    disk_free: int | None

    def problems(self) -> list[str]:
        out = []
        if self.memory_available is not None and self.memory_per_arc > self.memory_available:
            out.append(f"about {gib(self.memory_per_arc)} of memory per arc, {gib(self.memory_available)} available")
        if self.disk_free is not None and self.disk_total > self.disk_free:
            out.append(f"about {gib(self.disk_total)} of disk, {gib(self.disk_free)} free")
        return out


def gib(n: int) -> str:
    """Bytes for a person: "5.3 MiB", "8.62 GiB", "412 GiB"."""
    if n < 2**30:
        return f"{n / 2**20:.1f} MiB"
    return f"{n / 2**30:.2f} GiB" if n < 100 * 2**30 else f"{n / 2**30:.0f} GiB"


def estimate_resources(width: int, height: int, frames_per_arc: int, arcs: int, noise_cfg=None,
                       folder: Path | None = None) -> ResourceEstimate:
    """The estimate at ``width`` x ``height`` for ``arcs`` arcs of ``frames_per_arc`` + 1 frames; ``noise_cfg``
    (a NoiseConfig) when the warped noise is computed; free disk where ``folder`` (or its nearest existing
    parent) lives."""
    pixels = width * height
    frames = frames_per_arc + 1
    memory = ARC_BYTES_PER_PIXEL * pixels * frames
    if noise_cfg is not None:
        memory += NOISE_COPIES * noise_cfg.grid_factor**2 * noise_cfg.latent_channels * 4 * pixels
    disk = DISK_BYTES_PER_PIXEL * pixels * (frames_per_arc * arcs + 1)
    free = shutil.disk_usage(existing_parent(folder)).free if folder is not None else None
    return ResourceEstimate(memory, disk, available_memory(), free)


def available_memory() -> int | None:
    """Bytes this process may still allocate: the smallest of the kernel's MemAvailable, a container's
    cgroup (v2) limit less its use, and the address-space limit (``ulimit -v``, RLIMIT_AS) less what is
    mapped now; None when none is known."""
    limits = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                limits.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    try:
        cap = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if cap != "max":
            limits.append(max(0, int(cap) - int(Path("/sys/fs/cgroup/memory.current").read_text())))
    except (OSError, ValueError):
        pass
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append(max(0, soft - _mapped_bytes()))
    return min(limits) if limits else None


def _mapped_bytes() -> int:
    try:
        return int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def check_resources(estimate: ResourceEstimate, width: int, height: int, frames_per_arc: int,
                    force: bool) -> None:
    """Refuse (one line with the numbers) when the estimate exceeds the machine; ``force``: warn instead."""
    problems = estimate.problems()
    if not problems:
        return
    what = f"{width}x{height} with arcs of {frames_per_arc + 1} frames needs " + "; ".join(problems)
    if force:
        warnings.warn(f"{what}; going on (--force)", VideoFrom3DWarning, stacklevel=2)
        return
    raise PipelineError(f"{what}; use a smaller --size (or [size]), or --force to try anyway")


def existing_parent(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(folder: str | os.PathLike, what: str = "output folder") -> None:
    """One line naming ``folder`` and the OS's reason when it (or the nearest parent that exists, where it
    would be made) cannot take a new file. Writes and removes one temporary file."""
    folder = Path(folder)
    parent = existing_parent(folder)
    if not parent.is_dir():
        raise PipelineError(f"cannot write the {what} {folder}: {parent} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=parent, prefix=".videofrom3d-probe."):
            pass
    except OSError as e:
        raise PipelineError(f"cannot write the {what} {folder}: {e.strerror or e}") from None


def check_style_images(styles) -> None:
    """Every style image exists and decodes (a file that is not an image fails here, not after prepare)."""
    from PIL import Image, UnidentifiedImageError

    for s in styles:
        path = Path(s.image)
        if not path.is_file():
            raise PipelineError(f"style image not found: {path}")
        try:
            with Image.open(path) as im:
                im.load()
        except (UnidentifiedImageError, OSError, ValueError) as e:
            reason = "not an image PIL can read" if isinstance(e, UnidentifiedImageError) else str(e)
            raise PipelineError(f"style image {path} cannot be decoded: {reason}") from None
