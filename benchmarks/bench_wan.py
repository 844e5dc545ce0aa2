"""Speed and memory of the Wan VACE inbetween engine: the full-size Wan2.1-VACE transformer (1.3B and 14B
configs, random weights) through our sampling loop, per memory mode, and the Wan VAE.

    python benchmarks/bench_wan.py --device cuda                  # both configs at their native sizes (GPU, bf16)
    python benchmarks/bench_wan.py --device cuda --configs 14b --size 832x480 --frames 81
    python benchmarks/bench_wan.py --tiny                         # the same code path on tiny models, CPU

Prints one table row per (config, mode) as it completes: seconds per step (CFG: two forwards), seconds per
arc at ``--arc-steps`` (30), weights and peak GPU memory; an out-of-memory mode prints OOM and the next runs.
An arc of 45 frames is generated as 49 (4k+1): 13 latent frames. Wan2.2 A14B runs two 14B experts one at a
time, so its step and peak match the 14B row (plus one expert swap per arc under memory = "model"). Random
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
NATIVE = {"1.3b": (832, 480), "14b": (1280, 720)}


def build_transformer(config: str, tiny: bool, dtype: torch.dtype, device: torch.device):
    """The VACE transformer of ``config`` with random weights (filled on ``device``: seconds on a GPU), on the CPU."""
    from diffusers import WanVACETransformer3DModel

    from videofrom3d.inbetween.wan.components import (
        TRANSFORMER_1_3B,
        TRANSFORMER_14B,
        tiny_transformer_config,
    )

    if tiny:
        torch.manual_seed(0)
        return WanVACETransformer3DModel(**tiny_transformer_config()).to(dtype).eval().requires_grad_(False)
    with torch.device("meta"):
        model = WanVACETransformer3DModel(**{"1.3b": TRANSFORMER_1_3B, "14b": TRANSFORMER_14B}[config])
    model = model.to(dtype).to_empty(device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for _, p in list(model.named_parameters()) + list(model.named_buffers()):
            if p.is_floating_point():
                p.normal_(0.0, 0.02, generator=gen)
    model.rope = type(model.rope)(model.config.attention_head_dim, model.config.patch_size,
                                  model.config.rope_max_seq_len)  # its frequency buffers, not random ones
    return model.to("cpu").eval().requires_grad_(False)


def time_steps(model, device, dtype, size, frames: int, contexts: int, steps: int):
    """Seconds per denoising step of our loop (CFG), after one warm-up step."""
    from diffusers import UniPCMultistepScheduler

    from videofrom3d.inbetween.wan.components import SCHEDULER_CONFIG, WanVaceComponents
    from videofrom3d.inbetween.wan.sampling import denoise

    w, h = size
    t = (frames - 1) // 4 + 1
    gen = torch.Generator().manual_seed(1)
    latents = torch.randn(1, 16, t, h // 8, w // 8, generator=gen)
    ctx = [(torch.randn(1, 96, t, h // 8, w // 8, generator=gen), 1.0) for _ in range(contexts)]
    text = torch.randn(1, 512, model.config.text_dim, generator=gen)
    c = WanVaceComponents(tokenizer=None, text_encoder=None, vae=None, transformer=model,
                          scheduler=UniPCMultistepScheduler(**SCHEDULER_CONFIG))
    stamps: list[float] = []

    def on_step(i, t, x):
        sync(device)
        stamps.append(time.perf_counter())

    sync(device)
    t0 = time.perf_counter()
    denoise(c, latents, ctx, text, text, steps + 1, 5.0, device=device, dtype=dtype, on_step=on_step)
    return (stamps[-1] - stamps[0]) / steps, stamps[0] - t0


def run_mode(mode: str, model, device, dtype, size, frames, contexts, steps: int, arc_steps: int) -> dict:
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
        elif mode == "model":  # the transformer moves in for the arc and out afterwards
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
        per_step, first = time_steps(model, device, dtype, size, frames, contexts, steps)
        row.update(s_per_step=per_step, first_step_s=first, s_per_arc=per_step * arc_steps + 2 * move,
                   weights_gib=weights, peak_gib=peak_gib(device), move_s=move)
    except torch.cuda.OutOfMemoryError:
        row["error"] = "OOM"
    except RuntimeError as e:
        row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"
    finally:
        if hooks:
            from accelerate.hooks import remove_hook_from_module

            remove_hook_from_module(model, recurse=True)
        model.to("cpu")
        reset_peak(device)
    return row


def bench_vae(config: str, tiny: bool, device, size, frames: int, contexts: int) -> list[dict]:
    """The VAE work of one arc in fp32 (as diffusers loads it): 2 encodes per VACE context (known part and
    part to generate) and 1 decode, with and without tiling."""
    from diffusers import AutoencoderKLWan

    from videofrom3d.inbetween.wan.components import tiny_vae_config

    full = {"base_dim": 96, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2,
            "temperal_downsample": [False, True, True]}
    torch.manual_seed(0)
    vae = AutoencoderKLWan(**(tiny_vae_config() if tiny else full)).to(device).eval()
    w, h = size
    rows = []
    for tiled in (False, True):
        if tiled:
            vae.enable_tiling()
        row = {"config": config, "mode": f"vae {2 * contexts} enc + 1 dec, {frames} fr" + (" tiled" if tiled else "")}
        reset_peak(device)
        try:
            with torch.no_grad():
                x = torch.rand(1, 3, frames, h, w, device=device) * 2 - 1
                sync(device)
                t0 = time.perf_counter()
                for _ in range(2 * contexts):
                    z = vae.encode(x).latent_dist.mode()
                vae.decode(z)
                sync(device)
                row.update(seconds=time.perf_counter() - t0, peak_gib=peak_gib(device))
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

    name = f"{row.get('config', '')} {row['mode']}".strip()
    if "error" in row:
        print(f"| {name:<36} | {row['error']} |", flush=True)
    elif "seconds" in row:
        print(f"| {name:<36} | {f('seconds')} s | peak {f('peak_gib')} GiB |", flush=True)
    else:
        print(f"| {name:<36} | {f('s_per_step', '{:.3f}')} s/step | {f('s_per_arc', '{:.1f}')} s/arc | "
              f"weights {f('weights_gib')} GiB | peak {f('peak_gib')} GiB | first step {f('first_step_s')} s | "
              f"move {f('move_s')} s |", flush=True)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="tiny random models (fp32, CPU): tests this script's code path")
    p.add_argument("--configs", default="1.3b,14b", help="comma-separated subset of 1.3b,14b")
    p.add_argument("--size", help="WxH for every config (default: 832x480 for 1.3b, 1280x720 for 14b)")
    p.add_argument("--frames", type=int, default=49, help="generated frames, 4k+1 (an arc of 45 -> 49; Wan: 81)")
    p.add_argument("--contexts", type=int, default=1, help='VACE contexts (2: control = "edges+depth")')
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated subset of {','.join(MODES)}")
    p.add_argument("--steps", type=int, default=3, help="timed steps per mode (after one warm-up step)")
    p.add_argument("--sequential-steps", type=int, default=1, help="timed steps for sequential offload (slow)")
    p.add_argument("--arc-steps", type=int, default=30, help="steps per arc ([inbetween] steps default)")
    p.add_argument("--no-vae", action="store_true")
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args(argv)

    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    device = torch.device(args.device)
    dtype = torch.float32 if args.tiny else torch.bfloat16
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if set(modes) - set(MODES) or set(configs) - set(NATIVE):
        p.error(f"modes from {MODES}, configs from {tuple(NATIVE)}")
    if (args.frames - 1) % 4:
        p.error("--frames must be 4k+1 (Wan's VAE compresses time 4x, causally)")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# Wan VACE transformer, random weights, {dtype}, {name}, torch {torch.__version__}", flush=True)
    print(f"# {args.frames} frames, {args.contexts} VACE context(s); s/arc = s/step x {args.arc_steps} "
          "(+ moves for model offload)", flush=True)
    rows = []
    for config in configs:
        size = (32, 48) if args.tiny else NATIVE[config]
        if args.size and not args.tiny:
            size = tuple(int(v) for v in args.size.lower().split("x"))
        t0 = time.perf_counter()
        model = build_transformer(config, args.tiny, dtype, device)
        params = sum(q.numel() for q in model.parameters())
        print(f"# {config} at {size[0]}x{size[1]}: {params / 1e9:.2f} B parameters, built in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        for mode in modes:
            steps = args.sequential_steps if mode == "sequential" else args.steps
            row = {"config": config, "size": list(size),
                   **run_mode(mode, model, device, dtype, size, args.frames, args.contexts, steps, args.arc_steps)}
            rows.append(row)
            print_row(row)
        del model
        reset_peak(device)
        if not args.no_vae:
            rows += bench_vae(config, args.tiny, device, size, args.frames, args.contexts)
    if args.json:
        args.json.write_text(json.dumps({"device": name, "dtype": str(dtype), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
