"""What every benchmark script needs to time and weigh work on a device: wait for it, read and reset the
peak of its memory. CPU devices have no peak to read (None)."""

from __future__ import annotations

import gc
import sys

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


def device_and_dtype(name: str) -> tuple[torch.device, torch.dtype] | None:
    """The benchmark's device and its dtype (bf16 on a GPU, float32 on the CPU), or None with a one-line
    reason when a GPU is asked for and there is none."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device available; use --tiny to check the script on the CPU", file=sys.stderr)
        return None
    return device, (torch.bfloat16 if device.type == "cuda" else torch.float32)
