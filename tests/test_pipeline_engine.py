"""Engine choice (auto prints which and why) and the manifest's hashing and recovery."""

from __future__ import annotations

import json

import numpy as np
import pytest

from videofrom3d.diffusion import missing_weights
from videofrom3d.io.manifest import Manifest, digest_json, digest_path
from videofrom3d.models import MODELS
from videofrom3d.pipeline import PipelineError, choose_engine, plan


def fake_weights(root, keys):
    for key in keys:
        spec = MODELS[key]
        folder = root / spec.repo_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / spec.marker).write_text("{}")


@pytest.fixture
def models_root(tmp_path, monkeypatch):
    root = tmp_path / "models"
    root.mkdir()
    monkeypatch.setenv("VIDEOFROM3D_MODELS", str(root))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    return root


def test_auto_picks_diffusion_only_with_every_weight_and_a_gpu(models_root, monkeypatch):
    monkeypatch.setattr(plan, "cuda_status", lambda: (True, "Fake GPU, 80 GiB"))
    engine, why = choose_engine("auto")
    assert engine == "preview"
    assert "missing weights: flux, controlnet_hed, cogvideox, ggi or flow_lora" in why

    fake_weights(models_root, ["flux", "controlnet_hed", "cogvideox"])
    engine, why = choose_engine("auto")
    assert engine == "preview" and "missing weights: ggi or flow_lora" in why

    fake_weights(models_root, ["flow_lora"])
    assert choose_engine("auto") == ("diffusion", "auto: every weight found and a CUDA GPU (Fake GPU, 80 GiB)")

    monkeypatch.setattr(plan, "cuda_status", lambda: (False, "no CUDA GPU visible to torch"))
    engine, why = choose_engine("auto")
    assert engine == "preview" and why == "auto: no CUDA GPU visible to torch"


def test_explicit_engines_and_tiny_random(models_root):
    assert choose_engine("preview")[0] == "preview"
    assert choose_engine("diffusion")[0] == "diffusion"  # asked for: no silent switch, even without weights
    engine, why = choose_engine("auto", "tiny-random")
    assert engine == "diffusion" and "tiny random" in why
    with pytest.raises(PipelineError, match="--engine must be one of"):
        choose_engine("fast")
    with pytest.raises(PipelineError, match="--models must be one of"):
        choose_engine("auto", "small")


def test_job_model_path_counts_as_found(models_root, monkeypatch, tmp_path):
    from videofrom3d.job import job_from_dict

    fake_weights(models_root, ["flux", "controlnet_hed", "cogvideox"])
    ggi = tmp_path / "my_ggi"
    ggi.mkdir()
    (ggi / "config.json").write_text("{}")
    job = job_from_dict({"scene": "s.glb", "trajectory": "c.json", "models": {"ggi": str(ggi)}})
    assert missing_weights(job) == []
    assert missing_weights(None) == ["ggi or flow_lora"]


def test_digests_are_content_hashes(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "x.txt").write_text("same")
    # .npz is hashed by its arrays, not by its zip container (compression, times)
    np.savez(a / "arrays.npz", flow=np.arange(600.0).reshape(20, 30))
    np.savez_compressed(b / "arrays.npz", flow=np.arange(600.0).reshape(20, 30))
    assert (a / "arrays.npz").read_bytes() != (b / "arrays.npz").read_bytes()
    assert digest_path(a) == digest_path(b)
    (b / ".arrays.1234.tmp.npz").write_bytes(b"half written")  # temporaries are not content
    assert digest_path(a) == digest_path(b)
    (b / "sub" / "x.txt").write_text("other")
    assert digest_path(a) != digest_path(b)
    assert digest_json({"a": 1, "b": [1, 2]}) == digest_json({"b": [1, 2], "a": 1})
    assert digest_json({"a": 1}) != digest_json({"a": 1.5})


def test_manifest_records_and_recovers_from_a_damaged_file(tmp_path):
    m = Manifest(tmp_path)
    (tmp_path / "out.png").write_bytes(b"png")
    m.record("anchors", "anchor000", "key1", digest_path(tmp_path / "out.png"), seconds=0.5, seed=3)
    again = Manifest.load(tmp_path)
    assert again.is_current("anchors", "anchor000", "key1", tmp_path / "out.png", verify=True)
    assert not again.is_current("anchors", "anchor000", "key2", tmp_path / "out.png")
    (tmp_path / "out.png").write_bytes(b"changed")
    assert not again.is_current("anchors", "anchor000", "key1", tmp_path / "out.png", verify=True)
    (tmp_path / "out.png").unlink()
    assert not again.is_current("anchors", "anchor000", "key1", tmp_path / "out.png")
    (tmp_path / "manifest.json").write_text('{"format": 1, "stages": {')  # cut short
    fresh = Manifest.load(tmp_path)
    assert fresh.item("anchors", "anchor000") is None
    assert (tmp_path / "manifest.json.bad").read_text().startswith('{"format": 1')  # kept for a look
    assert fresh.save() and json.loads((tmp_path / "manifest.json").read_text())["stages"] == {}


def test_no_gpu_driver_answers_without_importing_torch(monkeypatch):
    import sys

    monkeypatch.setattr(plan, "gpu_driver_present", lambda: False)
    monkeypatch.setitem(sys.modules, "torch", None)  # an import of torch would raise ImportError
    ok, why = plan.cuda_status()
    assert not ok and why.startswith("no GPU driver loaded")
