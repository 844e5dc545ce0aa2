"""The inbetweening stage as an object loaded once for all arcs, and whole trajectories (paper 3.3-3.4).

``load_inbetweener(job, cfg, models="real" | "tiny-random")`` -> :class:`Inbetweener` with
``.inbetween(start, end, edge_maps, warped_noise, prompt, seed, arc=None)``, ``.caption(image)``,
``.close()``; it is an inbetween engine (:class:`videofrom3d.engines.InbetweenEngine`), so
:func:`videofrom3d.chaining.chain_inbetween` chains it along a trajectory: arc k starts from the last generated
frame of arc k-1 (the authors' choice) or from the anchor, and the global frames keep each boundary frame once
(1 + K*N frames; the authors' output repeats them).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from videofrom3d.chaining import ArcChaining
from videofrom3d.inbetween.components import (
    CogVideoXComponents,
    load_cogvideox_components,
    load_flow_lora,
    load_stock_transformer,
    load_transformer_checkpoint,
    tiny_cogvideox_components,
)
from videofrom3d.inbetween.conditioning import latent_frame_count, video_frame_count
from videofrom3d.inbetween.config import InbetweenConfig, InbetweenError
from videofrom3d.inbetween.sampling import encode_text, inbetween_arc
from videofrom3d.io.manifest import digest_arrays
from videofrom3d.models import cpu_heap_reuse, model_offload, resolve_device, resolve_dtype

PROMPT_HINT = (
    'give one in the job: [inbetween] prompt = "a photo of ..." (the authors caption the first anchor with '
    "BLIP-2: put Salesforce/blip2-opt-2.7b in the Hugging Face cache or set [models] blip2 = \"/path/to/blip2\")"
)

# Card sizes -> (memory mode, fp8 storage, CFG batching or None for the preset's). H100, 5B at 49x720x480:
# 13.2 GiB peak resident in bf16 (README); fp8 storage halves the 11 GB transformer; at 12 GB the models take
# turns on the GPU and the two CFG passes run one after the other (half the activations).
MEMORY_PRESETS = {"24gb": ("none", False, None), "16gb": ("none", True, None), "12gb": ("model", True, False)}
COGVIDEOX_BLOCKS = ("CogVideoXBlock",)
COGVIDEOX_ATTENTION = (r"transformer_blocks\.\d+\.attn1",)  # diffusers' TaylorSeer names miss CogVideoX's


def resolve_memory(cfg: InbetweenConfig) -> tuple[str, bool, bool | None]:
    """(memory mode, fp8 storage, CFG batching override) of ``[inbetween] memory`` and ``fp8``."""
    if cfg.memory in MEMORY_PRESETS:
        mode, fp8, cfg_batch = MEMORY_PRESETS[cfg.memory]
        return mode, fp8 or cfg.fp8, cfg_batch if cfg.cfg_batch is None else cfg.cfg_batch
    return cfg.memory, cfg.fp8, cfg.cfg_batch


class Inbetweener:
    """CogVideoX components loaded once, with a memory mode, a per-prompt text-embedding cache and an
    optional captioner. ``last_decoded`` holds every decoded frame of the latest arc (49 for 46 kept)."""

    def __init__(
        self,
        components: CogVideoXComponents,
        cfg: InbetweenConfig | None = None,
        device: str | torch.device | None = None,
        captioner: Callable[[np.ndarray], str] | None = None,
    ):
        self.components = components
        self.cfg = cfg = cfg if cfg is not None else InbetweenConfig()
        self.device = resolve_device(cfg.device) if device is None else torch.device(device)
        self.captioner = captioner
        self.last_decoded: np.ndarray | None = None
        self._embeds: dict[str, torch.Tensor] = {}
        self._captions: dict[str, str] = {}
        self._closed = False
        self._sequential = False
        self.memory, self.fp8, cfg_batch = resolve_memory(cfg)
        self.chaining = ArcChaining(cfg.chain, cfg.chain_frame)
        self._setup_memory()
        self.speed = self._setup_speed(cfg_batch)

    # ------------------------------------------------------------------ the engine interface
    @property
    def fixed_prompt(self) -> str | None:
        return self.cfg.prompt

    def prompt_for(self, first_anchor: np.ndarray) -> str:
        return self.resolve_prompt(first_anchor)

    def arc_frames(self, start: np.ndarray, end: np.ndarray, arc, prompt: str | None, seed: int):
        """The frames of :meth:`inbetween` for a prepared ``arc`` (its edge maps and warped noise)."""
        yield from self.inbetween(start, end, arc.edge_maps, arc.warped_noise, prompt, seed)

    def last_decoded_frame(self) -> np.ndarray | None:
        return None if self.last_decoded is None else self.last_decoded[-1]

    # ------------------------------------------------------------------ memory modes
    def _setup_memory(self) -> None:
        cfg, c = self.cfg, self.components
        if cfg.vae_slicing:
            c.vae.enable_slicing()
        if cfg.vae_tiling:
            c.vae.enable_tiling()
        if self.fp8:
            compute = next(c.transformer.parameters()).dtype
            c.transformer.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=compute)
        if self.memory == "sequential" and self.device.type != "cpu":
            from accelerate import cpu_offload

            for module in (c.transformer, c.vae):
                cpu_offload(module, execution_device=self.device)
            self._sequential = True
        elif self.memory == "none":
            c.transformer.to(self.device)
            c.vae.to(self.device)
        # "model": everything stays on the CPU and moves to the device for its stage only (_on_device)

    def _setup_speed(self, cfg_batch: bool | None):
        """The speed switches (:mod:`videofrom3d.speed`) on the transformer; returns those in effect.
        CogVideoX's attention processor calls torch SDPA itself, so the backend is a torch SDPA kernel
        chosen around the loop (``sdpa_kernel``), not the diffusers dispatcher."""
        from dataclasses import replace

        from videofrom3d import speed

        cfg, t = self.cfg, self.components.transformer
        sw = speed.speed_switches(replace(cfg, cfg_batch=True if cfg_batch is None else cfg_batch))  # batched by default
        fp8_matmul = sw.fp8_matmul and not self.fp8 and speed.fp8_matmuls(t, self.device)
        cache = speed.enable_step_cache(t, sw.cache, cfg.cache_threshold, cfg.cache_interval, cfg.cache_start_step,
                                        COGVIDEOX_ATTENTION)
        compiled = sw.compile and not self._sequential
        if compiled:
            speed.compile_blocks(t, COGVIDEOX_BLOCKS)
        attention = sw.attention if sw.attention in ("_native_flash", "_native_cudnn", "_native_efficient") else "native"
        if sw.attention == "auto" and self.device.type == "cuda":
            attention = "_native_cudnn" if torch.cuda.get_device_capability(self.device) >= (9, 0) else "_native_flash"
        return speed.SpeedSwitches(sw.cfg_batch, compiled, attention, bool(fp8_matmul), cache)

    def _on_device(self, *modules):
        """Model CPU offload (``memory = "model"``): ``modules`` on the device for a stage only."""
        return model_offload(self.memory, self.device, *modules)

    # ------------------------------------------------------------------ text
    def text_embeddings(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(prompt, negative) T5 embeddings, cached per prompt; T5 is released afterwards when configured."""
        missing = [p for p in (prompt, self.cfg.negative_prompt) if p not in self._embeds]
        if missing:
            c = self.components
            if c.text_encoder is None:
                if c.text_encoder_factory is None:
                    raise InbetweenError("no text encoder to encode a new prompt")
                c.text_encoder = c.text_encoder_factory()
            length = int(c.transformer.config.max_text_seq_length)
            c.text_encoder.to(self.device)
            for p in missing:
                self._embeds[p] = encode_text(c.tokenizer, c.text_encoder, p, length, self.device).cpu()
            if self.cfg.release_text_encoder:
                c.text_encoder = None
                self._free()
            elif self.memory != "none":
                c.text_encoder.to("cpu")
        return self._embeds[prompt], self._embeds[self.cfg.negative_prompt]

    # ------------------------------------------------------------------ one arc
    def inbetween(
        self,
        start: np.ndarray,
        end: np.ndarray,
        edge_maps: np.ndarray,
        warped_noise: np.ndarray | None,
        prompt: str | None,
        seed: int,
        arc=None,
    ) -> np.ndarray:
        """(F, H, W, 3) float32 frames from ``start`` to ``end`` (frame 0 ~ start, frame F-1 ~ end).

        ``arc`` (a PreparedArc) is accepted for the preview engine's interface and not read. ``prompt`` None
        uses ``[inbetween] prompt``; without one the stage cannot guess (see :meth:`resolve_prompt`)."""
        if self._closed:
            raise InbetweenError("this Inbetweener was closed")
        prompt = prompt if prompt is not None else self.cfg.prompt
        if prompt is None:
            raise InbetweenError("no prompt for the inbetweening stage; " + PROMPT_HINT)
        embeds = self.text_embeddings(prompt)
        c = self.components
        with self._on_device(c.transformer, c.vae), cpu_heap_reuse(self.device):
            frames, decoded = inbetween_arc(
                c,
                start,
                end,
                edge_maps,
                warped_noise,
                embeds,
                self.cfg,
                seed=seed,
                device=self.device,
                return_decoded=True,
                speed=self.speed,
            )
        self.last_decoded = decoded
        return frames

    # ------------------------------------------------------------------ captions
    def caption(self, image: np.ndarray) -> str:
        """A BLIP-2 caption of ``image`` (H, W, 3) in [0, 1] (the authors caption the first anchor)."""
        key = digest_arrays(np.asarray(image, dtype=np.float32))
        if key not in self._captions:
            if self.captioner is None:
                raise InbetweenError("no BLIP-2 weights to caption the first anchor; " + PROMPT_HINT)
            self._captions[key] = self.captioner(np.asarray(image, dtype=np.float32))
        return self._captions[key]

    def resolve_prompt(self, first_anchor: np.ndarray | None = None) -> str:
        """``[inbetween] prompt`` when given, else the caption of ``first_anchor``, else an error saying how."""
        if self.cfg.prompt is not None:
            return self.cfg.prompt
        if first_anchor is None:
            raise InbetweenError("no prompt for the inbetweening stage; " + PROMPT_HINT)
        return self.caption(first_anchor)

    # ------------------------------------------------------------------ lifetime
    def _free(self) -> None:
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def close(self) -> None:
        """Drop the models and free their memory; the object cannot be used afterwards."""
        if self._closed:
            return
        self._closed = True
        self.components = None
        self.captioner = None
        self._embeds.clear()
        self._free()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ----------------------------------------------------------------------------------------------- loading


def blip2_captioner(path: str | os.PathLike, device: torch.device, max_new_tokens: int = 30) -> Callable[[np.ndarray], str]:
    """A function image -> caption with BLIP-2 (``Salesforce/blip2-opt-2.7b`` layout) read from ``path``;
    the model is loaded per call and freed afterwards (the authors keep 7.7 GB on the GPU for one caption)."""

    def caption(image: np.ndarray) -> str:
        from PIL import Image
        from transformers import Blip2ForConditionalGeneration, Blip2Processor

        dtype = torch.float16 if device.type == "cuda" else torch.float32
        processor = Blip2Processor.from_pretrained(path)
        model = Blip2ForConditionalGeneration.from_pretrained(path, dtype=dtype, use_safetensors=True).to(device).eval()
        try:
            pil = Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8))
            inputs = processor(images=pil, return_tensors="pt").to(device, dtype)
            with torch.no_grad():
                out = model.generate(**inputs, max_new_tokens=max_new_tokens)
            return processor.batch_decode(out, skip_special_tokens=True)[0].strip()
        finally:
            del model
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()

    return caption


def load_inbetweener(job, cfg: InbetweenConfig | None = None, models: str = "real") -> Inbetweener:
    """Build the inbetweening stage for ``job`` once for all its arcs.

    ``models="real"``: CogVideoX-5B-I2V (``[models] cogvideox``) with the transformer ``cfg.transformer`` says
    (the authors' GGI checkpoint ``[models] ggi``, the flow LoRA ``[models] flow_lora``, stock, or our
    ``checkpoint_path``); missing weights are errors naming every place looked. ``models="tiny-random"``:
    random tiny components at the job's size and arc length (no weights; for smoke tests)."""
    from videofrom3d.job import config_from_options
    from videofrom3d.models import MODELS, find, locate

    if cfg is None:
        cfg = config_from_options(InbetweenConfig, job.options("inbetween"), "inbetween")
    device = resolve_device(cfg.device)
    if models == "tiny-random":
        in_channels = 32 if cfg.transformer in ("flow_lora", "stock") else 48
        frames = video_frame_count(latent_frame_count(job.frames_per_arc + 1))  # 46 -> 49, like 5B-I2V
        components = tiny_cogvideox_components(
            seed=job.seed, height=job.height, width=job.width, in_channels=in_channels, frames=frames
        )
        if cfg.transformer == "checkpoint":  # a tiny trained checkpoint (e.g. from `train-ggi --models tiny-random`)
            components.transformer = load_transformer_checkpoint(
                _checkpoint_folder(cfg), torch.float32, merge=cfg.merge_lora
            )
        return Inbetweener(components, cfg, device=device, captioner=lambda image: "a tiny random scene")
    if models != "real":
        raise InbetweenError(f'models must be "real" or "tiny-random", got {models!r}')

    dtype = resolve_dtype(cfg.dtype, device)
    base = job.model("cogvideox")
    if cfg.transformer == "ggi":
        transformer = load_transformer_checkpoint(locate("ggi", job.model("ggi")), dtype, merge=cfg.merge_lora)
    elif cfg.transformer == "checkpoint":
        transformer = load_transformer_checkpoint(_checkpoint_folder(cfg), dtype, merge=cfg.merge_lora)
    else:
        transformer = load_stock_transformer(base, dtype)
        if cfg.transformer == "flow_lora":
            lora = locate("flow_lora", job.model("flow_lora"))
            marker = lora / MODELS["flow_lora"].marker if lora.is_dir() else lora
            load_flow_lora(transformer, marker if marker.exists() else lora, merge=cfg.merge_lora)
    components = load_cogvideox_components(base, transformer, dtype, load_text_encoder=False)
    if components.transformer.config.use_learned_positional_embeddings:
        want = (components.transformer.config.sample_width * 8, components.transformer.config.sample_height * 8)
        if (job.width, job.height) != want:
            raise InbetweenError(
                f"CogVideoX-5B-I2V generates {want[0]}x{want[1]} only; the job is {job.width}x{job.height}: set "
                f"[size] width = {want[0]}, height = {want[1]}"
            )
    blip = find("blip2", job.model("blip2"))
    captioner = blip2_captioner(blip, device, cfg.caption_max_tokens) if blip is not None else None
    return Inbetweener(components, cfg, device=device, captioner=captioner)


def _checkpoint_folder(cfg: InbetweenConfig) -> Path:
    """``[inbetween] checkpoint_path``: a transformer folder, or a training ``checkpoint-N`` holding one."""
    path = Path(os.path.expanduser(str(cfg.checkpoint_path)))
    if not path.exists():
        raise InbetweenError(f"[inbetween].checkpoint_path {path} does not exist")
    return path


def write_frame_pngs(frames: np.ndarray, folder: str | os.PathLike, first_index: int = 0) -> list[Path]:
    """``folder/NNNN.png`` for each (H, W, 3) frame, numbered from ``first_index``, each written atomically."""
    from videofrom3d.io.images import write_image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(frames):
        path = folder / f"{first_index + i:04d}.png"
        write_image(path, frame)
        paths.append(path)
    return paths
