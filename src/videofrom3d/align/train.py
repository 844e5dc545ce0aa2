"""Distribution alignment (paper 3.2): fit a style LoRA on FLUX.1-dev + the HED ControlNet to the style
image(s), so that anchors rendered from edge maps take the reference's look.

Recipe (paper 4.1; KIMGEONUNG/VideoFrom3D ``sag_distribution_alignment.py``, ``image_datasets/dataset.py``): per step one style image, a random centre crop
(16:9, 4:3, 1:1 or none) scaled to a long side of 1024 (sides floored to multiples of 32), control = HED
edges of that crop, prompt = that image's identifier; flow matching ``x_t = (1 - t) x_1 + t x_0`` with t from
the 1000-step schedule shifted with mu = 1.15, ControlNet residuals (unscaled) into the DiT, guidance
embedding 1, loss ``MSE(v, x_0 - x_1)``; AdamW lr 1e-4, 400 steps, rank-16 LoRA on all 19 double blocks +
single blocks 1-4 and both ControlNet double blocks. Several style images train one LoRA, each with its own
identifier, so the identifier picks the style at sampling time.

Beyond the official trainer: every draw comes from one seeded generator; HED edges and VAE latent moments
of each crop are computed once (crops are centre crops, so each image has at most four); text is encoded
once per identifier and the encoders freed; LoRA weights are kept in float32 over a bf16 base with
gradient checkpointing on GPU; checkpoints every 100 steps hold the LoRA, the AdamW state and the RNG state,
so a killed run resumes to the same weights as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from videofrom3d.align.lora import resolve_blocks
from videofrom3d.errors import VideoFrom3DError
from videofrom3d.io.manifest import digest_json

log = logging.getLogger(__name__)

ASPECTS = {"16:9": 16 / 9, "4:3": 4 / 3, "1:1": 1.0, "none": None}


@dataclass(frozen=True)
class AlignConfig:
    """Options of the job's ``[align]`` table; defaults follow the official trainer and the paper (4.1)."""

    steps: int = 400  # paper 4.1 / official: the 400-step checkpoint is the one used
    rank: int = 16  # LoRA rank (official)
    alpha: float | None = None  # None = rank, i.e. LoRA scale 1 (x-flux has no alpha)
    double_blocks: tuple[int, ...] | None = None  # transformer double blocks; None = all 19 (official)
    single_blocks: tuple[int, ...] = (1, 2, 3, 4)  # transformer single blocks 1-4 (official)
    controlnet_double_blocks: tuple[int, ...] | None = None  # None = both ControlNet double blocks (official)
    learning_rate: float = 1e-4  # AdamW (official)
    adam_betas: tuple[float, ...] = (0.9, 0.999)
    weight_decay: float = 0.01
    adam_eps: float = 1e-8
    grad_clip: float = 1.0  # on the transformer's LoRA (official); 0 = off
    resolution: int = 1024  # long side of the training crops
    aspects: tuple[str, ...] = ("16:9", "4:3", "1:1", "none")  # random centre crops (official)
    shift_mu: float = 1.15  # timestep schedule shift used in training (official)
    guidance: float = 1.0  # guidance embedding while training (official)
    checkpoint_every: int = 100  # resumable checkpoints (official: every 100)
    gradient_checkpointing: bool = True  # on GPU only
    edge_detector: Literal["auto", "network", "classical"] = "auto"  # HED (official); see prepare.edge_mode
    max_sequence_length: int = 512  # T5 tokens
    seed: int | None = None  # None = the job's seed
    device: str = "auto"
    dtype: str = "auto"  # base weights: bf16 on GPU, fp32 on CPU; the LoRA is always fp32
    memory: Literal["auto", "none", "model", "sequential"] = "auto"
    fp8: bool = False  # fp8 storage of the frozen base weights
    # Style modes (README "Style modes"; research/next-speed-style.md 1-2). "lora": the paper's recipe above;
    # "quick": the same LoRA made cheap (QUICK_PRESET under the job's own values); "reference": no training,
    # FLUX.1 Redux tokens of the style image (align.reference).
    mode: Literal["lora", "quick", "reference"] = "lora"
    reference_pool: int = 3  # Redux tokens 27x27 -> 9x9 (InvokeAI#7875, ComfyUI_AdvancedRefluxControl)
    reference_weight: float = 0.4  # scale of the pooled Redux tokens (community range 0.3-0.4)
    reference_conditioning: bool = False  # quick: train (and sample) with the Redux tokens in the context
    curriculum_resolution: int | None = None  # quick: long side of the crops for the first steps (None: off)
    curriculum_fraction: float = 0.75  # share of the steps at curriculum_resolution
    cache_inputs: bool = False  # keep crop latents, edge maps and identifier embeddings in the shared cache
    text_length_at_sampling: bool = False  # the anchors use this max_sequence_length (FLUX attends to padding)

    def __post_init__(self):
        if self.mode not in ("lora", "quick", "reference"):
            raise ValueError(f'[align].mode must be "lora", "quick" or "reference", got {self.mode!r}')
        if self.reference_pool < 1:
            raise ValueError(f"[align].reference_pool must be >= 1, got {self.reference_pool}")
        if not 0 <= self.curriculum_fraction <= 1:
            raise ValueError(f"[align].curriculum_fraction must be in [0, 1], got {self.curriculum_fraction}")
        if self.curriculum_resolution is not None and self.curriculum_resolution < 32:
            raise ValueError(f"[align].curriculum_resolution must be >= 32, got {self.curriculum_resolution}")
        for a in self.aspects:
            if a not in ASPECTS:
                raise ValueError(f"[align].aspects: {a!r} is not one of {sorted(ASPECTS)}")
        if self.steps < 1 or self.rank < 1 or self.checkpoint_every < 1:
            raise ValueError("[align].steps, rank and checkpoint_every must be >= 1")
        if self.resolution < 32:
            raise ValueError(f"[align].resolution must be >= 32, got {self.resolution}")


# "quick" = these defaults under the job's own [align] values (research/next-speed-style.md 2, "quick" preset:
# cached inputs, T5 length 64 used the same way at sampling, lr 3e-4, 150 steps at 512 + 50 at the full crop)
QUICK_PRESET = {"steps": 200, "learning_rate": 3e-4, "max_sequence_length": 64, "curriculum_resolution": 512,
                "curriculum_fraction": 0.75, "checkpoint_every": 25, "cache_inputs": True,
                "text_length_at_sampling": True}
# Fields added after the paper's recipe: left out of its hashes at their defaults, so "lora" work folders and
# LoRA files made before the modes existed stay current.
_MODE_FIELDS = ("mode", "reference_pool", "reference_weight", "reference_conditioning", "curriculum_resolution",
                "curriculum_fraction", "cache_inputs", "text_length_at_sampling")


def align_defaults(options: dict) -> dict:
    """The defaults an ``[align]`` table is read over: :data:`QUICK_PRESET` when it says mode = "quick"."""
    return dict(QUICK_PRESET) if options.get("mode") == "quick" else {}


def recipe(cfg: AlignConfig) -> dict:
    """The config as hashed: every field, the style-mode ones only where they differ from the default (and the
    Redux pool and weight only where Redux is used)."""
    out = dataclasses.asdict(cfg)
    uses_redux = cfg.mode == "reference" or cfg.reference_conditioning
    for f in dataclasses.fields(cfg):
        if f.name in _MODE_FIELDS and (out[f.name] == f.default or (f.name.startswith("reference_")
                                                                    and f.name != "reference_conditioning"
                                                                    and not uses_redux)):
            out.pop(f.name)
    return out


class AlignError(VideoFrom3DError, ValueError):
    """An alignment run that cannot start (no style image, unreadable image)."""


# ---------------------------------------------------------------------------------------------------------
# Data


def centre_crop(image: np.ndarray, aspect: str, long_side: int) -> np.ndarray:
    """Centre crop to ``aspect`` (long:short, in the image's own orientation; "none" keeps it), resized so the
    long side is ``long_side``, both sides floored to multiples of 32."""
    h, w = image.shape[:2]
    ratio = ASPECTS[aspect]
    if ratio is None:
        ratio = max(h, w) / min(h, w)
    else:
        if w >= h:
            cw, ch = min(w, round(h * ratio)), min(h, round(w / ratio))
        else:
            ch, cw = min(h, round(w * ratio)), min(w, round(h / ratio))
        y0, x0 = (h - ch) // 2, (w - cw) // 2
        image = image[y0:y0 + ch, x0:x0 + cw]
    short = max(32, int(long_side / ratio) // 32 * 32)
    long_ = max(32, long_side // 32 * 32)
    nw, nh = (long_, short) if w >= h else (short, long_)
    scale = nw / image.shape[1]
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return np.clip(cv2.resize(image, (nw, nh), interpolation=interp), 0, 1).astype(np.float32)


def training_timesteps(mu: float, n: int = 1000) -> np.ndarray:
    """The n values ``linspace(1, 0, n)`` shifted by ``e^mu / (e^mu + 1/t - 1)`` (t = 0 stays 0)."""
    t = np.linspace(1.0, 0.0, n)
    out = np.zeros_like(t)
    pos = t > 0
    out[pos] = math.exp(mu) / (math.exp(mu) + (1.0 / t[pos] - 1.0))
    return out


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------------------
# Training


def train_style_lora(job, cfg: AlignConfig | None = None, out_dir: str | Path | None = None, models: Any = "real",
                     callback: Callable[[int, float], None] | None = None, progress: bool = True) -> Path:
    """Train the style LoRA for ``job``'s ``[[style]]`` images; returns ``out_dir/lora.safetensors``.

    ``out_dir`` defaults to ``WORK/align``; checkpoints go to ``out_dir/checkpoints/step-NNNNNN/`` and an
    interrupted run with the same inputs resumes from the latest one (a finished run returns at once).
    ``models``: "real", "tiny-random" or ready :class:`~videofrom3d.anchors.components.FluxComponents`.
    ``callback(step, loss)`` is called after every optimiser step (after that step's checkpoint)."""
    import torch

    cfg = cfg or AlignConfig()
    if cfg.mode == "reference":
        raise AlignError('[align] mode = "reference" trains nothing (align.reference writes the Redux tokens)')
    out_dir = Path(out_dir) if out_dir is not None else job.work_dir / "align"
    final = out_dir / "lora.safetensors"
    if not job.styles:
        raise AlignError("the job has no [[style]] image to align to; add one with image = ... and identifier = ...")
    for s in job.styles:
        if not Path(s.image).is_file():
            raise AlignError(f"style image not found: {s.image}")
    identifiers = [s.identifier_prompt for s in job.styles]
    hashes = [file_sha256(s.image) for s in job.styles]
    seed = job.seed if cfg.seed is None else cfg.seed
    model_desc = models if isinstance(models, str) else getattr(models, "source", "custom")
    from videofrom3d.prepare.edge_mode import align_edge_detector, find_hed

    hed_weights = find_hed(job.model("hed"))
    detector = align_edge_detector(cfg.edge_detector, model_desc if model_desc in ("real", "tiny-random") else "custom",
                                   hed_weights)  # before any work: a real run never falls back silently
    fingerprint = digest_json(
        {"cfg": recipe(cfg), "identifiers": identifiers, "images": hashes, "seed": seed,
         "models": [model_desc, job.model("flux"), job.model("controlnet_hed")],
         "edges": [detector, str(hed_weights) if detector == "network" else None]})
    if final.is_file() and _metadata_fingerprint(final) == fingerprint:
        log.info("alignment LoRA %s is up to date", final)
        return final

    comps = _components_for_training(job, cfg, models)
    dev = comps.device
    transformer, controlnet = comps.transformer, comps.controlnet
    _attach_trainable_lora(comps, cfg)

    shared = _SharedInputs(job, model_desc, detector, hed_weights) if cfg.cache_inputs else None
    samples, text = prepare_training_data(comps, job, cfg, detector, shared=shared)
    low_samples = None
    if cfg.curriculum_resolution is not None and cfg.curriculum_resolution != cfg.resolution:
        low_samples = prepare_training_data(comps, job, cfg, detector, resolution=cfg.curriculum_resolution,
                                            text=text, shared=shared)[0]
    low_steps = round(cfg.curriculum_fraction * cfg.steps) if low_samples is not None else 0
    references = _reference_contexts(job, cfg, models) if cfg.reference_conditioning else None
    schedule = torch.from_numpy(training_timesteps(cfg.shift_mu)).float()
    lora_params = [p for m in (transformer, controlnet) for p in m.parameters() if p.requires_grad]
    dit_params = [p for p in transformer.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(lora_params, lr=cfg.learning_rate, betas=tuple(cfg.adam_betas),
                            weight_decay=cfg.weight_decay, eps=cfg.adam_eps)
    gen = torch.Generator("cpu").manual_seed(int(seed))
    meta = {"rank": cfg.rank, "alpha": cfg.alpha if cfg.alpha is not None else cfg.rank,
            "transformer_double_blocks": resolve_blocks(cfg.double_blocks, len(transformer.transformer_blocks),
                                                        "[align].double_blocks"),
            "transformer_single_blocks": resolve_blocks(cfg.single_blocks, len(transformer.single_transformer_blocks),
                                                        "[align].single_blocks"),
            "controlnet_double_blocks": resolve_blocks(cfg.controlnet_double_blocks, len(controlnet.transformer_blocks),
                                                       "[align].controlnet_double_blocks"),
            "identifiers": identifiers, "reference_sha256": hashes, "reference_images": [Path(s.image).name for s in job.styles],
            "fingerprint": fingerprint}
    if cfg.mode != "lora":
        meta["mode"] = cfg.mode
    if cfg.text_length_at_sampling:
        meta["sampling_max_sequence_length"] = cfg.max_sequence_length
    if references is not None:
        meta["reference"] = {"pool": cfg.reference_pool, "weight": cfg.reference_weight}
    extra = {f"reference.{i}": r for i, r in enumerate(references)} if references is not None else None

    step = _resume(out_dir, fingerprint, comps, opt, gen)
    use_ckpt = cfg.gradient_checkpointing and dev.type == "cuda"
    for m in (transformer, controlnet):
        if use_ckpt:
            m.enable_gradient_checkpointing()
        m.train()

    from tqdm.auto import tqdm

    bar = tqdm(total=cfg.steps, initial=step, disable=not progress, desc="align")
    with comps.on_device(transformer, controlnet):
        while step < cfg.steps:
            batch = low_samples if step < low_steps else samples  # resolution curriculum (quick)
            loss = training_step(comps, batch, text, identifiers, schedule, gen, cfg, references)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(dit_params, cfg.grad_clip)
            opt.step()
            step += 1
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.4f}")
            if step % cfg.checkpoint_every == 0 and step < cfg.steps:
                _save_checkpoint(out_dir, step, comps, opt, gen, meta, extra)
            if callback is not None:
                callback(step, float(loss.item()))
    bar.close()
    for m in (transformer, controlnet):
        m.eval()
    from videofrom3d.align.lora import save_style_lora

    save_style_lora(final, transformer, controlnet, {**meta, "steps": step}, extra)
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    return final


def prepare_training_data(comps, job, cfg: AlignConfig, detector: str | None = None, resolution: int | None = None,
                          text=None, shared: _SharedInputs | None = None):
    """Per style image and crop aspect: (control (1, 3, H, W) in [-1, 1], latent mean, latent std) with crops
    of long side ``resolution`` (default ``cfg.resolution``), and the prompt encoder with every identifier
    encoded (text encoders released afterwards; ``text``: one already made). ``detector``: the control-image
    mode from :func:`videofrom3d.prepare.edge_mode.align_edge_detector` (default: the config's, the weights
    from the job's ``[models].hed``). ``shared``: take and keep all of it in the shared cache across jobs."""
    from videofrom3d.anchors.components import PromptEncoder
    from videofrom3d.io.images import read_image

    if text is None:
        text = PromptEncoder(comps, cfg.max_sequence_length)
        for ident in dict.fromkeys(s.identifier_prompt for s in job.styles):
            if shared is not None:
                got = shared.text(ident, cfg.max_sequence_length, lambda i=ident: text.encode(i))
                text.cache[ident] = (got[0].to(comps.device, comps.dtype), got[1].to(comps.device, comps.dtype))
            else:
                text.encode(ident)
        text.release()
    mode = detector or cfg.edge_detector
    edges = []  # built on the first crop that is not in the shared cache

    def detect(crop):
        if not edges:
            edges.append(_edge_detector(mode, comps.device, job.model("hed")))
        return edges[0](crop)

    resolution = resolution or cfg.resolution
    samples = []
    for style in job.styles:
        img = None
        per = []
        for aspect in cfg.aspects:
            def make(aspect=aspect, style=style):
                nonlocal img
                img = read_image(style.image) if img is None else img
                crop = centre_crop(img, aspect, resolution)
                return _encode_sample(comps, crop, detect(crop))

            per.append(shared.sample(style.image, aspect, resolution, make) if shared is not None else make())
        samples.append(per)
    return samples, text


def training_step(comps, samples, text, identifiers, schedule, gen, cfg: AlignConfig, references=None):
    """One flow-matching loss on a random (image, crop) pair; all draws from ``gen`` (CPU). ``references``:
    per style the Redux tokens appended to the transformer's context (not the ControlNet's), or None."""
    import torch

    from videofrom3d.anchors.sampling import latent_image_ids, pack_latents

    k = int(torch.randint(len(samples), (1,), generator=gen))
    a = int(torch.randint(len(samples[k]), (1,), generator=gen))
    control, mean, std = samples[k][a]
    x1 = mean + std * torch.randn(mean.shape, generator=gen)  # posterior sample, normalised latents
    x0 = torch.randn(mean.shape, generator=gen)
    t = schedule[int(torch.randint(len(schedule), (1,), generator=gen))]
    xt = (1 - t) * x1 + t * x0
    dev, dtype = comps.device, comps.dtype
    embeds, pooled = text.encode(identifiers[k])
    _, _, h, w = mean.shape
    dit_embeds = embeds
    if references is not None:
        from videofrom3d.align.reference import append_reference

        dit_embeds = append_reference(embeds, references[k])
    tokens = pack_latents(xt).to(dev, dtype)
    img_ids = latent_image_ids(h, w, dev, dtype)
    txt_ids = torch.zeros(embeds.shape[1], 3, device=dev, dtype=dtype)
    timestep = t.reshape(1).to(dev, dtype)
    guidance = torch.full((1,), cfg.guidance, device=dev, dtype=torch.float32)
    block_res, single_res = comps.controlnet(
        hidden_states=tokens, controlnet_cond=control.to(dev, dtype), conditioning_scale=1.0, timestep=timestep,
        guidance=guidance, pooled_projections=pooled, encoder_hidden_states=embeds, txt_ids=txt_ids,
        img_ids=img_ids, return_dict=False,
    )
    pred = comps.transformer(
        hidden_states=tokens, timestep=timestep, guidance=guidance, pooled_projections=pooled,
        encoder_hidden_states=dit_embeds, controlnet_block_samples=block_res,
        controlnet_single_block_samples=single_res,
        txt_ids=torch.zeros(dit_embeds.shape[1], 3, device=dev, dtype=dtype), img_ids=img_ids, return_dict=False,
        controlnet_blocks_repeat=comps.controlnet.input_hint_block is not None,
    )[0]
    target = pack_latents(x0 - x1).to(dev)
    return torch.nn.functional.mse_loss(pred.float(), target.float())


def _components_for_training(job, cfg: AlignConfig, models):
    from videofrom3d.anchors.components import (
        FluxComponents,
        load_flux_components,
        tiny_flux_components,
    )

    if isinstance(models, FluxComponents):
        return models
    if models == "tiny-random":
        return tiny_flux_components(seed=0)
    if models == "real":
        if cfg.memory == "sequential":
            raise AlignError('[align].memory = "sequential" cannot train (weights stream per layer); use "model" '
                             'with fp8 = true on a 24 GB GPU, or "none"')
        return load_flux_components(job.model("flux"), job.model("controlnet_hed"), device=cfg.device,
                                    dtype=cfg.dtype, memory=cfg.memory, fp8=cfg.fp8, place=False,
                                    text=not cfg.cache_inputs)  # cached embeddings: T5 loads only if missing
    raise ValueError(f'models must be "real", "tiny-random" or FluxComponents, got {models!r}')


def _attach_trainable_lora(comps, cfg: AlignConfig) -> None:
    """LoRA on the configured blocks, in float32, the only trainable parameters; then place the models."""
    import torch

    from videofrom3d.align.lora import add_style_lora, lora_target_names
    from videofrom3d.anchors.components import place_components

    add_style_lora(comps.transformer, lora_target_names(comps.transformer, cfg.double_blocks, cfg.single_blocks),
                   cfg.rank, cfg.alpha)
    add_style_lora(comps.controlnet, lora_target_names(comps.controlnet, cfg.controlnet_double_blocks, []),
                   cfg.rank, cfg.alpha)
    place_components(comps)
    for m in (comps.transformer, comps.controlnet):
        for name, p in m.named_parameters():
            if "lora_" in name:
                p.data = p.data.to(torch.float32)
                p.requires_grad_(True)
            else:
                p.requires_grad_(False)


def _edge_detector(mode: str, device, weights=None):
    from videofrom3d.annotators.hed import make_edge_detector

    return make_edge_detector(mode, weights, device=str(device) if device.type == "cuda" else "cpu")


def _encode_sample(comps, crop: np.ndarray, edges: np.ndarray):
    """(control (1, 3, H, W) in [-1, 1], latent mean, latent std) of one training crop."""
    from videofrom3d.anchors.generate import control_image, latent_posterior

    return (control_image(edges), *latent_posterior(comps, crop))


class _SharedInputs:
    """The quick recipe's inputs in the shared cache (:mod:`videofrom3d.io.cache`), keyed by the image bytes,
    the crop, the edge detector and the weights: a second job with the same style encodes nothing."""

    def __init__(self, job, model_desc: str, detector: str, hed_weights):
        from videofrom3d.io.cache import SharedCache

        self.cache = SharedCache("align-inputs")
        self.common = {"format": 1, "models": model_desc, "flux": job.model("flux")}
        self.edges = [detector, str(hed_weights) if detector == "network" else None]

    def sample(self, image: Path, aspect: str, resolution: int, make) -> tuple:
        key = {**self.common, "image": file_sha256(image), "aspect": aspect, "resolution": resolution,
               "edges": self.edges}
        got = self.cache.get(key, lambda: dict(zip(("control", "mean", "std"), make(), strict=True)))
        return got["control"], got["mean"], got["std"]

    def text(self, identifier: str, length: int, make) -> tuple:
        key = {**self.common, "identifier": identifier, "max_sequence_length": length}
        got = self.cache.get(key, lambda: dict(zip(("embeds", "pooled"), make(), strict=True)))
        return got["embeds"], got["pooled"]


def _reference_contexts(job, cfg: AlignConfig, models) -> list:
    """Per style the pooled, weighted Redux tokens (quick with reference_conditioning)."""
    from videofrom3d.align.reference import encode_references, reference_context

    desc = models if isinstance(models, str) else ("tiny-random" if getattr(models, "source", "") == "tiny-random"
                                                   else "real")
    return [reference_context(t, cfg.reference_pool, cfg.reference_weight) for t in encode_references(job, desc)]


# ---------------------------------------------------------------------------------------------------------
# Checkpoints


def _save_checkpoint(out_dir: Path, step: int, comps, opt, gen, meta: dict, extra: dict | None = None) -> Path:
    import torch

    from videofrom3d.align.lora import save_style_lora
    from videofrom3d.io.atomic import atomic_path

    target = out_dir / "checkpoints" / f"step-{step:06d}"
    with atomic_path(target, suffix="") as tmp:
        tmp.mkdir(parents=True)
        save_style_lora(tmp / "lora.safetensors", comps.transformer, comps.controlnet, {**meta, "steps": step}, extra)
        torch.save({"step": step, "optimizer": opt.state_dict(), "rng": gen.get_state(),
                    "fingerprint": meta["fingerprint"]}, tmp / "state.pt")
    for old in (out_dir / "checkpoints").glob("step-*"):
        if old.name != target.name:
            shutil.rmtree(old, ignore_errors=True)
    log.info("checkpoint %s", target)
    return target


def _resume(out_dir: Path, fingerprint: str, comps, opt, gen) -> int:
    """Load the latest checkpoint made with the same inputs; returns the step to continue from (0 if none)."""
    import torch

    from videofrom3d.align.lora import read_style_lora, set_style_lora_tensors

    ckpts = sorted((out_dir / "checkpoints").glob("step-*"))
    for ckpt in reversed(ckpts):
        state_file = ckpt / "state.pt"
        if not state_file.is_file():
            continue
        state = torch.load(str(state_file), map_location="cpu", weights_only=True)
        if state.get("fingerprint") != fingerprint:
            log.warning("ignoring checkpoint %s: made with other settings or images", ckpt)
            continue
        tensors, _ = read_style_lora(ckpt / "lora.safetensors")
        set_style_lora_tensors(comps.transformer, comps.controlnet, tensors)
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["rng"])
        log.info("resuming alignment from %s", ckpt)
        return int(state["step"])
    return 0


def _metadata_fingerprint(path: Path) -> str | None:
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return json.loads((f.metadata() or {}).get("fingerprint", "null"))
    except (OSError, ValueError):
        return None
