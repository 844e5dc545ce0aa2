"""``videofrom3d doctor``: what this machine has for videofrom3d, and what to do about what it lacks.

Python, the key packages, torch and the GPU, memory, the G-buffer backend, and every weight of
:data:`videofrom3d.models.MODELS`: found (where) or missing (every place looked, and the command that gets
it), with its licence. Runs in the base install (no torch needed) and never downloads anything.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGES = ("numpy", "opencv-python-headless", "trimesh", "moderngl", "av", "torch", "diffusers", "transformers",
            "peft", "accelerate")


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def memory_gib() -> tuple[float | None, float | None]:
    """(total, available) RAM in GiB, or None where the system does not say."""
    try:
        info = {}
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, _, rest = line.partition(":")
            info[name] = float(rest.split()[0]) / 2**20
        return info.get("MemTotal"), info.get("MemAvailable")
    except (OSError, ValueError, IndexError):
        pass
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        return total, None
    except (ValueError, OSError, AttributeError):
        return None, None


def _torch():
    """The torch module, or None in the base install."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def gpu_report() -> dict:
    """torch's view of CUDA when torch is installed, else nvidia-smi's list (if the tool exists)."""
    out: dict = {"torch": _version("torch"), "cuda": False, "devices": [], "note": ""}
    torch = _torch()
    if torch is not None:
        out["cuda"] = bool(torch.cuda.is_available())
        if out["cuda"]:
            for i in range(torch.cuda.device_count()):
                p = torch.cuda.get_device_properties(i)
                out["devices"].append(f"{p.name}, {p.total_memory / 2**30:.1f} GiB")
        else:
            out["note"] = "torch sees no CUDA GPU" + ("" if torch.version.cuda else " (a CPU-only torch build)")
        return out
    out["note"] = "torch is not installed: the diffusion engine needs `pip install 'videofrom3d[diffusion]'`"
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            text = subprocess.run([smi, "--query-gpu=name,memory.total", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=10).stdout
            out["devices"] = [line.strip() for line in text.splitlines() if line.strip()]
        except (OSError, subprocess.SubprocessError):
            pass
    return out


def gbuffer_backend() -> str:
    try:
        from videofrom3d.prepare.gbuffer import moderngl_available
    except ImportError as e:
        return f"unknown ({e})"
    ok, why = moderngl_available()
    return "moderngl (headless EGL)" if ok else f"embree ray casting (moderngl has no EGL context: {why})"


def how_to_get(spec) -> str:
    if spec.note:
        return spec.note
    return f"hf download {spec.repo_id} --local-dir $VIDEOFROM3D_MODELS/{spec.repo_id}  (on a machine with hub access; copy it here)"


def model_report() -> list[dict]:
    from videofrom3d import models as registry

    rows = []
    for key, spec in registry.MODELS.items():
        looked = registry.candidate_paths(key)
        found = registry.find(key)
        rows.append({
            "key": key, "repo_id": spec.repo_id, "found": str(found) if found else None,
            "looked": [str(p) for p in looked], "licence": spec.licence, "size": spec.size, "used_by": spec.used_by,
            "get": None if found else how_to_get(spec),
        })
    return rows


def report() -> dict:
    """Everything ``doctor`` prints, as a JSON-able dict."""
    from videofrom3d import __version__
    from videofrom3d.pipeline import choose_engine

    total, avail = memory_gib()
    engine, why = choose_engine("auto", "real")
    return {
        "videofrom3d": __version__,
        "python": f"{platform.python_version()} ({sys.executable})",
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gib": {"total": total, "available": avail},
        "packages": {p: _version(p) for p in PACKAGES},
        "gpu": gpu_report(),
        "gbuffer_backend": gbuffer_backend(),
        "hf_hub_offline": os.environ.get("HF_HUB_OFFLINE", ""),
        "models_root": os.environ.get("VIDEOFROM3D_MODELS", ""),
        "models": model_report(),
        "engine": {"auto": engine, "why": why},
        "edges": edge_report(engine),
    }


def edge_report(engine: str) -> str:
    """What ``[prepare] edges = "auto"`` gives with ``engine`` and real models on this machine, in words."""
    from videofrom3d.prepare.edge_mode import MissingHEDError, choose_edge_mode, find_hed

    try:
        choice = choose_edge_mode("auto", engine, "real", find_hed())
    except MissingHEDError as e:
        return f"a {engine} render would stop: {e}"
    return choice.describe() + (f" ({choice.notice})" if choice.notice else "")


def format_report(r: dict) -> str:
    mem = r["memory_gib"]
    mem_s = "unknown" if mem["total"] is None else f"{mem['total']:.1f} GiB total" + (
        f", {mem['available']:.1f} GiB available" if mem["available"] is not None else "")
    gpu = r["gpu"]
    lines = [
        f"videofrom3d {r['videofrom3d']}",
        f"python      {r['python']}",
        f"platform    {r['platform']}, {r['cpus']} CPUs",
        f"memory      {mem_s}",
        "packages    " + ", ".join(f"{k} {v}" if v else f"{k} (not installed)" for k, v in r["packages"].items()),
        f"GPU         {'; '.join(gpu['devices']) if gpu['devices'] else 'none'}"
        + (f" ({gpu['note']})" if gpu["note"] else ""),
        f"G-buffers   {r['gbuffer_backend']}",
        f"model root  $VIDEOFROM3D_MODELS = {r['models_root'] or '(unset)'}; HF_HUB_OFFLINE = {r['hf_hub_offline'] or '(unset)'}",
        "",
        "models (nothing is downloaded; a model is found in the job's [models] path, $VIDEOFROM3D_MODELS/<org>/<name>",
        "or the Hugging Face cache; a copied ~/.cache/huggingface/hub/models--org--name folder works as it is):",
    ]
    for m in r["models"]:
        state = f"found  {m['found']}" if m["found"] else "MISSING"
        lines.append(f"  {m['key']:<15}{m['repo_id']}  [{m['size']}]  {state}")
        lines.append(f"  {'':<15}used by: {m['used_by']}")
        lines.append(f"  {'':<15}licence: {m['licence']}")
        if not m["found"]:
            lines.append(f"  {'':<15}looked in: " + ("; ".join(m["looked"]) or "(nowhere)"))
            lines.append(f"  {'':<15}to get it: {m['get']}")
    found = sum(1 for m in r["models"] if m["found"])
    lines += [
        "",
        f"{found} of {len(r['models'])} models found. FLUX.1-dev weights are under a non-commercial licence (accept "
        "it on the model page before downloading); CogVideoX's transformer under the CogVideoX licence; Wan VACE "
        '(the [inbetween] model = "wan-vace" engine) under Apache-2.0.',
        f"`videofrom3d render --engine auto` would use: {r['engine']['auto']} ({r['engine']['why']})",
        f"edge maps ([prepare] edges = \"auto\"): {r['edges']}",
        "The preview engine needs no weights: `videofrom3d demo` works now; `--models tiny-random` smoke-tests the "
        "diffusion code path without weights (needs the diffusion extra).",
    ]
    return "\n".join(lines)
