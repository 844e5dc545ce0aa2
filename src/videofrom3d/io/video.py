"""Video: mp4 (H.264 through PyAV) from float or uint8 frames, written atomically; reading back."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from videofrom3d.io.atomic import atomic_path
from videofrom3d.io.images import to_uint8


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 8.0, crf: int = 18) -> Path:
    """(H, W, 3) frames (float in [0, 1] or uint8) -> H.264 mp4 at ``fps``; even sizes are required."""
    import av

    path = Path(path)
    with atomic_path(path) as tmp:
        container = av.open(str(tmp), mode="w")
        stream = None
        try:
            for frame in frames:
                arr = frame if frame.dtype == np.uint8 else to_uint8(frame)
                if arr.ndim == 2:
                    arr = np.repeat(arr[..., None], 3, axis=-1)
                if stream is None:
                    h, w = arr.shape[:2]
                    stream = container.add_stream("libx264", rate=_fps_fraction(fps))
                    stream.width, stream.height = w - w % 2, h - h % 2
                    stream.pix_fmt = "yuv420p"
                    stream.options = {"crf": str(crf), "preset": "veryfast"}
                arr = np.ascontiguousarray(arr[: stream.height, : stream.width])
                for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                    container.mux(packet)
            if stream is None:
                raise ValueError(f"no frames to write to {path}")
            for packet in stream.encode():
                container.mux(packet)
        finally:
            container.close()
    return path


def read_video(path: str | os.PathLike) -> np.ndarray:
    """mp4 -> (T, H, W, 3) uint8 RGB."""
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def _fps_fraction(fps: float):
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1001)
