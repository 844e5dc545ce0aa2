"""Compact, fast-to-read storage of the prepare stage's big arrays (flows, depth): ``.npz`` archives whose
members are deflated at level 1 (numpy's ``np.load`` reads them as usual), with array-specific coding
that makes them compress.

- Flow: fixed point at 1/64 px, ``q = floor(64 f)`` (error in [0, 1/64) px), int16 when it fits (|f| < 512
  px) else int32, channels planar and each row delta-coded along x (smooth flow -> small deltas). Flooring
  (not rounding) keeps every rounding decision ``floor(g f + 0.5)`` of the noise warper for grid factors
  g = 1, 2, 4, ... 32: their half-cell boundaries are multiples of 1/64 px, so the warped noise from stored
  flows equals the noise from the float32 flows. Non-finite or huge flows are stored as float32.
- Masks: bit-packed.
- Depth (float32, exact): the four bytes of each value in four planes (the exponent bytes of a depth map
  repeat), lossless.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np

FLOW_SCALE = 64  # fixed-point steps per pixel


def write_npz(path: str | os.PathLike, arrays: dict[str, np.ndarray], level: int = 1) -> Path:
    """``np.savez_compressed`` at deflate ``level`` (1: ~5x faster to write than numpy's default). The
    archive's manifest digest is computed from ``arrays`` and remembered, so the work folder's manifest
    does not read it back (:func:`videofrom3d.io.manifest.remember_digest`)."""
    from videofrom3d.io.manifest import digest_npz_arrays, remember_digest

    path = Path(path)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for name, arr in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(arr), allow_pickle=False)
    remember_digest(path, digest_npz_arrays(arrays))
    return path


def encode_flow(flow: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
    """(..., H, W, 2) float flow -> npz members ``{prefix}_q`` (fixed point, planar, x-deltas) or, when
    it has non-finite values or exceeds int32 fixed point, ``{prefix}`` float32."""
    flow = np.asarray(flow, np.float32)
    lo, hi = (float(flow.min()), float(flow.max())) if flow.size else (0.0, 0.0)  # NaN propagates
    if not (math.isfinite(lo) and math.isfinite(hi)) or max(-lo, hi) * FLOW_SCALE >= 2**24:
        return {prefix: flow}  # beyond float32's exact integers: keep the floats
    dtype = np.int16 if max(-lo, hi) * FLOW_SCALE < 2**15 - 1 else np.int32
    lead = flow.shape[:-3]
    flat = flow.reshape((-1,) + flow.shape[-3:])  # (n, H, W, 2)
    delta = np.empty((len(flat), 2) + flow.shape[-3:-1], dtype)  # (n, 2, H, W)
    scaled = np.empty(flow.shape[-3:-1], np.float32)
    q = np.empty(flow.shape[-3:-1], dtype)
    for i in range(len(flat)):  # one plane at a time: cache-sized temporaries
        for c in range(2):
            np.multiply(flat[i, ..., c], np.float32(FLOW_SCALE), out=scaled)
            np.floor(scaled, out=scaled)
            q[...] = scaled
            d = delta[i, c]
            d[:, 0] = q[:, 0]
            np.subtract(q[:, 1:], q[:, :-1], out=d[:, 1:])  # wraps in int16; the cumsum wraps back
    return {f"{prefix}_q": delta.reshape(lead + delta.shape[1:])}


def decode_flow(members, prefix: str) -> np.ndarray:
    """The float32 (..., H, W, 2) flow of :func:`encode_flow`'s members (an open ``np.load`` or a dict)."""
    if prefix in members:
        return np.asarray(members[prefix], np.float32)
    delta = members[f"{prefix}_q"]
    q = np.cumsum(delta, axis=-1, dtype=delta.dtype)
    flow = np.empty(q.shape[:-3] + q.shape[-2:] + (2,), np.float32)
    np.multiply(np.moveaxis(q, -3, -1), np.float32(1.0 / FLOW_SCALE), out=flow, casting="unsafe")
    return flow


def encode_mask(mask: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
    mask = np.asarray(mask, bool)
    return {f"{prefix}_bits": np.packbits(mask, axis=None), f"{prefix}_shape": np.array(mask.shape, np.int64)}


def decode_mask(members, prefix: str) -> np.ndarray:
    if prefix in members:
        return np.asarray(members[prefix], bool)
    shape = tuple(int(s) for s in members[f"{prefix}_shape"])
    return np.unpackbits(members[f"{prefix}_bits"], count=int(np.prod(shape))).astype(bool).reshape(shape)


def encode_float_planes(values: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
    """float32 array -> its bytes as 4 planes (lossless; deflates ~4x better on depth maps)."""
    values = np.ascontiguousarray(values, np.float32)
    planes = np.ascontiguousarray(values.view(np.uint8).reshape(-1, 4).T)
    return {f"{prefix}_planes": planes, f"{prefix}_shape": np.array(values.shape, np.int64)}


def decode_float_planes(members, prefix: str) -> np.ndarray:
    if prefix in members:
        return np.asarray(members[prefix], np.float32)
    shape = tuple(int(s) for s in members[f"{prefix}_shape"])
    planes = members[f"{prefix}_planes"]
    return np.ascontiguousarray(planes.T).view(np.float32).reshape(shape)
