"""Reports of evaluated runs: JSON (one object per run), a Markdown table comparing runs, a contact sheet."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np

from videofrom3d.eval.evaluate import METRICS
from videofrom3d.eval.workfolder import RunFolder
from videofrom3d.io.atomic import atomic_write_text
from videofrom3d.io.images import to_uint8, write_image


def _clean(v):
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_clean(x) for x in v]
    return v


def to_json(results: list[dict]) -> str:
    """Strict JSON (no NaN/Infinity tokens): a list with one object per run."""
    return json.dumps(_clean(results), indent=1, allow_nan=False)


def write_json(path: str | Path, results: list[dict]) -> Path:
    return atomic_write_text(path, to_json(results) + "\n")


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, str):
        return v
    a = abs(v)
    if a >= 100:
        return f"{v:.1f}"
    if a >= 10:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _names(results: list[dict]) -> list[str]:
    names = [Path(r["run"]).name for r in results]
    if len(set(names)) < len(names):
        names = [r["run"] for r in results]
    return names


def to_markdown(results: list[dict]) -> str:
    """One row per metric, one column per run (best of several runs in bold), then what was missing."""
    names = _names(results)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for m in METRICS:
        vals = [r.get(m.key) for r in results]
        if all(v is None for v in vals):
            continue
        best = None
        nums = [v for v in vals if isinstance(v, (int, float))]
        if len(results) > 1 and nums:
            best = max(nums) if m.higher_is_better else min(nums)
        cells = [f"**{_fmt(v)}**" if best is not None and v == best else _fmt(v) for v in vals]
        arrow = "↑" if m.higher_is_better else "↓"
        lines.append(f"| {m.label} {arrow} | " + " | ".join(cells) + " |")
    lines.append("| frames | " + " | ".join(str(r.get("frames")) for r in results) + " |")
    missing = {}
    for r in results:
        for item in r.get("missing", []):
            missing.setdefault(item["metric"], item["reason"])
    if missing:
        lines += ["", "Not computed:", ""]
        lines += [f"- `{k}`: {v}" for k, v in missing.items()]
    return "\n".join(lines) + "\n"


def write_markdown(path: str | Path, results: list[dict]) -> Path:
    return atomic_write_text(path, to_markdown(results))


def runs_contact_sheet(runs: list[RunFolder], columns: int = 6, thumb_width: int = 240) -> np.ndarray:
    """(H, W, 3) uint8 image: one row per run (its name on the left), ``columns`` evenly spaced frames."""
    label_w = 160
    rows = []
    for run in runs:
        n = run.frame_count
        picks = sorted({round(i * (n - 1) / max(columns - 1, 1)) for i in range(columns)}) if n else []
        thumbs = []
        for g in picks:
            img = run.frame(g)
            h, w = img.shape[:2]
            th = max(1, round(h * thumb_width / w))
            t = to_uint8(cv2.resize(img, (thumb_width, th), interpolation=cv2.INTER_AREA))
            cv2.putText(t, str(g), (4, th - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
            thumbs.append(t)
        th = max((t.shape[0] for t in thumbs), default=thumb_width * 2 // 3)
        row = np.full((th + 4, label_w + columns * (thumb_width + 4), 3), 30, np.uint8)
        for j, t in enumerate(thumbs):
            x = label_w + j * (thumb_width + 4)
            row[2 : 2 + t.shape[0], x : x + thumb_width] = t
        cv2.putText(row, run.name[:18], (6, th // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
        rows.append(row)
    return np.concatenate(rows, axis=0) if rows else np.zeros((1, 1, 3), np.uint8)


def write_runs_contact_sheet(path: str | Path, runs: list[RunFolder], columns: int = 6) -> Path:
    return write_image(path, runs_contact_sheet(runs, columns))
