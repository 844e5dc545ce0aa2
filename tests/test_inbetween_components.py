"""Checkpoint layouts of the inbetweening transformer: the authors' (PEFT LoRA inside, sharded), the flow
LoRA file, ours; strict loading with errors that name the tensor (issue 6)."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from safetensors.torch import save_file  # noqa: E402

from tiny_models import one_torch_thread  # noqa: E402, F401  (one intra-op thread for tiny models)
from videofrom3d.inbetween.components import (  # noqa: E402
    CheckpointError,
    attach_lora,
    load_flow_lora,
    load_transformer_checkpoint,
    save_transformer_checkpoint,
    tiny_transformer_config,
    widen_patch_embedding,
)
from videofrom3d.inbetween.sampling import rotary_embeddings  # noqa: E402

pytestmark = pytest.mark.torch

H, W, FRAMES, T = 32, 48, 9, 3
TARGETS = [f"transformer_blocks.{i}.attn1.{m}" for i in range(2) for m in ("to_q", "to_k", "to_v", "to_out.0")]


def _transformer(in_channels=32):
    from diffusers import CogVideoXTransformer3DModel

    torch.manual_seed(0)
    return CogVideoXTransformer3DModel(**tiny_transformer_config(H, W, in_channels, layers=2, frames=FRAMES)).eval()


def _forward(model, channels=48):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, T, channels, H // 8, W // 8, generator=g)
    text = torch.randn(1, 16, 32, generator=g)
    with torch.no_grad():
        return model(
            hidden_states=x,
            encoder_hidden_states=text,
            timestep=torch.tensor([500]),
            image_rotary_emb=rotary_embeddings(model, T, H // 8, W // 8),
            return_dict=False,
        )[0]


def _randomise_lora(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)


def _ggi_model(rank=4):
    """Widened 48-channel model with trained-looking edge channels and a rank-`rank` LoRA (alpha = rank)."""
    model = widen_patch_embedding(_transformer(32), 16)
    with torch.no_grad():
        model.patch_embed.proj.weight[:, 32:].normal_(0, 0.05, generator=torch.Generator().manual_seed(1))
    attach_lora(model, TARGETS, rank)
    _randomise_lora(model)
    return model.eval()


def _write_official(model, folder, shards=3, strip_adapter_name=False, prefix=""):
    """The authors' layout: config.json (in_channels 48) + the PEFT-wrapped state dict in several shards."""
    folder.mkdir(parents=True)
    config = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}
    (folder / "config.json").write_text(json.dumps(config, default=list))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if strip_adapter_name:
        state = {k.replace(".default.", "."): v for k, v in state.items()}
    keys = sorted(state)
    for i in range(shards):
        part = {prefix + k: state[k] for k in keys[i::shards]}
        save_file(part, str(folder / f"diffusion_pytorch_model-{i + 1:05d}-of-{shards:05d}.safetensors"))
    return folder


@pytest.mark.parametrize("strip_adapter_name,prefix", [(False, ""), (True, "transformer.")])
def test_official_layout_loads_strictly_and_reproduces(tmp_path, strip_adapter_name, prefix):
    model = _ggi_model()
    reference = _forward(model)
    folder = _write_official(model, tmp_path / "checkpoint-1350" / "transformer", strip_adapter_name=strip_adapter_name, prefix=prefix)
    assert any(".lora_A." in k for k in json.dumps(list(model.state_dict())).split('"'))
    unmerged = load_transformer_checkpoint(tmp_path / "checkpoint-1350", torch.float32, merge=False)
    assert unmerged.config.in_channels == 48
    assert any(".lora_A." in n for n, _ in unmerged.named_parameters())
    # same tensors (the state dicts are equal); fp32 kernels may round differently on other memory
    assert (_forward(unmerged) - reference).abs().max().item() < 1e-6
    assert all(torch.equal(a, b) for a, b in zip(unmerged.state_dict().values(), model.state_dict().values()))
    merged = load_transformer_checkpoint(folder, torch.float32, merge=True)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    diff = (_forward(merged) - reference).abs().max().item()
    assert diff < 1e-5
    # the LoRA matters: without it the output is different
    plain = _ggi_model()
    plain.disable_adapters()
    assert (_forward(plain) - reference).abs().max().item() > 1e-3


def test_lora_rank_and_alpha_are_read(tmp_path):
    model = _ggi_model(rank=6)
    folder = _write_official(model, tmp_path / "ckpt", shards=2)
    loaded = load_transformer_checkpoint(folder, torch.float32, merge=False)
    assert loaded.peft_config["default"].r == 6 and loaded.peft_config["default"].lora_alpha == 6
    # an explicit alpha halves the LoRA scale: output moves
    half = load_transformer_checkpoint(folder, torch.float32, merge=False, lora_alpha=3)
    assert (_forward(half) - _forward(loaded)).abs().max().item() > 1e-4


def test_shape_mismatch_names_the_tensor(tmp_path):
    model = _ggi_model()
    folder = _write_official(model, tmp_path / "ckpt", shards=1)
    config = json.loads((folder / "config.json").read_text())
    config["in_channels"] = 32  # an unwidened config with widened weights
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"'patch_embed.proj.weight' has shape \(32, 48, 2, 2\), expected \(32, 32, 2, 2\)"):
        load_transformer_checkpoint(folder, torch.float32)


def test_missing_and_unexpected_tensors_are_named(tmp_path):
    model = _ggi_model()
    folder = _write_official(model, tmp_path / "ckpt", shards=1)
    from safetensors.torch import load_file

    path = next(folder.glob("*.safetensors"))
    state = load_file(str(path))
    del state["proj_out.weight"]
    state["extra.weight"] = torch.zeros(2)
    save_file(state, str(path))
    with pytest.raises(CheckpointError, match=r"missing.*proj_out\.weight.*unexpected.*extra\.weight"):
        load_transformer_checkpoint(folder, torch.float32)


def test_flow_lora_on_stock_model_matches_manual_merge(tmp_path):
    stock = _transformer(32)
    g = torch.Generator().manual_seed(3)
    lora, rank = {}, 4
    for name in TARGETS:
        layer = dict(stock.named_modules())[name]
        lora[f"transformer.{name}.lora_A.weight"] = torch.randn(rank, layer.in_features, generator=g) * 0.2
        lora[f"transformer.{name}.lora_B.weight"] = torch.randn(layer.out_features, rank, generator=g) * 0.2
    save_file(lora, str(tmp_path / "I2V5B_final_i38800_nearest_lora_weights.safetensors"))
    manual = _transformer(32)
    with torch.no_grad():
        for name in TARGETS:
            layer = dict(manual.named_modules())[name]
            layer.weight += lora[f"transformer.{name}.lora_B.weight"] @ lora[f"transformer.{name}.lora_A.weight"]
    expected = _forward(manual, 32)
    merged = load_flow_lora(_transformer(32), tmp_path, merge=True)
    unmerged = load_flow_lora(_transformer(32), tmp_path, merge=False)
    assert (_forward(merged, 32) - expected).abs().max().item() < 1e-5
    assert (_forward(unmerged, 32) - expected).abs().max().item() < 1e-5
    assert (_forward(stock, 32) - expected).abs().max().item() > 1e-3


def test_flow_lora_shape_error(tmp_path):
    name = TARGETS[0]
    save_file(
        {f"transformer.{name}.lora_A.weight": torch.zeros(4, 7), f"transformer.{name}.lora_B.weight": torch.zeros(32, 4)},
        str(tmp_path / "lora.safetensors"),
    )
    with pytest.raises(CheckpointError, match="to_q.lora_A.weight' has shape \\(4, 7\\), expected \\(4, 32\\)"):
        load_flow_lora(_transformer(32), tmp_path / "lora.safetensors")


def test_our_checkpoint_round_trip_sharded(tmp_path):
    model = _ggi_model()
    reference = _forward(model)
    folder = save_transformer_checkpoint(model, tmp_path / "ours", max_shard_bytes=60_000)
    assert len(list(folder.glob("*.safetensors"))) > 1
    assert (folder / "diffusion_pytorch_model.safetensors.index.json").is_file()
    assert json.loads((folder / "adapter_config.json").read_text())["lora_alpha"] == 4
    loaded = load_transformer_checkpoint(folder, torch.float32, merge=False)
    assert (_forward(loaded) - reference).abs().max().item() < 1e-6
    # a merged model saves without LoRA tensors and reloads to the same output
    merged_folder = save_transformer_checkpoint(load_transformer_checkpoint(folder, torch.float32), tmp_path / "merged")
    again = load_transformer_checkpoint(merged_folder, torch.float32)
    assert np.abs((_forward(again) - reference).numpy()).max() < 1e-5
