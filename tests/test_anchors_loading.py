"""Loading FLUX + the HED ControlNet from the real on-disk layout (HF cache, offline), and the generator."""

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

from tiny_models import one_torch_thread, save_flux_components, style_job, tiny_flux_components  # noqa: E402, F401
from videofrom3d.anchors import AnchorConfig, load_anchor_generator, replacement_rule  # noqa: E402
from videofrom3d.anchors.components import load_flux_components  # noqa: E402
from videofrom3d.anchors.generate import (  # noqa: E402
    AnchorGenerator,
    erode_mask,
    latent_mask,
    make_anchor_guide,
)
from videofrom3d.chaining import chain_anchors, use_replacement  # noqa: E402
from videofrom3d.engines import AnchorGuide  # noqa: E402
from videofrom3d.job import anchor_prompt  # noqa: E402
from videofrom3d.models import MissingModelError  # noqa: E402

CFG = AnchorConfig(steps=2, replace_steps=1, max_sequence_length=16, device="cpu")


def _hf_snapshot(cache: Path, repo_id: str, rev: str) -> Path:
    root = cache / ("models--" + repo_id.replace("/", "--"))
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(rev)
    return root / "snapshots" / rev


def test_tiny_model_in_hf_cache_layout_loads_offline(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    comps = tiny_flux_components(seed=0)
    save_flux_components(comps, _hf_snapshot(cache, "black-forest-labs/FLUX.1-dev", "0ef5fff"),
                         _hf_snapshot(cache, "XLabs-AI/flux-controlnet-hed-diffusers", "a1b2c3d"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("VIDEOFROM3D_MODELS", raising=False)
    loaded = load_flux_components(device="cpu", dtype="float32", memory="none")
    assert loaded.source.endswith("snapshots/0ef5fff")
    assert sum(p.numel() for p in loaded.transformer.parameters()) == sum(
        p.numel() for p in comps.transformer.parameters())
    # the same anchor from the in-memory models and from disk, through the job-level entry point
    job = style_job(tmp_path, {"sks": np.full((32, 32, 3), 0.5, np.float32)})
    edge = np.zeros((32, 48), np.float32)
    edge[10:12, :] = 1
    a = AnchorGenerator(comps, CFG, ["sks"]).generate_latents(edge, "sks", seed=3)
    gen = load_anchor_generator(job, CFG, models="real")
    b = gen.generate_latents(edge, "sks", seed=3)
    assert torch.equal(a, b)
    assert gen.comps.text_encoder is None  # text encoders released after encoding the job's prompts
    assert set(gen.text.cache) == {"", "sks"}


def test_missing_model_names_id_and_places(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("VIDEOFROM3D_MODELS", str(tmp_path / "models"))
    with pytest.raises(MissingModelError) as err:
        load_flux_components(device="cpu")
    msg = str(err.value)
    assert "black-forest-labs/FLUX.1-dev" in msg
    for place in (tmp_path / "models" / "black-forest-labs/FLUX.1-dev", tmp_path / "models" / "FLUX.1-dev",
                  tmp_path / "empty-hub" / "models--black-forest-labs--FLUX.1-dev" / "snapshots"):
        assert str(place) in msg
    with pytest.raises(MissingModelError, match="not found"):
        load_flux_components(flux=str(tmp_path / "no-such-folder"), device="cpu")


class _Arc:
    """The two PreparedArc fields SAG reads, for a camera that moved 8 px to the right."""

    def __init__(self, h, w, edge_maps):
        self.edge_maps = edge_maps
        self.flow_end_to_start = np.zeros((h, w, 2), np.float32)
        self.flow_end_to_start[..., 0] = -8.0  # end-view pixel x shows start-view pixel x - 8
        self.flow_end_to_start_valid = np.ones((h, w), bool)


def test_anchor_guide_warps_and_erodes():
    h, w = 32, 48
    prev = np.random.default_rng(0).random((h, w, 3)).astype(np.float32)
    guide = make_anchor_guide(prev, _Arc(h, w, None), erode_px=67)  # 67 px at 720 px height = 3 px at 32
    assert np.allclose(guide.warped_previous[:, 20], prev[:, 12])
    # observed: x >= 8 in the end view (the flow leaves the image left of that), then eroded by 3 px;
    # the image border itself does not erode
    expected = np.zeros((h, w), bool)
    expected[:, 8 + 3:] = True
    assert np.array_equal(guide.observed_mask, expected)
    assert np.array_equal(erode_mask(expected, 0), expected)
    cells = latent_mask(guide.observed_mask, 8)[0, 0].numpy()
    assert cells.tolist() == [[False, False, True, True, True, True]] * 4  # all 8 px of a cell observed


def test_chain_uses_replacement_and_prompts(tmp_path):
    h, w = 32, 48
    job = style_job(tmp_path, {"sks town": np.full((32, 32, 3), 0.5, np.float32)},
                    anchor_prompts={"2": "in winter"})
    assert anchor_prompt(job, 0) == "sks town" and anchor_prompt(job, 2) == "sks town, in winter"
    for bad in (1, -1):  # -1 must not wrap round to the last style
        with pytest.raises(ValueError, match="style"):
            anchor_prompt(job, 0, style=AnchorConfig(style=bad).style)
    cfg = AnchorConfig(steps=2, replace_steps=2, max_sequence_length=16, no_replace_anchors=(3,))
    assert [use_replacement(replacement_rule(cfg), k, "a", "a") for k in range(4)] == [False, True, True, False]
    cfg_b = AnchorConfig(replace_on_prompt_change=False)
    assert use_replacement(replacement_rule(cfg_b), 2, "sks town, in winter", "sks town") is False
    edges = np.zeros((2, h, w), np.float32)
    arcs = [_Arc(h, w, edges), _Arc(h, w, edges)]
    gen = load_anchor_generator(job, cfg, models="tiny-random")
    calls = []
    real_generate = gen.generate

    def spy(edge, prompt, seed, guide=None, arc=None, **kw):
        calls.append((prompt, seed, guide))
        return real_generate(edge, prompt, seed, guide=guide, arc=arc, **kw)

    gen.generate = spy
    prompts = [anchor_prompt(job, k, cfg.style) for k in range(len(arcs) + 1)]
    images = dict(chain_anchors(gen, arcs, prompts, job.seed))
    assert sorted(images) == [0, 1, 2]
    assert images[0].shape == (h, w, 3) and images[0].dtype == np.float32
    assert 0 <= images[0].min() and images[0].max() <= 1
    assert [c[0] for c in calls] == ["sks town", "sks town", "sks town, in winter"]
    assert {c[1] for c in calls} == {job.seed}  # the same initial noise for every anchor (official)
    assert calls[0][2] is None and isinstance(calls[1][2], AnchorGuide)
    # the guide changes the anchor where observed (same prompt, seed and edges as without it)
    no_guide = real_generate(edges[0], "sks town", job.seed)
    assert float(np.abs(no_guide - images[1]).max()) > 1e-4
    assert gen.text.cache.keys() == {"", "sks town", "sks town, in winter"}
