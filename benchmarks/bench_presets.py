"""Plain diffusers against our speed presets, same settings, same run, random weights (issue 15 item 6).

    python benchmarks/bench_presets.py --device cuda                  # full size: FLUX + ControlNet, CogVideoX-5B
    python benchmarks/bench_presets.py --device cuda --fit            # also: do the 24/16/12 GB presets fit?
    python benchmarks/bench_presets.py --tiny                         # tiny models on the CPU (tests the script)

Per stage, the baseline is the diffusers pipeline in bf16 with no offload: ``FluxControlNetPipeline`` (true
CFG 3.5 from step 0, ControlNet once per step, guidance 4, T5 length 512, 1072x720) and
``CogVideoXImageToVideoPipeline`` (CFG 6, 49 frames at 720x480, T5 length 226, stock 32-channel transformer:
the pipeline cannot feed GGI's 48 channels). Ours runs the same computation through our loops with the
preset's switches (none, exact, fast); each preset gets freshly built models. A step's time is the median
interval between the loop's step callbacks (text encoding, VAE and compile warm-up excluded: one untimed
warm-up run first). ``speedup`` = diffusers s/step / ours; targets: exact >= 1.3x, fast >= 2x. Peak =
``torch.cuda.max_memory_allocated`` during the timed run.

``--fit`` caps this process's GPU memory with ``torch.cuda.set_per_process_memory_fraction`` at 24, 16 and 12
GB and runs two steps of each stage with ``memory = "24gb" | "16gb" | "12gb"``; a row says fits or OOM.
Random weights time like real ones; the caches' realised skip rate depends on real activations (the
first-block cache skips per its threshold on what random weights give), so "fast" here is indicative only.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers beside this script
from bench_flux import FLUX_DEV, XLABS_HED  # noqa: E402
from gpu import sync  # noqa: E402

PRESETS = ("none", "exact", "fast")
CARDS = ("24gb", "16gb", "12gb")


def _release(device):
    """Between runs: the previous models' compiled graphs hold their memory otherwise."""
    torch._dynamo.reset()
    _reset(device)


def _reset(device):
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gb(device) -> float:
    return torch.cuda.max_memory_allocated(device) / 1e9 if device.type == "cuda" else float("nan")


class StepClock:
    """Timestamps at each step end; ``per_step()`` the median interval."""

    def __init__(self, device):
        self.device, self.marks = device, []

    def __call__(self, *args, **kwargs):
        sync(self.device)
        self.marks.append(time.perf_counter())
        return kwargs.get("callback_kwargs", {}) if "callback_kwargs" in kwargs else (args[3] if len(args) > 3 else {})

    def per_step(self) -> float:
        gaps = [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]
        return statistics.median(gaps) if gaps else float("nan")


# ------------------------------------------------------------------------------------------------ FLUX


def flux_components(tiny: bool, device, dtype):
    from videofrom3d.anchors.components import FluxComponents, tiny_flux_components

    tiny_comps = tiny_flux_components(seed=0, text=False)
    if tiny:
        tiny_comps.device, tiny_comps.dtype = device, dtype
        return tiny_comps
    from bench_flux import build

    transformer, controlnet = build((FLUX_DEV, XLABS_HED), device, dtype)
    return FluxComponents(transformer=transformer, controlnet=controlnet, vae=tiny_comps.vae.to(device, dtype),
                          scheduler=tiny_comps.scheduler, device=device, dtype=dtype, memory="none")


def flux_inputs(comps, width, height, text_len):
    cfg = comps.transformer.config
    g = torch.Generator().manual_seed(0)
    dev, dt = comps.device, comps.dtype
    return {
        "noise": torch.randn(1, 16, height // 8, width // 8, generator=g).to(dev),
        "control": (torch.rand(1, 3, height, width, generator=g) * 2 - 1).to(dev, dt),
        "pos": torch.randn(1, text_len, cfg.joint_attention_dim, generator=g).to(dev, dt),
        "neg": torch.randn(1, text_len, cfg.joint_attention_dim, generator=g).to(dev, dt),
        "pooled": torch.randn(1, cfg.pooled_projection_dim, generator=g).to(dev, dt),
    }


def flux_diffusers(comps, x, width, height, steps):
    from diffusers import FluxControlNetPipeline

    from videofrom3d.anchors.sampling import pack_latents

    pipe = FluxControlNetPipeline(scheduler=comps.scheduler, vae=comps.vae, text_encoder=None, tokenizer=None,
                                  text_encoder_2=None, tokenizer_2=None, transformer=comps.transformer,
                                  controlnet=comps.controlnet)
    pipe.set_progress_bar_config(disable=True)

    def run(clock=None):
        pipe(prompt_embeds=x["pos"], pooled_prompt_embeds=x["pooled"], negative_prompt_embeds=x["neg"],
             negative_pooled_prompt_embeds=x["pooled"], true_cfg_scale=3.5, control_image=x["control"],
             height=height, width=width, num_inference_steps=steps, guidance_scale=4.0,
             controlnet_conditioning_scale=0.8, latents=pack_latents(x["noise"]), output_type="latent",
             callback_on_step_end=clock)
    return run


def flux_ours(comps, x, steps, preset, **switches):
    from videofrom3d.anchors import AnchorConfig
    from videofrom3d.anchors.components import apply_speed
    from videofrom3d.anchors.sampling import flux_sigmas, sample_anchor

    cfg = AnchorConfig(steps=steps, preset=preset, true_cfg_start_step=0, **switches)
    sw = apply_speed(comps, cfg)
    h, w = x["noise"].shape[-2:]

    def run(clock=None):
        sigmas, timesteps = flux_sigmas(comps.scheduler, steps, h, w, "diffusers", device=comps.device)
        sample_anchor(comps.transformer, comps.controlnet, x["control"], x["noise"], sigmas, timesteps, x["pos"],
                      x["pooled"], x["neg"], x["pooled"], true_cfg=3.5, true_cfg_start_step=0,
                      controlnet_on_negative=False, cfg_batch=sw.cfg_batch, cache_start_step=cfg.cache_start_step,
                      step_callback=None if clock is None else (lambda i, z: clock()))
        if clock is not None:
            clock()
    return run


# ------------------------------------------------------------------------------------------- CogVideoX


def cogvideox_components(tiny: bool, device, dtype):
    """Tiny components; full size: the stock 32-channel 5B-I2V transformer with random weights (the
    pipeline cannot feed GGI's 48 channels) and a tiny VAE at 720x480 (it encodes one image, not timed)."""
    from bench_cogvideox import build_transformer
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel

    from videofrom3d.inbetween.components import (
        TRANSFORMER_5B_I2V_CONFIG,
        tiny_cogvideox_components,
        tiny_vae_config,
    )

    c = tiny_cogvideox_components(seed=0, height=32, width=48, in_channels=32, layers=2, frames=49)
    if not tiny:
        state = build_transformer(False, dtype, device).state_dict()  # widened to 48 channels: keep the first 32
        state["patch_embed.proj.weight"] = state["patch_embed.proj.weight"][:, :32].contiguous()
        with torch.device("meta"):
            stock = CogVideoXTransformer3DModel(**TRANSFORMER_5B_I2V_CONFIG)
        stock.load_state_dict(state, assign=True)
        c.transformer = stock.eval().requires_grad_(False)
        c.vae = AutoencoderKLCogVideoX(**tiny_vae_config(480, 720)).eval()
    c.transformer.to(device, dtype)
    c.vae.to(device, dtype)
    c.text_encoder = None
    return c


def cogvideox_inputs(c, device, dtype):
    cfg = c.transformer.config
    t = (cfg.sample_frames - 1) // cfg.temporal_compression_ratio + 1
    g = torch.Generator().manual_seed(1)
    return {
        "latents": torch.randn(1, t, 16, cfg.sample_height, cfg.sample_width, generator=g).to(device),
        "condition": torch.randn(1, t, 16, cfg.sample_height, cfg.sample_width, generator=g).to(device, dtype),
        "pos": torch.randn(1, cfg.max_text_seq_length, cfg.text_embed_dim, generator=g).to(device, dtype),
        "neg": torch.randn(1, cfg.max_text_seq_length, cfg.text_embed_dim, generator=g).to(device, dtype),
        "image": torch.rand(1, 3, cfg.sample_height * 8, cfg.sample_width * 8, generator=g),
    }


def cogvideox_diffusers(c, x, steps):
    from diffusers import CogVideoXImageToVideoPipeline

    pipe = CogVideoXImageToVideoPipeline(tokenizer=c.tokenizer, text_encoder=None, vae=c.vae,
                                         transformer=c.transformer, scheduler=c.scheduler)
    pipe.set_progress_bar_config(disable=True)
    cfg = c.transformer.config

    def run(clock=None):
        pipe(image=x["image"], prompt_embeds=x["pos"], negative_prompt_embeds=x["neg"], height=cfg.sample_height * 8,
             width=cfg.sample_width * 8, num_frames=cfg.sample_frames, num_inference_steps=steps, guidance_scale=6.0,
             latents=x["latents"].clone(), output_type="latent", callback_on_step_end=clock)
    return run


def cogvideox_ours(c, x, steps, preset, device, memory="none", **switches):
    from videofrom3d.inbetween.config import InbetweenConfig
    from videofrom3d.inbetween.inbetweener import Inbetweener
    from videofrom3d.inbetween.sampling import denoise

    cfg = InbetweenConfig(steps=steps, preset=preset, memory=memory, vae_tiling=False, vae_slicing=False, **switches)
    inb = Inbetweener(c, cfg, device=device)
    dtype = x["pos"].dtype

    def run(clock=None):
        with inb._on_device(c.transformer):
            denoise(c.transformer, c.scheduler, x["latents"], x["condition"], x["pos"], x["neg"], steps, 6.0,
                    device=device, dtype=dtype, cfg_batch=inb.speed.cfg_batch, cache_start_step=cfg.cache_start_step,
                    attention=inb.speed.attention, on_step=None if clock is None else (lambda *a: clock()))
    return run


# ----------------------------------------------------------------------------------------------- running


def timed(run, device) -> tuple[float, float]:
    """(median s/step, peak GB) of ``run`` after one untimed warm-up run."""
    run()
    sync(device)
    _reset(device)
    clock = StepClock(device)
    clock()
    run(clock)
    sync(device)
    return clock.per_step(), _peak_gb(device)


def bench_stage(stage: str, tiny: bool, device, dtype, steps: int, presets, size, switches=None) -> list[dict]:
    """The diffusers baseline, then ours per preset (``switches`` override every preset), one row each."""
    switches = switches or {}
    rows = []
    for name in ("diffusers", *presets):
        _release(device)
        try:
            if stage == "flux":
                comps = flux_components(tiny, device, dtype)
                x = flux_inputs(comps, *size, 16 if tiny else 512)
                run = flux_diffusers(comps, x, *size, steps) if name == "diffusers" else flux_ours(comps, x, steps, name,
                                                                                              **switches)
            else:
                comps = cogvideox_components(tiny, device, dtype)
                x = cogvideox_inputs(comps, device, dtype)
                run = cogvideox_diffusers(comps, x, steps) if name == "diffusers" else cogvideox_ours(
                    comps, x, steps, name, device, **switches)
            per_step, peak = timed(run, device)
            row = {"stage": stage, "run": name, "s/step": per_step, "peak GB": peak}
        except torch.cuda.OutOfMemoryError:
            row = {"stage": stage, "run": name, "s/step": float("nan"), "peak GB": float("nan"), "note": "OOM"}
        comps = x = run = None
        rows.append(row)
        base = rows[0]["s/step"]
        row["speedup"] = base / row["s/step"] if row["s/step"] == row["s/step"] and row["s/step"] > 0 else float("nan")
        print_row(row)
    return rows


def fit_check(stage: str, device, dtype, steps: int, size) -> list[dict]:
    """Two steps under each card's memory cap with its memory preset; a row per card: fits / OOM."""
    rows = []
    total = torch.cuda.get_device_properties(device).total_memory
    for card in CARDS:
        _reset(device)
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        note = "fits"
        try:
            if stage == "flux":
                from videofrom3d.anchors.components import place_components, resolve_memory

                comps = flux_components(False, torch.device("cpu"), dtype)
                comps.device = device
                comps.memory, comps.fp8 = resolve_memory(card, device, False)
                _reset(device)
                torch.cuda.set_per_process_memory_fraction(int(card[:2]) * 1e9 / total, device)
                place_components(comps)
                x = flux_inputs(comps, *size, 512)
                with comps.on_device(comps.transformer, comps.controlnet):
                    flux_ours(comps, x, steps, "none")()
            else:
                comps = cogvideox_components(False, torch.device("cpu"), dtype)
                x = cogvideox_inputs(comps, device, dtype)
                _reset(device)
                torch.cuda.set_per_process_memory_fraction(int(card[:2]) * 1e9 / total, device)
                cogvideox_ours(comps, x, steps, "none", device, memory=card)()
        except torch.cuda.OutOfMemoryError:
            note = "OOM"
        row = {"stage": stage, "run": f"memory={card}", "s/step": float("nan"), "peak GB": _peak_gb(device),
               "speedup": float("nan"), "note": note}
        comps = x = None
        rows.append(row)
        print_row(row)
    torch.cuda.set_per_process_memory_fraction(1.0, device)
    return rows


def print_row(row: dict) -> None:
    print(f"{row['stage']:<10} {row['run']:<14} {row['s/step']:>8.3f} {row['speedup']:>8.2f} {row['peak GB']:>8.1f}"
          f"  {row.get('note', '')}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="tiny random models in float32 (the script's CPU check)")
    p.add_argument("--stages", default="flux,cogvideox")
    p.add_argument("--presets", default=",".join(PRESETS))
    p.add_argument("--steps", type=int, default=6, help="steps per timed run (the median step is reported)")
    p.add_argument("--fit", action="store_true", help="also check the 24/16/12 GB memory presets (CUDA only)")
    p.add_argument("--no-compile", action="store_true", help="presets without torch.compile (slow on a CPU)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type != "cuda" and not args.tiny:
        p.error("full-size models need --device cuda; use --tiny on a CPU")
    dtype = torch.float32 if args.tiny else torch.bfloat16
    presets = [s for s in args.presets.split(",") if s]
    print(f"# torch {torch.__version__}, device {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}"
          f", {'tiny' if args.tiny else 'full-size'} random weights, {dtype}")
    print(f"{'stage':<10} {'run':<14} {'s/step':>8} {'speedup':>8} {'peak GB':>8}")
    for stage in [s for s in args.stages.split(",") if s]:
        size = (64, 64) if args.tiny else (1072, 720)
        bench_stage(stage, args.tiny, device, dtype, args.steps, presets, size,
                    {"compile": False} if args.no_compile else None)
        if args.fit and device.type == "cuda":
            fit_check(stage, device, dtype, 2, size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
