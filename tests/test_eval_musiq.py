"""MUSIQ (eval/musiq.py): the pyiqa checkpoint layout, multi-scale patches, hashed positions, loading through
the model registry and the eval command, on tiny random weights (tier 1)."""

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from videofrom3d.eval.musiq import (  # noqa: E402
    MUSIQ,
    MusiqConfig,
    hashed_positions,
    load_musiq,
    multiscale_patches,
    musiq_scores,
    vbench_resize,
)

TINY = MusiqConfig(hidden_size=32, mlp_dim=48, num_heads=2, num_layers=1)


def _tiny(seed=0):
    torch.manual_seed(seed)
    m = MUSIQ(TINY).eval()
    with torch.no_grad():  # non-trivial norms and a head near the real 0-100 range
        for name, p in m.named_parameters():
            if ".norm" in name or "gn" in name:
                p.normal_(1.0 if name.endswith("weight") else 0.0, 0.3)
        m.head.bias.fill_(50.0)
        m.head.weight.normal_(0.0, 5.0)
    return m


def _save_tiny(folder, seed=0):
    """The tiny model as pyiqa's KonIQ .pth (plain state dict) and a SPAQ .safetensors twin (with the head count
    in its metadata), in one folder; returns the model."""
    from safetensors.torch import save_file

    m = _tiny(seed)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(m.state_dict(), folder / "musiq_koniq_ckpt-e95806b9.pth")
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(folder / "musiq_spaq.safetensors"),
              metadata={"num_heads": str(TINY.num_heads)})
    return m


# Read from pyiqa/archs/musiq_arch.py (MUSIQ defaults: hidden 384, mlp 1152, 14 layers, grid 10, 3 scales,
# ResNet token dim 64, patch 32 -> 8 x 8 x 256 features per patch, num_class 1).
REFERENCE_SHAPES = {
    "conv_root.weight": (64, 3, 7, 7),
    "gn_root.weight": (64,),
    "block1.conv1.weight": (64, 64, 1, 1),
    "block1.conv2.weight": (64, 64, 3, 3),
    "block1.conv3.weight": (256, 64, 1, 1),
    "block1.gn3.bias": (256,),
    "block1.conv_proj.weight": (256, 64, 1, 1),
    "block1.gn_proj.weight": (256,),
    "embedding.weight": (384, 16384),
    "embedding.bias": (384,),
    "transformer_encoder.posembed_input.position_emb": (1, 100, 384),
    "transformer_encoder.scaleembed_input.scale_emb": (3, 384),
    "transformer_encoder.cls": (1, 1, 384),
    "transformer_encoder.encoder_norm.weight": (384,),
    "transformer_encoder.transformer.encoderblock_0.norm1.weight": (384,),
    "transformer_encoder.transformer.encoderblock_0.attention.query.weight": (384, 384),
    "transformer_encoder.transformer.encoderblock_0.attention.key.bias": (384,),
    "transformer_encoder.transformer.encoderblock_0.attention.value.weight": (384, 384),
    "transformer_encoder.transformer.encoderblock_0.attention.out.weight": (384, 384),
    "transformer_encoder.transformer.encoderblock_0.norm2.bias": (384,),
    "transformer_encoder.transformer.encoderblock_0.mlp.fc1.weight": (1152, 384),
    "transformer_encoder.transformer.encoderblock_0.mlp.fc2.weight": (384, 1152),
    "transformer_encoder.transformer.encoderblock_13.mlp.fc2.bias": (384,),
    "head.weight": (1, 384),
    "head.bias": (1,),
}


def test_full_size_model_has_the_reference_state_dict_layout():
    sd = MUSIQ().state_dict()
    assert {k: tuple(sd[k].shape) for k in REFERENCE_SHAPES if k in sd} == REFERENCE_SHAPES
    # stem 3 + bottleneck 12 + embedding 2 + encoder 5 + 14 blocks x 16 + head 2; no buffers
    assert len(sd) == 248 and not any("encoderblock_14" in k for k in sd)
    assert sum(v.numel() for v in sd.values()) == 27_125_825
    assert "head.0.weight" in MUSIQ(MusiqConfig(num_classes=10)).state_dict()  # AVA: Linear + Softmax


def test_hashed_positions_for_known_grids():
    expected_cols = [math.floor(j * 10 / 7) for j in range(7)]  # [0, 1, 2, 4, 5, 7, 8]
    got = hashed_positions(10, 5, 7).view(5, 7)
    assert got[0].tolist() == expected_cols == [0, 1, 2, 4, 5, 7, 8]
    assert got[:, 0].tolist() == [0, 20, 40, 60, 80]
    assert got[3, 4].item() == 6 * 10 + 5
    up = hashed_positions(10, 20, 16).view(20, 16)  # more cells than bins: each bin repeats
    assert up[:, 0].tolist() == [10 * (i // 2) for i in range(20)]
    assert up[0].tolist() == [0, 0, 1, 1, 2, 3, 3, 4, 5, 5, 6, 6, 7, 8, 8, 9]


def test_multiscale_patches_counts_positions_and_padding():
    x = torch.ones(1, 3, 341, 512)  # a 720x480 frame after the VBench shrink
    seq = multiscale_patches(x)
    # 224: 149x224 -> 5x7 = 35 of 49; 384: 256x384 -> 8x12 = 96 of 144; native 11x16 = 176
    assert seq.patches.shape == (1, 49 + 144 + 176, 3 * 32 * 32)
    assert seq.mask[0, :49].sum() == 35 and seq.mask[0, 49:193].sum() == 96 and seq.mask[0, 193:].all()
    assert seq.scale[0, :35].eq(0).all() and seq.scale[0, 49:145].eq(1).all() and seq.scale[0, 193:].eq(2).all()
    assert seq.scale[0, 35:49].eq(0).all() and seq.spatial[0, 35:49].eq(0).all()  # padding tokens
    assert seq.patches[0, 35:49].abs().sum() == 0
    native = seq.spatial[0, 193:].view(11, 16)
    assert native[0].tolist() == [0, 0, 1, 1, 2, 3, 3, 4, 5, 5, 6, 6, 7, 8, 8, 9]
    assert native[:, 0].tolist() == [10 * math.floor(i * 10 / 11) for i in range(11)]
    assert seq.spatial[0, :35].view(5, 7)[1].tolist() == [20, 21, 22, 24, 25, 27, 28]
    # TF "SAME" zero padding: 341 rows -> 11 rows of patches, 5 zero rows on top, 6 at the bottom
    first = seq.patches[0, 193].view(3, 32, 32)
    assert first[:, :5].abs().sum() == 0 and first[:, 5:].eq(1).all()
    last_row = seq.patches[0, 193 + 10 * 16].view(3, 32, 32)
    assert last_row[:, -6:].abs().sum() == 0 and last_row[:, :-6].eq(1).all()


def test_padding_tokens_do_not_change_the_score():
    m = _tiny()
    seq = m.tokens(torch.rand(1, 3, 64, 96))
    assert not seq.mask.all()
    with torch.no_grad():
        a = m.score_tokens(seq)
        seq.patches[~seq.mask] = torch.randn_like(seq.patches[~seq.mask])
        b = m.score_tokens(seq)
        seq.patches[seq.mask] += 0.5  # real tokens do matter
        c = m.score_tokens(seq)
    assert torch.allclose(a, b, atol=1e-5) and not torch.allclose(a, c, atol=1e-3)


def test_vbench_resize_shrinks_the_longer_side_to_512():
    frames = torch.randint(0, 256, (2, 3, 480, 720), dtype=torch.uint8)
    out = vbench_resize(frames)
    assert out.shape == (2, 3, 341, 512)  # int(512 / 720 * 480) = 341
    assert torch.equal(out * 255, (out * 255).round()) and out.min() >= 0 and out.max() <= 1
    small = torch.randint(0, 256, (1, 3, 64, 96), dtype=torch.uint8)
    assert torch.equal(vbench_resize(small) * 255, small.float())  # <= 512: untouched


def test_tiny_weights_load_strictly_through_the_registry_and_score(tmp_path):
    from videofrom3d.eval.learned import find_weight, load_models

    folder = tmp_path / "musiq"
    m = _save_tiny(folder)
    frames = np.random.default_rng(0).random((3, 64, 96, 3)).astype(np.float32)
    want = musiq_scores(m, frames)

    path = find_weight("musiq", override=folder)
    spaq = load_musiq(path)  # the folder: SPAQ first
    assert spaq.dataset == "spaq" and spaq.checkpoint.name == "musiq_spaq.safetensors"
    assert spaq.cfg.num_heads == 2 and spaq.cfg.hidden_size == 32 and spaq.cfg.num_layers == 1
    assert torch.allclose(musiq_scores(spaq, frames), want, atol=1e-4)
    assert want.std() > 1e-3 and 0 < want.mean() < 100

    koniq = load_musiq(folder / "musiq_koniq_ckpt-e95806b9.pth")  # .pth read with weights_only
    assert koniq.dataset == "koniq" and koniq.cfg.num_heads == 1  # no metadata: hidden // 64, at least 1
    (folder / "musiq_spaq.safetensors").unlink()
    loaded = load_models(("musiq",), overrides={"musiq": folder}, device="cpu")
    assert not loaded.missing and loaded.paths["musiq"].endswith("musiq_koniq_ckpt-e95806b9.pth")

    bad = dict(m.state_dict(), extra=torch.zeros(1))
    torch.save(bad, tmp_path / "musiq_spaq_ckpt-358bb6af.pth")
    with pytest.raises(RuntimeError, match="Unexpected key"):
        load_musiq(tmp_path / "musiq_spaq_ckpt-358bb6af.pth")


def test_eval_command_reports_musiq_from_the_given_weight(tmp_path):
    from videofrom3d.cli import main
    from videofrom3d.eval.synthetic import make_synthetic_work

    work, frames = make_synthetic_work(tmp_path / "run", arcs=1, frames_per_arc=3)
    m = _save_tiny(tmp_path / "w")
    weight = tmp_path / "w" / "musiq_spaq.safetensors"
    out = tmp_path / "m.json"
    assert main(["eval", str(work), "--model", f"musiq={weight}", "--json", str(out), "--quiet",
                 "--device", "cpu"]) == 0
    doc = json.loads(out.read_text())[0]
    assert "musiq" not in {x["metric"] for x in doc["missing"]}
    assert doc["models"]["musiq"] == str(weight)
    assert doc["musiq"] == pytest.approx(float(musiq_scores(m, frames).mean()), abs=1e-3)
