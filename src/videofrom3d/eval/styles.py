"""Compare the style modes (``[align] mode = "lora" | "quick" | "reference"``) on one job
(``videofrom3d eval-styles``; research/next-speed-style.md 1.3).

Each mode renders the same job (same seed, trajectory, anchors settings) into its own sibling work folder,
``<work>-style-<mode>``, from a cold shared cache (a fresh temporary ``$VIDEOFROM3D_CACHE``), so its times
are those of a first job. Per mode the table gives:

- time to first video (the whole render) and the align stage's share, peak memory (CUDA: the allocator's
  peak; CPU: the process's resident set, sampled);
- style: CLIP-I (ViT-B/32) of the frames to the style image when its weights are here, and the CIELAB
  sliced-Wasserstein colour distance of the anchors and of the frames to it (always);
- cross-anchor consistency along the mesh flow: anchor k-1 warped into anchor k's view with the arc's exact
  end->start flow, PSNR over co-visible pixels (what SAG and a consistent style make high);
- edge agreement: F-score of the Canny edges of the anchors and of the frames against the input edge maps.

``until="anchors"`` stops each render after the anchors (time to first anchors; no video columns).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from videofrom3d.errors import VideoFrom3DError
from videofrom3d.eval.consistency import (
    canny_edges,
    color_distances,
    edge_alignment,
    edge_tolerance,
    geometry_edges,
    small,
    to_lab,
    warp_error,
)
from videofrom3d.eval.metrics import nanmean

MODES = ("lora", "quick", "reference")
COLUMNS = (  # key, header, format
    ("mode", "mode", "{}"),
    ("seconds", "time to first video s", "{:.1f}"),
    ("align_seconds", "align s", "{:.1f}"),
    ("peak_mib", "peak MiB", "{:.0f}"),
    ("clip_i", "CLIP-I", "{:.3f}"),
    ("anchor_color_swd", "anchor colour SWD", "{:.2f}"),
    ("color_swd", "video colour SWD", "{:.2f}"),
    ("anchor_consistency_psnr", "anchor consistency PSNR", "{:.2f}"),
    ("anchor_edge_f", "anchor edge F", "{:.3f}"),
    ("edge_f", "video edge F", "{:.3f}"),
)


class StyleModeError(VideoFrom3DError, ValueError):
    """An unknown style mode name."""


class PeakMemory:
    """Peak memory of a block: CUDA's allocator peak when a GPU is in use, else the process's resident set
    sampled every 20 ms (Linux ``/proc/self/statm``). ``mib`` after the block; ``kind`` says which."""

    def __init__(self):
        self.mib = 0.0
        self.kind = "rss"
        self._stop = threading.Event()

    def __enter__(self):
        try:
            import torch

            if torch.cuda.is_available():
                self.kind = "cuda"
                torch.cuda.reset_peak_memory_stats()
                return self
        except ImportError:
            pass
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        page = os.sysconf("SC_PAGE_SIZE")
        while not self._stop.is_set():
            try:
                rss = int(Path("/proc/self/statm").read_text().split()[1]) * page / 2**20
            except (OSError, ValueError, IndexError):
                import resource

                rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            self.mib = max(self.mib, rss)
            self._stop.wait(0.02)

    def __exit__(self, *exc):
        if self.kind == "cuda":
            import torch

            self.mib = torch.cuda.max_memory_allocated() / 2**20
        else:
            self._stop.set()
            self._thread.join()
        return False


def mode_job(job, mode: str):
    """``job`` with ``[align] mode = mode`` and its work folder ``<work>-style-<mode>``."""
    options = dict(job.stage_options)
    options["align"] = tuple(sorted({**job.options("align"), "mode": mode}.items()))
    work = job.work_dir
    return dataclasses.replace(job, stage_options=tuple(sorted(options.items())),
                               out=work.with_name(f"{work.name}-style-{mode}"))


def anchor_metrics(work, style_image: np.ndarray | None) -> dict:
    """Anchor-level scores of a rendered work folder (see the module docstring)."""
    import cv2

    from videofrom3d.chaining import anchor_view
    from videofrom3d.io.images import read_image
    from videofrom3d.io.workfolder import WorkFolder
    from videofrom3d.prepare.arcs import PreparedArc

    wf = WorkFolder(work)
    anchors = []
    k = 0
    while wf.anchor(k).is_file():
        anchors.append(read_image(wf.anchor(k)))
        k += 1
    arcs = [PreparedArc.load(wf.arc(i), with_noise=False) for i in range(max(0, len(anchors) - 1))]
    if not anchors or not arcs:
        return {}
    n = arcs[0].frame_count - 1
    w, h = arcs[0].size

    def at_job_size(img):
        return img if img.shape[:2] == (h, w) else cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)

    anchors = [at_job_size(a) for a in anchors]
    psnrs, edges_f, swd = [], [], []
    for k, anchor in enumerate(anchors):
        arc_k, frame = anchor_view(k, n)
        edge_map = arcs[arc_k].edge_maps[frame]
        edges_f.append(edge_alignment(canny_edges(anchor), geometry_edges(edge_map), edge_tolerance(w, h))["f"])
        if style_image is not None:
            swd.append(color_distances(to_lab(small(anchor)), to_lab(small(style_image)))["swd"])
        if k >= 1:
            arc = arcs[k - 1]
            psnrs.append(warp_error(anchors[k - 1], anchor, arc.flow_end_to_start, arc.flow_end_to_start_valid)[1])
    return {"anchor_consistency_psnr": nanmean(psnrs), "anchor_edge_f": nanmean(edges_f),
            "anchor_color_swd": nanmean(swd) if swd else None, "anchors": len(anchors)}


def frame_metrics(work, style_image: np.ndarray | None, every: int = 1) -> dict:
    """Video-level scores of a rendered work folder: colour SWD of the frames to the style image and the
    frames' edge F against the edge maps (every ``every``-th frame of each arc)."""
    from videofrom3d.io.images import read_image
    from videofrom3d.io.workfolder import WorkFolder
    from videofrom3d.prepare.arcs import PreparedArc

    wf = WorkFolder(work)
    swd, edges_f = [], []
    lab_ref = to_lab(small(style_image)) if style_image is not None else None
    k = 0
    while wf.arc_frames(k).is_dir() and wf.arc(k).is_dir():
        arc = PreparedArc.load(wf.arc(k), with_noise=False)
        w, h = arc.size
        for i in range(0, arc.frame_count, every):
            frame = read_image(wf.arc_frame(k, i))
            edges_f.append(edge_alignment(canny_edges(frame), geometry_edges(arc.edge_maps[i]),
                                          edge_tolerance(w, h))["f"])
            if lab_ref is not None:
                swd.append(color_distances(to_lab(small(frame)), lab_ref)["swd"])
        k += 1
    return {"color_swd": nanmean(swd) if swd else None, "edge_f": nanmean(edges_f) if edges_f else None}


def compare_style_modes(job, modes=MODES, models: str = "tiny-random", until: str = "video", eval_models: bool = False,
                        models_dir=None, progress: bool = False, cold_cache: bool = True, log=print) -> list[dict]:
    """Render ``job`` once per style mode and score each (module docstring); one dict per mode.
    ``eval_models``: also CLIP-I of the frames (:func:`videofrom3d.eval.evaluate_runs`, its weights)."""
    from videofrom3d.io.images import read_image
    from videofrom3d.pipeline import render

    bad = [m for m in modes if m not in MODES]
    if bad:
        raise StyleModeError(f"unknown style mode(s) {bad}; known: {', '.join(MODES)}")
    style_path = job.styles[0].image if job.styles else None
    style_image = read_image(style_path) if style_path else None
    rows = []
    for mode in modes:
        mj = mode_job(job, mode)
        with tempfile.TemporaryDirectory(prefix="videofrom3d-cache-") as cache:
            before = os.environ.get("VIDEOFROM3D_CACHE")
            if cold_cache:
                os.environ["VIDEOFROM3D_CACHE"] = cache
            try:
                log(f"style mode {mode}: rendering into {mj.work_dir}")
                with PeakMemory() as peak:
                    t0 = time.perf_counter()
                    result = render(mj, until=until, engine="diffusion", models=models, progress=progress,
                                    log=lambda s: None)
                    seconds = time.perf_counter() - t0
            finally:
                if cold_cache:
                    if before is None:
                        os.environ.pop("VIDEOFROM3D_CACHE", None)
                    else:
                        os.environ["VIDEOFROM3D_CACHE"] = before
        stage_s = {s.name: s.seconds for s in result.stages}
        clip_i = None
        if eval_models and until == "video":
            from videofrom3d.eval import evaluate_runs

            clip_i = evaluate_runs([mj.work_dir], style=style_path, models_dir=models_dir, progress=False)[0].get("clip_i")
        rows.append({"mode": mode, "work": str(mj.work_dir), "models": models, "until": until, "seconds": seconds,
                     "align_seconds": stage_s.get("align"), "peak_mib": peak.mib, "peak_kind": peak.kind,
                     "clip_i": clip_i, **frame_metrics(mj.work_dir, style_image),
                     **anchor_metrics(mj.work_dir, style_image)})
    return rows


def to_markdown(rows: list[dict]) -> str:
    """The comparison as a Markdown table, with a line that says what the numbers can mean."""
    head = "| " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = []
        for key, _, fmt in COLUMNS:
            v = r.get(key)
            cells.append("n/a" if v is None else fmt.format(v))
        lines.append("| " + " | ".join(cells) + " |")
    if rows and rows[0].get("models") == "tiny-random":
        lines.append("")
        lines.append("tiny-random models: outputs are noise; these numbers test the plumbing and the relative cost "
                     "of the modes' code paths, not style quality (run with --models real for that).")
    if rows and rows[0].get("until") != "video":
        lines.append(f"rendered until {rows[0].get('until')}: the time column is the time to the first {rows[0].get('until')}.")
    if rows:
        lines.append(f"peak memory: {'CUDA allocator peak' if rows[0].get('peak_kind') == 'cuda' else 'process RSS'}; "
                     "CLIP-I needs the clip_b weights (--eval-models).")
    return "\n".join(lines) + "\n"
