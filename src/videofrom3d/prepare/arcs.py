"""Arcs: the trajectory cut into clips of N+1 frames that share their end frames (paper 3.3), and the
prepared inputs of one arc with their on-disk layout.

Layout of ``OUT/prepare/arcNNN/`` (stable; other stages and checks rely on it):

- ``cameras.json``  the ``trajectory export`` schema: ``{"width", "height", "frames": [{"K", "world_to_cam"}]}``
- ``edges/NNNN.png``  8-bit edge maps, local frame index from 0000 (white lines on black)
- ``normals/NNNN.png``  8-bit world normals as ``(n + 1) / 2``, black where nothing was hit
- ``objects/NNNN.png``  16-bit object id + 1, 0 where nothing was hit
- ``flow.npz``  ``forward`` (F-1, H, W, 2) float32 flow i -> i+1, ``forward_valid`` (F-1, H, W) bool,
  ``end_to_start`` (H, W, 2) float32, ``end_to_start_valid`` (H, W) bool
- ``depth.npz``  ``depth`` (F, H, W) float32 along +z, 0 where nothing was hit
- ``noise.npy``  (13, 16, 60, 90) float16 warped noise before degradation (when computed)
- ``arc.json``  index, global first frame, frame count, and what was computed
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videofrom3d.io.atomic import atomic_path, atomic_write_text
from videofrom3d.io.images import read_mask, write_image
from videofrom3d.scene.camera import Camera


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


def arc_dir(work: str | os.PathLike, index: int) -> Path:
    """``WORK/prepare/arcNNN``."""
    return Path(work) / "prepare" / f"arc{index:03d}"


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
            for i in range(self.frame_count):
                write_image(tmp / "edges" / f"{i:04d}.png", self.edge_maps[i])
                hit = self.object_ids[i] >= 0
                write_image(tmp / "normals" / f"{i:04d}.png", np.where(hit[..., None], self.normals[i] * 0.5 + 0.5, 0.0))
                write_image(tmp / "objects" / f"{i:04d}.png", (self.object_ids[i] + 1).astype(np.uint16))
            np.savez(
                tmp / "flow.npz",
                forward=self.flow_forward.astype(np.float32),
                forward_valid=self.flow_forward_valid.astype(bool),
                end_to_start=self.flow_end_to_start.astype(np.float32),
                end_to_start_valid=self.flow_end_to_start_valid.astype(bool),
            )
            np.savez(tmp / "depth.npz", depth=self.depth.astype(np.float32))
            if self.warped_noise is not None:
                np.save(tmp / "noise.npy", self.warped_noise.astype(np.float16))
            meta = {
                "index": self.index,
                "first_frame": self.first_frame,
                "frame_count": self.frame_count,
                "has_noise": self.warped_noise is not None,
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
        cameras = load_cameras(folder / "cameras.json")
        n = len(cameras)
        edges = np.stack([read_mask(folder / "edges" / f"{i:04d}.png") for i in range(n)])
        normals = np.stack([_read_normals(folder / "normals" / f"{i:04d}.png") for i in range(n)])
        objects = np.stack([_read_u16(folder / "objects" / f"{i:04d}.png") for i in range(n)]).astype(np.int32) - 1
        with np.load(folder / "flow.npz") as f:
            flows = {k: f[k] for k in f.files}
        with np.load(folder / "depth.npz") as d:
            depth = d["depth"]
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


def save_cameras(path: str | os.PathLike, cameras: list[Camera] | tuple[Camera, ...]) -> Path:
    """The ``trajectory export`` JSON: ``{"width", "height", "frames": [{"K", "world_to_cam"}, ...]}``."""
    if not cameras:
        raise ValueError("no cameras to save")
    doc = {"width": cameras[0].width, "height": cameras[0].height, "frames": [c.to_dict() for c in cameras]}
    return atomic_write_text(path, json.dumps(doc, indent=1))


def load_cameras(path: str | os.PathLike) -> list[Camera]:
    doc = json.loads(Path(path).read_text())
    w, h = int(doc["width"]), int(doc["height"])
    return [Camera.from_dict(f, w, h) for f in doc["frames"]]


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
