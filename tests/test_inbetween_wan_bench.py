"""benchmarks/bench_wan.py runs its CPU path (--tiny) and prints one row per mode; its full-size configs are
the published Wan2.1-VACE ones."""

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.torch
pytest.importorskip("diffusers")

from tiny_models import one_torch_thread  # noqa: E402, F401

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_wan.py"


def test_bench_wan_tiny_cpu(capsys):
    import torch
    from diffusers import WanVACETransformer3DModel

    from videofrom3d.inbetween.wan.components import TRANSFORMER_1_3B, TRANSFORMER_14B

    spec = importlib.util.spec_from_file_location("bench_wan", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    for config, billions in ((TRANSFORMER_1_3B, 2.15), (TRANSFORMER_14B, 17.34)):
        with torch.device("meta"):
            model = WanVACETransformer3DModel(**config)
        assert round(sum(p.numel() for p in model.parameters()) / 1e9, 2) == billions
    assert bench.main(["--tiny", "--configs", "1.3b", "--frames", "5", "--contexts", "2", "--steps", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert [r.split("|")[1].strip() for r in rows] == ["1.3b none", "1.3b model", "1.3b sequential", "1.3b fp8",
                                                       "1.3b vae 4 enc + 1 dec, 5 fr", "1.3b vae 4 enc + 1 dec, 5 fr tiled"]
    assert "needs CUDA" in rows[2] and "s/step" in rows[0]
