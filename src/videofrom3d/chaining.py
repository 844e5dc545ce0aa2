"""How anchors and arcs chain along a trajectory (paper 3.2-3.3), as small pure rules, and the in-memory API
that chains whole trajectories with any engine; ``render()`` uses the same rules through the work folder.

- anchor k is made from :func:`anchor_view` (arc, local frame);
- from k = 1 on it is guided by anchor k-1 warped along the exact end->start flow when
  :func:`use_replacement` says so (sparse appearance-guided sampling, SAG);
- arc k runs from :func:`arc_start` to anchor k+1, with seed ``seed + k``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np


@dataclass(frozen=True)
class ReplacementRule:
    """When an anchor is guided by the previous one (SAG, paper 3.2). ``steps`` = 0 turns guidance off;
    ``skip`` lists anchors generated free (a style change on purpose); with ``on_prompt_change`` False an
    anchor whose prompt differs from the previous one is generated free (the paper omits SAG at transitions)."""

    steps: int = 12
    skip: tuple[int, ...] = ()
    on_prompt_change: bool = True


@dataclass(frozen=True)
class ArcChaining:
    """Where arc k >= 1 starts: ``"anchor"`` (anchor k) or ``"generated"`` (the authors' ggi.py: arc k-1's
    last frame, ``"last_kept"`` frame N as shown in the video or ``"last_decoded"`` the padded decoded tail)."""

    chain: Literal["anchor", "generated"] = "anchor"
    frame: Literal["last_kept", "last_decoded"] = "last_kept"


def anchor_view(k: int, frames_per_arc: int) -> tuple[int, int]:
    """(arc, local frame) of anchor k: the first frame of arc 0, then the last frame of arc k-1 (the same camera
    as arc k's first frame, and the arc whose end->start flow links anchor k-1 to anchor k)."""
    return (0, 0) if k == 0 else (k - 1, frames_per_arc)


def use_replacement(rule: ReplacementRule, k: int, prompt: str, previous_prompt: str | None) -> bool:
    """Whether anchor ``k`` is guided by anchor k-1."""
    if k == 0 or rule.steps == 0 or k in rule.skip:
        return False
    return rule.on_prompt_change or prompt == previous_prompt


def arc_start(k: int, chaining: ArcChaining) -> Literal["anchor", "last_kept", "last_decoded"]:
    """What arc k starts from: its anchor, or arc k-1's kept last frame or decoded tail."""
    if k == 0 or chaining.chain == "anchor":
        return "anchor"
    return chaining.frame


def arc_seed(seed: int, k: int) -> int:
    """Arc k's seed (ggi.py: one seed per arc, offset by its index)."""
    return seed + k


# --------------------------------------------------------------------------------------------- in memory


def chain_anchors(engine, arcs: Sequence, prompts: Sequence[str], seed: int, start: int = 0,
                  previous: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(k, anchor_k)`` for k = start .. len(arcs) with an anchor engine (see
    :class:`videofrom3d.engines.AnchorEngine`), every anchor from ``seed`` (the authors' "same initial
    noise"); ``prompts[k]`` is anchor k's prompt. To resume at ``start > 0`` pass anchor start-1 as ``previous``."""
    n = len(arcs[0].edge_maps) - 1
    prev_prompt = prompts[start - 1] if start > 0 else None
    for k in range(start, len(arcs) + 1):
        arc_k, frame = anchor_view(k, n)
        guide = None
        if previous is not None and use_replacement(engine.replacement, k, prompts[k], prev_prompt):
            guide = engine.guide(previous, arcs[k - 1])
        image = engine.render_anchor(arcs[arc_k], frame, prompts[k], seed, guide)  # at the arcs' size
        yield k, image
        previous, prev_prompt = image, prompts[k]


def chain_inbetween(engine, arcs: Sequence, anchors: Sequence[np.ndarray], prompt: str | Sequence[str] | None = None,
                    seed: int = 0, done: Mapping[int, np.ndarray] | None = None,
                    on_arc: Callable[[int, np.ndarray], None] | None = None) -> np.ndarray:
    """Every frame of the trajectory, (1 + K*N, H, W, 3) float32, boundary frames once, with an inbetween
    engine (see :class:`videofrom3d.engines.InbetweenEngine`); arc k starts as :func:`arc_start` says and ends
    at anchor k+1. ``prompt``: one for all arcs, one per arc, or None for the engine's (its fixed prompt or
    the caption of anchor 0). ``done`` maps arc index -> its frames from an
    earlier run (reused, not regenerated); ``on_arc(k, frames)`` is called after each generated arc."""
    k_count = len(arcs)
    if len(anchors) != k_count + 1:
        raise ValueError(f"{k_count} arcs need {k_count + 1} anchors, got {len(anchors)}")
    if prompt is None:
        prompt = engine.prompt_for(np.asarray(anchors[0], dtype=np.float32))
    prompts = [prompt] * k_count if isinstance(prompt, str) else list(prompt)
    if len(prompts) != k_count:
        raise ValueError(f"{k_count} arcs need {k_count} prompts, got {len(prompts)}")
    done = done or {}
    pieces: list[np.ndarray] = []
    previous = tail = None
    for k, arc in enumerate(arcs):
        source = arc_start(k, engine.chaining)
        if source == "anchor":
            start = np.asarray(anchors[k], dtype=np.float32)
        elif source == "last_decoded" and tail is not None:
            start = tail
        else:
            start = previous[-1]
        if k in done:
            frames, tail = np.asarray(done[k], dtype=np.float32), None
        else:
            end = np.asarray(anchors[k + 1], dtype=np.float32)
            frames = np.stack(list(engine.arc_frames(start, end, arc, prompts[k], arc_seed(seed, k))))
            tail = engine.last_decoded_frame()
            if on_arc is not None:
                on_arc(k, frames)
        if len(frames) != len(arc.edge_maps):
            raise ValueError(f"arc {k}: {len(frames)} frames for {len(arc.edge_maps)} edge maps")
        pieces.append(frames if k == 0 else frames[1:])
        previous = frames
    return np.concatenate(pieces, axis=0)
