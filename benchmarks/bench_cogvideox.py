"""Speed and memory of the inbetweening model: the full-size CogVideoX-5B-I2V transformer (widened to 48 input
channels, random weights) through our sampling loop, per memory mode, and the VAE at 720x480.

    python benchmarks/bench_cogvideox.py --device cuda            # on a GPU (bf16), ~5 minutes on an H100
    python benchmarks/bench_cogvideox.py --tiny                   # the same code path on tiny models, CPU

Prints one table row per mode as it completes: seconds per step (CFG batch of 2), seconds per arc at
``--steps`` (30, paper), peak GPU memory; an out-of-memory mode prints OOM and the next one runs. Random
weights time exactly like real ones; no weights are needed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

try:
    import videofrom3d  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers beside this script
from gpu import peak_gib, reset_peak, sync  # noqa: E402

MODES = ("none", "model", "sequential", "fp8")


def build_transformer(tiny: bool, dtype: torch.dtype, device: torch.device):
    """The 5B-I2V transformer (or a tiny one) with random weights, widened 32 -> 48 channels, on the CPU
    (the random fill runs on ``device``: seconds on a GPU instead of a minute on the CPU)."""
    from diffusers import CogVideoXTransformer3DModel

    from videofrom3d.inbetween.components import (
        TRANSFORMER_5B_I2V_CONFIG,
        tiny_transformer_config,
        widen_patch_embedding,
    )

    if tiny:
        torch.manual_seed(0)
        model = CogVideoXTransformer3DModel(**tiny_transformer_config(32, 48, in_channels=32, frames=49)).to(dtype)
    else:
        with torch.device("meta"):
            model = CogVideoXTransformer3DModel(**TRANSFORMER_5B_I2V_CONFIG)
        model = model.to(dtype).to_empty(device=device)
        gen = torch.Generator(device=device).manual_seed(0)
        with torch.no_grad():
            for name, p in list(model.named_parameters()) + list(model.named_buffers()):
                if p.is_floating_point():
                    if name.endswith("pos_embedding"):
                        p.zero_()
                    else:
                        p.normal_(0.0, 0.02, generator=gen)
    widen_patch_embedding(model, 16)
    return model.to("cpu").eval().requires_grad_(False)


def inputs(model, device: torch.device, dtype: torch.dtype):
    cfg = model.config
    t = (cfg.sample_frames - 1) // cfg.temporal_compression_ratio + 1
    h, w = cfg.sample_height, cfg.sample_width
    gen = torch.Generator().manual_seed(1)
    latents = torch.randn(1, t, 16, h, w, generator=gen)
    condition = torch.randn(1, t, 32, h, w, generator=gen).to(dtype)
    text = torch.randn(1, cfg.max_text_seq_length, cfg.text_embed_dim, generator=gen).to(dtype)
    return latents, condition, text


def time_steps(model, device, dtype, steps: int):
    """Seconds per denoising step of our loop (CFG: one forward of batch 2), after one warm-up step."""
    from diffusers import CogVideoXDDIMScheduler

    from videofrom3d.inbetween.components import SCHEDULER_CONFIG
    from videofrom3d.inbetween.sampling import denoise

    latents, condition, text = inputs(model, device, dtype)
    scheduler = CogVideoXDDIMScheduler(**SCHEDULER_CONFIG)
    stamps: list[float] = []

    def on_step(i, t, x):
        sync(device)
        stamps.append(time.perf_counter())

    sync(device)
    t0 = time.perf_counter()
    denoise(model, scheduler, latents, condition, text, text, steps + 1, 6.0, device=device, dtype=dtype, on_step=on_step)
    first = stamps[0] - t0
    per_step = (stamps[-1] - stamps[0]) / steps
    return per_step, first


def run_mode(mode: str, model, device, dtype, steps: int, arc_steps: int) -> dict:
    row = {"mode": mode}
    reset_peak(device)
    if mode == "sequential" and device.type != "cuda":
        row["error"] = "needs CUDA"
        return row
    hooks = False
    try:
        move = 0.0
        if mode == "none":
            model.to(device)
        elif mode == "model":  # the transformer moves in for its stage and out afterwards (T5, VAE likewise)
            sync(device)
            t0 = time.perf_counter()
            model.to(device)
            sync(device)
            move = time.perf_counter() - t0
        elif mode == "sequential":
            from accelerate import cpu_offload

            cpu_offload(model, execution_device=device)
            hooks = True
        elif mode == "fp8":
            model.to(device)
            model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=dtype)
        weights = torch.cuda.memory_allocated(device) / 2**30 if device.type == "cuda" else None
        per_step, first = time_steps(model, device, dtype, steps)
        row.update(
            s_per_step=per_step,
            first_step_s=first,
            s_per_arc=per_step * arc_steps + 2 * move,
            weights_gib=weights,
            peak_gib=peak_gib(device),
            move_s=move,
        )
    except torch.cuda.OutOfMemoryError:
        row["error"] = "OOM"
    except RuntimeError as e:
        row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
    finally:
        if hooks:
            from accelerate.hooks import remove_hook_from_module

            remove_hook_from_module(model, recurse=True)
        if mode != "fp8":
            model.to("cpu")
        reset_peak(device)
    return row


def bench_vae(tiny: bool, device, dtype) -> list[dict]:
    """Decode 13 latents -> 49 frames at 720x480 (tiny: 32x48), and encode 49 edge frames, with and without
    slicing + tiling (the authors turn both on)."""
    from diffusers import AutoencoderKLCogVideoX

    from videofrom3d.inbetween.components import VAE_5B_CONFIG, tiny_vae_config

    torch.manual_seed(0)
    vae = AutoencoderKLCogVideoX(**(tiny_vae_config(32, 48) if tiny else VAE_5B_CONFIG)).to(device, dtype).eval()
    h, w = (32, 48) if tiny else (480, 720)
    rows = []
    for tiled in (False, True):
        if tiled:
            vae.enable_slicing()
            vae.enable_tiling()
        for what in ("decode", "encode"):
            row = {"mode": f"vae {what} 49 frames {w}x{h}" + (" tiled" if tiled else "")}
            reset_peak(device)
            try:
                with torch.no_grad():
                    if what == "decode":
                        x = torch.randn(1, 16, 13, h // 8, w // 8, device=device, dtype=dtype)
                    else:
                        x = torch.rand(1, 3, 49, h, w, device=device, dtype=dtype) * 2 - 1
                    sync(device)
                    t0 = time.perf_counter()
                    out = vae.decode(x).sample if what == "decode" else vae.encode(x).latent_dist.mode()
                    sync(device)
                    row.update(seconds=time.perf_counter() - t0, peak_gib=peak_gib(device), shape=list(out.shape))
                    del out
            except torch.cuda.OutOfMemoryError:
                row["error"] = "OOM"
            rows.append(row)
            print_row(row)
    del vae
    reset_peak(device)
    return rows


def print_row(row: dict) -> None:
    def f(key, fmt="{:.2f}"):
        v = row.get(key)
        return fmt.format(v) if isinstance(v, float) else ("-" if v is None else str(v))

    if "error" in row:
        print(f"| {row['mode']:<34} | {row['error']} |", flush=True)
    elif "seconds" in row:
        print(f"| {row['mode']:<34} | {f('seconds')} s | peak {f('peak_gib')} GiB | out {row.get('shape')} |", flush=True)
    else:
        print(
            f"| {row['mode']:<34} | {f('s_per_step', '{:.3f}')} s/step | {f('s_per_arc', '{:.1f}')} s/arc | "
            f"weights {f('weights_gib')} GiB | peak {f('peak_gib')} GiB | first step {f('first_step_s')} s | "
            f"move {f('move_s')} s |",
            flush=True,
        )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="tiny random models (fp32, CPU): tests this script's code path")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    p.add_argument("--steps", type=int, default=3, help="timed steps per mode (after one warm-up step)")
    p.add_argument("--sequential-steps", type=int, default=1, help="timed steps for sequential offload (slow)")
    p.add_argument("--arc-steps", type=int, default=30, help="steps per arc (paper: 30)")
    p.add_argument("--no-vae", action="store_true")
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args(argv)

    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # random-weight models cast with .to(dtype) warn otherwise
    device = torch.device(args.device)
    dtype = torch.float32 if args.tiny else torch.bfloat16
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - set(MODES)
    if unknown:
        p.error(f"unknown mode(s) {sorted(unknown)}; choose from {MODES}")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# CogVideoX-5B-I2V GGI transformer (48 in-channels), random weights, {dtype}, {name}", flush=True)
    print(f"# torch {torch.__version__}; s/arc = s/step x {args.arc_steps} (+ moves for model offload)", flush=True)
    t0 = time.perf_counter()
    model = build_transformer(args.tiny, dtype, device)
    params = sum(p.numel() for p in model.parameters())
    print(f"# built {params / 1e9:.2f} B parameters in {time.perf_counter() - t0:.1f} s", flush=True)
    rows = []
    for mode in modes:
        steps = args.sequential_steps if mode == "sequential" else args.steps
        row = run_mode(mode, model, device, dtype, steps, args.arc_steps)
        rows.append(row)
        print_row(row)
    del model
    reset_peak(device)
    if not args.no_vae:
        rows += bench_vae(args.tiny, device, dtype)
    if args.json:
        args.json.write_text(json.dumps({"device": name, "dtype": str(dtype), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
