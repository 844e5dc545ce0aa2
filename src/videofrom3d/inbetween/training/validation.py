"""Validation during GGI training: inbetween a held-out clip from its first and last frame, its edges and
its warped noise with the current weights, score it with weight-free metrics and write a preview mp4.

Metrics (against the clip's real frames, which the inbetween stage never has): PSNR and SSIM per frame
(the ends are given, the middle is generated), flow end-point error of DIS flow between consecutive
generated frames against DIS flow between the real ones (does the video move like the real one), and the
F-score of Canny edges of the generated frames against the clip's HED edges (``eval.consistency``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


def score_clip(generated: np.ndarray, real: np.ndarray, edges: np.ndarray) -> dict[str, float]:
    """Weight-free metrics of (F, H, W, 3) ``generated`` frames against ``real`` ones and (F, H, W) edges."""
    from videofrom3d.eval.consistency import (
        canny_edges,
        edge_alignment,
        edge_tolerance,
        estimate_flow,
        geometry_edges,
    )
    from videofrom3d.eval.metrics import capped, psnr, ssim

    h, w = real.shape[1:3]
    psnrs = [capped(psnr(g, r)) for g, r in zip(generated, real, strict=True)]
    ssims = [ssim(g, r) for g, r in zip(generated, real, strict=True)]
    epe = []
    for i in range(len(real) - 1):
        ref = estimate_flow(real[i], real[i + 1])
        est = estimate_flow(generated[i], generated[i + 1])
        epe.append(float(np.linalg.norm(est - ref, axis=-1).mean()))
    tol = edge_tolerance(w, h)
    f = [edge_alignment(canny_edges(g), geometry_edges(e), tol)["f"] for g, e in zip(generated, edges, strict=True)]

    def mean(v):
        v = [x for x in v if not math.isnan(x)]
        return float(np.mean(v)) if v else float("nan")

    return {"psnr": mean(psnrs), "ssim": mean(ssims), "flow_epe": mean(epe), "edge_f": mean(f)}


def validate(components, item: dict, prompt_embeds, negative_embeds, step: int, out: str | Path,
             steps: int = 30, guidance_scale: float = 6.0, seed: int = 0, device=None) -> dict:
    """Inbetween ``item`` (a prepared clip) with ``components``' transformer, append the scores to
    ``OUT/validation/metrics.jsonl`` and write ``OUT/validation/step-N.mp4`` (real | generated side by
    side). Returns the scores with the step."""
    import torch

    from videofrom3d.inbetween.config import InbetweenConfig
    from videofrom3d.inbetween.sampling import inbetween_arc
    from videofrom3d.io.atomic import atomic_write_text
    from videofrom3d.io.video import write_video

    real = np.asarray(item["frames"], dtype=np.float32) / 255.0
    edges = np.asarray(item["edges"], dtype=np.float32) / 255.0
    cfg = InbetweenConfig(steps=steps, guidance_scale=guidance_scale, encode_mode="mode")
    was_training = components.transformer.training
    components.transformer.eval()
    try:
        with torch.no_grad():
            frames = inbetween_arc(components, real[0], real[-1], edges, np.asarray(item["noise"]),
                                   (prompt_embeds, negative_embeds), cfg, seed=seed, device=device)
    finally:
        components.transformer.train(was_training)
    scores = {"step": step, "clip": item.get("name"), **score_clip(frames, real, edges)}
    folder = Path(out) / "validation"
    folder.mkdir(parents=True, exist_ok=True)
    write_video(folder / f"step-{step}.mp4", [np.concatenate([r, g], axis=1) for r, g in zip(real, frames, strict=True)])
    log = folder / "metrics.jsonl"
    lines = log.read_text().splitlines() if log.is_file() else []
    lines = [ln for ln in lines if json.loads(ln).get("step") != step] + [json.dumps(scores)]
    atomic_write_text(log, "\n".join(lines) + "\n")
    return scores
