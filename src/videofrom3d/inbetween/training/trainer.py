"""The GGI training loop (paper 3.4) on accelerate: one process or many (``accelerate launch``, DDP,
DeepSpeed or FSDP from accelerate's own config); nothing distributed is written here.

``train_ggi(cfg, models)``: prepare the data (each process its share, cached), build the widened
transformer with the frozen flow LoRA, then ``steps`` optimizer steps of ``gradient_accumulation`` micro
batches of ``batch_size`` clips per process: AdamW, cosine with restarts after a linear warm-up, gradient
clip. Every ``checkpoint_every`` steps (and at the end) ``OUT/checkpoint-N/`` gets

- ``transformer/``: ``config.json`` + safetensors (the authors' layout: base weights, the 48-channel
  embedding, the flow LoRA as PEFT tensors), which ``[inbetween] transformer = "checkpoint"``,
  ``checkpoint_path = "OUT/checkpoint-N"`` loads;
- ``state/``: accelerate's full training state (model, optimizer, LR schedule, step) for resuming.

A new run with the same ``out`` resumes from the latest checkpoint. Every random draw of a step comes from
a generator seeded by (seed, step, micro batch, process), so a resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import torch

from videofrom3d.inbetween.training.config import TrainConfig, TrainConfigError

CHECKPOINT_RE = re.compile(r"checkpoint-(\d+)$")


# ----------------------------------------------------------------------------------------------- model


def build_components(cfg: TrainConfig, models: str):
    """CogVideoX components with the trainable GGI transformer (fp32 master weights), in train mode."""
    from videofrom3d.inbetween.conditioning import latent_frame_count, video_frame_count
    from videofrom3d.inbetween.training import model as ggi

    if models == "tiny-random":
        from videofrom3d.inbetween.components import tiny_cogvideox_components

        frames = video_frame_count(latent_frame_count(cfg.data.frames))
        components = tiny_cogvideox_components(seed=cfg.seed, height=cfg.data.height, width=cfg.data.width,
                                               in_channels=32, frames=frames)
        ggi.widen_for_ggi(components.transformer)
        ggi.attach_random_flow_lora(components.transformer, cfg.train.flow_lora_rank, seed=cfg.seed + 7)
    elif models == "real":
        from videofrom3d.inbetween.components import (
            load_cogvideox_components,
            load_flow_lora,
            load_stock_transformer,
        )
        from videofrom3d.models import MODELS, locate

        base = cfg.models.get("cogvideox")
        transformer = load_stock_transformer(base, torch.float32)
        ggi.widen_for_ggi(transformer)
        lora = locate("flow_lora", cfg.models.get("flow_lora"))
        marker = lora / MODELS["flow_lora"].marker if lora.is_dir() else lora
        load_flow_lora(transformer, marker if marker.exists() else lora, merge=False)
        vae_dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
        components = load_cogvideox_components(base, transformer, vae_dtype, load_text_encoder=False)
        components.vae.enable_slicing()
        components.vae.enable_tiling()
    else:
        raise TrainConfigError(f'models must be "real" or "tiny-random", got {models!r}')
    t = components.transformer
    if cfg.train.mode == "lora":
        ggi.add_train_lora(t, cfg.train.lora_rank)
    components.vae.requires_grad_(False)
    t.train()
    if cfg.train.gradient_checkpointing:
        t.enable_gradient_checkpointing()
    return components


# ----------------------------------------------------------------------------------------------- steps


def step_generator(seed: int, step: int, micro: int, rank: int) -> torch.Generator:
    """The generator of one micro batch of one process: every draw of training depends on these four."""
    from videofrom3d.io.manifest import digest_json

    return torch.Generator().manual_seed(int(digest_json(["ggi-train", seed, step, micro, rank])[:15], 16))


def training_loss(model, transformer_config, scheduler, batch, text: torch.Tensor, generator: torch.Generator,
                  degradation: tuple[float, float], device) -> torch.Tensor:
    """The paper's Eq. 3 loss of one batch (``objective.ggi_loss``), noise, alpha and t from ``generator``."""
    from videofrom3d.inbetween.sampling import rotary_embeddings
    from videofrom3d.inbetween.training.objective import add_noise, alphas_cumprod_at, ggi_loss, mix_noise

    b, t_count, _, h, w = batch.x0.shape
    lo, hi = degradation
    alpha = lo + (hi - lo) * torch.rand(b, generator=generator)
    fresh = torch.randn(batch.warped_noise.shape, generator=generator)
    t = torch.randint(0, int(scheduler.config.num_train_timesteps), (b,), generator=generator)
    noise = mix_noise(batch.warped_noise.cpu(), fresh, alpha).to(device)
    t = t.to(device)
    abar = alphas_cumprod_at(scheduler, t)
    x0 = batch.x0.to(device)
    x_t = add_noise(x0, noise, abar)
    model_in = torch.cat([x_t, batch.condition.to(device)], dim=2)
    # rotary_embeddings reads only ``.config``; under DDP/DeepSpeed the model is wrapped, so pass the config
    rope = rotary_embeddings(SimpleNamespace(config=transformer_config), t_count, h, w, device)
    v = model(hidden_states=model_in, encoder_hidden_states=text.to(device), timestep=t,
              image_rotary_emb=rope, return_dict=False)[0]
    return ggi_loss(v, x_t, x0, abar)


# ----------------------------------------------------------------------------------------------- checkpoints


def latest_checkpoint(out: Path) -> tuple[int, Path] | None:
    """(step, folder) of the newest complete ``OUT/checkpoint-N`` (with ``state/`` and ``trainer.json``)."""
    best = None
    for p in out.glob("checkpoint-*"):
        m = CHECKPOINT_RE.search(p.name)
        if m and (p / "trainer.json").is_file() and (p / "state").is_dir():
            n = int(m.group(1))
            if best is None or n > best[0]:
                best = (n, p)
    return best


def weights_digest(model) -> int:
    """A 60-bit hash of every parameter of ``model`` (unwrapped), to check that replicas agree."""
    from videofrom3d.io.manifest import digest_arrays

    arrays = [p.detach().float().cpu().numpy() for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0])]
    return int(digest_arrays(*arrays)[:15], 16)


def save_checkpoint(accelerator, model, step: int, cfg: TrainConfig, mode: str, initial_digest: int = 0,
                    export_dtype: torch.dtype | None = None) -> Path:
    """``OUT/checkpoint-N/{transformer,state,trainer.json}``, assembled under a temporary name and renamed
    (every process takes part: state saving and gathering the weights are collective). ``trainer.json``
    records each process's weights digest (they must all agree). ``export_dtype`` (bf16 under mixed
    precision) is the dtype of the exported transformer's floating tensors; None keeps them as trained."""
    from videofrom3d.inbetween.components import save_transformer_checkpoint
    from videofrom3d.inbetween.training.model import export_state

    out = cfg.out
    final = out / f"checkpoint-{step}"
    tmp = out / f".checkpoint-{step}.tmp"
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp / "state"))
    state = accelerator.get_state_dict(model)
    mine = torch.tensor([weights_digest(accelerator.unwrap_model(model))], dtype=torch.int64, device=accelerator.device)
    digests = [int(d) for d in accelerator.gather(mine).cpu()]
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        export = export_state(state)
        if export_dtype is not None:
            export = {k: v.to(export_dtype) if v.is_floating_point() else v for k, v in export.items()}
        save_transformer_checkpoint(unwrapped, tmp / "transformer", max_shard_bytes=5 << 30, state=export)
        info = {"step": step, "mode": mode, "processes": accelerator.num_processes, "replica_digests": digests,
                "initial_digest": initial_digest, "config": _config_doc(cfg)}
        (tmp / "trainer.json").write_text(json.dumps(info, indent=1, default=str))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    accelerator.wait_for_everyone()
    return final


def _config_doc(cfg: TrainConfig) -> dict:
    return {"seed": cfg.seed, "data": asdict(cfg.data), "train": asdict(cfg.train)}


RESUME_FREE = {"steps", "checkpoint_every", "validate_every", "validation_steps", "validation_guidance", "device"}


def check_resumable(folder: Path, cfg: TrainConfig) -> None:
    """A checkpoint resumes only under the options it was trained with (schedules and logging may change)."""
    saved = json.loads((folder / "trainer.json").read_text())["config"]
    now = json.loads(json.dumps(_config_doc(cfg), default=str))
    diff = ["seed"] if saved["seed"] != now["seed"] else []
    diff += [f"[train].{k}" for k in now["train"] if k not in RESUME_FREE and saved["train"].get(k) != now["train"][k]]
    diff += [f"[data].{k}" for k in ("frames", "width", "height") if saved["data"].get(k) != now["data"][k]]
    if diff:
        raise TrainConfigError(f"{folder} was trained with other options ({', '.join(diff)}); use another out "
                               f"folder or restore them")


# ----------------------------------------------------------------------------------------------- the loop


def train_ggi(cfg: TrainConfig, models: str = "real", prepare_only: bool = False, progress: bool = True,
              on_step: Callable[[int, float], None] | None = None) -> dict:
    """Prepare the data and train (module docstring). Returns ``{"step", "losses", "checkpoint", ...}``;
    ``on_step(step, loss)`` is called on every process after each optimizer step."""
    from accelerate import Accelerator
    from diffusers.optimization import get_cosine_with_hard_restarts_schedule_with_warmup

    from videofrom3d.inbetween.training.batch import make_batch
    from videofrom3d.inbetween.training.dataset import (
        ClipDataset,
        load_manifest,
        prepare_dataset,
        write_manifest,
    )
    from videofrom3d.inbetween.training.model import set_trainable
    from videofrom3d.inbetween.training.text import TextEmbeddings

    tc = cfg.train
    accelerator = Accelerator(gradient_accumulation_steps=tc.gradient_accumulation,
                              mixed_precision=tc.mixed_precision, cpu=tc.device == "cpu")
    main = accelerator.is_main_process
    device = accelerator.device
    cfg.out.mkdir(parents=True, exist_ok=True)

    # data: each process prepares its share of the clips, the main process writes the manifest
    report = prepare_dataset(cfg.data, cfg.cache, models, cfg.models, cfg.seed,
                             shard=(accelerator.process_index, accelerator.num_processes), progress=progress and main,
                             device=str(device))
    accelerator.wait_for_everyone()
    if main:
        write_manifest(cfg.cache, cfg.data, report["clips"], report["skipped"])
    accelerator.wait_for_everyone()
    manifest = load_manifest(cfg.cache)
    result = {"prepared": report["prepared"], "reused": report["reused"], "flow": manifest["flow"]}
    if prepare_only:
        return result
    done = latest_checkpoint(cfg.out)
    if done is not None and done[0] >= tc.steps:  # nothing left to train: load no model
        if main:
            print(f"already trained: {done[1]} (step {done[0]} of {tc.steps})")
        result.update({"step": done[0], "resumed_from": done[0], "losses": [], "checkpoint": str(done[1])})
        return result
    train_set = ClipDataset(cfg.cache, manifest["train"], cfg.data.prompt)
    val_set = ClipDataset(cfg.cache, manifest["validation"], cfg.data.prompt) if manifest["validation"] else None

    components = build_components(cfg, models)
    transformer = components.transformer
    params = set_trainable(transformer, tc.mode)
    low = None
    if tc.mixed_precision != "no":  # frozen weights need no fp32 master copy
        low = torch.bfloat16 if tc.mixed_precision == "bf16" else torch.float16
        for p in transformer.parameters():
            if not p.requires_grad:
                p.data = p.data.to(low)
    components.vae.to(device)

    text = TextEmbeddings(cfg.cache / "text", components.tokenizer, components.text_encoder_factory,
                          int(transformer.config.max_text_seq_length), device)
    prompts = {train_set[i]["prompt"] for i in range(len(train_set))} | {""}
    if val_set is not None:
        prompts |= {val_set[i]["prompt"] for i in range(len(val_set))}
    with accelerator.main_process_first():
        text.ensure(prompts)
    components.text_encoder = None

    optimizer = torch.optim.AdamW(params, lr=tc.learning_rate, betas=tuple(tc.betas), weight_decay=tc.weight_decay,
                                  eps=tc.adam_eps)
    # stepped once per optimizer step here (not by accelerate, which would step it once per process)
    schedule = get_cosine_with_hard_restarts_schedule_with_warmup(optimizer, tc.warmup_steps, tc.steps, tc.lr_cycles)
    initial_digest = weights_digest(transformer)
    model, optimizer = accelerator.prepare(transformer, optimizer)
    accelerator.register_for_checkpointing(schedule)
    transformer_config = accelerator.unwrap_model(model).config

    step = 0
    found = latest_checkpoint(cfg.out)
    if found is not None:
        check_resumable(found[1], cfg)
        accelerator.load_state(str(found[1] / "state"))
        step = found[0]
        if main:
            print(f"resuming from {found[1]} (step {step})")
    result.update({"resumed_from": step, "losses": [], "checkpoint": str(found[1]) if found else None})

    bar = None
    if progress and main and step < tc.steps:
        from tqdm.auto import tqdm

        bar = tqdm(total=tc.steps, initial=step, desc="train GGI", unit="step")
    log = cfg.out / "log.jsonl"
    rank = accelerator.process_index
    while step < tc.steps:
        started = time.perf_counter()
        total = 0.0
        for micro in range(tc.gradient_accumulation):
            gen = step_generator(cfg.seed, step, micro, rank)
            picks = torch.randint(0, len(train_set), (tc.batch_size,), generator=gen).tolist()
            items = [train_set[i] for i in picks]
            batch = make_batch(components.vae, items, gen, tuple(tc.endpoint_noise), device)
            embeds = torch.cat([text.get(p) for p in batch.prompts])
            with accelerator.accumulate(model), accelerator.autocast():
                loss = training_loss(model, transformer_config, components.scheduler, batch, embeds, gen,
                                     tuple(tc.degradation), device)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(params, tc.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            total += float(loss.detach()) / tc.gradient_accumulation
        schedule.step()
        step += 1
        mean_loss = float(accelerator.reduce(torch.tensor([total], device=device), reduction="mean")[0])
        result["losses"].append(mean_loss)
        if main:
            with open(log, "a") as f:
                f.write(json.dumps({"step": step, "loss": mean_loss, "lr": schedule.get_last_lr()[0],
                                    "seconds": round(time.perf_counter() - started, 3)}) + "\n")
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{mean_loss:.4f}")
        if step % tc.checkpoint_every == 0 or step == tc.steps:
            result["checkpoint"] = str(save_checkpoint(accelerator, model, step, cfg, tc.mode, initial_digest, low))
        if val_set is not None and tc.validate_every and (step % tc.validate_every == 0 or step == tc.steps):
            if main:
                result["validation"] = _validate(accelerator, model, components, val_set, text, step, cfg)
            accelerator.wait_for_everyone()
        if on_step is not None:
            on_step(step, mean_loss)
    if bar is not None:
        bar.close()
    result["step"] = step
    result["weights"] = accelerator.unwrap_model(model)
    accelerator.wait_for_everyone()
    return result


def _validate(accelerator, model, components, val_set, text, step: int, cfg: TrainConfig) -> dict:
    from videofrom3d.inbetween.components import CogVideoXComponents
    from videofrom3d.inbetween.training.validation import validate

    item = val_set[0]
    parts = CogVideoXComponents(tokenizer=components.tokenizer, text_encoder=None, vae=components.vae,
                                transformer=accelerator.unwrap_model(model), scheduler=_ddim(components.scheduler))
    with accelerator.autocast():
        scores = validate(parts, item, text.get(item["prompt"]), text.get(""), step, cfg.out,
                          steps=cfg.train.validation_steps, guidance_scale=cfg.train.validation_guidance,
                          seed=cfg.seed, device=accelerator.device)
    print("validation " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in scores.items()))
    return scores


def _ddim(scheduler):
    """A fresh DDIM scheduler with the training scheduler's config (the sampler mutates its timesteps)."""
    from diffusers import CogVideoXDDIMScheduler

    return CogVideoXDDIMScheduler.from_config(scheduler.config)


