"""The engine interface: what ``render()`` asks of a style aligner, an anchor engine and an inbetween engine,
and the registry of engines by name (``--engine preview | diffusion | <yours>``).

An engine is an :class:`EngineSpec`: it checks a job's options before any work, parses its stage configs
once, and builds the three stage objects from an :class:`EngineContext`. Stage objects are light until used:
``cache_key()`` (what, besides the geometry, prompt and seed, decides its output) must not load a model, so
a re-run that reuses everything loads nothing. Adding an engine = one module defining ``ENGINE =
EngineSpec(...)`` plus one line in :data:`ENGINE_MODULES` (or :func:`register_engine` at run time).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from videofrom3d.chaining import ArcChaining, ReplacementRule
from videofrom3d.errors import VideoFrom3DError
from videofrom3d.io.manifest import digest_file
from videofrom3d.io.workfolder import WorkFolder

STAGES = ("prepare", "align", "anchors", "inbetween", "video")  # the order render() runs them in


class EngineError(VideoFrom3DError, ValueError):
    """An unknown engine name or an engine that cannot run this job."""


@dataclass(frozen=True, eq=False)
class AnchorGuide:
    """The previous anchor seen from this anchor's view: ``warped_previous`` (H, W, 3) f32 in [0, 1] and
    ``observed_mask`` (H, W) bool, True where it holds real content (the engine erodes it as it needs)."""

    warped_previous: np.ndarray
    observed_mask: np.ndarray


@dataclass(frozen=True)
class EngineContext:
    """What an engine's stage objects are built from. ``configs``: the stage configs the spec parsed
    (``EngineSpec.configs``); ``style``: the align stage's output file and hash (None while aligning);
    ``scene_extent``: the scene's bounding-box diagonal in world units."""

    job: Any
    models: str
    work: WorkFolder
    configs: Mapping[str, Any]
    scene_extent: float = 0.0
    style: tuple[Path, str] | None = None
    progress: bool = True


class StyleAligner(Protocol):
    """The align stage: writes one file under ``WORK/align/`` from the job's style images."""

    item: str  # the manifest item, also the engine's name for its style ("preview", "diffusion")
    output: str  # file name under WORK/align/
    note: str  # shown after the stage's line ("" for none)

    def cache_key(self) -> dict: ...

    def align(self, out: Path) -> dict | None:
        """Write ``out``; may return fields the manifest records beside it (e.g. why there is no LoRA)."""


class AnchorEngine(Protocol):
    """Anchor views (paper 3.2): one image per arc end, guided by the previous anchor when
    :func:`videofrom3d.chaining.use_replacement` says so."""

    replacement: ReplacementRule

    def cache_key(self) -> dict: ...

    def guide(self, previous_anchor: np.ndarray, arc, flow=None) -> AnchorGuide:
        """Anchor k-1 (``arc``'s start view) warped into ``arc``'s end view (anchor k's), with its mask.
        ``flow``: (end->start flow, valid) at the engine's anchor size when it declares one (else the arc's)."""

    def render_anchor(self, arc, frame: int, prompt: str, seed: int, guide: AnchorGuide | None,
                      edge_map: np.ndarray | None = None) -> np.ndarray:
        """(H, W, 3) float32 in [0, 1]: the anchor at local ``frame`` of the prepared ``arc``; ``edge_map`` is
        that view's edge map at the engine's anchor size when it declares one (else the arc's is used)."""

    def close(self) -> None: ...


class InbetweenEngine(Protocol):
    """Frames of one arc between its start and end (paper 3.3)."""

    chaining: ArcChaining
    fixed_prompt: str | None  # the prompt of every arc; None: caption the first anchor (prompt_for)

    def cache_key(self) -> dict: ...

    def prompt_for(self, first_anchor: np.ndarray) -> str: ...

    def arc_frames(self, start: np.ndarray, end: np.ndarray, arc, prompt: str, seed: int) -> Iterator[np.ndarray]:
        """The arc's N+1 frames (H, W, 3) float32, frame 0 ~ ``start``, frame N ~ ``end``."""

    def last_decoded_frame(self) -> np.ndarray | None:
        """The last decoded frame of the latest arc (for ``chain_frame = "last_decoded"``), or None."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class EngineSpec:
    """An engine by name. ``tables``: the job tables it reads and their frozen config classes (also the job
    file's schema, :func:`videofrom3d.job.job_schema`); ``configs(job, models)`` parses (and so checks) them,
    one-line errors (``models``, "real" or "tiny-random", lets an engine pick other defaults for a smoke
    test); ``check(job, models, until, configs)`` refuses what cannot run (missing weights) before any work;
    ``needs_noise``: whether prepare computes the warped noise by default; ``anchor_size(job, configs)``: the
    (W, H) anchors are made at when it differs from the job's (prepare then renders each arc's end views at
    that size; anchors are stored at it and resized to the job's for the inbetween stage), else None;
    ``noise_defaults(job, configs)``: ``[noise]`` defaults at the engine's latent grid (e.g. its latent frame
    count), under the job's own keys."""

    name: str
    configs: Callable[[Any, str], dict[str, Any]]
    aligner: Callable[[EngineContext], StyleAligner]
    anchors: Callable[[EngineContext], AnchorEngine]
    inbetween: Callable[[EngineContext], InbetweenEngine]
    needs_noise: bool = False
    check: Callable[..., None] = field(default=lambda job, models, until, configs: None)
    anchor_size: Callable[..., tuple[int, int] | None] = field(default=lambda job, configs: None)
    tables: Mapping[str, type] = field(default_factory=dict)
    noise_defaults: Callable[[Any, dict], dict] = field(default=lambda job, configs: {})


def style_digests(job) -> list:
    """[[image hash, identifier prompt], ...] of the job's styles: what an aligner's output depends on."""
    return [[digest_file(s.image), s.identifier_prompt] for s in job.styles]


# name -> the module whose ENGINE is that engine (imported on first use: the base install has no torch)
ENGINE_MODULES: dict[str, str] = {
    "preview": "videofrom3d.preview.engine",
    "diffusion": "videofrom3d.diffusion",
}
_REGISTERED: dict[str, EngineSpec] = {}


def register_engine(spec: EngineSpec) -> EngineSpec:
    """Make ``spec`` available as ``render(job, engine=spec.name)`` in this process."""
    _REGISTERED[spec.name] = spec
    return spec


def engine_names() -> list[str]:
    return list(dict.fromkeys([*ENGINE_MODULES, *_REGISTERED]))


def stage_tables() -> dict[str, type]:
    """Every stage table a job may hold -> its config class: prepare's (read for every engine) and each
    engine's ``tables``. A field added to one of these classes is a job key at once."""
    from videofrom3d.prepare.arcs import PrepareConfig
    from videofrom3d.prepare.noise_warp import NoiseConfig

    tables: dict[str, type] = {"prepare": PrepareConfig, "noise": NoiseConfig}
    for name in engine_names():
        for table, cls in get_engine(name).tables.items():
            if tables.setdefault(table, cls) is not cls:
                raise EngineError(f"engine {name!r} reads [{table}] with {cls.__name__}, another engine with "
                                  f"{tables[table].__name__}")
    return tables


def get_engine(name: str) -> EngineSpec:
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in ENGINE_MODULES:
        raise EngineError(f"unknown engine {name!r}; known: {', '.join(engine_names())}")
    return importlib.import_module(ENGINE_MODULES[name]).ENGINE
