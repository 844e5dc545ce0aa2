"""The style image(s) reduced to what the preview engine paints with: a k-means palette, the sky colours of
the top rows, and per-channel colour statistics. This is the preview engine's counterpart of distribution
alignment (the diffusion engine trains a LoRA instead); the pipeline writes it to ``WORK/align/``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videofrom3d.io.atomic import atomic_write_text
from videofrom3d.io.images import read_image, resize

# Used when a job names no style image: an overcast town (stone, brick, slate, grass, wood, plaster).
DEFAULT_PALETTE = ((0.62, 0.6, 0.56), (0.55, 0.33, 0.26), (0.33, 0.36, 0.4), (0.38, 0.48, 0.3), (0.5, 0.4, 0.3), (0.82, 0.78, 0.7))


@dataclass(frozen=True)
class PreviewStyle:
    """``palette`` (k, 3) RGB in [0, 1] sorted by weight, ``weights`` (k,) summing to 1, ``sky_top`` and
    ``sky_horizon`` (3,), ``line_colour`` (3,), ``mean``/``std`` (3,) of the reference's pixels."""

    palette: tuple[tuple[float, float, float], ...]
    weights: tuple[float, ...]
    sky_top: tuple[float, float, float]
    sky_horizon: tuple[float, float, float]
    line_colour: tuple[float, float, float]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_dict(self) -> dict:
        return {k: _tolist(getattr(self, k)) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: dict) -> PreviewStyle:
        def t3(x):
            return tuple(float(v) for v in x)

        return cls(
            palette=tuple(t3(c) for c in d["palette"]),
            weights=t3(d["weights"]),
            sky_top=t3(d["sky_top"]),
            sky_horizon=t3(d["sky_horizon"]),
            line_colour=t3(d["line_colour"]),
            mean=t3(d["mean"]),
            std=t3(d["std"]),
        )

    def save(self, path: str | os.PathLike) -> Path:
        return atomic_write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike) -> PreviewStyle:
        return cls.from_dict(json.loads(Path(path).read_text()))


def style_from_images(images: list[np.ndarray], palette_size: int = 6, seed: int = 0) -> PreviewStyle:
    """(H, W, 3) float reference images -> :class:`PreviewStyle`; no images gives the default town look."""
    if not images:
        pal = np.array(DEFAULT_PALETTE, np.float32)
        return _finish(pal, np.full(len(pal), 1.0 / len(pal)), np.array([0.55, 0.68, 0.85]), np.array([0.83, 0.86, 0.88]), pal)
    small = [_shrink(img, 96) for img in images]
    # Sky: the top rows' mean colour, and the colour a third of the way down as the horizon (clamped
    # towards the top colour when the reference is all buildings).
    tops = np.stack([s[: max(1, s.shape[0] // 16)].reshape(-1, 3).mean(0) for s in small]).mean(0)
    mids = np.stack([s[s.shape[0] // 4 : s.shape[0] // 3 + 1].reshape(-1, 3).mean(0) for s in small]).mean(0)
    horizon = 0.5 * tops + 0.5 * mids + 0.1 * (1.0 - tops)
    body = np.concatenate([s[s.shape[0] // 5 :].reshape(-1, 3) for s in small])
    centres, weights = kmeans(body, palette_size, seed=seed)
    pixels = np.concatenate([s.reshape(-1, 3) for s in small])
    return _finish(centres, weights, tops, horizon, pixels)


def style_from_files(paths: list[Path], palette_size: int = 6, seed: int = 0) -> PreviewStyle:
    return style_from_images([read_image(p) for p in paths], palette_size=palette_size, seed=seed)


def kmeans(points: np.ndarray, k: int, seed: int = 0, iterations: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) points -> (k', 3) centres sorted by cluster size and (k',) weights; k-means++ seeding from a
    seeded generator, so the same image gives the same palette. k' <= k when there are few distinct colours."""
    pts = np.asarray(points, np.float64)
    rng = np.random.default_rng(seed)
    k = max(1, min(k, len(np.unique(np.round(pts, 3), axis=0))))
    centres = [pts[rng.integers(len(pts))]]
    for _ in range(1, k):
        d2 = np.min(((pts[:, None, :] - np.array(centres)[None]) ** 2).sum(-1), axis=1)
        total = d2.sum()
        centres.append(pts[rng.choice(len(pts), p=d2 / total)] if total > 0 else pts[rng.integers(len(pts))])
    c = np.array(centres)
    for _ in range(iterations):
        label = np.argmin(((pts[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
        new = np.array([pts[label == j].mean(0) if np.any(label == j) else c[j] for j in range(len(c))])
        if np.allclose(new, c, atol=1e-7):
            break
        c = new
    label = np.argmin(((pts[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
    counts = np.bincount(label, minlength=len(c)).astype(np.float64)
    order = np.argsort(-counts, kind="stable")
    keep = order[counts[order] > 0]
    return c[keep], counts[keep] / counts.sum()


def _finish(centres, weights, sky_top, sky_horizon, pixels) -> PreviewStyle:
    pixels = np.asarray(pixels, np.float64).reshape(-1, 3)
    lum = np.asarray(centres) @ np.array([0.299, 0.587, 0.114])
    line = np.asarray(centres)[int(np.argmin(lum))] * 0.35
    return PreviewStyle(
        palette=tuple(tuple(float(x) for x in c) for c in np.clip(centres, 0, 1)),
        weights=tuple(float(w) for w in weights),
        sky_top=tuple(float(x) for x in np.clip(sky_top, 0, 1)),
        sky_horizon=tuple(float(x) for x in np.clip(sky_horizon, 0, 1)),
        line_colour=tuple(float(x) for x in np.clip(line, 0, 1)),
        mean=tuple(float(x) for x in pixels.mean(0)),
        std=tuple(float(x) for x in pixels.std(0)),
    )


def _shrink(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = side / max(h, w)
    if s >= 1:
        return np.asarray(img, np.float32)
    return resize(np.asarray(img, np.float32), (max(1, round(w * s)), max(1, round(h * s))))


def _tolist(x):
    return [_tolist(v) for v in x] if isinstance(x, tuple | list) else x
