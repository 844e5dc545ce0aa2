"""Every weight videofrom3d can use: id, files, licence, and where to find it, offline-first.

A model is looked up, in order, at: the path or id the job gives (``[models]`` table or ``--model-path``),
``$VIDEOFROM3D_MODELS/<org>/<name>`` and ``$VIDEOFROM3D_MODELS/<name>``, then the Hugging Face cache
(``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``; ``models--org--name/snapshots/
<revision>/`` with ``refs/main`` preferred). Nothing is ever downloaded: a missing model is an error naming
the model and every place looked. Weights are read as safetensors (a torch file only with
``weights_only=True``, and only where the upstream release has no safetensors).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from videofrom3d.errors import VideoFrom3DError


@dataclass(frozen=True)
class ModelSpec:
    """One weight set: ``key`` is the name used in job files, ``repo_id`` the Hugging Face id, ``marker``
    a file (or glob pattern) whose presence shows the folder is complete enough to try loading."""

    key: str
    repo_id: str
    marker: str
    licence: str
    size: str
    used_by: str
    note: str = ""


MODELS: dict[str, ModelSpec] = {
    m.key: m
    for m in (
        ModelSpec(
            "flux", "black-forest-labs/FLUX.1-dev", "model_index.json",
            "FLUX.1 [dev] Non-Commercial License (gated: accept it on the model page first)", "~34 GB",
            "align, anchors (paper 3.2)",
        ),
        ModelSpec(
            "controlnet_hed", "XLabs-AI/flux-controlnet-hed-diffusers", "config.json",
            "FLUX.1 [dev] Non-Commercial License", "~1.5 GB", "align, anchors (paper 3.2)",
        ),
        ModelSpec(
            "redux", "black-forest-labs/FLUX.1-Redux-dev", "image_embedder/config.json",
            "FLUX.1 [dev] Non-Commercial License (gated: accept it on the model page first)", "~1 GB",
            'align, anchors: [align] mode = "reference" (the Redux image embedder; its image_encoder/ is SigLIP)',
        ),
        ModelSpec(
            "siglip", "google/siglip-so400m-patch14-384", "config.json", "Apache-2.0", "~0.9 GB",
            'align: the Redux image encoder when the Redux folder has no image_encoder/',
        ),
        ModelSpec(
            "cogvideox", "THUDM/CogVideoX-5b-I2V", "model_index.json",
            "CogVideoX License (transformer); Apache-2.0 (VAE, T5)", "~21 GB", "inbetween (paper 3.3)",
        ),
        ModelSpec(
            "ggi", "videofrom3d/ggi-checkpoint-1350", "config.json",
            "as released by the VideoFrom3D authors (CogVideoX License applies)", "~15 GB",
            "inbetween: the authors' released GGI transformer (checkpoint-1350/transformer)",
            note="distributed by the authors outside the hub; point [models].ggi at the folder",
        ),
        ModelSpec(
            "flow_lora", "Eyeline-Labs/Go-with-the-Flow", "I2V5B_final_i38800_nearest_lora_weights.safetensors",
            "Go-with-the-Flow release licence", "~4.2 GB", "inbetween without the GGI checkpoint",
        ),
        ModelSpec(
            "wan_vace_1_3b", "Wan-AI/Wan2.1-VACE-1.3B-diffusers", "model_index.json", "Apache-2.0", "~18 GB",
            'inbetween with [inbetween] model = "wan-vace" (variant "1.3b"); VRAM: ~4.3 GB of bf16 transformer '
            'weights (2.15 B parameters with the VACE blocks) plus activations, ~8 GB at 832x480 (the Wan2.1 '
            'release figure for T2V-1.3B); UMT5-XXL (~11 GB) is used once per prompt and released',
        ),
        ModelSpec(
            "wan_vace_14b", "Wan-AI/Wan2.1-VACE-14B-diffusers", "model_index.json", "Apache-2.0", "~75 GB",
            'inbetween with [inbetween] model = "wan-vace", variant = "14b"; VRAM: ~35 GB of bf16 transformer '
            'weights (17.3 B parameters with the VACE blocks) plus activations; smaller cards: fp8 or memory = '
            '"sequential"',
        ),
        ModelSpec(
            "wan22_vace", "linoyts/Wan2.2-VACE-Fun-14B-diffusers", "model_index.json",
            "Apache-2.0 (Wan2.2-VACE-Fun-A14B by alibaba-pai)", "~130 GB",
            'inbetween with [inbetween] model = "wan-vace", variant = "2.2-a14b" (two 14B experts, one on the GPU at '
            'a time with memory = "model": VRAM as the 14B)',
            note="hf download linoyts/Wan2.2-VACE-Fun-14B-diffusers (a diffusers conversion, by Hugging Face staff, "
            "of alibaba-pai/Wan2.2-VACE-Fun-A14B); any WanVACEPipeline folder with transformer_2 and boundary_ratio "
            "works: point [models].wan22_vace at it",
        ),
        ModelSpec(
            "blip2", "Salesforce/blip2-opt-2.7b", "config.json", "MIT", "~15 GB",
            "inbetween: captions the first anchor when no prompt is given",
        ),
        ModelSpec(
            "hed", "lllyasviel/Annotators", "ControlNetHED.pth", "Apache-2.0", "~29 MB",
            "prepare: edge maps = HED of the shaded render (drawn lines without it); align: HED of the style crops",
        ),
        ModelSpec(
            "depth", "Intel/dpt-hybrid-midas", "config.json", "Apache-2.0", "~0.5 GB", "eval: PSNR-D",
        ),
        ModelSpec(
            "clip_l", "openai/clip-vit-large-patch14", "config.json", "MIT", "~1.7 GB", "eval: CLIP-A, CLIP-I",
        ),
        ModelSpec(
            "clip_b", "openai/clip-vit-base-patch32", "config.json", "MIT", "~0.6 GB",
            "eval: background consistency",
        ),
        ModelSpec(
            "dino", "facebook/dino-vitb16", "config.json", "Apache-2.0", "~0.35 GB", "eval: subject consistency",
        ),
        ModelSpec(
            "aesthetic", "laion/aesthetic-predictor-v1", "sa_0_4_vit_l_14_linear.pth", "MIT", "4 KB",
            "eval: CLIP-A linear head",
        ),
        ModelSpec(
            "lpips", "lpips-alex-v0.1", "alex.pth", "BSD-2-Clause (LPIPS heads); BSD-3-Clause (AlexNet)", "~0.25 GB",
            "eval: masked LPIPS against the pseudo ground truth",
            note="one folder with torchvision's alexnet-owt-7be5be79.pth and the LPIPS v0.1 heads alex.pth",
        ),
        ModelSpec(
            "musiq", "chaofengc/IQA-PyTorch-Weights", "musiq_*", "Apache-2.0 (Google's MUSIQ release)", "~0.1 GB",
            "eval: MUSIQ",
            note="pyiqa's musiq_spaq_ckpt-358bb6af.pth (the VBench protocol uses SPAQ) or musiq_koniq_ckpt-e95806b9.pth, "
            "or a .safetensors copy named musiq_spaq*/musiq_koniq*; a folder is searched SPAQ first",
        ),
    )
}


class MissingModelError(VideoFrom3DError, FileNotFoundError):
    """A weight that is not on this machine; the message names it and every place looked."""

    def __init__(self, key: str, looked: list[Path], hint: str = ""):
        spec = MODELS.get(key)
        name = f"{key} ({spec.repo_id})" if spec else key
        places = "\n  ".join(str(p) for p in looked) or "(nowhere)"
        how = hint or (
            f"download it on a machine with hub access (e.g. `hf download {spec.repo_id}`) and copy "
            f"the folder here, or set [models].{key} in the job to a local folder" if spec else ""
        )
        super().__init__(f"model {name} not found. Looked in:\n  {places}\n{how}".rstrip())
        self.key = key
        self.looked = looked


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path.home() / ".cache" / "huggingface" / "hub"


def hf_snapshot_candidates(repo_id: str, cache: Path | None = None) -> list[Path]:
    """Snapshot folders of ``repo_id`` in the HF cache, the one ``refs/main`` names first."""
    root = (cache or hf_cache_dir()) / ("models--" + repo_id.replace("/", "--"))
    snaps = root / "snapshots"
    if not snaps.is_dir():
        return [snaps]
    ordered = []
    ref = root / "refs" / "main"
    if ref.is_file():
        ordered.append(snaps / ref.read_text().strip())
    ordered += sorted((p for p in snaps.iterdir() if p not in ordered), key=lambda p: p.stat().st_mtime, reverse=True)
    return ordered


def candidate_paths(key: str, override: str | os.PathLike | None = None) -> list[Path]:
    """Every place :func:`locate` looks, in order."""
    spec = MODELS.get(key)
    repo_id = str(override) if override is not None and not _looks_like_path(override) else (spec.repo_id if spec else key)
    places: list[Path] = []
    if override is not None and _looks_like_path(override):
        places.append(Path(os.path.expanduser(str(override))))
    root = os.environ.get("VIDEOFROM3D_MODELS")
    if root:
        places += [Path(root) / repo_id, Path(root) / repo_id.split("/")[-1]]
    places += hf_snapshot_candidates(repo_id)
    return places


def locate(key: str, override: str | os.PathLike | None = None, marker: str | None = None) -> Path:
    """Folder holding model ``key`` (or the id/path ``override``); raises :class:`MissingModelError`."""
    spec = MODELS.get(key)
    marker = marker if marker is not None else (spec.marker if spec else None)
    looked = candidate_paths(key, override)
    for place in looked:
        if place.is_file():
            return place
        if place.is_dir() and (marker is None or any(place.glob(marker)) or _has_marker_below(place, marker)):
            return place
    raise MissingModelError(key, looked)


def find(key: str, override: str | os.PathLike | None = None) -> Path | None:
    """Like :func:`locate` but None when missing."""
    try:
        return locate(key, override)
    except MissingModelError:
        return None


def _has_marker_below(place: Path, marker: str) -> bool:
    return any(place.glob(f"*/{marker}"))


def _looks_like_path(s: str | os.PathLike) -> bool:
    """A local folder rather than a hub id ("org/name"): absolute, relative with ./ or ~, or existing."""
    s = str(s)
    return s.startswith(("/", ".", "~")) or Path(s).exists()


# ---------------------------------------------------------------------------------------------------------
# Where weights go (torch is imported inside: the base install has none)


def resolve_device(device=None):
    """``"auto"`` or None -> CUDA when torch sees a GPU, else the CPU; anything else as torch names it."""
    import torch

    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype, device):
    """``"auto"`` -> bf16 on a GPU, fp32 on the CPU (bf16 matmuls on CPU are slow and inexact)."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    table = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
             "fp16": torch.float16, "float32": torch.float32, "fp32": torch.float32}
    if dtype not in table:
        raise ValueError(f"dtype must be one of {sorted(table)} or 'auto', got {dtype!r}")
    return table[dtype]


def empty_device_cache(device) -> None:
    """Give cached GPU memory back after models left ``device`` (nothing on the CPU)."""
    import torch

    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextlib.contextmanager
def model_offload(memory: str, device, *modules) -> Iterator[None]:
    """Model CPU offload, for both diffusion stages: under ``memory="model"`` on an accelerator, ``modules``
    move to ``device`` for the block and back to the CPU after; otherwise nothing moves."""
    if memory != "model" or device.type == "cpu":
        yield
        return
    for m in modules:
        m.to(device)
    try:
        yield
    finally:
        for m in modules:
            m.to("cpu")
        empty_device_cache(device)


# glibc's mallopt parameters (malloc.h), and the values its dynamic rule reaches once a process has freed a
# block of 32 MB (the mmap threshold's cap, the trim threshold twice that; setting any turns the rule off)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_AFTER = {_M_MMAP_MAX: 65536, _M_MMAP_THRESHOLD: 32 << 20, _M_TRIM_THRESHOLD: 64 << 20}
_heap_depth = 0
_heap_lock = threading.Lock()  # the job server runs CPU jobs on threads of one process


def _glibc():
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


@contextlib.contextmanager
def cpu_heap_reuse(device) -> Iterator[None]:
    """Inside, on the CPU under glibc, freed memory stays in the process heap for the next tensor; after,
    blocks over 32 MB are mapped alone again and the free heap is handed back (``malloc_trim``). Nested uses
    are one.

    glibc maps every block over its mmap threshold (32 MB at most) afresh and unmaps it on free, so the next
    such tensor faults its pages in again, zeroed, 4 KB at a time: the CogVideoX VAE at 720x480 allocates
    hundreds of 50-500 MB activations per arc, about 10 M page faults, half its time in the kernel. The
    numbers computed are the same; only where the memory comes from changes. Nothing on an accelerator.
    The settings are the process's: overlapping uses on several threads share them until the last one ends."""
    global _heap_depth
    libc = _glibc() if getattr(device, "type", str(device)) == "cpu" else None
    if libc is None:
        yield
        return
    with _heap_lock:
        if _heap_depth == 0:
            libc.mallopt(_M_MMAP_MAX, 0)  # every block from the heap, none mapped alone
            libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)  # and the heap's free top kept, not trimmed on each free
        _heap_depth += 1
    try:
        yield
    finally:
        with _heap_lock:
            _heap_depth -= 1
            if _heap_depth == 0:
                for param, value in _AFTER.items():
                    libc.mallopt(param, value)
                libc.malloc_trim(0)


def tiny_t5_tokenizer():
    """A T5 (Unigram) tokenizer from an in-memory vocabulary (lower-case letters, digits, punctuation): the
    stand-in for the real T5 tokenizer in both diffusion stages' tiny random models (no files, no hub)."""
    import string

    from transformers import T5Tokenizer

    chars = string.ascii_lowercase + string.digits + ".,'-"
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.0)]
    vocab += [(c, -2.0) for c in chars] + [("\u2581" + c, -2.5) for c in string.ascii_lowercase]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=512)
