"""`videofrom3d eval-styles` on tiny random models: the three modes render into sibling work folders and the
table has every column, with the tiny-random caveat."""

from __future__ import annotations

import json

import pytest

from test_pipeline_jobs import make_job

pytestmark = pytest.mark.torch

TINY = ("[align]\nsteps = 2\nresolution = 32\nrank = 2\nmax_sequence_length = 16\ncurriculum_resolution = 32\n"
        "[anchors]\nsteps = 2\nmax_sequence_length = 16\n"
        "[inbetween]\nsteps = 1\n")


def test_eval_styles_until_anchors(tmp_path, capsys):
    """The fast form (CI): each mode up to its anchors; the time column is the time to the first anchors."""
    from videofrom3d.cli import main

    job = make_job(tmp_path, width=32, height=32, frames_per_arc=4, arcs=1, extra=TINY)
    out = tmp_path / "styles.json"
    assert main(["eval-styles", str(job), "--models", "tiny-random", "--until", "anchors", "--quiet",
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "tiny-random models" in text and "rendered until anchors" in text
    rows = json.loads(out.read_text())
    assert [r["mode"] for r in rows] == ["lora", "quick", "reference"]
    for r in rows:
        assert r["anchors"] == 2 and r["anchor_consistency_psnr"] is not None and 0 <= r["anchor_edge_f"] <= 1
        assert r["anchor_color_swd"] > 0 and r["seconds"] > 0 and r["peak_mib"] > 0
        assert r["color_swd"] is None and r["edge_f"] is None  # no video
    align = {r["mode"]: r["align_seconds"] for r in rows}
    assert align["reference"] < align["lora"]  # no training (tiny models: the code paths, not real costs)
    assert main(["eval-styles", str(job), "--models", "tiny-random", "--modes", "lora,fast", "--quiet"]) == 2
    assert "unknown style mode" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_styles_compares_the_three_modes(tmp_path, capsys):
    from videofrom3d.cli import main

    job = make_job(tmp_path, width=32, height=32, frames_per_arc=45, arcs=1, extra=TINY)
    out = tmp_path / "styles.json"
    assert main(["eval-styles", str(job), "--models", "tiny-random", "--quiet", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "tiny-random models" in text and "anchor consistency PSNR" in text
    rows = json.loads(out.read_text())
    assert [r["mode"] for r in rows] == ["lora", "quick", "reference"]
    for r in rows:
        work = tmp_path / f"work-style-{r['mode']}"
        assert r["work"] == str(work) and (work / "video.mp4").is_file()
        assert r["seconds"] > 0 and r["peak_mib"] > 0 and r["anchors"] == 2
        assert r["anchor_color_swd"] is not None and r["color_swd"] is not None and r["edge_f"] is not None
        assert r["anchor_consistency_psnr"] is not None and 0 <= r["anchor_edge_f"] <= 1
        assert r["clip_i"] is None  # no eval weights asked for
    assert (tmp_path / "work-style-reference" / "align" / "reference.safetensors").is_file()
    assert (tmp_path / "work-style-quick" / "align" / "lora.safetensors").is_file()
    assert not (tmp_path / "work").exists()  # the job's own work folder is left alone
