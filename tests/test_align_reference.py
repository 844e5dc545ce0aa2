"""Reference style mode (FLUX.1 Redux, no training) on tiny random models: our embedding against diffusers'
FluxPriorReduxPipeline, pooling and weight, where the tokens go (transformer, not ControlNet), the shared
cache across jobs, the align-free run end to end, and the one-line error for missing weights."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

from test_pipeline_jobs import make_job  # noqa: E402
from tiny_models import one_torch_thread, tiny_flux_components  # noqa: E402, F401
from videofrom3d.align import reference as ref  # noqa: E402
from videofrom3d.anchors.generate import AnchorConfig, AnchorGenerator  # noqa: E402


def _image(seed=0, h=40, w=56):
    rng = np.random.default_rng(seed)
    return (rng.random((h, w, 3)) * 255).astype(np.uint8)


def test_redux_context_equals_diffusers_prior_redux_pipeline():
    """Identifier T5 tokens + unpooled, unweighted Redux tokens = the pipeline's prompt_embeds; same pooled."""
    from diffusers import FluxPriorReduxPipeline

    from videofrom3d.anchors.components import PromptEncoder

    comps = tiny_flux_components(seed=0)
    redux = ref.tiny_redux_components(seed=0)
    pipe = FluxPriorReduxPipeline(
        image_encoder=redux.image_encoder, feature_extractor=redux.feature_extractor,
        image_embedder=redux.image_embedder, text_encoder=comps.text_encoder, tokenizer=comps.tokenizer,
        text_encoder_2=comps.text_encoder_2, tokenizer_2=comps.tokenizer_2,
    )
    image = ref.to_pil(_image())
    expected = pipe(image=image, prompt="a photo of sks town", return_dict=True)
    tokens = redux.encode(image)
    assert tokens.shape == (1, 27 * 27, 32)  # so400m-patch14-384's grid
    embeds, pooled = PromptEncoder(comps, 512).encode("a photo of sks town")
    ours = ref.append_reference(embeds, ref.reference_context(tokens, pool=1, weight=1.0))
    assert ours.shape == expected.prompt_embeds.shape == (1, 512 + 729, 32)
    torch.testing.assert_close(ours, expected.prompt_embeds, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pooled, expected.pooled_prompt_embeds)
    # the float image path gives the same tokens as the uint8 one
    torch.testing.assert_close(redux.encode(_image().astype(np.float32) / 255), tokens)


def test_pooling_shapes_and_weight():
    rows = torch.arange(27.0).repeat_interleave(27)  # token (r, c) holds r
    tokens = torch.stack([rows, -2 * rows], dim=-1)[None]  # (1, 729, 2)
    pooled = ref.reference_context(tokens, pool=3, weight=0.4)
    assert pooled.shape == (1, 81, 2)
    grid = pooled[0, :, 0].reshape(9, 9)
    torch.testing.assert_close(grid[:, 0], 0.4 * (3 * torch.arange(9.0) + 1))  # mean of rows 3i..3i+2, x0.4
    torch.testing.assert_close(pooled[0, :, 1], -2 * pooled[0, :, 0])
    assert ref.pool_tokens(tokens, 9).shape == (1, 9, 2)
    assert ref.pool_tokens(tokens, 4).shape == (1, 49, 2)  # round(27 / 4) = 7
    assert ref.pool_tokens(tokens, 1) is tokens
    with pytest.raises(ref.ReferenceError, match="square"):
        ref.pool_tokens(torch.zeros(1, 10, 2), 3)


def test_reference_tokens_reach_the_transformer_not_the_controlnet():
    comps = tiny_flux_components(seed=0)
    cfg = AnchorConfig(steps=2, true_cfg=2.0, max_sequence_length=8)
    reference = torch.randn(1, 9, 32)
    seen = {"transformer": [], "controlnet": []}

    def spy(name):
        def hook(module, args, kwargs):
            seen[name].append((kwargs["encoder_hidden_states"].clone(), kwargs["txt_ids"].shape[0]))
        return hook

    comps.transformer.register_forward_pre_hook(spy("transformer"), with_kwargs=True)
    comps.controlnet.register_forward_pre_hook(spy("controlnet"), with_kwargs=True)
    gen = AnchorGenerator(comps, cfg, ["sks style"], references=[reference])
    text, _ = gen.text.encode("sks style")
    negative, _ = gen.text.encode("")
    gen.generate_latents(np.zeros((32, 32), np.float32), "sks style", seed=0)
    # step 0: conditional only; step 1: conditional + negative (true CFG from step 1)
    assert [e.shape[1] for e, _ in seen["transformer"]] == [8 + 9, 8 + 9, 8]
    assert [e.shape[1] for e, _ in seen["controlnet"]] == [8, 8, 8]
    for e, n_ids in seen["transformer"][:2]:
        assert n_ids == 17
        torch.testing.assert_close(e[:, :8], text)
        torch.testing.assert_close(e[:, 8:], reference)
    for e, n_ids in seen["controlnet"][:2]:
        assert n_ids == 8
        torch.testing.assert_close(e, text)
    torch.testing.assert_close(seen["transformer"][2][0], negative)  # the negative pass has no reference
    # and the tokens change the image
    plain = AnchorGenerator(comps, cfg, ["sks style"]).generate_latents(np.zeros((32, 32), np.float32),
                                                                       "sks style", seed=0)
    styled = gen.generate_latents(np.zeros((32, 32), np.float32), "sks style", seed=0)
    assert float((plain - styled).abs().max()) > 1e-4
    with pytest.raises(ValueError, match="style 1 has no reference"):
        gen.generate_latents(np.zeros((32, 32), np.float32), "sks style", seed=0, style=1)


TINY = ('[align]\nmode = "reference"\n'
        "[anchors]\nsteps = 2\nmax_sequence_length = 16\n"
        "[inbetween]\nsteps = 1\n")


def test_reference_mode_runs_align_free_end_to_end(tmp_path, monkeypatch):
    from videofrom3d.cli import main
    from videofrom3d.io.video import read_video

    loads = []
    real = ref.tiny_redux_components
    monkeypatch.setattr(ref, "tiny_redux_components", lambda seed=0: loads.append(seed) or real(seed))
    job = make_job(tmp_path, width=32, height=32, frames_per_arc=45, arcs=1, extra=TINY)
    assert main(["render", str(job), "--engine", "diffusion", "--models", "tiny-random", "--quiet"]) == 0
    work = tmp_path / "work"
    assert not (work / "align" / "lora.safetensors").exists() and not (work / "align" / "checkpoints").exists()
    tokens, meta = ref.read_references(work / "align" / "reference.safetensors")
    assert [t.shape for t in tokens] == [(1, 81, 32)] and meta["pool"] == 3 and meta["weight"] == 0.4
    manifest = json.loads((work / "manifest.json").read_text())
    item = manifest["stages"]["align"]["items"]["diffusion"]
    assert item["mode"] == "reference" and item["lora"] is None and "no LoRA" in item["why"]
    assert sorted(p.name for p in (work / "anchors").glob("*.png")) == ["000.png", "001.png"]
    assert read_video(work / "video.mp4").shape == (46, 32, 32, 3)
    assert loads == [0]

    # a second job (another scene folder, same style image bytes) encodes nothing: the shared cache has it
    job2 = make_job(tmp_path / "second", width=32, height=32, frames_per_arc=45, arcs=1, extra=TINY)
    assert main(["align", str(job2), "--engine", "diffusion", "--models", "tiny-random", "--quiet"]) == 0
    assert loads == [0]
    assert ((tmp_path / "second" / "work" / "align" / "reference.safetensors").read_bytes()
            == (work / "align" / "reference.safetensors").read_bytes())
    # other settings reuse the encoded tokens too (the cache holds them before pooling)
    job3 = make_job(tmp_path / "third", width=32, height=32, frames_per_arc=45, arcs=1,
                    extra=TINY.replace('"reference"\n', '"reference"\nreference_pool = 9\n'))
    assert main(["align", str(job3), "--engine", "diffusion", "--models", "tiny-random", "--quiet"]) == 0
    assert loads == [0]
    tokens3, _ = ref.read_references(tmp_path / "third" / "work" / "align" / "reference.safetensors")
    assert tokens3[0].shape == (1, 9, 32)


def test_missing_redux_is_a_one_line_error(tmp_path, monkeypatch):
    from videofrom3d import diffusion
    from videofrom3d.engines import EngineError
    from videofrom3d.job import load_job

    for var in ("VIDEOFROM3D_MODELS", "HF_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    job = load_job(make_job(tmp_path, width=32, height=32, frames_per_arc=4, arcs=1, extra=TINY))
    with pytest.raises(EngineError) as e:
        diffusion._check(job, "real", "anchors", diffusion._configs(job))
    msg = str(e.value)
    assert "\n" not in msg and "redux (black-forest-labs/FLUX.1-Redux-dev)" in msg and "doctor" in msg
    lora_job = load_job(make_job(tmp_path / "b", width=32, height=32, frames_per_arc=4, arcs=1))
    with pytest.raises(EngineError) as e:
        diffusion._check(lora_job, "real", "anchors", diffusion._configs(lora_job))
    assert "redux" not in str(e.value)  # the LoRA recipe does not need it
    with pytest.raises(Exception, match="redux") as e:
        ref.load_redux_components()


def test_redux_loads_from_the_release_layout_and_from_siglip(tmp_path, monkeypatch):
    """FLUX.1-Redux-dev's folder (image_embedder/, image_encoder/, feature_extractor/) loads offline and
    encodes as the in-memory models do; without image_encoder/ SigLIP comes from the siglip entry."""
    from videofrom3d.models import MissingModelError

    tiny = ref.tiny_redux_components(seed=3)
    root = tmp_path / "models"
    redux_dir = root / "black-forest-labs" / "FLUX.1-Redux-dev"
    tiny.image_embedder.save_pretrained(redux_dir / "image_embedder", safe_serialization=True)
    tiny.image_encoder.save_pretrained(redux_dir / "image_encoder", safe_serialization=True)
    tiny.feature_extractor.save_pretrained(redux_dir / "feature_extractor")
    monkeypatch.setenv("VIDEOFROM3D_MODELS", str(root))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    image = _image(seed=5)
    expected = tiny.encode(image)
    loaded = ref.load_redux_components(device="cpu", dtype="float32")
    torch.testing.assert_close(loaded.encode(image), expected)
    # SigLIP in its own folder (google/siglip-so400m-patch14-384)
    siglip_dir = root / "google" / "siglip-so400m-patch14-384"
    siglip_dir.parent.mkdir(parents=True)
    (redux_dir / "image_encoder").rename(siglip_dir)
    tiny.feature_extractor.save_pretrained(siglip_dir)
    torch.testing.assert_close(ref.load_redux_components(device="cpu", dtype="float32").encode(image), expected)
    import shutil

    shutil.rmtree(siglip_dir)
    with pytest.raises(MissingModelError, match="siglip"):
        ref.load_redux_components(device="cpu", dtype="float32")


def test_each_anchor_uses_its_styles_reference():
    """Per-anchor styles: the style index (job.anchor_style(k) where the job has it, else [anchors] style)
    picks the reference tokens."""
    from types import SimpleNamespace

    from videofrom3d.anchors.generate import anchor_index, anchor_style

    comps = tiny_flux_components(seed=0)
    cfg = AnchorConfig(steps=1, true_cfg=1.0, max_sequence_length=8, style=1)
    refs = [torch.full((1, 4, 32), 1.0), torch.full((1, 4, 32), -1.0)]
    seen = []
    comps.transformer.register_forward_pre_hook(
        lambda m, a, kw: seen.append(kw["encoder_hidden_states"][0, -1, 0].item()), with_kwargs=True)
    gen = AnchorGenerator(comps, cfg, ["sks"], references=refs)
    edge = np.zeros((32, 32), np.float32)
    gen.generate_latents(edge, "sks", seed=0)  # default: [anchors] style = 1
    gen.generate_latents(edge, "sks", seed=0, style=0)
    assert seen == [-1.0, 1.0]
    job = SimpleNamespace()
    assert anchor_style(job, 3, cfg) == 1
    job.anchor_style = {0: 0, 2: 0}.get  # Job.anchor_style: the [anchor_styles] entry or None
    assert [anchor_style(job, k, cfg) for k in range(3)] == [0, 1, 0]
    arc0, arc2 = SimpleNamespace(index=0), SimpleNamespace(index=2)
    assert (anchor_index(arc0, 0), anchor_index(arc0, 45), anchor_index(arc2, 45)) == (0, 1, 3)


def test_anchor_styles_pick_the_reference_in_a_render(tmp_path, monkeypatch):
    """Reference mode with two styles and [anchor_styles]: each anchor gets its style's Redux tokens."""
    from videofrom3d.anchors.generate import AnchorGenerator as Gen
    from videofrom3d.cli import main
    from videofrom3d.io.images import write_image

    styles = []
    real = Gen.generate_latents

    def spy(self, edge_map, prompt, seed, guide=None, step_callback=None, style=None):
        styles.append((prompt, style, float(self.reference_for(style).sum())))
        return real(self, edge_map, prompt, seed, guide, step_callback, style=style)

    monkeypatch.setattr(Gen, "generate_latents", spy)
    extra = ('[[style]]\nimage = "style2.png"\nidentifier = "a watercolour of sks town"\n'
             "[anchor_styles]\n1 = 1\n" + TINY)
    job = make_job(tmp_path, width=32, height=32, frames_per_arc=4, arcs=2, extra=extra)
    write_image(tmp_path / "style2.png", _image(seed=9).astype(np.float32) / 255)
    assert main(["anchors", str(job), "--engine", "diffusion", "--models", "tiny-random", "--quiet"]) == 0
    tokens, _ = ref.read_references(tmp_path / "work" / "align" / "reference.safetensors")
    assert [(p, s) for p, s, _ in styles] == [("a photo of sks town", 0), ("a watercolour of sks town", 1),
                                              ("a photo of sks town", 0)]
    assert [t for _, _, t in styles] == pytest.approx([float(tokens[s].sum()) for s in (0, 1, 0)])
    assert float((tokens[0] - tokens[1]).abs().max()) > 1e-4
