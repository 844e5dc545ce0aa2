"""benchmarks/bench_flux.py runs its CPU path (--tiny) and prints one row per mode and size."""

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.torch
pytest.importorskip("diffusers")

from tiny_models import one_torch_thread  # noqa: E402, F401

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_flux.py"


def test_bench_flux_tiny_cpu(capsys):
    spec = importlib.util.spec_from_file_location("bench_flux", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.FLUX_DEV["num_layers"] == 19 and bench.FLUX_DEV["num_single_layers"] == 38
    assert bench.FLUX_DEV["num_attention_heads"] * bench.FLUX_DEV["attention_head_dim"] == 3072
    assert bench.XLABS_HED["num_layers"] == 2
    assert bench.main(["--tiny", "--device", "cpu", "--steps", "1", "--sizes", "64x64,720x480"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in out if line and not line.startswith("#") and line.split()[0] != "mode"]
    assert [(r[0], r[1]) for r in rows if r[1] != "-"] == [
        ("none", "64x64"), ("none", "720x480"), ("fp8", "64x64"), ("fp8", "720x480")]
    assert [r[0] for r in rows if r[1] == "-"] == ["model", "sequential"]  # need CUDA
    timed = {(r[0], r[1]): r for r in rows if r[1] != "-"}
    assert timed["none", "720x480"][2] == "1350"  # 60x90 latents -> 30x45 packed tokens
    assert all(float(r[3]) > 0 for r in timed.values())
