"""The five stages of a render, one function each over a :class:`RunContext`.

Every item (an arc, its noise, the style, an anchor, an arc's frames, the video) has an input hash (its key:
the job fields it reads, the hashes of its upstream outputs, the code version, the engine's cache key) and
goes through :meth:`Manifest.cached`: reused when its key and output hash match, else made and recorded.
Every stage reads its upstream outputs back from disk, never from a float copy an interrupted run would not
have, so a killed run resumes to the same bytes.
"""

from __future__ import annotations

import shutil
import warnings
from functools import partial
from pathlib import Path

import numpy as np

from videofrom3d.chaining import anchor_view, arc_seed, arc_start, use_replacement
from videofrom3d.io.atomic import atomic_path
from videofrom3d.io.images import read_image, write_image
from videofrom3d.io.manifest import digest_file, digest_json, json_ready
from videofrom3d.io.video import frames_to_mp4
from videofrom3d.io.workfolder import ARC_EXTRAS
from videofrom3d.job import anchor_prompt
from videofrom3d.pipeline.context import RunContext, StageResult, derive_seed
from videofrom3d.pipeline.edits import PipelineError, edit_image, remove_stale_unedited
from videofrom3d.pipeline.style_cache import align_key, copy_style

# ------------------------------------------------------------------------------------------------ prepare


def _scene_files(path: Path) -> list[Path]:
    """The scene file and the side files its geometry may live in (the .bin buffers beside a .gltf)."""
    files = [path]
    if path.suffix.lower() == ".gltf":
        files += sorted(path.parent.glob("*.bin"))
    return files


class _SceneOnce:
    """The scene and its G-buffer renderer, loaded on the first arc that must be prepared."""

    def __init__(self, job, backend: str, edge_choice, scene=None):
        self.job, self.backend, self.edge_choice = job, backend, edge_choice
        self._scene, self._renderer, self._hed = scene, None, None

    def scene(self):
        if self._scene is None:
            from videofrom3d.scene.mesh import load_scene

            s = self.job.scene
            self._scene = load_scene(s.path, up=s.up, unit_scale=s.unit_scale)
        return self._scene

    def renderer(self):
        if self._renderer is None:
            from videofrom3d.prepare import make_renderer

            self._renderer = make_renderer(self.scene(), backend=self.backend)
        return self._renderer

    def hed(self):
        """The HED detector the edge choice asks for (None for drawn lines)."""
        if self._hed is None:
            from videofrom3d.prepare.arcs import make_hed_detector

            self._hed = make_hed_detector(self.edge_choice)
        return self._hed


def prepare(ctx: RunContext, with_noise: bool | None, export_official) -> StageResult:
    """Edge maps, G-buffers and exact flows of every arc (paper 3.1), and its warped noise when needed."""
    job, cfg, res = ctx.job, ctx.configs["prepare"], StageResult("prepare")
    need_noise = (ctx.spec.needs_noise if with_noise is None else bool(with_noise)) or export_official is not None
    scene_digest = digest_json([digest_file(p) for p in _scene_files(Path(job.scene.path))]
                               + [job.scene.up, job.scene.unit_scale])
    loaded = _SceneOnce(job, cfg.backend, ctx.edge_choice, ctx.scene)
    cfg_dict = json_ready(_asdict(cfg))
    cfg_dict.pop("preview", None)  # the preview mp4 is a by-product, not an input of later stages
    previews = _Previews(ctx)
    try:
        for k in ctx.bar(range(ctx.n_arcs), "prepare", total=ctx.n_arcs):
            a, b = ctx.ranges[k]
            cams = ctx.cameras[a : b + 1]
            key = digest_json({
                **ctx.common("prepare"), "scene": scene_digest, "cameras": [c.to_dict() for c in cams],
                "size": [job.width, job.height], "config": cfg_dict, "index": k, "first_frame": a,
                "edges": ctx.edge_choice.record(),
            })
            item = f"arc{k:03d}"

            def make(k=k, a=a, cams=cams, item=item):
                from videofrom3d.prepare import prepare_arc
                from videofrom3d.prepare.arcs import write_arc_preview

                with warnings.catch_warnings():  # the plan's camera checks named every frame, one line per kind
                    warnings.filterwarnings("ignore", message=r"arc \d+: camera (sees nothing|is inside)")
                    arc = prepare_arc(loaded.renderer(), loaded.scene(), cams, cfg, index=k, first_frame=a,
                                      hed=loaded.hed())
                arc.save(ctx.work.arc(k))
                if cfg.preview:
                    previews.submit(item, write_arc_preview, arc, ctx.work.arc_preview(k), fps=job.fps)

            ran = ctx.manifest.cached("prepare", item, key, ctx.work.arc(k), make, exclude=ARC_EXTRAS)
            res.add(item, ran)
            ctx.digests[item] = ctx.manifest.item("prepare", item)["output"]
            if cfg.preview and not ran and not ctx.work.arc_preview(k).is_file():  # e.g. killed before it
                previews.submit(item, _arc_preview_from_disk, ctx, k)
            if need_noise:
                res.add(f"noise{k:03d}", _noise(ctx, k, preview=cfg.preview, previews=previews))
            if ctx.anchor_size is not None:
                res.add(f"views{k:03d}", _anchor_views(ctx, k, loaded))
            res.outputs.append(ctx.work.arc(k))
    except BaseException:
        previews.wait(raise_error=False)  # the error in hand is the one to report
        raise
    previews.wait()
    ctx.scene_extent = _scene_extent(ctx, scene_digest, loaded)
    if ctx.manifest.stage("prepare").get("edges") != ctx.edge_choice.record():
        ctx.manifest.stage("prepare")["edges"] = ctx.edge_choice.record()  # doctor and the report say which
        ctx.manifest.save()
    if ctx.edge_choice.notice:
        ctx.log(ctx.edge_choice.notice)
    if need_noise:
        from videofrom3d.prepare.noise_warp import release_buffers

        release_buffers()  # the noise kernel keeps its buffers from arc to arc
    ctx.prune("prepare", "arc", ctx.n_arcs, ctx.work.arc)
    ctx.prune("prepare", "noise", ctx.n_arcs, ctx.work.noise)
    ctx.prune("prepare", "views", ctx.n_arcs, ctx.work.anchor_views)
    if export_official is not None:
        from videofrom3d.prepare.arcs import PreparedArc
        from videofrom3d.prepare.official import export_official as export

        arcs = [PreparedArc.load(ctx.work.arc(k)) for k in range(ctx.n_arcs)]
        export(arcs, loaded.scene(), Path(export_official), cfg, renderer=loaded._renderer, hed=loaded.hed())
        res.outputs.append(Path(export_official))
    return res


class _Previews:
    """The preview mp4s (by-products no stage reads) written on one background thread, so their colouring
    and encoding overlap the next work (the noise, the next arc). :meth:`wait` joins them; an item whose
    preview failed is dropped from the manifest (a re-run makes it again) and the error raised."""

    def __init__(self, ctx: RunContext):
        self.ctx, self.jobs, self.pool = ctx, [], None

    def submit(self, item: str, fn, *args, **kwargs) -> None:
        if self.pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="preview")
        self.jobs.append((item, self.pool.submit(fn, *args, **kwargs)))

    def wait(self, raise_error: bool = True) -> None:
        if self.pool is None:
            return
        self.pool.shutdown(wait=True)
        failed = [(item, job.exception()) for item, job in self.jobs if job.exception() is not None]
        self.jobs, self.pool = [], None
        if failed:
            for item, _ in failed:
                self.ctx.manifest.items("prepare").pop(item, None)
            self.ctx.manifest.save()
            if raise_error:
                raise failed[0][1]


def _asdict(cfg) -> dict:
    import dataclasses

    return dataclasses.asdict(cfg)


def _scene_extent(ctx: RunContext, scene_digest: str, loaded: _SceneOnce) -> float:
    """The scene's bounding-box diagonal, kept in the manifest so a run that reuses every arc loads no mesh."""
    rec = ctx.manifest.stage("prepare")
    if not rec.get("scene") or rec["scene"].get("digest") != scene_digest:
        lo, hi = loaded.scene().bounds
        rec["scene"] = {"digest": scene_digest, "extent": float(np.linalg.norm(np.asarray(hi) - np.asarray(lo)))}
        ctx.manifest.save()
    return float(rec["scene"]["extent"])


def _noise(ctx: RunContext, k: int, preview: bool, previews: _Previews | None = None) -> bool:
    """Warped noise of arc k into ``arcNNN/noise.npy`` (its own item, so a preview run's arcs gain noise later
    without being prepared again). True when it ran."""
    cfg, item, path = ctx.configs["noise"], f"noise{k:03d}", ctx.work.noise(k)
    seed = derive_seed(ctx.job.seed, "noise", k)
    key = digest_json({**ctx.common("noise"), "arc": ctx.digests[f"arc{k:03d}"], "config": json_ready(_asdict(cfg)),
                       "seed": seed, "frames_per_arc": ctx.job.frames_per_arc})

    def make():
        from videofrom3d.prepare.arcs import load_flows
        from videofrom3d.prepare.noise_warp import warped_noise_for_arc, write_noise_preview

        f = load_flows(ctx.work.arc(k), end_to_start=False)
        flows, valid = f["forward"], f["forward_valid"]
        noise = warped_noise_for_arc(flows, ctx.job.frames_per_arc, cfg, seed, valid=valid)
        with atomic_path(path) as tmp:
            np.save(tmp, np.asarray(noise, np.float32).astype(np.float16))
        if preview:  # see it move with the camera
            if previews is None:
                write_noise_preview(noise, path.with_suffix(".mp4"), fps=4.0)
            else:
                previews.submit(item, write_noise_preview, noise, path.with_suffix(".mp4"), fps=4.0)
        return {"seed": seed}

    ran = ctx.manifest.cached("prepare", item, key, path, make)
    ctx.digests[item] = ctx.manifest.item("prepare", item)["output"]
    if preview and previews is not None and not ran and not path.with_suffix(".mp4").is_file():
        from videofrom3d.prepare.noise_warp import write_noise_preview

        previews.submit(item, lambda: write_noise_preview(np.load(path).astype(np.float32), path.with_suffix(".mp4"),
                                                          fps=4.0))
    return ran


def _arc_preview_from_disk(ctx: RunContext, k: int) -> None:
    from videofrom3d.prepare.arcs import PreparedArc, write_arc_preview

    write_arc_preview(PreparedArc.load(ctx.work.arc(k), with_noise=False), ctx.work.arc_preview(k), fps=ctx.job.fps)


def _anchor_views(ctx: RunContext, k: int, loaded: _SceneOnce) -> bool:
    """Arc k's end views at the engine's anchor size (edge maps and the end->start flow rendered at that size,
    paper 3.2: the authors' FLUX anchors are 1.5x the video) into ``anchor_views.npz``. True when it ran."""
    item, path = f"views{k:03d}", ctx.work.anchor_views(k)
    a, b = ctx.ranges[k]
    key = digest_json({**ctx.common("prepare"), "arc": ctx.digests[f"arc{k:03d}"], "size": list(ctx.anchor_size),
                       "edges": ctx.edge_choice.record()})

    def make():
        from videofrom3d.prepare.anchor_inputs import anchor_view_inputs

        views = anchor_view_inputs(loaded.renderer(), ctx.cameras[a], ctx.cameras[b], ctx.anchor_size,
                                   ctx.configs["prepare"], hed=loaded.hed())
        views.save(path)

    ran = ctx.manifest.cached("prepare", item, key, path, make)
    ctx.digests[item] = ctx.manifest.item("prepare", item)["output"]
    return ran


# ------------------------------------------------------------------------------------------------ align


def align(ctx: RunContext) -> StageResult:
    """The engine's style from the job's style images (paper 3.2: the style LoRA)."""
    res = StageResult("align")
    aligner = ctx.stage_object("align")
    path = ctx.work.align_dir / aligner.output
    key = align_key(aligner, ctx.version)

    def make():  # the aligner may return fields to record (e.g. why there is no LoRA)
        path.parent.mkdir(parents=True, exist_ok=True)
        if ctx.style_cache is not None:  # made once per style for every work folder sharing the cache
            return copy_style(ctx.style_cache, key, aligner, path)
        return aligner.align(path)

    res.add(aligner.item, ctx.manifest.cached("align", aligner.item, key, path, make))
    res.note = aligner.note
    ctx.digests["align"] = ctx.manifest.item("align", aligner.item)["output"]
    res.outputs.append(path)
    return res


# ------------------------------------------------------------------------------------------------ anchors


def anchors(ctx: RunContext) -> StageResult:
    """Anchor k from its view (:func:`anchor_view`); from k = 1 on guided by anchor k-1 *without its edit*,
    read back from disk (SAG). Every anchor uses the job's seed (the authors' "same initial noise") unless
    reseeded. Its key is its unedited input hash (``base``) plus its edit, so an edit redoes that anchor alone."""
    res, job = StageResult("anchors"), ctx.job
    engine = ctx.stage_object("anchors")
    common = {**ctx.common("anchors"), **engine.cache_key()}
    edits = ctx.manifest.edits("anchors")
    views: list[dict] = []
    ctx.anchor_base = []
    for k in ctx.bar(range(ctx.n_anchors), "anchors", total=ctx.n_anchors):
        arc_k, frame = anchor_view(k, job.frames_per_arc)
        prompt = anchor_prompt(job, k)
        prev = views[-1] if views else None
        guided = prev is not None and use_replacement(engine.replacement, k, prompt, prev["prompt"])
        view_id = [ctx.digests[f"arc{arc_k:03d}"], frame, ctx.digests.get(f"views{arc_k:03d}")]
        base = digest_json({**common, "view": view_id if ctx.anchor_size else view_id[:2], "prompt": prompt,
                            "seed": job.seed, "previous": prev["base"] if guided else None})
        view = {"k": k, "arc": arc_k, "frame": frame, "prompt": prompt, "guided": guided, "base": base,
                "edit": edits.get(str(k))}
        views.append(view)
        item, path = f"anchor{k:03d}", ctx.work.anchor(k)
        key = digest_json({"base": base, "edit": view["edit"]})
        res.add(item, ctx.manifest.cached("anchors", item, key, path, partial(_make_anchor, ctx, views, k)))
        ctx.digests[item] = ctx.manifest.item("anchors", item)["output"]
        ctx.anchor_base.append(base)
        res.outputs.append(path)
    ctx.prune("anchors", "anchor", ctx.n_anchors, ctx.work.anchor)
    remove_stale_unedited(ctx.work, {ctx.work.unedited_anchor(v["k"], v["base"]) for v in views if v["edit"]})
    return res


def _make_anchor(ctx: RunContext, views: list[dict], k: int) -> dict:
    """Write anchor k (its edit image, or generated with its seed) -> what the manifest records beside it."""
    view, path, seed = views[k], ctx.work.anchor(k), ctx.job.seed
    edit = view["edit"]
    unedited = ctx.work.unedited_anchor(k, view["base"])
    if edit and not unedited.is_file() and ctx.manifest.is_current(
        "anchors", f"anchor{k:03d}", digest_json({"base": view["base"], "edit": None}), path, verify=True
    ):  # keep the unedited anchor: the anchor after it is guided by it
        unedited.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(unedited) as tmp:
            shutil.copyfile(path, tmp)
    if edit and "image" in edit:
        image = edit_image(ctx.work, k, edit, ctx.anchor_size or ctx.job_size)
    else:
        seed = int(edit["seed"]) if edit and "seed" in edit else seed
        image = _generate_anchor(ctx, views, k, seed)
    write_image(path, image)
    return {"seed": seed, "prompt": view["prompt"], "edit": edit}


def _generate_anchor(ctx: RunContext, views: list[dict], k: int, seed: int) -> np.ndarray:
    """Anchor k from its view, guided by anchor k-1 *without its edit*, read back from disk: an edit applies
    to its own anchor only, so the anchors after it come out the same whether made before or after it."""
    view, engine = views[k], ctx.stage_object("anchors")
    if ctx.anchor_size is None:  # the engine works at the job size, from the prepared arcs
        guide = engine.guide(_unedited_anchor(ctx, views, k - 1), ctx.load_arc(k - 1)) if view["guided"] else None
        return engine.render_anchor(ctx.load_arc(view["arc"]), view["frame"], view["prompt"], seed, guide)
    from videofrom3d.prepare.anchor_inputs import AnchorViews

    own = AnchorViews.load(ctx.work.anchor_views(view["arc"]))  # for k >= 1 that is arc k-1, the guide's too
    guide = None
    if view["guided"]:  # anchor k-1 warped along arc k-1's end->start flow made at the anchor size
        guide = engine.guide(_unedited_anchor(ctx, views, k - 1), ctx.load_arc(k - 1),
                             flow=(own.flow_end_to_start, own.flow_end_to_start_valid))
    edge = own.edge_start if view["frame"] == 0 else own.edge_end
    return engine.render_anchor(ctx.load_arc(view["arc"]), view["frame"], view["prompt"], seed, guide, edge_map=edge)


def _unedited_anchor(ctx: RunContext, views: list[dict], k: int) -> np.ndarray:
    """Anchor k as it is without edits: its file when it has none, else the kept unedited copy (generated
    now, once, when an edit was given before the anchor was ever made)."""
    if not views[k]["edit"]:
        return read_image(ctx.work.anchor(k))
    path = ctx.work.unedited_anchor(k, views[k]["base"])
    if not path.is_file():
        write_image(path, _generate_anchor(ctx, views, k, ctx.job.seed))
    return read_image(path)


# ------------------------------------------------------------------------------------------------ inbetween


def inbetween(ctx: RunContext) -> StageResult:
    """Frames of arc k from its start (:func:`arc_start`: anchor k, or arc k-1's last frame as written) to
    anchor k+1, with seed ``job.seed + k`` (paper 3.3).

    An arc's key is its unedited chain (prepared arc and noise, the anchors' unedited hashes, the previous
    arc's for generated chaining, prompt, seed, options) plus the hashes of what it reads as written: the two
    anchors it touches and, when it starts from the previous arc, that arc's frames. An anchor edit redoes
    the two arcs at that anchor, and with generated chaining every arc after them."""
    res, job = StageResult("inbetween"), ctx.job
    ctx.close_stage_object("anchors")  # one diffusion model in memory at a time
    engine = ctx.stage_object("inbetween")
    common = {**ctx.common("inbetween"), **engine.cache_key()}
    prompt = _inbetween_prompt(ctx, engine)
    prev_base = None
    for k in ctx.bar(range(ctx.n_arcs), "inbetween", total=ctx.n_arcs):
        source = arc_start(k, engine.chaining)
        noise = ctx.digests.get(f"noise{k:03d}") if ctx.spec.needs_noise else None
        start_token = ctx.anchor_base[k] if source == "anchor" else ["generated", engine.chaining.frame, prev_base]
        base = digest_json({**common, "arc": [ctx.digests[f"arc{k:03d}"], noise], "start": start_token,
                            "end": ctx.anchor_base[k + 1], "prompt": prompt, "seed": arc_seed(job.seed, k)})
        # the hashes of what it reads: both anchors as written (with their edits) and, when it starts from the
        # previous arc, that arc's frames as written (an anchor edit changes every later arc then)
        start_frames = ctx.digests[f"frames{k - 1:03d}"] if source != "anchor" else None
        key = digest_json({"base": base, "anchors": [ctx.digests[f"anchor{k:03d}"], ctx.digests[f"anchor{k + 1:03d}"]],
                           "start_frames": start_frames})
        item, folder, tail = f"arc{k:03d}", ctx.work.arc_frames(k), ctx.work.tail(k)
        if _keeps_tails(engine) and not tail.is_file():  # the next arc starts from this tail: made together
            ctx.manifest.items("inbetween").pop(item, None)
        ran = ctx.manifest.cached("inbetween", item, key, folder,
                                  partial(_make_arc_frames, ctx, engine, k, source, prompt))
        res.add(item, ran)
        ctx.digests[f"frames{k:03d}"] = ctx.manifest.item("inbetween", item)["output"]
        res.outputs.append(folder)
        prev_base = base
    ctx.prune("inbetween", "arc", ctx.n_arcs, ctx.work.arc_frames)
    return res


def _make_arc_frames(ctx: RunContext, engine, k: int, source: str, prompt: str) -> dict:
    n = ctx.job.frames_per_arc
    arc = ctx.load_arc(k)
    size = ctx.job_size  # anchors made at another size are resized for the inbetween stage
    start = {"anchor": lambda: read_image(ctx.work.anchor(k), size=size),
             "last_decoded": lambda: read_image(ctx.work.tail(k - 1)),
             "last_kept": lambda: read_image(ctx.work.arc_frame(k - 1, n))}[source]()
    end = read_image(ctx.work.anchor(k + 1), size=size)
    seed = arc_seed(ctx.job.seed, k)
    folder = ctx.work.arc_frames(k)
    with atomic_path(folder, suffix="") as tmp:
        tmp.mkdir(parents=True)
        count = 0
        frames = engine.arc_frames(start, end, arc, prompt, seed)
        for i, frame in enumerate(ctx.bar(frames, f"arc {k}", total=arc.frame_count, leave=False)):
            write_image(tmp / f"{i:04d}.png", frame)
            count += 1
        if count != arc.frame_count:
            raise PipelineError(f"inbetween of arc {k} gave {count} frames, expected {arc.frame_count}")
    if _keeps_tails(engine):
        write_image(ctx.work.tail(k), engine.last_decoded_frame())
    return {"seed": seed, "prompt": prompt}


def _keeps_tails(engine) -> bool:
    return engine.chaining.chain == "generated" and engine.chaining.frame == "last_decoded"


def _inbetween_prompt(ctx: RunContext, engine) -> str:
    """The engine's fixed prompt, else the caption of the first anchor (BLIP-2 in the authors' code), made
    once per unedited anchor chain and kept in the manifest."""
    if engine.fixed_prompt is not None:
        return engine.fixed_prompt
    key = digest_json({**ctx.common("inbetween"), "anchor": ctx.anchor_base[0], "models": ctx.models,
                       "blip2": ctx.job.model("blip2")})
    rec = ctx.manifest.item("inbetween", "caption")
    if rec is not None and rec.get("key") == key:
        return rec["output"]
    text = engine.prompt_for(read_image(ctx.work.anchor(0)))
    ctx.manifest.record("inbetween", "caption", key, text)
    return text


# ------------------------------------------------------------------------------------------------ video


def video(ctx: RunContext) -> StageResult:
    """The global frames (each arc's, its shared first frame once) and the H.264 video at the job's fps."""
    res, job, work = StageResult("video"), ctx.job, ctx.work
    key = digest_json({**ctx.common("video"), "arcs": [ctx.digests[f"frames{k:03d}"] for k in range(ctx.n_arcs)],
                       "fps": job.fps, "frames_per_arc": job.frames_per_arc})
    sources = []
    for k in range(ctx.n_arcs):
        first = 0 if k == 0 else 1  # arc k's frame 0 is arc k-1's last frame
        sources += [work.arc_frame(k, i) for i in range(first, job.frames_per_arc + 1)]

    def copy_frames():
        with atomic_path(work.frames_dir, suffix="") as tmp:
            tmp.mkdir(parents=True)
            for g, src in enumerate(sources):
                shutil.copyfile(src, tmp / f"{g:04d}.png")
        return {"count": len(sources)}

    def encode():
        frames_to_mp4(work.frames_dir, len(sources), job.fps, work.video, progress=ctx.bar)
        return {"frames": len(sources), "fps": job.fps}

    if (ctx.manifest.is_current("video", "frames", key, work.frames_dir, verify=True)
            and ctx.manifest.is_current("video", "video", key, work.video, verify=True)):
        res.reused += ["frames", "video"]  # each verified once (every frame is hashed)
    else:  # the frames and the video are made together
        ctx.manifest.items("video").pop("video", None)
        ctx.manifest.items("video").pop("frames", None)
        res.add("frames", ctx.manifest.cached("video", "frames", key, work.frames_dir, copy_frames))
        res.add("video", ctx.manifest.cached("video", "video", key, work.video, encode))
    res.outputs += [work.frames_dir, work.video]
    return res
