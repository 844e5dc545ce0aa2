"""What the report reads of a work folder (paths: :class:`videofrom3d.io.workfolder.WorkFolder`): the prepared
arcs' cameras, edge maps and object masks, the anchors, the video, the manifest (stage timings, fps, the
scene the job named) and an eval table when one was written beside it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from videofrom3d.errors import VideoFrom3DError
from videofrom3d.io.workfolder import WorkFolder
from videofrom3d.scene.camera import Camera, load_cameras


class ReportInputError(VideoFrom3DError):
    """A work folder the report cannot show (no prepared arcs)."""


@dataclass(frozen=True)
class ArcFiles:
    """One prepared arc: global frames ``first_frame .. first_frame + len(cameras) - 1``."""

    index: int
    first_frame: int
    cameras: tuple[Camera, ...]
    work: WorkFolder

    @property
    def folder(self) -> Path:
        return self.work.arc(self.index)

    def edges(self, local: int) -> Path:
        return self.work.edge_map(self.index, local)

    def objects(self, local: int) -> Path:
        """16-bit object id + 1, 0 where nothing was hit."""
        return self.work.arc_objects(self.index, local)


@dataclass(frozen=True)
class WorkInputs:
    """What a report shows of one work folder; ``cameras`` are the global frames in order."""

    work: Path
    manifest: dict
    arcs: tuple[ArcFiles, ...]
    cameras: tuple[Camera, ...]
    anchors: tuple[Path | None, ...]
    video: Path | None
    eval_json: Path | None

    @property
    def frames_per_arc(self) -> int:
        return len(self.arcs[0].cameras) - 1

    @property
    def anchor_frames(self) -> list[int]:
        """Global frame of every anchor: the first frame of each arc and the last frame of the last one."""
        return [a.first_frame for a in self.arcs] + [self.arcs[-1].first_frame + len(self.arcs[-1].cameras) - 1]

    def arc_of(self, frame: int) -> tuple[ArcFiles, int]:
        """The arc that holds global ``frame`` (the earlier one at a shared end) and the local index."""
        for arc in self.arcs:
            local = frame - arc.first_frame
            if 0 <= local < len(arc.cameras):
                return arc, local
        raise IndexError(f"frame {frame} is outside the prepared arcs (0 .. {len(self.cameras) - 1})")

    @property
    def fps(self) -> float:
        video = self.manifest.get("stages", {}).get("video", {}).get("items", {}).get("video", {})
        return float(video.get("fps", 8.0))

    def stage_seconds(self) -> list[dict]:
        """Per stage in pipeline order: ``seconds`` of its last run, ``compute`` (the seconds its items took
        when they were computed, whichever run that was), items ``ran`` and ``reused`` in the last run."""
        out = []
        for name, rec in self.manifest.get("stages", {}).items():
            last = rec.get("last_run") or {}
            if "seconds" not in last:
                continue
            items = [v for v in rec.get("items", {}).values() if isinstance(v, dict)]
            out.append({"stage": name, "seconds": float(last["seconds"]),
                        "compute": sum(float(v.get("seconds", 0.0)) for v in items),
                        "ran": len(last.get("ran", [])), "reused": len(last.get("reused", []))})
        return out

    def scene_spec(self) -> tuple[Path, str, float] | None:
        """(path, up, unit_scale) of the scene the render used, as the manifest records it, or None."""
        rec = self.manifest.get("scene")
        if not isinstance(rec, dict) or "path" not in rec:
            return None
        return Path(rec["path"]), str(rec.get("up", "y")), float(rec.get("unit_scale", 1.0))


def default_report_dir(work: str | os.PathLike) -> Path:
    """``WORK/report``: where ``videofrom3d report`` writes unless told otherwise."""
    return WorkFolder(work).report_dir


def manifest_path(work: str | os.PathLike) -> Path:
    return WorkFolder(work).manifest


def read_work(work: str | os.PathLike) -> WorkInputs:
    """The report's inputs from ``work``; raises :class:`ReportInputError` when nothing was prepared."""
    layout = WorkFolder(work)
    work = layout.root
    if not work.is_dir():
        raise ReportInputError(f"{work}: not a folder")
    manifest = {}
    if manifest_path(work).is_file():
        try:
            manifest = json.loads(manifest_path(work).read_text())
        except ValueError as e:
            raise ReportInputError(f"{manifest_path(work)}: not JSON ({e})") from None
    arcs = []
    for folder in layout.arcs():  # a folder a crashed run left unfinished has no arc.json and is skipped
        meta = json.loads((folder / "arc.json").read_text())
        arcs.append(ArcFiles(int(meta["index"]), int(meta["first_frame"]),
                             tuple(load_cameras(folder / "cameras.json")), layout))
    if not arcs:
        raise ReportInputError(f"{work}: no prepared arcs (prepare/arcNNN/arc.json); run `videofrom3d prepare` first")
    cameras = list(arcs[0].cameras)
    for prev, arc in zip(arcs, arcs[1:]):
        if arc.first_frame != prev.first_frame + len(prev.cameras) - 1:
            raise ReportInputError(f"{arc.folder}: starts at frame {arc.first_frame}, the arc before it ends at "
                                   f"{prev.first_frame + len(prev.cameras) - 1}; re-run prepare")
        cameras += arc.cameras[1:]
    anchors = tuple(layout.anchor(k) if layout.anchor(k).is_file() else None for k in range(len(arcs) + 1))
    video, eval_json = layout.video, layout.eval_json
    return WorkInputs(work, manifest, tuple(arcs), tuple(cameras), anchors,
                      video if video.is_file() else None, eval_json if eval_json.is_file() else None)
