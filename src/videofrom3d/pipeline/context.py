"""The state one render shares between its stages: the job, its parsed stage configs, the work folder and its
manifest, the chosen engine and its stage objects, the prepared arcs kept in memory, and item hashes."""

from __future__ import annotations

import hashlib
import shutil
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from videofrom3d.engines import EngineContext, EngineSpec
from videofrom3d.io.manifest import Manifest
from videofrom3d.io.workfolder import WorkFolder

# Bump a stage's number when a code change alters its outputs, so old work folders recompute it.
CODE_REVISION = {"prepare": 1, "noise": 1, "align": 1, "anchors": 1, "inbetween": 1, "video": 1}
ARC_CACHE_BYTES = 3 * 2**30  # prepared arcs kept in memory between stages (one 720x480 arc: ~0.5 GiB)


def derive_seed(seed: int, *parts: Any) -> int:
    """A seed for one random draw of one item, from the job's seed and a name (e.g. ``"noise", 2``)."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") % (2**31)


def _arc_bytes(arc) -> int:
    return sum(getattr(arc, f).nbytes for f in ("edge_maps", "depth", "normals", "object_ids", "flow_forward",
                                                "flow_forward_valid"))


@dataclass
class StageResult:
    """One stage of one run: seconds, which items ran and which were reused, where they are."""

    name: str
    seconds: float = 0.0
    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    note: str = ""

    def add(self, item: str, ran: bool) -> None:
        (self.ran if ran else self.reused).append(item)


@dataclass
class RunContext:
    """One render's shared state. ``configs`` holds every stage config, parsed once by the plan; ``digests``
    the output hash of every item so far (``arcNNN``, ``noiseNNN``, ``align``, ``anchorNNN``, ``framesNNN``);
    ``anchor_base`` each anchor's unedited input hash (what the next anchor and the arcs chain on)."""

    job: Any
    spec: EngineSpec
    engine_reason: str
    models: str
    configs: dict[str, Any]
    cameras: list
    ranges: list[tuple[int, int]]
    manifest: Manifest
    version: str
    progress: bool = True
    log: Callable[[str], None] = print
    digests: dict[str, str] = field(default_factory=dict)
    anchor_base: list[str] = field(default_factory=list)
    scene_extent: float = 0.0
    edge_choice: Any = None  # prepare.edge_mode.EdgeChoice: HED or drawn lines, decided by the plan
    anchor_size: tuple[int, int] | None = None  # (W, H) of the engine's anchors when not the job's
    scene: Any = None  # the Scene the plan loaded and checked (prepare reuses it)
    _arcs: OrderedDict = field(default_factory=OrderedDict)
    _stage_objects: dict[str, Any] = field(default_factory=dict)

    @property
    def work(self) -> WorkFolder:
        return WorkFolder(self.job.work_dir)

    @property
    def job_size(self) -> tuple[int, int]:
        return (self.job.width, self.job.height)

    @property
    def n_arcs(self) -> int:
        return len(self.ranges)

    @property
    def n_anchors(self) -> int:
        return len(self.ranges) + 1

    def common(self, stage: str) -> dict:
        """What every item key of ``stage`` holds: the stage, the code version and its revision."""
        return {"stage": stage, "code": self.version, "revision": CODE_REVISION[stage]}

    def bar(self, items: Iterable, desc: str, total: int | None = None, leave: bool = True):
        from tqdm.auto import tqdm

        return tqdm(items, desc=desc, total=total, disable=not self.progress, leave=leave, unit="item",
                    file=sys.stderr, dynamic_ncols=True)

    def load_arc(self, k: int):
        """Arc k as written on disk (never the float copy that was saved: a resumed run must see the same)."""
        from videofrom3d.prepare.arcs import PreparedArc

        if k in self._arcs:
            self._arcs.move_to_end(k)
            return self._arcs[k]
        arc = PreparedArc.load(self.work.arc(k), with_noise=self.spec.needs_noise)
        self._arcs[k] = arc
        while len(self._arcs) > 1 and sum(_arc_bytes(a) for a in self._arcs.values()) > ARC_CACHE_BYTES:
            self._arcs.popitem(last=False)
        return arc

    # ----------------------------------------------------------------------------------- engine objects
    def engine_context(self) -> EngineContext:
        style = None
        if "align" in self.digests:
            aligner = self.stage_object("align")
            style = (self.work.align_dir / aligner.output, self.digests["align"])
        return EngineContext(job=self.job, models=self.models, work=self.work, configs=self.configs,
                             scene_extent=self.scene_extent, style=style, progress=self.progress)

    def stage_object(self, stage: str):
        """The engine's object for ``stage`` ("align", "anchors" or "inbetween"), built once; building the
        inbetween engine closes the anchor engine (one diffusion model in memory at a time)."""
        if stage not in self._stage_objects:
            if stage == "inbetween":
                self.close_stage_object("anchors")
            make = {"align": self.spec.aligner, "anchors": self.spec.anchors, "inbetween": self.spec.inbetween}[stage]
            self._stage_objects[stage] = make(self.engine_context())
        return self._stage_objects[stage]

    def close_stage_object(self, stage: str) -> None:
        obj = self._stage_objects.pop(stage, None)
        if obj is not None and hasattr(obj, "close"):
            obj.close()

    def close(self) -> None:
        for stage in list(self._stage_objects):
            self.close_stage_object(stage)
        self._arcs.clear()

    # ----------------------------------------------------------------------------------- bookkeeping
    def prune(self, stage: str, prefix: str, keep: int, path_of: Callable[[int], Path]) -> None:
        """Drop items (and their files) of indices beyond ``keep`` left by an earlier, longer trajectory."""
        items = self.manifest.items(stage)
        for name in list(items):
            if name.startswith(prefix) and name[len(prefix):].isdigit() and int(name[len(prefix):]) >= keep:
                items.pop(name)
        k = keep
        while path_of(k).exists():
            p = path_of(k)
            shutil.rmtree(p) if p.is_dir() else p.unlink()
            k += 1
