"""Warped noise, exact cases: zero flow, integer translation, copies and merges with known answers, the arc
schedule and shapes, degradation, layouts, preview, and the torch backend."""

import math

import numpy as np
import pytest

from test_noise_scenes import translation_flows
from videofrom3d.inbetween.config import InbetweenConfig
from videofrom3d.prepare.noise_warp import (
    NoiseConfig,
    WarpState,
    degrade_noise,
    downsample_to_latent,
    from_official_layout,
    init_state,
    keyframe_indices,
    to_official_layout,
    warp_noise_step,
    warped_noise_for_arc,
    write_noise_preview,
)


def _rows_in(a, b) -> np.ndarray:
    """Which C-vectors (rows of the last axis) of ``a`` occur in ``b``. Single float32 values collide by
    chance in arrays this size; whole 16-channel vectors do not."""
    c = a.shape[-1]
    av = np.ascontiguousarray(a.reshape(-1, c)).view(np.dtype((np.void, 4 * c))).ravel()
    bv = np.ascontiguousarray(b.reshape(-1, c)).view(np.dtype((np.void, 4 * c))).ravel()
    return np.isin(av, bv)


def _flow(h, w, dx, dy):
    f = np.empty((h, w, 2), dtype=np.float32)
    f[..., 0], f[..., 1] = dx, dy
    return f


def test_zero_flow_is_bit_identical_even_after_real_steps():
    rng = np.random.default_rng(0)
    state = init_state(40, 60, 16, rng)
    yy, xx = np.mgrid[0:40, 0:60]
    zoom = np.stack([0.05 * (xx - 30), 0.05 * (yy - 20)], axis=-1).astype(np.float32)
    state = warp_noise_step(state, zoom, generator=rng)  # weights are no longer all 1
    assert state.weight.std() > 0
    zero = np.zeros((40, 60, 2), np.float32)
    out = state
    for _ in range(5):
        out = warp_noise_step(out, zero, generator=rng)
    assert np.array_equal(out.noise, state.noise)
    assert np.array_equal(out.weight, state.weight)
    assert out.noise.dtype == np.float32 and out.weight.dtype == np.float32


@pytest.mark.parametrize("dx,dy", [(3, -2), (-5, 4), (0, 7)])
def test_integer_translation_moves_interior_exactly_and_fills_revealed_strip(dx, dy):
    h, w = 48, 64
    rng = np.random.default_rng(1)
    state = init_state(h, w, 16, rng)
    out = warp_noise_step(state, _flow(h, w, dx, dy), generator=rng)
    # content of (y, x) is now at (y + dy, x + dx)
    src = state.noise[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    dst = out.noise[max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)]
    assert np.array_equal(dst, src)
    revealed = np.ones((h, w), bool)
    revealed[max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)] = False
    strip = out.noise[revealed]
    assert strip.shape[0] == revealed.sum() > 0
    assert not _rows_in(strip, state.noise).any()  # fresh values, no copies
    assert abs(strip.mean()) < 4 / math.sqrt(strip.size) and abs(strip.std() - 1) < 0.1
    assert np.all(out.weight == 1.0)


def test_translation_is_exact_when_all_values_are_equal():
    """Grouping by value would lump every cell into one group; grouping by source index does not."""
    state = WarpState(np.full((16, 24, 4), 0.5, np.float32), np.ones((16, 24), np.float32))
    out = warp_noise_step(state, _flow(16, 24, 2, 0), generator=3)
    assert np.all(out.noise[:, 2:] == 0.5)
    assert not np.any(out.noise[:, :2] == 0.5)


def test_expansion_copies_are_regaussianised_and_conserve_the_group_sum():
    # one row: cell 0 stays, cells 1, 2 move right by one, cell 3 leaves the grid.
    # target 1 is uncovered and copies q - d(q) = 0, so source 0 is used twice.
    noise = np.array([[[1.3, -0.4], [0.2, 0.9], [-1.1, 0.5], [2.0, 2.0]]], np.float32)
    state = WarpState(noise, np.array([[4.0, 1.0, 1.0, 1.0]], np.float32))
    flow = np.zeros((1, 4, 2), np.float32)
    flow[0, 1:, 0] = 1.0
    out = warp_noise_step(state, flow, generator=0)
    assert np.allclose(out.noise[0, 0] + out.noise[0, 1], math.sqrt(2) * noise[0, 0], atol=1e-6)
    assert not np.allclose(out.noise[0, 0], out.noise[0, 1])
    assert np.array_equal(out.noise[0, 2:], noise[0, 1:3])
    assert np.allclose(out.weight[0], [2.0, 2.0, 1.0, 1.0])


def test_contraction_merges_by_density():
    # cells 0 and 1 land on target 0; 2 -> 1, 3 -> 2; target 3 is uncovered and its source 4 is outside.
    noise = np.array([[[1.0, -2.0], [0.5, 0.25], [0.7, 0.1], [-0.3, 0.8]]], np.float32)
    weight = np.array([[1.0, 3.0, 1.0, 1.0]], np.float32)
    flow = np.zeros((1, 4, 2), np.float32)
    flow[0, 1:, 0] = -1.0
    out = warp_noise_step(WarpState(noise, weight), flow, generator=0)
    expect = (1.0 * noise[0, 0] + 3.0 * noise[0, 1]) / math.sqrt(1.0 + 9.0)
    assert np.allclose(out.noise[0, 0], expect, atol=1e-6)
    assert out.weight[0, 0] == pytest.approx(4.0)
    assert np.array_equal(out.noise[0, 1:3], noise[0, 2:4])
    assert not _rows_in(out.noise[0, 3], noise).any()  # disocclusion: fresh
    assert out.weight[0, 3] == pytest.approx((4.0 + 1.0 + 1.0) / 3)  # fresh cells get the mean carried weight


def test_invalid_flow_drops_particles_and_nan_counts_as_invalid():
    rng = np.random.default_rng(5)
    state = init_state(20, 30, 3, rng)
    flow = _flow(20, 30, 1, 0)
    valid = np.ones((20, 30), bool)
    valid[5:10, 10:15] = False
    flow[12, 12] = np.nan
    out = warp_noise_step(state, flow, valid=valid, generator=rng)
    assert np.isfinite(out.noise).all()
    moved = out.noise[5:10, 11:16]  # the invalid block is neither moved there nor copied
    assert not _rows_in(moved, state.noise[5:10, 10:15]).any()
    assert not _rows_in(out.noise[12, 13], state.noise[12, 12]).any()
    assert np.array_equal(out.noise[0:5, 1:], state.noise[0:5, :-1])


def test_step_rejects_flow_of_another_size():
    state = init_state(8, 8, 2, 0)
    with pytest.raises(ValueError, match="flow must be"):
        warp_noise_step(state, np.zeros((4, 4, 2), np.float32))


def test_keyframes_follow_the_paper_schedule():
    assert keyframe_indices(45) == [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 45]
    assert keyframe_indices(48) == list(range(0, 49, 4))
    with pytest.raises(ValueError, match="does not fit"):
        keyframe_indices(49)


def test_downsample_keeps_unit_variance_and_block_means():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((240, 360, 4), dtype=np.float32)
    lat = downsample_to_latent(x, (30, 45))
    assert lat.shape == (4, 30, 45)
    assert lat[1, 2, 3] == pytest.approx(x[16:24, 24:32, 1].mean() * 8, abs=1e-5)
    assert abs(lat.std() - 1) < 0.03
    with pytest.raises(ValueError, match="square blocks"):
        downsample_to_latent(x, (30, 40))


def test_arc_shapes_schedule_and_reproducibility():
    flows, valid = translation_flows(72, 48, 1.0, 0.0, steps=45)
    cfg = NoiseConfig(grid_factor=1, latent_size=(12, 18))
    a = warped_noise_for_arc(flows, 45, cfg, seed=7, valid=valid)
    b = warped_noise_for_arc(flows, 45, cfg, seed=7, valid=valid)
    c = warped_noise_for_arc(flows, 45, cfg, seed=8, valid=valid)
    assert a.shape == (13, 16, 12, 18) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    # latent k holds frame 4k: moved by 4k px = k latent px (block 4); latent 12 holds frame 45, not 48
    for k in (1, 5, 11):
        assert np.allclose(a[k][:, :, k:], a[0][:, :, : 18 - k], atol=1e-5)
    assert not np.allclose(a[12][:, :, 12:], a[0][:, :, :6], atol=1e-3)
    with pytest.raises(ValueError, match="flows"):
        warped_noise_for_arc(flows[:44], 45, cfg)
    with pytest.raises(ValueError, match="square"):
        warped_noise_for_arc(flows, 45, NoiseConfig(grid_factor=1), seed=0)


def test_paper_defaults():
    cfg = NoiseConfig()
    assert (cfg.grid_factor, cfg.latent_channels, cfg.latent_size, cfg.latent_frames) == (4, 16, (60, 90), 13)
    assert InbetweenConfig().degradation == 0.5 and cfg.method == "gwtf"  # alpha is applied at inbetweening
    with pytest.raises(ValueError):
        NoiseConfig(grid_factor=0)


def test_noise_config_from_job_options():
    from videofrom3d.job import JobError, config_from_options

    cfg = config_from_options(NoiseConfig, {"grid_factor": 2, "latent_size": [30, 45]}, "noise")
    assert cfg.grid_factor == 2 and cfg.latent_size == (30, 45)
    with pytest.raises(JobError, match="noise"):
        config_from_options(NoiseConfig, {"grid": 2}, "noise")


def test_degrade_is_seeded_variance_preserving_and_matches_formula():
    rng = np.random.default_rng(0)
    n = rng.standard_normal((13, 16, 60, 90), dtype=np.float32)
    assert np.array_equal(degrade_noise(n, 0.0, np.random.default_rng(1)), n)
    d1 = degrade_noise(n, 0.5, np.random.default_rng(1))
    d2 = degrade_noise(n, 0.5, np.random.default_rng(1))
    assert np.array_equal(d1, d2) and d1.dtype == np.float32
    assert abs(d1.std() - 1) < 0.005
    z = np.random.default_rng(1).standard_normal(n.shape, dtype=np.float32)
    assert np.allclose(d1, (0.5 * n + 0.5 * z) / math.sqrt(0.5), atol=1e-6)
    assert abs(np.corrcoef(d1.ravel(), n.ravel())[0, 1] - math.sqrt(0.5)) < 0.01
    with pytest.raises(ValueError):
        degrade_noise(n, 1.5, 0)


def test_official_layout_round_trip():
    n = np.arange(13 * 16 * 6 * 9, dtype=np.float32).reshape(13, 16, 6, 9)
    o = to_official_layout(n)
    assert o.shape == (13, 6, 9, 16) and o[3, 2, 5, 7] == n[3, 7, 2, 5]
    assert np.array_equal(from_official_layout(o), n)


def test_preview_mp4(tmp_path):
    from videofrom3d.io.video import read_video

    n = np.zeros((13, 16, 6, 9), np.float32)
    n[:, 0] = 3.0  # channel 0 -> red saturates
    path = write_noise_preview(n, tmp_path / "noise.mp4", scale=8)
    frames = read_video(path)
    assert frames.shape == (13, 48, 72, 3)
    assert frames[..., 0].mean() > 230 and abs(frames[..., 1].mean() - 128) < 8


@pytest.mark.torch
def test_torch_step_matches_numpy_on_deterministic_cells():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    state = init_state(32, 48, 8, rng)
    flow = _flow(32, 48, 2, -1)
    out_np = warp_noise_step(state, flow, generator=rng)
    t_state = WarpState(torch.from_numpy(state.noise), torch.from_numpy(state.weight))
    out_t = warp_noise_step(t_state, torch.from_numpy(flow), generator=torch.Generator().manual_seed(0))
    assert isinstance(out_t.noise, torch.Tensor)
    assert torch.equal(out_t.noise[:31, 2:], torch.from_numpy(out_np.noise[:31, 2:]))
    zero = torch.zeros(32, 48, 2)
    again = warp_noise_step(out_t, zero, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again.noise, out_t.noise) and torch.equal(again.weight, out_t.weight)


@pytest.mark.torch
def test_torch_arc_and_degrade():
    torch = pytest.importorskip("torch")
    flows, valid = translation_flows(72, 48, 1.0, 0.0, steps=45)
    cfg = NoiseConfig(grid_factor=1, latent_size=(12, 18), backend="torch")
    a = warped_noise_for_arc(flows, 45, cfg, seed=3, valid=valid)
    assert a.shape == (13, 16, 12, 18) and a.dtype == np.float32
    assert np.allclose(a[4][:, :, 4:], a[0][:, :, :14], atol=1e-5)
    d = degrade_noise(torch.from_numpy(a), 0.5, torch.Generator().manual_seed(0))
    assert isinstance(d, torch.Tensor) and d.shape == a.shape


@pytest.mark.gpu
def test_cuda_step_zero_flow_and_translation():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    gen = torch.Generator("cuda").manual_seed(0)
    state = init_state(64, 96, 16, gen, backend="torch", device="cuda")
    zero = torch.zeros(64, 96, 2, device="cuda")
    same = warp_noise_step(state, zero, generator=gen)
    assert torch.equal(same.noise, state.noise) and torch.equal(same.weight, state.weight)
    flow = zero.clone()
    flow[..., 0], flow[..., 1] = 3.0, -2.0
    moved = warp_noise_step(state, flow, generator=gen)
    assert moved.noise.device.type == "cuda"
    assert torch.equal(moved.noise[:62, 3:], state.noise[2:, :93])
