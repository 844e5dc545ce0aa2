"""Several styles in one video (paper 3.2, Fig. 8): [anchor_styles] picks each anchor's identifier, one prompt
rule for every engine, and no appearance guidance across a style change unless asked for."""

from __future__ import annotations

import pytest

from test_engines import Toy
from test_pipeline_jobs import make_job
from videofrom3d.chaining import ReplacementRule
from videofrom3d.engines import EngineSpec, register_engine
from videofrom3d.job import JobError, anchor_prompt, load_job

TWO_STYLES = ('[[style]]\nimage = "style.png"\nidentifier = "a watercolour of sks town"\n'
              "[anchor_styles]\n2 = 1\n")


def _job(tmp_path, extra=TWO_STYLES, **kw):
    return load_job(make_job(tmp_path, width=64, height=48, frames_per_arc=4, arcs=3, extra=extra, **kw))


def test_anchor_styles_pick_the_identifier_per_anchor(tmp_path):
    job = _job(tmp_path, extra=TWO_STYLES + '[anchor_prompts]\n2 = "at dusk"\n')
    assert job.anchor_style(2) == 1 and job.anchor_style(1) is None
    assert [anchor_prompt(job, k) for k in range(4)] == [
        "a photo of sks town", "a photo of sks town", "a watercolour of sks town, at dusk", "a photo of sks town"]
    with_default = _job(tmp_path / "b", extra=TWO_STYLES + "[anchors]\nstyle = 1\n")
    assert anchor_prompt(with_default, 0) == "a watercolour of sks town"


@pytest.mark.parametrize("table, message", [
    ("[anchor_styles]\n2 = 1\n", r"anchor_styles\.2.*style index 0\.\.0"),  # one style only
    ("[anchor_styles]\nx = 0\n", r"anchor_styles\.x.*anchor index"),
    ('[anchor_styles]\n2 = "b"\n', r"anchor_styles\.2"),
])
def test_bad_anchor_styles_are_one_line_errors(tmp_path, table, message):
    with pytest.raises(JobError, match=message):
        _job(tmp_path, extra=table)


def test_every_prompt_the_anchors_use_is_encoded_up_front(tmp_path):
    from videofrom3d.anchors.generate import AnchorConfig, job_prompts

    job = _job(tmp_path)
    assert set(job_prompts(job, AnchorConfig())) == {"a photo of sks town", "a watercolour of sks town"}


def test_no_guidance_across_a_style_change_by_default(tmp_path):
    """The diffusion engine's default rule, in a render: anchors 2 (style 1) and 3 (back to style 0) are made
    free, anchor 1 is guided by anchor 0."""
    from videofrom3d.anchors.generate import AnchorConfig, replacement_rule
    from videofrom3d.pipeline import render

    guided = {}

    class Spy(Toy):
        replacement = replacement_rule(AnchorConfig())

        def render_anchor(self, arc, frame, prompt, seed, guide, edge_map=None):
            guided[prompt, arc.index, frame] = guide is not None
            return super().render_anchor(arc, frame, prompt, seed, guide, edge_map)

    register_engine(EngineSpec("spy", configs=lambda job, models: {}, aligner=Spy, anchors=Spy, inbetween=Spy))
    job = _job(tmp_path)
    render(job, engine="spy", until="anchors", progress=False, log=lambda s: None)
    assert list(guided.values()) == [False, True, False, False]
    assert ReplacementRule(on_prompt_change=True) != replacement_rule(AnchorConfig())  # the default changed
