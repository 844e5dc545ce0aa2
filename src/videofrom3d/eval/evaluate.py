"""Evaluate rendered work folders: every metric as one JSON object per run.

Weight-free metrics are always computed; each weight-based metric is computed when its weights are found
(``models`` argument, see :func:`videofrom3d.eval.learned.load_models`) and is otherwise ``None`` with the
reason in the run's ``missing`` list. Geometry metrics need ``WORK/prepare``; colour metrics to the style
need a style image.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from videofrom3d.eval.consistency import (
    canny_edges,
    color_distances,
    edge_alignment,
    edge_tolerance,
    flow_agreement,
    geometry_edges,
    lab_histogram,
    sliced_wasserstein,
    small,
    to_lab,
    warp_error,
)
from videofrom3d.eval.fidelity import arc_pseudo_gt, masked_scores
from videofrom3d.eval.metrics import PSNR_CAP_DB, capped, nanmean
from videofrom3d.eval.workfolder import EvalInputError, RunFolder
from videofrom3d.prepare.flow import reprojection_flow


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    higher_is_better: bool
    group: str
    needs: str = ""  # "geometry", "style", "weights" or ""


METRICS: tuple[Metric, ...] = (
    Metric("psnr", "PSNR", True, "paper: pseudo-GT fidelity", "geometry"),
    Metric("ssim", "SSIM", True, "paper: pseudo-GT fidelity", "geometry"),
    Metric("lpips", "LPIPS", False, "paper: pseudo-GT fidelity", "geometry+weights"),
    Metric("psnr_d", "PSNR-D", True, "paper: structure", "geometry+weights"),
    Metric("clip_a", "CLIP-A", True, "paper: quality", "weights"),
    Metric("musiq", "MUSIQ", True, "paper: quality", "weights"),
    Metric("clip_i", "CLIP-I", True, "paper: style", "style+weights"),
    Metric("clip_i_l14", "CLIP-I L/14", True, "paper: style", "style+weights"),
    Metric("subject_consistency", "SC", True, "paper: style", "weights"),
    Metric("background_consistency", "BC", True, "paper: style", "weights"),
    Metric("warp_error", "warp err", False, "temporal", "geometry"),
    Metric("warp_psnr", "warp PSNR", True, "temporal", "geometry"),
    Metric("flow_epe", "flow EPE", False, "camera path", "geometry"),
    Metric("flow_under_1px", "flow <1px", True, "camera path", "geometry"),
    Metric("flow_under_3px", "flow <3px", True, "camera path", "geometry"),
    Metric("edge_recall", "edge R", True, "edges", "geometry"),
    Metric("edge_precision", "edge P", True, "edges", "geometry"),
    Metric("edge_f", "edge F", True, "edges", "geometry"),
    Metric("edge_recall_2px", "edge R@2", True, "edges", "geometry"),
    Metric("edge_precision_2px", "edge P@2", True, "edges", "geometry"),
    Metric("edge_f_2px", "edge F@2", True, "edges", "geometry"),
    Metric("edge_chamfer", "chamfer", False, "edges", "geometry"),
    Metric("color_swd", "colour SWD", False, "colour", "style"),
    Metric("color_chi2", "colour chi2", False, "colour", "style"),
    Metric("color_moments", "colour moments", False, "colour", "style"),
    Metric("color_drift", "colour drift", False, "colour", ""),
)
METRIC_BY_KEY = {m.key: m for m in METRICS}
MODEL_METRICS = ("lpips", "psnr_d", "clip_a", "musiq", "clip_i", "clip_i_l14", "subject_consistency",
                 "background_consistency")


def _add_missing(missing: list[dict], metric: str, reason: str) -> None:
    if not any(m["metric"] == metric for m in missing):
        missing.append({"metric": metric, "reason": reason})


def evaluate_run(run: RunFolder | str | Path, models=None, progress=None, style: str | Path | None = None,
                 rel_tol: float = 0.01) -> dict:
    """Every metric of one work folder -> ``{"run", "frames", "arcs", "style", <metric>: float | None, ...,
    "missing": [{"metric", "reason"}], "models": {key: path}}``.

    ``models``: a :class:`~videofrom3d.eval.learned.LoadedModels` (None: weight-free metrics only, every
    model metric listed as missing); ``progress``: a tqdm-like object with ``update(n)`` or None."""
    run = run if isinstance(run, RunFolder) else RunFolder(Path(run), Path(style) if style else None)
    run.check()
    missing: list[dict] = []
    if models is None:
        for m in MODEL_METRICS:
            _add_missing(missing, m, "not requested (run without models)")
    else:
        for m, reason in models.missing.items():
            _add_missing(missing, m, reason)
    have = {m: models is not None and m not in models.missing for m in MODEL_METRICS}
    if models is not None:
        have["musiq"] = have["musiq"] and models.musiq is not None
        have["clip_a"] = have["clip_a"] and models.clip_l is not None and models.aesthetic is not None
        have["clip_i"] = have["clip_i"] and models.clip_b is not None
        have["clip_i_l14"] = have["clip_i_l14"] and models.clip_l is not None
        have["subject_consistency"] = have["subject_consistency"] and models.dino is not None
        have["background_consistency"] = have["background_consistency"] and models.clip_b is not None
        have["psnr_d"] = have["psnr_d"] and models.depth is not None
        have["lpips"] = have["lpips"] and models.lpips is not None

    style_img = None
    if run.style_path is not None:
        if not Path(run.style_path).is_file():
            raise EvalInputError(f"style image not found: {run.style_path}")
        from videofrom3d.io.images import read_image

        style_img = read_image(run.style_path)
    else:
        for m in ("clip_i", "clip_i_l14", "color_swd", "color_chi2", "color_moments"):
            _add_missing(missing, m, "no style image (give --style, or a manifest that names it)")
    if style_img is None:
        have["clip_i"] = have["clip_i_l14"] = False

    per: dict[str, list[float]] = defaultdict(list)
    lab_first = None
    lab_ref = to_lab(small(style_img)) if style_img is not None else None
    hist_ref = lab_histogram(lab_ref) if lab_ref is not None else None
    embeds: dict[str, list] = defaultdict(list)
    frame_size = None

    segments = _segments(run)
    if not run.arc_dirs:
        for m in METRICS:
            if "geometry" in m.needs:
                _add_missing(missing, m.key, f"no prepared arcs in {run.path / 'prepare'}")
        for m in ("lpips", "psnr_d"):
            have[m] = False

    lpips_fn = None
    if have["lpips"]:
        from videofrom3d.eval.learned import lpips_map

        def lpips_fn(a, b):
            return lpips_map(models.lpips, a, b)

    for arc_path, indices, first_is_shared in segments:
        arc = None
        if arc_path is not None:
            from videofrom3d.prepare.arcs import PreparedArc

            arc = PreparedArc.load(arc_path, with_noise=False)
            if arc.last_frame >= run.frame_count:
                raise EvalInputError(
                    f"{run.path}: arc {arc.index} ends at frame {arc.last_frame} but there are {run.frame_count} frames"
                )
            indices = list(range(arc.first_frame, arc.last_frame + 1))
            size = arc.size
        else:
            size = frame_size
        frames = np.stack([run.frame(g, size=size) for g in indices])
        frame_size = (frames.shape[2], frames.shape[1])
        new = slice(1 if first_is_shared else 0, None)  # frames not yet scored by the previous arc

        if arc is not None:
            _geometry_metrics(run, arc, frames, per, lpips_fn, rel_tol, first_is_shared)
            if have["psnr_d"]:
                from videofrom3d.eval.learned import estimate_disparity, psnr_d

                est = estimate_disparity(models.depth, models.depth_preprocess, frames[new])
                per["psnr_d"] += [psnr_d(d, e) for d, e in zip(arc.depth[new], est)]

        for img in frames[new]:
            lab = to_lab(small(img))
            if lab_first is None:
                lab_first = lab
            else:
                per["color_drift"].append(sliced_wasserstein(lab, lab_first))
            if lab_ref is not None:
                for k, v in color_distances(lab, lab_ref, hist_ref).items():
                    per[f"color_{k}"].append(v)
        if models is not None:
            _embed(models, have, frames[new], embeds)
        if progress is not None:
            progress.update(len(frames[new]))

    out = {"run": str(run.path), "frames": run.frame_count, "arcs": len(run.arc_dirs),
           "style": str(run.style_path) if run.style_path else None}
    for m in METRICS:
        out[m.key] = nanmean(per[m.key]) if per.get(m.key) else None
    if models is not None:
        out.update(_model_scores(models, have, embeds, style_img))
    if len(per.get("color_drift", [])) == 0 and run.frame_count < 2:
        _add_missing(missing, "color_drift", "needs at least two frames")
    for m in METRICS:
        if out[m.key] is None:
            _add_missing(missing, m.key, "no scorable pixels or frames")
    for k, v in list(out.items()):
        if isinstance(v, float) and math.isnan(v):
            out[k] = None
    out["missing"] = [m for m in missing if out.get(m["metric"]) is None]
    out["models"] = dict(models.paths) if models is not None else {}
    return out


def _segments(run: RunFolder) -> list[tuple[Path | None, list[int], bool]]:
    """(arc folder or None, global frame indices, whether the first frame belongs to the previous arc)."""
    if run.arc_dirs:
        return [(p, [], i > 0) for i, p in enumerate(run.arc_dirs)]
    n = run.frame_count
    chunk = 45
    return [(None, list(range(s, min(n, s + chunk))), False) for s in range(0, n, chunk)]


def _geometry_metrics(run, arc, frames, per, lpips_fn, rel_tol, first_is_shared) -> None:
    n = arc.frame_count - 1
    start = run.anchor(arc.index, size=arc.size)
    end = run.anchor(arc.index + 1, size=arc.size)
    start = frames[0] if start is None else start
    end = frames[n] if end is None else end
    for i in range(1, n):
        gt = arc_pseudo_gt(arc, i, start, end, rel_tol)
        for k, v in masked_scores(frames[i], gt, lpips_fn).items():
            per[k].append(v)
    for t in range(1, n + 1):
        flow, valid = reprojection_flow(arc.depth[t], arc.cameras[t], arc.depth[t - 1], arc.cameras[t - 1], rel_tol)
        l1, wpsnr = warp_error(frames[t - 1], frames[t], flow, valid)
        per["warp_error"].append(l1)
        per["warp_psnr"].append(capped(wpsnr, PSNR_CAP_DB))
        epe, u1, u3 = flow_agreement(frames[t - 1], frames[t], arc.flow_forward[t - 1], arc.flow_forward_valid[t - 1])
        per["flow_epe"].append(epe)
        per["flow_under_1px"].append(u1)
        per["flow_under_3px"].append(u3)
    w, h = arc.size
    tol = edge_tolerance(w, h)
    for i in range(1 if first_is_shared else 0, n + 1):
        gen = canny_edges(frames[i])
        geo = geometry_edges(arc.edge_maps[i])
        for suffix, t in (("", tol), ("_2px", 2.0)):
            scores = edge_alignment(gen, geo, t)
            per[f"edge_precision{suffix}"].append(scores["precision"])
            per[f"edge_recall{suffix}"].append(scores["recall"])
            per[f"edge_f{suffix}"].append(scores["f"])
            if not suffix:
                per["edge_chamfer"].append(scores["chamfer"])


def _embed(models, have, frames, embeds) -> None:
    from videofrom3d.eval.learned import clip_image_embeds, dino_cls

    if have["clip_i"] or have["background_consistency"]:
        if have["clip_i"]:
            embeds["clip_b"].append(clip_image_embeds(models.clip_b, frames, antialias=True))
        if have["background_consistency"]:
            embeds["clip_b_vbench"].append(clip_image_embeds(models.clip_b, frames, antialias=False))
    if have["clip_a"] or have["clip_i_l14"]:
        embeds["clip_l"].append(clip_image_embeds(models.clip_l, frames, antialias=True))
    if have["subject_consistency"]:
        embeds["dino"].append(dino_cls(models.dino, frames))
    if have["musiq"]:
        from videofrom3d.eval.musiq import musiq_scores

        embeds["musiq"].append(musiq_scores(models.musiq, frames))


def _model_scores(models, have, embeds, style_img) -> dict:
    import torch

    from videofrom3d.eval.learned import clip_image_embeds, vbench_consistency

    out = {}
    cat = {k: torch.cat(v) for k, v in embeds.items() if v}
    if have["clip_a"] and "clip_l" in cat:
        dev = next(models.aesthetic.parameters()).device
        with torch.no_grad():
            out["clip_a"] = float(models.aesthetic(cat["clip_l"].to(dev)).float().mean())
    if have["clip_i"] and "clip_b" in cat:
        ref = clip_image_embeds(models.clip_b, style_img[None], antialias=True)
        out["clip_i"] = float((cat["clip_b"] @ ref[0]).mean())
    if have["clip_i_l14"] and "clip_l" in cat:
        ref = clip_image_embeds(models.clip_l, style_img[None], antialias=True)
        out["clip_i_l14"] = float((cat["clip_l"] @ ref[0]).mean())
    if have["subject_consistency"] and "dino" in cat:
        out["subject_consistency"] = vbench_consistency(cat["dino"])[0]
    if have["background_consistency"] and "clip_b_vbench" in cat:
        out["background_consistency"] = vbench_consistency(cat["clip_b_vbench"])[0]
    if have["musiq"] and "musiq" in cat:  # mean per-frame score, 0-100 (VBench imaging quality x 100)
        out["musiq"] = float(cat["musiq"].double().mean())
    return out


def evaluate_runs(works, style=None, models_dir=None, overrides=None, use_models: bool = True,
                  device: str | None = None, progress: bool = True) -> list[dict]:
    """Evaluate several work folders with one set of loaded models; a progress bar over all frames."""
    from tqdm import tqdm

    runs = [RunFolder(Path(w), Path(style) if style else None) for w in works]
    for r in runs:
        r.check()
    models = None
    if use_models:
        try:
            from videofrom3d.eval.learned import load_models
        except ImportError as e:  # base install without torch
            models = None
            torch_missing = f"needs the diffusion extra (torch, transformers): {e}"
        else:
            models = load_models(MODEL_METRICS, models_dir=models_dir, overrides=overrides, device=device)
            torch_missing = None
    results = []
    total = sum(r.frame_count for r in runs)
    with tqdm(total=total, desc="eval", unit="frame", disable=not progress) as bar:
        for r in runs:
            bar.set_postfix_str(r.name)
            res = evaluate_run(r, models=models, progress=bar)
            if use_models and models is None:
                for m in res["missing"]:
                    if m["metric"] in MODEL_METRICS:
                        m["reason"] = torch_missing
            results.append(res)
    return results
