"""The chaining rules as pure functions, the in-memory chain API, and the engine registry: a toy third engine
written here renders a job end to end through render() with no change to the runner."""

from __future__ import annotations

import numpy as np
import pytest

from test_pipeline_jobs import make_job
from videofrom3d.chaining import (
    ArcChaining,
    ReplacementRule,
    anchor_view,
    arc_seed,
    arc_start,
    chain_anchors,
    chain_inbetween,
    use_replacement,
)
from videofrom3d.engines import AnchorGuide, EngineError, EngineSpec, get_engine, register_engine


def test_anchor_views_walk_the_arc_ends():
    assert [anchor_view(k, 45) for k in range(4)] == [(0, 0), (0, 45), (1, 45), (2, 45)]


def test_replacement_rule():
    rule = ReplacementRule()
    assert [use_replacement(rule, k, "a", "a") for k in range(3)] == [False, True, True]
    assert not use_replacement(ReplacementRule(steps=0), 2, "a", "a")
    assert [use_replacement(ReplacementRule(skip=(2,)), k, "a", "a") for k in range(4)] == [False, True, False, True]
    strict = ReplacementRule(on_prompt_change=False)
    assert use_replacement(strict, 2, "a", "a") and not use_replacement(strict, 2, "a, in winter", "a")


def test_arc_start_and_seed():
    assert [arc_start(k, ArcChaining("anchor", "last_decoded")) for k in range(3)] == ["anchor"] * 3
    assert [arc_start(k, ArcChaining("generated")) for k in range(3)] == ["anchor", "last_kept", "last_kept"]
    assert arc_start(2, ArcChaining("generated", "last_decoded")) == "last_decoded"
    assert [arc_seed(7, k) for k in range(3)] == [7, 8, 9]


class _Arc:
    def __init__(self, n, value):
        self.edge_maps = np.full((n + 1, 2, 3), value, np.float32)
        self.frame_count = n + 1


class Toy:
    """A whole engine in a few lines: anchors are the edge map, averaged with the previous anchor when guided;
    frames blend start -> end. It is its own aligner, anchor engine and inbetween engine."""

    item, output, note = "toy", "toy.txt", ""
    replacement = ReplacementRule(skip=(2,))
    chaining = ArcChaining("generated")
    fixed_prompt = "toy"

    def __init__(self, ctx=None):
        self.ctx = ctx

    def cache_key(self):
        return {"engine": "toy"}

    def align(self, out):
        out.write_text("toy style")

    def guide(self, previous_anchor, arc, flow=None):
        return AnchorGuide(previous_anchor, np.ones(previous_anchor.shape[:2], bool))

    def render_anchor(self, arc, frame, prompt, seed, guide, edge_map=None):
        img = np.repeat(arc.edge_maps[frame][..., None], 3, -1)
        return img if guide is None else (img + guide.warped_previous) / 2

    def prompt_for(self, first_anchor):
        return self.fixed_prompt

    def arc_frames(self, start, end, arc, prompt, seed):
        for t in np.linspace(0, 1, arc.frame_count, dtype=np.float32):
            yield (1 - t) * start + t * end

    def last_decoded_frame(self):
        return None

    def close(self):
        pass


def test_chain_anchors_guides_by_the_previous_anchor_as_the_rule_says():
    arcs = [_Arc(4, 0.2), _Arc(4, 0.6), _Arc(4, 1.0)]
    out = dict(chain_anchors(Toy(), arcs, ["p"] * 4, seed=0))
    # anchor 0 = arc 0 start (0.2); 1 = avg(arc 0 end, anchor 0); 2 is skipped by the rule; 3 = avg(arc 2, anchor 2)
    assert [float(out[k].mean()) for k in range(4)] == pytest.approx([0.2, 0.2, 0.6, 0.8])


def test_chain_inbetween_starts_each_arc_from_the_last_generated_frame():
    arcs = [_Arc(4, 0.0), _Arc(4, 0.0)]
    anchors = [np.full((2, 3, 3), v, np.float32) for v in (0.0, 0.5, 1.0)]
    frames = chain_inbetween(Toy(), arcs, anchors)
    assert frames.shape == (9, 2, 3, 3)
    assert [float(f.mean()) for f in frames] == pytest.approx([0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0])


def test_unknown_engine_names_the_known_ones():
    with pytest.raises(EngineError, match="preview, diffusion"):
        get_engine("nope")


def test_a_toy_third_engine_renders_a_job_through_the_registry(tmp_path):
    from videofrom3d.io.images import read_image
    from videofrom3d.job import load_job
    from videofrom3d.pipeline import render

    register_engine(EngineSpec("toy", configs=lambda job, models: {}, aligner=Toy, anchors=Toy, inbetween=Toy))
    job = load_job(make_job(tmp_path, width=64, height=48, frames_per_arc=4, arcs=2))
    res = render(job, engine="toy", progress=False, log=lambda s: None)
    assert res.engine == "toy" and (job.work_dir / "align" / "toy.txt").read_text() == "toy style"
    frames = sorted((job.work_dir / "frames").glob("*.png"))
    assert len(frames) == 1 + 2 * 4
    edges0 = read_image(job.work_dir / "prepare" / "arc000" / "edges" / "0000.png")
    assert np.abs(read_image(res.anchors[0]) - edges0).max() <= 1 / 255  # anchor 0 is arc 0's first edge map
    last = read_image(frames[-1])
    assert np.abs(last - read_image(res.anchors[2])).max() <= 1 / 255  # the video ends on the last anchor
    again = render(job, engine="toy", progress=False, log=lambda s: None)
    assert all(not ran for ran in again.redone.values())  # the toy engine's cache keys make a re-run reuse all


def test_tiny_random_shrinks_the_diffusion_defaults_unless_the_job_sets_them(tmp_path):
    from videofrom3d.diffusion import ENGINE, SMOKE_DEFAULTS
    from videofrom3d.job import load_job

    job = load_job(make_job(tmp_path, extra="[anchors]\nsteps = 3\n"))
    real, smoke = ENGINE.configs(job, "real"), ENGINE.configs(job, "tiny-random")
    assert (real["align"].steps, real["align"].resolution, real["inbetween"].steps) == (400, 1024, 30)
    assert (smoke["align"].steps, smoke["align"].resolution) == (2, 64)
    assert smoke["align"].max_sequence_length == SMOKE_DEFAULTS["align"]["max_sequence_length"] < 512
    assert smoke["inbetween"].steps == 2
    assert real["anchors"].steps == smoke["anchors"].steps == 3  # the job's own value wins
    assert get_engine("preview").configs(job, "tiny-random")["preview"] == get_engine("preview").configs(job, "real")["preview"]
