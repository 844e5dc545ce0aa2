"""Whole trajectories: chaining arcs, no duplicated boundary frames, a 3-arc tiny run to PNGs and an mp4,
prompts, memory bookkeeping (issue 6)."""

from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from tiny_models import one_torch_thread  # noqa: E402, F401  (one intra-op thread for tiny models)
from videofrom3d.chaining import ArcChaining, chain_inbetween  # noqa: E402
from videofrom3d.inbetween import InbetweenConfig, InbetweenError  # noqa: E402
from videofrom3d.inbetween.inbetweener import (  # noqa: E402
    Inbetweener,
    load_inbetweener,
    write_frame_pngs,
)
from videofrom3d.job import job_from_dict  # noqa: E402

pytestmark = pytest.mark.torch


def _job(tmp_path, width=96, height=64, frames_per_arc=45, **inbetween):
    doc = {
        "arcs": {"frames_per_arc": frames_per_arc},
        "name": "tiny",
        "scene": {"path": "scene.glb"},
        "trajectory": {"generator": "orbit"},
        "size": {"width": width, "height": height},
        "seed": 5,
        "out": str(tmp_path / "work"),
    }
    if inbetween:
        doc["inbetween"] = inbetween
    return job_from_dict(doc, base=tmp_path)


def _arcs(k, n, h, w, seed=0):
    rng = np.random.default_rng(seed)
    latents = (n + 3) // 4 + 1  # N + 1 = 46 frames, padded to 49 -> 13 latents
    return [
        SimpleNamespace(
            edge_maps=(rng.random((n + 1, h, w)) > 0.9).astype(np.float32),
            warped_noise=rng.standard_normal((latents, 16, h // 8, w // 8)).astype(np.float16),
        )
        for _ in range(k)
    ]


class StubInbetweener:
    """Frames blend start -> end; the decoded tail is marked so chaining from it is visible."""

    def __init__(self, cfg, chain="generated"):
        self.chaining = ArcChaining(chain, cfg.chain_frame)
        self.calls = []
        self.last_decoded = None

    def arc_frames(self, start, end, arc, prompt, seed):
        self.calls.append((start.copy(), prompt, seed))
        t = np.linspace(0, 1, len(arc.edge_maps), dtype=np.float32)[:, None, None, None]
        frames = (1 - t) * start + t * end
        self.last_decoded = np.concatenate([frames, np.full((3, *start.shape), 0.25, np.float32)])
        return iter(frames)

    def last_decoded_frame(self):
        return self.last_decoded[-1]


@pytest.mark.parametrize("chain,chain_frame", [("generated", "last_kept"), ("anchor", "last_kept"), ("generated", "last_decoded")])
def test_chaining_and_boundaries(chain, chain_frame):
    n, k = 5, 3
    anchors = [np.full((4, 6, 3), v, np.float32) for v in (0.0, 0.3, 0.6, 0.9)]
    anchors[2] = anchors[2] + 0.05  # the generated end of arc 1 (0.65) differs from anchor 2 only by content
    stub = StubInbetweener(InbetweenConfig(prompt="p", chain_frame=chain_frame), chain=chain)
    frames = chain_inbetween(stub, _arcs(k, n, 8, 16), anchors, "p", seed=10)
    assert frames.shape == (1 + k * n, 4, 6, 3)
    assert [c[2] for c in stub.calls] == [10, 11, 12] and all(c[1] == "p" for c in stub.calls)
    starts = [float(c[0].mean()) for c in stub.calls]
    if chain == "anchor":
        assert starts == pytest.approx([0.0, 0.3, 0.65])
    elif chain_frame == "last_decoded":
        assert starts == pytest.approx([0.0, 0.25, 0.25])
    else:  # arc k starts from arc k-1's last generated frame, which is global frame k*n
        assert starts == pytest.approx([0.0, 0.3, 0.65])
        for j in range(1, k):
            assert np.array_equal(frames[j * n], stub.calls[j][0])
    # global frame k*n is the end of arc k-1; nothing is repeated
    assert float(frames[n].mean()) == pytest.approx(0.3)
    assert len({float(f.mean()) for f in frames}) == len(frames) or chain_frame == "last_decoded"


def test_done_arcs_are_reused_and_chained_from():
    n = 4
    anchors = [np.full((4, 6, 3), v, np.float32) for v in (0.0, 0.5, 1.0)]
    stub = StubInbetweener(InbetweenConfig(prompt="p"))
    earlier = np.full((n + 1, 4, 6, 3), 0.2, np.float32)
    frames = chain_inbetween(stub, _arcs(2, n, 8, 16), anchors, "p", done={0: earlier})
    assert len(stub.calls) == 1 and float(stub.calls[0][0].mean()) == pytest.approx(0.2)
    assert frames.shape[0] == 1 + 2 * n


def test_three_arcs_tiny_end_to_end(tmp_path):
    """A 3-arc job on tiny random models: 1 + 3*45 PNG frames and an mp4 with that count and size."""
    from videofrom3d.io.video import read_video, write_video

    job = _job(tmp_path, prompt="a small town square", steps=30)
    n, k, h, w = job.frames_per_arc, 3, job.height, job.width
    rng = np.random.default_rng(1)
    anchors = [rng.random((h, w, 3)).astype(np.float32) for _ in range(k + 1)]
    inbetweener = load_inbetweener(job, models="tiny-random")
    assert inbetweener.components.transformer.config.in_channels == 48
    done = []
    frames = chain_inbetween(inbetweener, _arcs(k, n, h, w), anchors, seed=job.seed, on_arc=lambda i, f: done.append(len(f)))
    assert done == [n + 1] * k
    assert len(inbetweener.last_decoded) == 49
    assert frames.shape == (1 + k * n, h, w, 3) and frames.dtype == np.float32
    assert 0.0 <= frames.min() and frames.max() <= 1.0
    pngs = write_frame_pngs(frames, job.work_dir / "frames")
    assert len(pngs) == 136 and sorted(p.name for p in pngs)[-1] == "0135.png"
    video = write_video(job.work_dir / "video.mp4", frames, fps=job.fps)
    back = read_video(video)
    assert back.shape == (136, h, w, 3)
    # the text encoder was released after the one prompt was encoded, and its embeddings cached
    assert inbetweener.components.text_encoder is None
    assert set(inbetweener._embeds) == {"a small town square", ""}
    inbetweener.close()
    with pytest.raises(InbetweenError, match="closed"):
        inbetweener.inbetween(anchors[0], anchors[1], None, None, "x", 0)


def test_same_seed_same_arc_new_prompt_reloads_text_encoder(tmp_path):
    job = _job(tmp_path, width=32, height=32, frames_per_arc=8, steps=2)
    inbetweener = load_inbetweener(job, models="tiny-random")
    n = job.frames_per_arc
    arc = _arcs(1, n, 32, 32)[0]
    rng = np.random.default_rng(0)
    start, end = rng.random((32, 32, 3), dtype=np.float32), rng.random((32, 32, 3), dtype=np.float32)
    a = inbetweener.inbetween(start, end, arc.edge_maps, arc.warped_noise, "a house", 3)
    b = inbetweener.inbetween(start, end, arc.edge_maps, arc.warped_noise, "a house", 3)
    c = inbetweener.inbetween(start, end, arc.edge_maps, arc.warped_noise, "a river", 3)
    assert a.shape == (n + 1, 32, 32, 3)
    assert np.array_equal(a, b) and np.abs(a - c).max() > 1e-4
    assert set(inbetweener._embeds) == {"a house", "a river", ""}


def test_missing_prompt_says_how_to_give_one(tmp_path):
    from videofrom3d.inbetween.components import tiny_cogvideox_components

    inbetweener = Inbetweener(tiny_cogvideox_components(height=32, width=32), InbetweenConfig(), device="cpu")
    anchors = [np.zeros((32, 32, 3), np.float32)] * 2
    with pytest.raises(InbetweenError, match=r'\[inbetween\] prompt = "'):
        chain_inbetween(inbetweener, _arcs(1, 45, 32, 32), anchors)
    with pytest.raises(InbetweenError, match=r"\[inbetween\] prompt"):
        inbetweener.inbetween(anchors[0], anchors[1], None, None, None, 0)
    captioned = Inbetweener(inbetweener.components, InbetweenConfig(), device="cpu", captioner=lambda im: "a grey wall")
    assert captioned.resolve_prompt(anchors[0]) == "a grey wall"
    assert captioned.resolve_prompt(anchors[0]) == "a grey wall"


def test_real_models_missing_name_every_place(tmp_path, monkeypatch):
    from videofrom3d.models import MissingModelError

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("VIDEOFROM3D_MODELS", raising=False)
    job = _job(tmp_path, width=720, height=480)
    with pytest.raises(MissingModelError, match="ggi") as err:
        load_inbetweener(job, models="real")
    assert str(tmp_path / "cache") in str(err.value)
    job = _job(tmp_path, width=720, height=480, transformer="stock")
    with pytest.raises(MissingModelError, match="CogVideoX-5b-I2V"):
        load_inbetweener(job, models="real")


def test_job_options_are_checked(tmp_path):
    from videofrom3d.job import JobError

    with pytest.raises(JobError, match=r"\[inbetween\].steps"):
        load_inbetweener(_job(tmp_path, steps="many"), models="tiny-random")
    with pytest.raises(InbetweenError, match="degradation"):
        load_inbetweener(_job(tmp_path, degradation=2.0), models="tiny-random")
