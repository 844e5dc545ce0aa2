"""What every benchmark script needs to time and weigh work on a device: wait for it, read and reset the
peak of its memory. CPU devices have no peak to read (None)."""

from __future__ import annotations

import gc

import torch


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so a wall-clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gib(device: torch.device) -> float | None:
    """Peak memory allocated on ``device`` since the last :func:`reset_peak`, GiB (None on a CPU)."""
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    """Free what Python no longer holds and start a new peak."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
