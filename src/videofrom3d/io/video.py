"""Video: H.264 mp4 from float or uint8 frames, written atomically and reproducibly; reading back.

Encoding runs the ffmpeg binary that ``imageio-ffmpeg`` ships (a base dependency) on one thread with
bit-exact flags, so the same frames always give the same bytes (a resumed render ends with the same video
as an uninterrupted one; PyAV's in-process x264 was not reproducible here). Reading uses PyAV.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import numpy as np

from videofrom3d.errors import VideoFrom3DError
from videofrom3d.io.atomic import atomic_path
from videofrom3d.io.images import read_image, to_uint8


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 8.0, crf: int = 18) -> Path:
    """(H, W, 3) or (H, W) frames (float in [0, 1] or uint8) -> H.264 mp4 (yuv420p) at ``fps``.

    Odd sizes are cropped by one pixel (the encoder needs even sizes)."""
    import imageio_ffmpeg

    path = Path(path)
    rate = Fraction(fps).limit_denominator(1001)
    with atomic_path(path) as tmp:
        proc = None
        try:
            for frame in frames:
                arr = frame if frame.dtype == np.uint8 else to_uint8(frame)
                if arr.ndim == 2:
                    arr = np.repeat(arr[..., None], 3, axis=-1)
                if proc is None:
                    h, w = arr.shape[0] - arr.shape[0] % 2, arr.shape[1] - arr.shape[1] % 2
                    cmd = [
                        imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y",
                        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
                        "-framerate", f"{rate.numerator}/{rate.denominator}", "-i", "-",
                        "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p",
                        "-threads", "1", "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact",
                        "-movflags", "+faststart", str(tmp),
                    ]  # fmt: skip
                    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
                try:
                    proc.stdin.write(np.ascontiguousarray(arr[:h, :w, :3]).tobytes())
                except BrokenPipeError:  # ffmpeg stopped early; its own message follows
                    break
            if proc is None:
                raise VideoFrom3DError(f"no frames to write to {path}")
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
            err = proc.stderr.read().decode(errors="replace").strip()
            if proc.wait() != 0:
                last = err.splitlines()[-1] if err else f"exit status {proc.returncode}"
                raise VideoFrom3DError(f"ffmpeg could not encode {path}: {last}")
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    return path


def frames_to_mp4(
    frames_dir: str | os.PathLike, count: int, fps: float, out: str | os.PathLike, progress=None
) -> Path:
    """``frames_dir/0000.png`` .. ``{count - 1:04d}.png`` -> H.264 mp4 at ``fps`` (:func:`write_video`).
    ``progress(iterable, label, total=, leave=)`` wraps the frames (a tqdm-like bar), if given."""
    frames = (read_image(Path(frames_dir) / f"{g:04d}.png") for g in range(count))
    if progress is not None:
        frames = progress(frames, "video", total=count, leave=False)
    return write_video(out, frames, fps=fps)


def read_video(path: str | os.PathLike) -> np.ndarray:
    """mp4 -> (T, H, W, 3) uint8 RGB."""
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
