"""Model-based metrics on tiny random networks saved in the real weight layout and found through
videofrom3d.models, i.e. through the same code path as real weights (tier 1)."""

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytestmark = pytest.mark.torch

from videofrom3d.eval import evaluate_run  # noqa: E402
from videofrom3d.eval.synthetic import make_synthetic_work, render_view  # noqa: E402

TINY_VIT = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                patch_size=8)


def _tiny_clip(seed):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=99, max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=TINY_VIT, projection_dim=16,
    )
    return CLIPModel(cfg).eval()


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """Tiny random weights in the layouts the registry expects, under three naming schemes."""
    from transformers import DPTConfig, DPTForDepthEstimation, ViTConfig, ViTModel

    from videofrom3d.eval.lpips import LPIPS

    root = tmp_path_factory.mktemp("models")
    _tiny_clip(0).save_pretrained(root / "openai" / "clip-vit-large-patch14")  # org/name
    _tiny_clip(1).save_pretrained(root / "clip-vit-base-patch32")  # name
    torch.manual_seed(2)
    ViTModel(ViTConfig(**TINY_VIT), add_pooling_layer=False).eval().save_pretrained(root / "dino")  # key
    torch.manual_seed(3)
    dpt_cfg = DPTConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=4, num_attention_heads=2,
                        image_size=32, patch_size=8, neck_hidden_sizes=[8, 8, 8, 8], fusion_hidden_size=8,
                        backbone_out_indices=[0, 1, 2, 3], head_in_index=-1)
    DPTForDepthEstimation(dpt_cfg).eval().save_pretrained(root / "dpt-hybrid-midas")
    (root / "dpt-hybrid-midas" / "preprocessor_config.json").write_text(json.dumps(
        {"do_resize": True, "size": {"height": 32, "width": 32}, "resample": 3, "do_normalize": True,
         "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}))
    aes = root / "aesthetic-predictor-v1"
    aes.mkdir()
    g = torch.Generator().manual_seed(4)
    torch.save({"weight": torch.randn(1, 16, generator=g), "bias": torch.tensor([5.0])},
               aes / "sa_0_4_vit_l_14_linear.pth")
    lp = root / "lpips"
    lp.mkdir()
    torch.manual_seed(5)
    net = LPIPS("alex")
    torch.save({f"features.{k}": v for k, v in net.features.state_dict().items()}, lp / "alexnet-owt-7be5be79.pth")
    heads = {k: v.abs() for k, v in net.state_dict().items() if k.startswith("lin")}
    torch.save(heads, lp / "alex.pth")
    return root


@pytest.fixture(scope="module")
def loaded(models_dir):
    from videofrom3d.eval.evaluate import MODEL_METRICS
    from videofrom3d.eval.learned import load_models

    return load_models(MODEL_METRICS, models_dir=models_dir, device="cpu")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return make_synthetic_work(tmp_path_factory.mktemp("run") / "run", arcs=1, frames_per_arc=4)


def test_every_model_metric_runs_from_the_weight_folder(loaded, models_dir, work, tmp_path):
    assert set(loaded.missing) == {"musiq"} and "not found" in loaded.missing["musiq"]  # no MUSIQ file here
    assert loaded.paths["clip_l"].endswith("clip-vit-large-patch14") and loaded.paths["dino"].endswith("dino")
    r = evaluate_run(work[0], models=loaded)
    for key in ("lpips", "psnr_d", "clip_a", "clip_i", "clip_i_l14", "subject_consistency", "background_consistency"):
        assert isinstance(r[key], float) and math.isfinite(r[key]), key
    assert r["musiq"] is None and [m["metric"] for m in r["missing"]] == ["musiq"]
    assert 0 < r["subject_consistency"] <= 1 and 0 < r["background_consistency"] <= 1
    assert -1 <= r["clip_i"] <= 1 and r["lpips"] > 0
    # the command: same numbers through --models-dir
    from videofrom3d.cli import main

    out = tmp_path / "m.json"
    assert main(["eval", str(work[0]), "--models-dir", str(models_dir), "--json", str(out), "--quiet", "--device", "cpu"]) == 0
    doc = json.loads(out.read_text())[0]
    assert doc["clip_a"] == pytest.approx(r["clip_a"], rel=1e-5)
    assert doc["subject_consistency"] == pytest.approx(r["subject_consistency"], rel=1e-5)


def test_missing_weights_are_null_with_every_place_looked(tmp_path, monkeypatch, work):
    from videofrom3d.eval.evaluate import MODEL_METRICS
    from videofrom3d.eval.learned import load_models

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("VIDEOFROM3D_MODELS", raising=False)
    m = load_models(MODEL_METRICS, models_dir=tmp_path / "empty", device="cpu")
    assert set(m.missing) == set(MODEL_METRICS)
    assert "clip-vit-large-patch14" in m.missing["clip_a"] and str(tmp_path / "empty") in m.missing["clip_a"]
    assert "alexnet-owt-7be5be79.pth" in m.missing["lpips"]
    r = evaluate_run(work[0], models=m)
    assert all(r[k] is None for k in MODEL_METRICS)
    assert {x["metric"] for x in r["missing"]} == set(MODEL_METRICS)


def test_clip_a_is_the_linear_head_on_normalised_clip_embeddings(loaded, models_dir):
    from videofrom3d.eval.learned import aesthetic_scores, clip_preprocess, to_tensor

    frames = np.random.default_rng(0).random((3, 40, 60, 3)).astype(np.float32)
    got = aesthetic_scores(loaded.clip_l, loaded.aesthetic, frames)
    state = torch.load(models_dir / "aesthetic-predictor-v1" / "sa_0_4_vit_l_14_linear.pth", weights_only=True)
    with torch.no_grad():
        emb = loaded.clip_l.get_image_features(pixel_values=clip_preprocess(to_tensor(frames), 32)).pooler_output
    emb = emb / emb.norm(dim=-1, keepdim=True)
    expected = (emb @ state["weight"][0] + state["bias"]).numpy()
    assert np.allclose(got, expected, atol=1e-5)


def test_vbench_consistency_formula_and_static_clip():
    from videofrom3d.eval.learned import dino_cls, vbench_consistency

    e = torch.eye(3, dtype=torch.float64)
    f = torch.stack([e[0], e[1], (e[0] + e[1]) / math.sqrt(2)])
    mean, total, count = vbench_consistency(f)
    assert count == 2 and total == pytest.approx(1 / math.sqrt(2)) and mean == pytest.approx(1 / (2 * math.sqrt(2)))
    assert vbench_consistency(torch.stack([e[0], -e[0]]))[0] == 0.0  # negative cosines clamp to 0
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    dino = ViTModel(ViTConfig(**TINY_VIT), add_pooling_layer=False).eval()
    still = np.repeat(np.random.default_rng(1).random((1, 48, 72, 3)).astype(np.float32), 4, 0)
    feats = dino_cls(dino, still)
    assert feats.shape == (4, 32)
    assert vbench_consistency(feats)[0] == pytest.approx(1.0, abs=1e-6)


def test_psnr_d_ignores_monotone_remaps_but_not_a_polarity_flip():
    from videofrom3d.eval.learned import gt_disparity, psnr_d
    from videofrom3d.scene.camera import Camera, intrinsics_from_fov

    w, h = 96, 64
    cam = Camera(intrinsics_from_fov(w, h, fov_y_deg=50), np.eye(4), w, h)
    _, depth, _ = render_view(cam)
    depth = depth * (1 + 0.1 * np.linspace(0, 1, w))[None, :].astype(np.float32)  # a slanted wall
    disp = gt_disparity(depth)
    assert psnr_d(depth, disp) == 100.0
    assert psnr_d(depth, 3.0 * disp + 7.0) == 100.0  # affine: the same uint8 map before equalisation
    gamma = psnr_d(depth, np.sqrt(disp))  # other monotone remaps: only uint8 rounding differs
    flipped = psnr_d(depth, depth)  # depth given where disparity is expected
    assert gamma > 30.0 and flipped < 15.0


def test_lpips_zero_on_identical_symmetric_and_masked(loaded):
    from videofrom3d.eval.learned import lpips_map

    rng = np.random.default_rng(0)
    a = rng.random((48, 64, 3)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1).astype(np.float32)
    same = lpips_map(loaded.lpips, a, a)
    assert same.shape == (48, 64) and np.abs(same).max() == 0.0
    ab, ba = lpips_map(loaded.lpips, a, b), lpips_map(loaded.lpips, b, a)
    assert ab.mean() > 0 and np.allclose(ab, ba, atol=1e-6)
