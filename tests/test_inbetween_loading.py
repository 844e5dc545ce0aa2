"""`load_inbetweener(models="real")` through the real file layouts: a tiny CogVideoX-5B-I2V saved in the Hugging
Face cache layout, the authors' GGI checkpoint folder, the flow LoRA file, our own checkpoint."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from safetensors.torch import save_file  # noqa: E402

from tiny_models import one_torch_thread  # noqa: E402, F401
from videofrom3d.inbetween.components import (  # noqa: E402
    attach_lora,
    save_transformer_checkpoint,
    tiny_cogvideox_components,
    widen_patch_embedding,
)
from videofrom3d.inbetween.inbetweener import load_inbetweener  # noqa: E402
from videofrom3d.job import job_from_dict  # noqa: E402

pytestmark = pytest.mark.torch

H, W, N = 32, 48, 8  # 9 frames per arc -> 3 latent frames


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """HF cache with models--THUDM--CogVideoX-5b-I2V/snapshots/<rev>/ (tokenizer, text_encoder, vae,
    transformer, scheduler) from the tiny components, plus the components themselves."""
    root = tmp_path_factory.mktemp("hub")
    c = tiny_cogvideox_components(seed=0, height=H, width=W, in_channels=32, layers=2, frames=N + 1)
    repo = root / "models--THUDM--CogVideoX-5b-I2V"
    snap = repo / "snapshots" / "0123abc"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abc")
    c.tokenizer.save_pretrained(snap / "tokenizer")
    c.text_encoder.save_pretrained(snap / "text_encoder")
    c.vae.save_pretrained(snap / "vae")
    c.transformer.save_pretrained(snap / "transformer")
    c.scheduler.save_pretrained(snap / "scheduler")
    (snap / "model_index.json").write_text(json.dumps({"_class_name": "CogVideoXImageToVideoPipeline"}))
    return root, c


def _job(tmp_path, models, **inbetween):
    doc = {
        "name": "load",
        "scene": {"path": "scene.glb"},
        "trajectory": {"generator": "orbit"},
        "size": {"width": W, "height": H},
        "arcs": {"frames_per_arc": N},
        "models": models,
        "inbetween": {"dtype": "float32", "device": "cpu", "steps": 2, "prompt": "a house", **inbetween},
    }
    return job_from_dict(doc, base=tmp_path)


def _arc_inputs():
    rng = np.random.default_rng(0)
    start, end = rng.random((H, W, 3), dtype=np.float32), rng.random((H, W, 3), dtype=np.float32)
    edges = (rng.random((N + 1, H, W)) > 0.9).astype(np.float32)
    noise = rng.standard_normal((3, 16, H // 8, W // 8)).astype(np.float32)
    return start, end, edges, noise


def _generate(inb, edges=None):
    start, end, default_edges, noise = _arc_inputs()
    return inb.inbetween(start, end, default_edges if edges is None else edges, noise, None, 4)


def test_ggi_checkpoint_from_the_hub_layout(hub, tmp_path, monkeypatch):
    root, c = hub
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    model = widen_patch_embedding(tiny_cogvideox_components(seed=0, height=H, width=W, in_channels=32, layers=2,
                                                            frames=N + 1).transformer, 16)
    with torch.no_grad():
        model.patch_embed.proj.weight[:, 32:].normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
    attach_lora(model, ["transformer_blocks.0.attn1.to_q", "transformer_blocks.1.attn1.to_v"], 2)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    ckpt = save_transformer_checkpoint(model, tmp_path / "checkpoint-1350" / "transformer", max_shard_bytes=50_000)
    inb = load_inbetweener(_job(tmp_path, {"ggi": str(tmp_path / "checkpoint-1350")}))
    assert inb.components.transformer.config.in_channels == 48
    assert not any("lora" in n for n, _ in inb.components.transformer.named_parameters())  # merged once
    assert inb.components.text_encoder is None  # loaded on the first prompt only
    frames = _generate(inb)
    assert frames.shape == (N + 1, H, W, 3) and np.isfinite(frames).all()
    assert inb.components.text_encoder is None  # released after encoding
    assert len(inb.last_decoded) == 9
    # edges are read: other edge maps, other frames
    assert np.abs(_generate(inb, np.zeros((N + 1, H, W), np.float32)) - frames).max() > 1e-4
    # our own checkpoint: the same folder through [inbetween] checkpoint_path, unmerged, same frames
    ours = load_inbetweener(_job(tmp_path, {}, transformer="checkpoint", checkpoint_path=str(ckpt), merge_lora=False))
    assert np.abs(_generate(ours) - frames).max() < 1e-4


def test_flow_lora_and_stock(hub, tmp_path, monkeypatch):
    root, c = hub
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    stock = load_inbetweener(_job(tmp_path, {}, transformer="stock"))
    assert stock.components.transformer.config.in_channels == 32
    plain = _generate(stock)
    # a 32-channel model does not read edges
    assert np.array_equal(_generate(stock, np.zeros((N + 1, H, W), np.float32)), plain)
    lora_dir = tmp_path / "gwtf"
    lora_dir.mkdir()
    g = torch.Generator().manual_seed(0)
    tensors = {}
    for b in range(2):
        for m in ("to_q", "to_k", "to_v", "to_out.0"):
            tensors[f"transformer.transformer_blocks.{b}.attn1.{m}.lora_A.weight"] = torch.randn(4, 32, generator=g) * 0.3
            tensors[f"transformer.transformer_blocks.{b}.attn1.{m}.lora_B.weight"] = torch.randn(32, 4, generator=g) * 0.3
    save_file(tensors, str(lora_dir / "I2V5B_final_i38800_nearest_lora_weights.safetensors"))
    save_file({"x.lora_A.weight": torch.zeros(1, 1)}, str(lora_dir / "T2V2B_other_lora.safetensors"))  # ignored
    flow = load_inbetweener(_job(tmp_path, {"flow_lora": str(lora_dir)}, transformer="flow_lora"))
    assert np.abs(_generate(flow) - plain).max() > 1e-4


def test_real_size_is_checked(hub, tmp_path, monkeypatch):
    from videofrom3d.inbetween import InbetweenError

    root, _ = hub
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    doc_job = _job(tmp_path, {}, transformer="stock")
    import dataclasses

    with pytest.raises(InbetweenError, match=f"generates {W}x{H} only"):
        load_inbetweener(dataclasses.replace(doc_job, width=64, height=64))
