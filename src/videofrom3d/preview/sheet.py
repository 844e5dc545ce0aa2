"""A contact sheet of a rendered work folder: the edge map and the anchor of every arc end, and frames from
the middle of every arc, labelled; what ``videofrom3d demo`` writes to ``DIR/contact_sheet.png``."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from videofrom3d.chaining import anchor_view
from videofrom3d.io.images import read_image, read_mask, resize, write_image
from videofrom3d.io.workfolder import WorkFolder

LABEL_H = 22


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    """``tile`` (h, w, 3) float with a dark caption bar on top."""
    h, w = tile.shape[:2]
    bar = np.full((LABEL_H, w, 3), 0.12, np.float32)
    u8 = (bar * 255).astype(np.uint8)
    cv2.putText(u8, text, (6, LABEL_H - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (235, 235, 235), 1, cv2.LINE_AA)
    return np.concatenate([u8.astype(np.float32) / 255.0, tile], axis=0)


def _blank(w: int, h: int) -> np.ndarray:
    return np.full((h, w, 3), 0.2, np.float32)


def write_work_contact_sheet(work: str | os.PathLike, path: str | os.PathLike, frames_per_arc: int, tile_width: int = 240,
                        title: str = "") -> Path:
    """Rows: edge maps at the anchor views, anchors, and the middle frame of each arc (between its anchors)."""
    work = WorkFolder(work)
    anchors = work.anchors()
    if not anchors:
        raise FileNotFoundError(f"{work.root}: no anchors to show (run the anchors stage first)")
    first = read_image(anchors[0])
    h0, w0 = first.shape[:2]
    tw = tile_width
    th = max(2, round(h0 * tw / w0))

    def tile(img):
        return resize(np.asarray(img, np.float32), (tw, th))

    n = len(anchors)
    edges_row, anchor_row, frame_row = [], [], []
    for k in range(n):
        edge_path = work.edge_map(*anchor_view(k, frames_per_arc))
        if edge_path.is_file():
            e = read_mask(edge_path)
            edges_row.append(_label(tile(np.repeat(e[..., None], 3, -1)), f"edges, frame {k * frames_per_arc}"))
        else:
            edges_row.append(_label(_blank(tw, th), "edges: missing"))
        anchor_row.append(_label(tile(read_image(anchors[k])), f"anchor {k} (frame {k * frames_per_arc})"))
    half = frames_per_arc // 2
    for k in range(n - 1):
        p = work.arc_frame(k, half)
        if p.is_file():
            frame_row.append(_label(tile(read_image(p)), f"arc {k}, frame {k * frames_per_arc + half}"))
        else:
            frame_row.append(_label(_blank(tw, th), f"arc {k}: no frames yet"))
    gap = np.full((th + LABEL_H, 6, 3), 1.0, np.float32)

    def row(tiles, offset=0):
        parts = []
        if offset:
            parts += [np.full((th + LABEL_H, offset, 3), 1.0, np.float32)]
        for i, t in enumerate(tiles):
            parts += ([gap] if i else []) + [t]
        out = np.concatenate(parts, axis=1)
        width = n * tw + (n - 1) * 6
        if out.shape[1] < width:
            out = np.concatenate([out, np.full((out.shape[0], width - out.shape[1], 3), 1.0, np.float32)], axis=1)
        return out

    rows = [row(edges_row), row(anchor_row), row(frame_row, offset=(tw + 6) // 2)]
    vgap = np.full((6, rows[0].shape[1], 3), 1.0, np.float32)
    body = np.concatenate([rows[0], vgap, rows[1], vgap, rows[2]], axis=0)
    if title:
        body = _label(body, title)
    return write_image(path, body)
