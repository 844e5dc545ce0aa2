"""Seconds per SAG sampling step and peak GPU memory of full-size FLUX.1-dev + the XLabs HED ControlNet,
per memory mode, with random weights (no download needed).

    python benchmarks/bench_flux.py --device cuda                  # all modes, 720x480 and 1024x1024
    python benchmarks/bench_flux.py --device cuda --modes none,fp8 --sizes 720x480 --steps 5
    python benchmarks/bench_flux.py --tiny                         # the CPU smoke path (tiny models)

One step is what ``videofrom3d anchors`` runs per step: ControlNet + transformer for the prompt and again for
the empty negative prompt (true CFG), T5 length 512. Modes (see videofrom3d.anchors.components):
``none`` all resident; ``model`` models wait on the CPU and move to the GPU per anchor (the move is timed
as ``setup s``); ``sequential`` accelerate streams weights layer by layer; ``fp8`` float8 weight storage
with per-layer upcast, resident. Rows print as they finish; an out-of-memory mode prints ``OOM``.

Measured 2026-11-25, H100 80GB HBM3, torch 2.11 + diffusers 0.42.1, --steps 2 (peak = allocated GiB):

    mode              size  tokens   s/step  setup s  peak GB
    none           720x480    1350    0.154     0.00     23.8
    none         1024x1024    4096    0.386     0.00     24.2
    fp8            720x480    1350    0.242     0.04     15.3
    fp8          1024x1024    4096    0.471     0.04     15.7
    model          720x480    1350    0.162     3.90     23.8
    model        1024x1024    4096    0.385     3.90     24.2
    sequential     720x480    1350    7.511    16.79      0.3
    sequential   1024x1024    4096    7.731    16.79      0.7
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers beside this script
from gpu import device_and_dtype, sync  # noqa: E402

FLUX_DEV = {
    "patch_size": 1, "in_channels": 64, "num_layers": 19, "num_single_layers": 38, "attention_head_dim": 128,
    "num_attention_heads": 24, "joint_attention_dim": 4096, "pooled_projection_dim": 768,
    "guidance_embeds": True, "axes_dims_rope": [16, 56, 56],
}
XLABS_HED = {
    "patch_size": 2, "in_channels": 64, "num_layers": 2, "num_single_layers": 0, "attention_head_dim": 128,
    "num_attention_heads": 24, "joint_attention_dim": 4096, "pooled_projection_dim": 768,
    "guidance_embeds": True, "axes_dims_rope": [16, 56, 56], "conditioning_embedding_channels": 16,
}
MODES = ("none", "model", "sequential", "fp8")


def build(configs, device: torch.device, dtype: torch.dtype):
    """Random-weight transformer and ControlNet, created directly on ``device`` in ``dtype``."""
    from diffusers import FluxControlNetModel, FluxTransformer2DModel

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            transformer = FluxTransformer2DModel(**configs[0])
            controlnet = FluxControlNetModel(**configs[1])
    finally:
        torch.set_default_dtype(previous)
    return transformer.eval().requires_grad_(False), controlnet.eval().requires_grad_(False)


def place(mode: str, transformer, controlnet, device: torch.device, dtype: torch.dtype) -> float:
    """Apply a memory mode; returns the seconds it took (for ``model``: the CPU -> GPU move of one anchor)."""
    t0 = time.perf_counter()
    if mode == "fp8":
        for m in (transformer, controlnet):
            m.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
    elif mode == "model":
        for m in (transformer, controlnet):
            m.to("cpu")
        sync(device)
        t0 = time.perf_counter()
        for m in (transformer, controlnet):
            m.to(device)
    elif mode == "sequential":
        from accelerate import cpu_offload

        for m in (transformer, controlnet):
            m.to("cpu")
            cpu_offload(m, execution_device=device)
    sync(device)
    return time.perf_counter() - t0


def run_steps(transformer, controlnet, width: int, height: int, steps: int, device, dtype, text_len: int,
              text_dim: int, pooled_dim: int) -> float:
    """Seconds per step of the real sampling loop (true CFG, ControlNet on both passes)."""
    from videofrom3d.anchors.sampling import sample_anchor

    g = torch.Generator("cpu").manual_seed(0)
    h, w = height // 8, width // 8
    noise = torch.randn(1, 16, h, w, generator=g).to(device)
    control = (torch.rand(1, 3, height, width, generator=g) * 2 - 1).to(device, dtype)
    pos = torch.randn(1, text_len, text_dim, generator=g).to(device, dtype)
    neg = torch.randn(1, text_len, text_dim, generator=g).to(device, dtype)
    pooled = torch.randn(1, pooled_dim, generator=g).to(device, dtype)
    sigmas = torch.linspace(1, 0, steps + 2, device=device)
    timesteps = sigmas[:-1] * 1000

    def go(n):
        return sample_anchor(transformer, controlnet, control, noise, sigmas[: n + 1], timesteps[:n], pos, pooled,
                             neg, pooled, true_cfg=3.5, true_cfg_start_step=0)

    go(1)  # warm-up (kernels, allocator)
    sync(device)
    t0 = time.perf_counter()
    go(steps)
    sync(device)
    return (time.perf_counter() - t0) / steps


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def parse_sizes(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in s.lower().split("x")) for s in text.split(",") if s]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma list of {MODES}")
    p.add_argument("--sizes", default=None, help="comma list of WIDTHxHEIGHT (default 720x480,1024x1024)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per row (after one warm-up step)")
    p.add_argument("--tiny", action="store_true", help="tiny random models (checks the script on a CPU)")
    args = p.parse_args(argv)

    picked = device_and_dtype(args.device)
    if picked is None:
        return 2
    device, dtype = picked
    if args.tiny:
        from videofrom3d.anchors.components import TINY_CONTROLNET, TINY_TRANSFORMER

        configs, text = (TINY_TRANSFORMER, TINY_CONTROLNET), (16, 32, 32)
        sizes = parse_sizes(args.sizes or "64x64,720x480")
    else:
        configs, text = (FLUX_DEV, XLABS_HED), (512, 4096, 768)
        sizes = parse_sizes(args.sizes or "720x480,1024x1024")
    modes = [m for m in args.modes.split(",") if m]
    bad = [m for m in modes if m not in MODES]
    if bad:
        p.error(f"unknown mode(s) {bad}; choose from {MODES}")

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"# FLUX{' (tiny)' if args.tiny else '.1-dev'} + HED ControlNet, random weights, {dtype}, {name}, "
          f"true CFG (4 passes/step), T5 {text[0]} tokens, {args.steps} timed steps")
    print(f"{'mode':<11} {'size':>10} {'tokens':>7} {'s/step':>8} {'setup s':>8} {'peak GB':>8}", flush=True)
    for mode in modes:
        if device.type != "cuda" and mode in ("model", "sequential"):
            print(f"{mode:<11} {'-':>10} {'-':>7} {'skipped (needs a CUDA device)':>26}", flush=True)
            continue
        transformer = controlnet = None
        try:
            transformer, controlnet = build(configs, device, dtype)
            setup = place(mode, transformer, controlnet, device, dtype)
            for width, height in sizes:
                tokens = (width // 16) * (height // 16)
                try:
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats(device)
                    sec = run_steps(transformer, controlnet, width, height, args.steps, device, dtype, *text)
                    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
                    print(f"{mode:<11} {f'{width}x{height}':>10} {tokens:>7} {sec:>8.3f} {setup:>8.2f} {peak:>8.1f}",
                          flush=True)
                except torch.cuda.OutOfMemoryError:
                    print(f"{mode:<11} {f'{width}x{height}':>10} {tokens:>7} {'OOM':>8}", flush=True)
                    _free(device)
        except torch.cuda.OutOfMemoryError:
            print(f"{mode:<11} {'(build)':>10} {'-':>7} {'OOM':>8}", flush=True)
        finally:
            del transformer, controlnet
            _free(device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
