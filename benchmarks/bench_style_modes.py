"""Time to the first anchor for each style mode (``[align] mode = lora | quick | reference``) with full-size
random weights: FLUX.1-dev + the XLabs HED ControlNet, SigLIP so400m + the Redux embedder (no download).

    python benchmarks/bench_style_modes.py                 # on a CUDA GPU (about 3 minutes on an H100)
    python benchmarks/bench_style_modes.py --tiny          # the CPU smoke path (tiny models)

Per mode: the align stage (median seconds of one LoRA training step - forward + backward + AdamW, the
recipe's LoRA blocks and gradient checkpointing - times the recipe's steps; or the Redux encode of one style
image) plus one anchor (median seconds per SAG step with true CFG, times 25 steps, at 1072x720 with that
mode's context: T5 512, T5 64 for quick, T5 512 + 81 pooled Redux tokens for reference). Model loading and
the VAE are left out (the same in every mode). Targets (issue 13): reference >= 20x and quick >= 5x shorter
than lora. Random weights say nothing about style quality, only cost.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the shared helpers beside this script
from bench_flux import FLUX_DEV, XLABS_HED, build  # noqa: E402
from gpu import device_and_dtype, sync  # noqa: E402

SIGLIP_SO400M = {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
                 "image_size": 384, "patch_size": 14, "num_channels": 3}
REDUX = {"redux_dim": 1152, "txt_in_features": 4096}


def _median_seconds(fn, device, repeats: int) -> float:
    fn()  # warm-up
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def train_step_seconds(comps, cfg, width: int, height: int, text_len: int, dims, repeats: int) -> float:
    """Median seconds of one optimiser step of our alignment recipe on random data at ``width`` x ``height``."""
    from videofrom3d.align.train import training_step, training_timesteps

    g = torch.Generator("cpu").manual_seed(0)
    h, w = height // 8, width // 8
    sample = ((torch.rand(1, 3, height, width, generator=g) * 2 - 1), torch.randn(1, 16, h, w, generator=g),
              torch.full((1, 16, h, w), 0.01))
    embeds = torch.randn(1, text_len, dims[0], generator=g).to(comps.device, comps.dtype)
    pooled = torch.randn(1, dims[1], generator=g).to(comps.device, comps.dtype)
    text = SimpleNamespace(encode=lambda _: (embeds, pooled))
    schedule = torch.from_numpy(training_timesteps(cfg.shift_mu)).float()
    params = [p for m in (comps.transformer, comps.controlnet) for p in m.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate)

    def step():
        loss = training_step(comps, [[sample]], text, ["sks"], schedule, g, cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return _median_seconds(step, comps.device, repeats)


def anchor_step_seconds(comps, width: int, height: int, text_len: int, extra: int, dims, repeats: int) -> float:
    """Median seconds of one SAG step (true CFG: ControlNet + transformer twice), ``extra`` reference tokens
    after the text for the transformer only."""
    from videofrom3d.anchors.sampling import sample_anchor

    g = torch.Generator("cpu").manual_seed(0)
    dev, dt = comps.device, comps.dtype
    noise = torch.randn(1, 16, height // 8, width // 8, generator=g).to(dev)
    control = (torch.rand(1, 3, height, width, generator=g) * 2 - 1).to(dev, dt)
    text = torch.randn(1, text_len, dims[0], generator=g).to(dev, dt)
    full = torch.cat([text, torch.randn(1, extra, dims[0], generator=g).to(dev, dt)], 1) if extra else text
    pooled = torch.randn(1, dims[1], generator=g).to(dev, dt)
    sigmas = torch.tensor([1.0, 0.9, 0.8], device=dev)

    def step():
        sample_anchor(comps.transformer, comps.controlnet, control, noise, sigmas[1:], sigmas[1:2] * 1000, full,
                      pooled, text, pooled, true_cfg=3.5, true_cfg_start_step=0, replace_steps=0,
                      controlnet_prompt_embeds=text if extra else None)

    return _median_seconds(step, dev, repeats)


def redux_encode_seconds(siglip_cfg: dict, redux_cfg: dict, device, dtype, repeats: int) -> float:
    from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder
    from transformers import SiglipVisionConfig, SiglipVisionModel

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            enc = SiglipVisionModel(SiglipVisionConfig(**siglip_cfg)).eval()
            emb = ReduxImageEncoder(**redux_cfg).eval()
    finally:
        torch.set_default_dtype(previous)
    size = siglip_cfg["image_size"]
    pixels = torch.rand(1, 3, size, size, device=device, dtype=dtype)

    def encode():
        with torch.no_grad():
            emb(enc(pixel_values=pixels).last_hidden_state)

    return _median_seconds(encode, device, repeats)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="tiny random models (checks the script on a CPU)")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (after one warm-up)")
    p.add_argument("--crop", default="1024x768", help="full training crop WxH (the official 4 aspects average ~4:3)")
    p.add_argument("--anchor", default="1072x720", help="anchor size WxH (the authors' 1.5x of 720x480)")
    args = p.parse_args(argv)

    from videofrom3d.align import AlignConfig
    from videofrom3d.align.train import QUICK_PRESET, _attach_trainable_lora

    picked = device_and_dtype(args.device)
    if picked is None:
        return 2
    device, dtype = picked
    crop = tuple(int(v) for v in args.crop.split("x"))
    anchor = tuple(int(v) for v in args.anchor.split("x"))
    if args.tiny:
        from videofrom3d.align.reference import TINY_REDUX, TINY_SIGLIP
        from videofrom3d.anchors.components import TINY_CONTROLNET, TINY_TRANSFORMER

        configs, dims, siglip, redux = (TINY_TRANSFORMER, TINY_CONTROLNET), (32, 32), TINY_SIGLIP, TINY_REDUX
        crop, anchor, low = (64, 48), (64, 48), 32
    else:
        configs, dims, siglip, redux = (FLUX_DEV, XLABS_HED), (4096, 768), SIGLIP_SO400M, REDUX
        low = QUICK_PRESET["curriculum_resolution"]
    lora = AlignConfig()
    quick = AlignConfig(**{**QUICK_PRESET, "mode": "quick"})
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"# style modes, time to first anchor, random weights{' (tiny)' if args.tiny else ' (full size)'}, "
          f"{dtype}, {name}; train crop {crop[0]}x{crop[1]}, anchor {anchor[0]}x{anchor[1]}, median of {args.repeats}",
          flush=True)

    transformer, controlnet = build(configs, device, dtype)
    comps = SimpleNamespace(transformer=transformer, controlnet=controlnet, device=device, dtype=dtype)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    anchor_s = {
        "lora": anchor_step_seconds(comps, *anchor, lora.max_sequence_length, 0, dims, args.repeats),
        "quick": anchor_step_seconds(comps, *anchor, quick.max_sequence_length, 0, dims, args.repeats),
        "reference": anchor_step_seconds(comps, *anchor, 512, 81, dims, args.repeats),
    }
    _attach_trainable_lora(SimpleNamespace(**vars(comps), denoisers=lambda: [transformer, controlnet],
                                           fp8=False, memory="none", vae=torch.nn.Identity(), text_encoder=None),
                           lora)
    if device.type == "cuda" and lora.gradient_checkpointing:
        for m in (transformer, controlnet):
            m.enable_gradient_checkpointing()
    for m in (transformer, controlnet):
        m.train()
    full_step = train_step_seconds(comps, lora, *crop, lora.max_sequence_length, dims, args.repeats)
    quick_full = train_step_seconds(comps, quick, *crop, quick.max_sequence_length, dims, args.repeats)
    low_wh = (low, round(low * crop[1] / crop[0]) // 16 * 16)
    quick_low = train_step_seconds(comps, quick, *low_wh, quick.max_sequence_length, dims, args.repeats)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    comps.transformer = comps.controlnet = transformer = controlnet = None  # free the GPU for SigLIP
    if device.type == "cuda":
        torch.cuda.empty_cache()
    redux_s = redux_encode_seconds(siglip, redux, device, dtype, args.repeats)

    low_steps = round(quick.curriculum_fraction * quick.steps)
    align_s = {
        "lora": lora.steps * full_step,
        "quick": low_steps * quick_low + (quick.steps - low_steps) * quick_full,
        "reference": redux_s,
    }
    print(f"train step s: lora {full_step:.3f} @ {crop[0]}x{crop[1]} T5 {lora.max_sequence_length}; quick "
          f"{quick_low:.3f} @ {low_wh[0]}x{low_wh[1]} and {quick_full:.3f} @ {crop[0]}x{crop[1]} T5 "
          f"{quick.max_sequence_length}; Redux encode {redux_s:.3f} s; peak {peak:.1f} GiB")
    print(f"{'mode':<10} {'align':>22} {'align s':>9} {'anchor s/step':>14} {'anchor s':>9} {'first anchor s':>15} "
          f"{'vs lora':>8}")
    recipe = {"lora": f"{lora.steps} steps", "quick": f"{low_steps}+{quick.steps - low_steps} steps",
              "reference": "1 Redux encode"}
    total = {m: align_s[m] + 25 * anchor_s[m] for m in align_s}
    for m in ("lora", "quick", "reference"):
        print(f"{m:<10} {recipe[m]:>22} {align_s[m]:>9.1f} {anchor_s[m]:>14.3f} {25 * anchor_s[m]:>9.1f} "
              f"{total[m]:>15.1f} {total['lora'] / total[m]:>7.1f}x")
    print(f"targets: reference >= 20x ({total['lora'] / total['reference']:.1f}x), quick >= 5x "
          f"({total['lora'] / total['quick']:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
