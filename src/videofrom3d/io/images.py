"""Images: float32 ``H x W x C`` in [0, 1] inside, PNG on disk (8-bit, or 16-bit where asked), written
atomically. OpenCV does the encoding; channel order is converted here and nowhere else."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from videofrom3d.io.atomic import atomic_path


def read_image(path: str | os.PathLike, size: tuple[int, int] | None = None) -> np.ndarray:
    """PNG/JPEG -> (H, W, 3) float32 RGB in [0, 1]; ``size`` = (W, H) resizes with area filtering."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ValueError(f"cannot decode image: {path}")
    scale = 65535.0 if raw.dtype == np.uint16 else 255.0
    if raw.ndim == 2:
        raw = np.repeat(raw[..., None], 3, axis=-1)
    elif raw.shape[2] == 4:
        raw = cv2.cvtColor(raw, cv2.COLOR_BGRA2RGB)
    else:
        raw = cv2.cvtColor(raw, cv2.COLOR_BGR2RGB)
    img = raw.astype(np.float32) / scale
    if size is not None and (img.shape[1], img.shape[0]) != tuple(size):
        img = resize(img, size)
    return img


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Single-channel PNG -> (H, W) float32 in [0, 1] (edge maps, masks)."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise FileNotFoundError(f"cannot read {path}")
    scale = 65535.0 if raw.dtype == np.uint16 else 255.0
    if raw.ndim == 3:
        raw = raw[..., 0]
    return raw.astype(np.float32) / scale


def to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_image(path: str | os.PathLike, img: np.ndarray, bits: int = 8) -> Path:
    """(H, W, 3) RGB or (H, W) grey float in [0, 1] (or uint8) -> PNG, atomically."""
    arr = np.asarray(img)
    if arr.dtype != np.uint8 and arr.dtype != np.uint16:
        arr = to_uint8(arr) if bits == 8 else (np.clip(arr, 0, 1) * 65535.0 + 0.5).astype(np.uint16)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    path = Path(path)
    with atomic_path(path) as tmp:
        if not cv2.imwrite(str(tmp), arr, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
            raise OSError(f"cannot write {path}")
    return path


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """(H, W) float in [0, 1] or bool -> 8-bit single-channel PNG."""
    m = np.asarray(mask)
    if m.dtype == bool:
        m = m.astype(np.uint8) * 255
    return write_image(path, m)


def resize(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to ``size`` = (W, H): area filter when shrinking, cubic when growing."""
    w, h = size
    shrink = w < img.shape[1] or h < img.shape[0]
    out = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return np.clip(out, 0.0, 1.0) if out.dtype.kind == "f" else out
