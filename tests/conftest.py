"""Test settings shared by every tier: offline hub, deterministic threads, a temp work folder."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import importlib.util

import pytest

# tests/blender imports bpy: collected only in the bpy environment (tests/test_blender_extension.py runs it)
collect_ignore = [] if importlib.util.find_spec("bpy") else ["blender"]

HAS_TORCH = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("diffusers") is not None


def pytest_collection_modifyitems(config, items):
    skip_torch = pytest.mark.skip(reason="needs the diffusion extra (torch, diffusers)")
    for item in items:
        if "torch" in item.keywords and not HAS_TORCH:
            item.add_marker(skip_torch)


@pytest.fixture(autouse=True)
def _shared_cache_in_tmp(tmp_path_factory, monkeypatch):
    """The shared style cache (videofrom3d.io.cache) of every test in a fresh temp folder, never ~/.cache."""
    monkeypatch.setenv("VIDEOFROM3D_CACHE", str(tmp_path_factory.mktemp("shared-cache")))
