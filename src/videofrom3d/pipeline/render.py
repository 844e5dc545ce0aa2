"""``render()``: job -> plan -> prepare -> align -> anchors -> inbetween -> video, through a resumable work
folder (layout: :mod:`videofrom3d.io.workfolder`).

Reuse: every item is recorded in the manifest with the hash of what it reads and of what it wrote; a re-run
recomputes exactly the items whose input hash changed or whose output is missing or altered. Outputs are
written under temporary names and renamed, and recorded only after that, so a run killed at any point
resumes where it stopped and ends with the same bytes as an uninterrupted run.

Arc-level editing: ``reseed_anchor=(K, SEED)`` or ``anchor_images={K: path}`` redo anchor K and the arcs
K-1 and K that touch it (:mod:`videofrom3d.pipeline.edits`); ``reset_edits=True`` drops remembered edits.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from videofrom3d.engines import STAGES
from videofrom3d.events import make_event, stage_fraction
from videofrom3d.io.manifest import digest_json
from videofrom3d.pipeline import stages
from videofrom3d.pipeline.context import StageResult
from videofrom3d.pipeline.edits import PipelineError
from videofrom3d.pipeline.plan import choose_engine, plan


@dataclass
class RenderResult:
    work_dir: Path
    engine: str
    engine_reason: str
    models: str
    stages: list[StageResult]
    manifest: Path
    video: Path | None = None
    frames: Path | None = None
    anchors: list[Path] = field(default_factory=list)
    arcs: list[Path] = field(default_factory=list)

    def stage(self, name: str) -> StageResult:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    @property
    def redone(self) -> dict[str, list[str]]:
        return {s.name: list(s.ran) for s in self.stages}

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.stages)

    def summary(self) -> str:
        """The closing table: each stage's time, what ran or was reused, and where it wrote."""
        rows = [f"{'stage':<10} {'time':>8}  {'ran':>4} {'reused':>6}  output"]
        for s in self.stages:
            where = _short_outputs(s.outputs, self.work_dir)
            rows.append(f"{s.name:<10} {s.seconds:>7.1f}s  {len(s.ran):>4} {len(s.reused):>6}  {where}{s.note}")
        rows.append(f"{'total':<10} {self.seconds:>7.1f}s")
        rows.append(f"engine: {self.engine} ({self.engine_reason})")
        rows.append(f"work folder: {self.work_dir}")
        if self.video is not None:
            rows.append(f"video: {self.video}")
        rows.append(f"manifest: {self.manifest}")
        return "\n".join(rows)


def _short_outputs(paths: list[Path], work: Path) -> str:
    if not paths:
        return "-"
    rel = [str(p.relative_to(work)) if p.is_relative_to(work) else str(p) for p in paths]
    return rel[0] if len(rel) == 1 else f"{rel[0]} .. {rel[-1]} ({len(rel)})"


def render(
    job,
    until: str = "video",
    engine: str = "auto",
    models: str = "real",
    reseed_anchor=None,
    anchor_images=None,
    export_official: str | Path | None = None,
    progress: bool = True,
    with_noise: bool | None = None,
    reset_edits: bool = False,
    log: Callable[[str], None] | None = None,
    force: bool = False,
    events: Callable[[dict], None] | None = None,
    style_cache: str | Path | None = None,
) -> RenderResult:
    """Run the stages up to ``until`` (``prepare``, ``align``, ``anchors``, ``inbetween`` or ``video``),
    reusing what the work folder already holds for the same inputs.

    ``engine``: ``auto`` | ``preview`` | ``diffusion`` | a registered engine (auto prints which it chose and
    why). ``models``: ``real`` weights or ``tiny-random`` models (a smoke test of the diffusion code path).
    ``reseed_anchor``: ``(K, SEED)`` or a list of them; ``anchor_images``: ``{K: image path}`` or a list of
    pairs; both redo anchor K and the arcs whose inputs changed (README "Resume and arc-level edits"). ``export_official``: also write the
    prepared arcs in the authors' folder layout there. ``with_noise``: compute the warped noise in
    ``prepare`` (default: when the engine reads it or an official export is asked for). ``log`` receives
    the lines the command prints (default: stdout). ``force``: go on when the memory or disk estimate
    exceeds what the machine has. A run that fails before any item is done removes the work folder it
    made (a later failure leaves it resumable). ``events`` receives progress events
    (:mod:`videofrom3d.events`: one per stage start and per item or frame). ``style_cache``: a folder of
    aligned styles shared by several work folders (:mod:`~videofrom3d.pipeline.style_cache`)."""
    if until not in STAGES:
        raise PipelineError(f"until must be one of {', '.join(STAGES)}, got {until!r}")
    log = log or (lambda s: print(s, flush=True))
    chosen, reason = choose_engine(engine, models, job)
    created = not Path(job.work_dir).exists()
    ctx = plan(job, chosen, reason, models, until, (reseed_anchor, anchor_images, reset_edits), progress, log,
               force=force, with_noise=with_noise)
    ctx.events = events
    ctx.style_cache = Path(style_cache) if style_cache is not None else None
    log(f"engine: {chosen} ({reason})")
    steps = {
        "prepare": lambda: stages.prepare(ctx, with_noise, export_official),  # paper 3.1
        "align": lambda: stages.align(ctx),  # paper 3.2, distribution alignment
        "anchors": lambda: stages.anchors(ctx),  # paper 3.2, SAG
        "inbetween": lambda: stages.inbetween(ctx),  # paper 3.3, GGI
        "video": lambda: stages.video(ctx),
    }
    results = []
    try:
        for name in STAGES[: STAGES.index(until) + 1]:
            ctx.stage_name = name
            if events is not None:
                events(make_event("progress", stage=name, fraction=stage_fraction(name, 0.0)))
            t0 = time.perf_counter()
            res = steps[name]()
            res.seconds = time.perf_counter() - t0
            stage_key = digest_json(sorted((i, rec.get("key")) for i, rec in ctx.manifest.items(name).items()))
            ctx.manifest.finish_stage(name, res.ran, res.reused, res.seconds, key=stage_key)
            ctx.manifest.note_redone(name, res.ran)
            results.append(res)
    except BaseException:
        if created and not any(ctx.manifest.items(s) for s in STAGES):
            shutil.rmtree(ctx.work.root, ignore_errors=True)  # nothing done: no manifest of nothing
        raise
    finally:
        ctx.close()  # models and arcs are freed on errors too
    work = ctx.work
    return RenderResult(
        work_dir=work.root, engine=chosen, engine_reason=reason, models=models, stages=results,
        manifest=ctx.manifest.path,
        video=work.video if until == "video" else None,
        frames=work.frames_dir if until == "video" else None,
        anchors=[work.anchor(k) for k in range(ctx.n_anchors)] if STAGES.index(until) >= 2 else [],
        arcs=[work.arc(k) for k in range(ctx.n_arcs)],
    )


def prepare(job, **kw) -> RenderResult:
    """Edge maps, depth, flows (and warped noise) of every arc: ``render(job, until="prepare")``."""
    return render(job, until="prepare", **kw)


def align(job, **kw) -> RenderResult:
    """The style LoRA (diffusion) or the style palette (preview): ``render(job, until="align")``."""
    return render(job, until="align", **kw)


def generate_anchors(job, **kw) -> RenderResult:
    """Anchor views: ``render(job, until="anchors")``."""
    return render(job, until="anchors", **kw)


def inbetween(job, **kw) -> RenderResult:
    """Frames of every arc: ``render(job, until="inbetween")``."""
    return render(job, until="inbetween", **kw)
