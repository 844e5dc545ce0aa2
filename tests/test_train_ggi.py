"""GGI training (issue 20): clip preparation and its cache, the loss going down, what trains and what stays
frozen, exact resume, checkpoints the inbetween stage loads, and two accelerate processes agreeing. All on
tiny random models and a synthetic video set made here (frame folders in the DL3DV layout and an mp4)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("accelerate")

from tiny_models import one_torch_thread  # noqa: E402, F401
from videofrom3d.inbetween.training import dataset as ds  # noqa: E402
from videofrom3d.inbetween.training.config import TrainConfigError, load_train_config, train_config_from_dict  # noqa: E402
from videofrom3d.inbetween.training.model import FLOW_ADAPTER, TRAIN_ADAPTER, export_state  # noqa: E402
from videofrom3d.inbetween.training.trainer import build_components, train_ggi  # noqa: E402

pytestmark = pytest.mark.torch

H, W, FRAMES = 32, 48, 14  # 14 frames -> padded to 17 -> 5 latents of 4 x 6


def _texture(seed: int, h: int, w: int) -> np.ndarray:
    import cv2

    img = cv2.GaussianBlur(np.random.default_rng(seed).random((h, w, 3)).astype(np.float32), (0, 0), 2.0)
    return (img - img.min()) / (img.max() - img.min())


def _pan(seed: int, n: int = 16, h: int = 40, w: int = 60, speed: int = 2) -> np.ndarray:
    """A texture panning left by ``speed`` px per frame: (n, h, w, 3)."""
    big = _texture(seed, h + 4, w + speed * n)
    return np.stack([big[2 : 2 + h, speed * i : speed * i + w] for i in range(n)])


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Two DL3DV-style scenes (images_2 and a smaller images_4 each; images_2 is used), an mp4 with a
    caption, and a video too short for a clip."""
    from videofrom3d.io.images import write_image
    from videofrom3d.io.video import write_video

    root = tmp_path_factory.mktemp("videos")
    for k in range(2):
        frames = _pan(k)
        for sub, step in (("images_2", 1), ("images_4", 2)):
            (root / f"scene{k}" / sub).mkdir(parents=True)
            for i, f in enumerate(frames):
                write_image(root / f"scene{k}" / sub / f"frame_{i + 1:05d}.png", f[::step, ::step])
    write_video(root / "walk.mp4", _pan(5), fps=8)
    (root / "walk.txt").write_text("a walk through a tiny town\n")
    write_video(root / "short.mp4", _pan(6, n=4), fps=8)
    return root


def _doc(videos: Path, out: Path, cache: Path | None = None, **train) -> dict:
    data = {"videos": str(videos), "frames": FRAMES, "width": W, "height": H, "noise_grid_factor": 1,
            "hed_resolution": 64}
    if cache is not None:
        data["cache"] = str(cache)
    return {"out": str(out), "seed": 3, "data": data,
            "train": {"steps": 2, "checkpoint_every": 2, "validate_every": 0, "validation_steps": 2,
                      "mixed_precision": "no", "gradient_accumulation": 1, "warmup_steps": 1,
                      "learning_rate": 1e-3, **train}}


@pytest.fixture(scope="module")
def cache(videos, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cache")
    cfg = train_config_from_dict(_doc(videos, folder / "unused", folder))
    train_ggi(cfg, "tiny-random", prepare_only=True, progress=False)
    return folder


def test_data_prep_shapes_cache_and_manifest(videos, cache, monkeypatch):
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["flow"] == "dis"  # torchvision does not import with CPU torch
    assert len(manifest["train"]) == 2 and len(manifest["validation"]) == 1
    assert manifest["skipped"] == ["short.mp4: fewer than 14 frames"]
    names = manifest["train"] + manifest["validation"]
    assert [n.split("-")[0] for n in names] == ["scene0_images_2", "scene1_images_2", "walk.mp4"]
    item = ds.ClipDataset(cache, names)[2]
    assert item["frames"].shape == (FRAMES, H, W, 3) and item["frames"].dtype == np.uint8
    assert item["edges"].shape == (FRAMES, H, W) and item["edges"].dtype == np.uint8
    assert item["noise"].shape == (5, 16, H // 8, W // 8) and item["noise"].dtype == np.float32
    assert item["prompt"] == "a walk through a tiny town"
    assert 0.8 < float(np.std(item["noise"])) < 1.2  # the warper keeps unit variance
    # the frames are the source, covered and centre-cropped: 40x60 -> 32x48 (scale 0.8)
    import cv2

    src = _pan(0)[0]
    want = cv2.resize(src, (48, 32), interpolation=cv2.INTER_AREA)
    got = ds.ClipDataset(cache, names)[0]["frames"][0] / 255.0
    assert np.abs(got - want).max() < 1.0 / 255 + 1e-6

    # a second run does no work: no annotator is even built
    monkeypatch.setattr(ds, "make_annotators", lambda *a, **k: pytest.fail("annotators built on a cached run"))
    stamps = {p: p.stat().st_mtime_ns for p in cache.rglob("*.npy")}
    cfg = train_config_from_dict(_doc(videos, cache / "unused", cache))
    report = ds.prepare_dataset(cfg.data, cache, "tiny-random", seed=3, progress=False)
    assert report["prepared"] == [] and sorted(report["reused"]) == sorted(names)
    assert stamps == {p: p.stat().st_mtime_ns for p in cache.rglob("*.npy")}


def test_data_prep_resumes_and_redoes_changed_options(videos, tmp_path):
    cfg = train_config_from_dict(_doc(videos, tmp_path / "o", tmp_path / "c"))
    first = ds.prepare_dataset(cfg.data, tmp_path / "c", "tiny-random", seed=3, shard=(0, 2), progress=False)
    assert len(first["prepared"]) == 2  # clips 0 and 2 of 3
    second = ds.prepare_dataset(cfg.data, tmp_path / "c", "tiny-random", seed=3, progress=False)
    assert len(second["prepared"]) == 1 and len(second["reused"]) == 2  # an interrupted run resumes
    cfg2 = train_config_from_dict({**_doc(videos, tmp_path / "o", tmp_path / "c"),
                                   "data": {**_doc(videos, tmp_path, tmp_path / "c")["data"], "flow_scale": 1.0}})
    assert len(ds.prepare_dataset(cfg2.data, tmp_path / "c", "tiny-random", seed=3, progress=False)["prepared"]) == 3


def test_train_toml_is_strict(tmp_path):
    (tmp_path / "v").mkdir()
    good = 'out = "runs"\n[data]\nvideos = "v"\n[train]\nsteps = 5\ncheckpoint_every = 5\n'
    (tmp_path / "t.toml").write_text(good)
    cfg = load_train_config(tmp_path / "t.toml")
    assert cfg.out == tmp_path / "runs" and cfg.train.steps == 5 and cfg.data.videos == str(tmp_path / "v")
    assert (cfg.train.learning_rate, cfg.train.betas, cfg.train.weight_decay, cfg.train.warmup_steps) == (
        5e-5, (0.9, 0.95), 1e-4, 800)  # paper 3.4
    for bad, words in [(good + "stepz = 3\n", "[train] stepz: unknown key; did you mean 'steps'?"),
                       (good.replace("steps = 5", 'steps = "5"'), "[train].steps"),
                       (good.replace('out = "runs"\n', ""), "out = "),
                       ('out = "x"\n[data]\nvideos = "v"\nfoo = 1\n', "[data] foo: unknown key; known: ")]:
        (tmp_path / "t.toml").write_text(bad)
        with pytest.raises(TrainConfigError) as e:
            load_train_config(tmp_path / "t.toml")
        assert words in str(e.value) and "\n" not in str(e.value)


def test_30_steps_on_a_fixed_batch_lower_the_loss(videos, cache, tmp_path):
    from videofrom3d.inbetween.training.batch import make_batch
    from videofrom3d.inbetween.training.model import set_trainable
    from videofrom3d.inbetween.training.trainer import training_loss

    cfg = train_config_from_dict(_doc(videos, tmp_path, cache, gradient_checkpointing=False))
    c = build_components(cfg, "tiny-random")
    params = set_trainable(c.transformer, "full")
    manifest = ds.load_manifest(cache)
    items = [ds.ClipDataset(cache, manifest["train"])[0]]
    batch = make_batch(c.vae, items, torch.Generator().manual_seed(0), (-3.0, 0.5))
    text = torch.zeros(1, c.transformer.config.max_text_seq_length, c.transformer.config.text_embed_dim)
    opt = torch.optim.AdamW(params, lr=2e-3, betas=(0.9, 0.95), weight_decay=1e-4)
    losses = []
    for _ in range(30):
        loss = training_loss(c.transformer, c.transformer.config, c.scheduler, batch, text,
                             torch.Generator().manual_seed(1), (0.0, 1.0), "cpu")  # same noise, t, alpha
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses


def _params(model) -> dict:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_only_intended_parameters_change(videos, cache, tmp_path, mode):
    cfg = train_config_from_dict(_doc(videos, tmp_path / "out", cache, mode=mode, lora_rank=4))
    result = train_ggi(cfg, "tiny-random", progress=False)
    after = _params(result["weights"])
    before = _params(build_components(cfg, "tiny-random").transformer)  # the same seeded initial model
    assert after.keys() == before.keys()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    flow = [k for k in after if f".{FLOW_ADAPTER}." in k]
    assert flow and not changed & set(flow)  # the flow LoRA is bit-identical
    embed_edges = after["patch_embed.proj.weight"][:, 32:]
    assert embed_edges.abs().sum() > 0 and "patch_embed.proj.weight" in changed  # edge channels learn
    if mode == "full":
        others = [k for k in after if k not in flow]
        assert len(changed) >= 0.9 * len(others)
    else:
        trained = {k for k in after if f".{TRAIN_ADAPTER}." in k or k.startswith("patch_embed.proj.")}
        assert changed <= trained and any(f"lora_B.{TRAIN_ADAPTER}" in k for k in changed)
        # the exported checkpoint has the trained adapter merged: W + B A (alpha = rank)
        from videofrom3d.inbetween.components import load_transformer_checkpoint

        loaded = load_transformer_checkpoint(tmp_path / "out" / "checkpoint-2", torch.float32).state_dict()
        m = "transformer_blocks.0.ff.net.2"
        want = after[f"{m}.base_layer.weight"] + after[f"{m}.lora_B.{TRAIN_ADAPTER}.weight"] @ after[
            f"{m}.lora_A.{TRAIN_ADAPTER}.weight"]
        assert not torch.equal(want, after[f"{m}.base_layer.weight"])
        torch.testing.assert_close(loaded[f"{m}.weight"], want)


def test_killed_run_resumes_exactly_and_checkpoint_loads_in_inbetween(videos, cache, tmp_path):
    doc = _doc(videos, tmp_path / "a", cache, steps=4, checkpoint_every=2, gradient_accumulation=2)
    whole = train_ggi(train_config_from_dict({**doc, "train": {**doc["train"], "validate_every": 4}}), "tiny-random",
                      progress=False)
    scores = [json.loads(ln) for ln in (tmp_path / "a" / "validation" / "metrics.jsonl").read_text().splitlines()]
    assert [s["step"] for s in scores] == [4] and (tmp_path / "a" / "validation" / "step-4.mp4").stat().st_size > 0
    assert 5 < scores[0]["psnr"] < 60 and 0 <= scores[0]["edge_f"] <= 1 and scores[0]["flow_epe"] >= 0
    again = train_ggi(train_config_from_dict(doc), "tiny-random", progress=False)
    assert again["losses"] == [] and again["step"] == 4  # finished: nothing to do

    def kill(step, loss):
        if step == 3:
            raise KeyboardInterrupt

    doc_b = {**doc, "out": str(tmp_path / "b")}
    with pytest.raises(KeyboardInterrupt):
        train_ggi(train_config_from_dict(doc_b), "tiny-random", progress=False, on_step=kill)
    assert sorted(p.name for p in (tmp_path / "b").glob("checkpoint-*")) == ["checkpoint-2"]
    resumed = train_ggi(train_config_from_dict(doc_b), "tiny-random", progress=False)
    assert resumed["resumed_from"] == 2 and resumed["losses"] == whole["losses"][2:]
    a, b = _params(whole["weights"]), _params(resumed["weights"])
    assert all(torch.equal(a[k], b[k]) for k in a)

    # the authors' layout: config.json + safetensors with PEFT LoRA tensors
    ckpt = tmp_path / "a" / "checkpoint-4"
    from safetensors.torch import load_file

    tensors = load_file(str(ckpt / "transformer" / "diffusion_pytorch_model.safetensors"))
    assert json.loads((ckpt / "transformer" / "config.json").read_text())["in_channels"] == 48
    assert any(k.endswith(f"lora_A.{FLOW_ADAPTER}.weight") for k in tensors)

    # ... which the inbetween stage loads through checkpoint_path, and the training changed its output
    from videofrom3d.inbetween import InbetweenConfig
    from videofrom3d.inbetween.components import save_transformer_checkpoint
    from videofrom3d.inbetween.inbetweener import load_inbetweener
    from videofrom3d.job import job_from_dict

    init = build_components(train_config_from_dict(doc), "tiny-random").transformer
    save_transformer_checkpoint(init, tmp_path / "init", state=export_state(init.state_dict()))
    job = job_from_dict({"name": "t", "seed": 1, "scene": {"path": "s.glb"}, "trajectory": {"generator": "orbit"},
                         "size": {"width": W, "height": H}, "arcs": {"frames_per_arc": FRAMES - 1},
                         "out": str(tmp_path / "work")}, base=tmp_path)
    clip = ds.ClipDataset(cache, ds.load_manifest(cache)["validation"])[0]
    frames = np.asarray(clip["frames"], np.float32) / 255
    outs = {}
    for name, path in (("trained", ckpt), ("init", tmp_path / "init")):
        cfg = InbetweenConfig(transformer="checkpoint", checkpoint_path=str(path), prompt="a town", steps=2,
                              dtype="float32", device="cpu")
        with load_inbetweener(job, cfg, models="tiny-random") as inb:
            loaded = inb.components.transformer.state_dict()
            outs[name] = inb.inbetween(frames[0], frames[-1], np.asarray(clip["edges"], np.float32) / 255,
                                       np.asarray(clip["noise"]), None, seed=0)
        if name == "trained":  # the merged flow LoRA: W + B A (alpha = rank)
            m = "transformer_blocks.0.attn1.to_q"
            want = a[f"{m}.base_layer.weight"] + a[f"{m}.lora_B.default.weight"] @ a[f"{m}.lora_A.default.weight"]
            torch.testing.assert_close(loaded[f"{m}.weight"], want)
            torch.testing.assert_close(loaded["patch_embed.proj.weight"], a["patch_embed.proj.weight"])
    assert outs["trained"].shape == (FRAMES, H, W, 3)
    assert np.abs(outs["trained"] - outs["init"]).mean() > 1e-3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_accelerate_launch_two_cpu_processes_agree(videos, cache, tmp_path):
    """`accelerate launch -m videofrom3d train-ggi` with 2 CPU processes (gloo): 2 steps, replicas agree."""
    doc = _doc(videos, tmp_path / "out", cache)
    toml = "\n".join([f'out = "{doc["out"]}"', "seed = 3", "[data]"]
                     + [f"{k} = {json.dumps(v)}" for k, v in doc["data"].items()] + ["[train]"]
                     + [f"{k} = {json.dumps(v)}" for k, v in doc["train"].items()])
    (tmp_path / "train.toml").write_text(toml.replace("false", "false").replace("true", "true") + "\n")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()), "-m", "videofrom3d", "train-ggi", str(tmp_path / "train.toml"),
           "--models", "tiny-random", "--quiet"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    info = json.loads((tmp_path / "out" / "checkpoint-2" / "trainer.json").read_text())
    assert info["processes"] == 2
    assert len(set(info["replica_digests"])) == 1  # both processes hold the same weights
    assert info["replica_digests"][0] != info["initial_digest"]  # ... and they did train
