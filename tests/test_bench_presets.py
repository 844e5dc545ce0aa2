"""benchmarks/bench_presets.py runs its CPU path (--tiny): diffusers and each preset, one row per run."""

import importlib.util
import math
from pathlib import Path

import pytest

pytestmark = pytest.mark.torch
pytest.importorskip("diffusers")

from tiny_models import one_torch_thread  # noqa: E402, F401

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_presets.py"


def test_bench_presets_tiny_cpu(capsys):
    spec = importlib.util.spec_from_file_location("bench_presets", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--tiny", "--device", "cpu", "--steps", "3", "--no-compile"]) == 0
    out = [line.split() for line in capsys.readouterr().out.splitlines() if line and not line.startswith("#")]
    rows = [r for r in out if r[0] in ("flux", "cogvideox")]
    assert [(r[0], r[1]) for r in rows] == [(s, run) for s in ("flux", "cogvideox")
                                            for run in ("diffusers", "none", "exact", "fast")]
    assert all(float(r[2]) > 0 for r in rows)
    assert all(float(r[3]) == 1.0 for r in rows if r[1] == "diffusers")
    assert all(math.isfinite(float(r[3])) for r in rows)


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize("stage", ["flux", "cogvideox"])
def test_card_presets_fit_under_a_capped_memory_fraction(stage):
    """Full-size random weights, two steps of each card preset with the process capped at 24/16/12 GB."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    spec = importlib.util.spec_from_file_location("bench_presets", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.fit_check(stage, torch.device("cuda"), torch.bfloat16, 2, (1072, 720))
    assert [r["note"] for r in rows] == ["fits"] * 3, rows
