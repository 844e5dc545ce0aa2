"""The noise warpers against the per-cell reference (tests/reference_noise_warp.py), bit for bit: the
vectorised numpy warper and the compiled kernel, on translation, zoom and fold flows with injected draws."""

import numpy as np
import pytest

from reference_noise_warp import reference_warp_step
from test_noise_scenes import camera_path_flows, zoom_flows
from videofrom3d.prepare.noise_warp import (
    NoiseConfig,
    WarpState,
    downsample_to_latent,
    warp_noise_step,
    warped_noise_for_arc,
)

H, W, C = 6, 8, 3


def _field(fx, fy):
    return np.stack([fx, fy], axis=-1).astype(np.float32)


def _flows():
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    cy, cx = H / 2, W / 2
    translation = _field(np.full((H, W), 1.3), np.full((H, W), -0.6))
    translation_valid = np.ones((H, W), bool)
    translation_valid[2, 3] = translation_valid[4, 0] = False
    translation[1, 1] = np.nan  # non-finite flow counts as invalid
    zoom_in = _field(0.3 * (xx + 0.5 - cx), 0.3 * (yy + 0.5 - cy))
    zoom_out = _field(-0.35 * (xx + 0.5 - cx), -0.35 * (yy + 0.5 - cy))
    # the right half folds over the left: merges where it lands, gaps where it left
    fold = _field(np.where(xx >= cx, -2.0 * (xx - cx) - 1.0, 0.0), np.zeros((H, W)))
    return {
        "translation": (translation, translation_valid),
        "zoom in": (zoom_in, None),
        "zoom out": (zoom_out, None),
        "fold": (fold, None),
    }


FLOWS = _flows()


def _draws(seed):
    rng = np.random.default_rng(seed)
    return rng, lambda rows, channels: rng.standard_normal((rows, channels), dtype=np.float32)


@pytest.mark.parametrize("scale", [1.0, 3e6, 3e-7])  # weights far from 1 are rescaled (mean outside 1e-6..1e6)
@pytest.mark.parametrize("name", list(FLOWS))
def test_warpers_equal_the_per_cell_reference(name, scale):
    flow, valid = FLOWS[name]
    start = np.random.default_rng(0)
    noise = start.standard_normal((H, W, C), dtype=np.float32)
    weight = (start.uniform(0.5, 2.0, (H, W)) * scale).astype(np.float32)
    ref_state, vec_state, fast_state = (noise, weight), WarpState(noise, weight), WarpState(noise, weight)
    _, ref_draws = _draws(1)
    vec_rng, fast_rng = np.random.default_rng(1), np.random.default_rng(1)
    for _ in range(3):  # later steps start from merged / re-Gaussianised cells with uneven weights
        ref_state = reference_warp_step(*ref_state, flow, valid, ref_draws)
        vec_state = warp_noise_step(vec_state, flow, valid, generator=vec_rng, kernel="vectorised")
        fast_state = warp_noise_step(fast_state, flow, valid, generator=fast_rng, kernel="compiled")
        for state in (vec_state, fast_state):
            assert np.array_equal(state.noise, ref_state[0])
            assert np.array_equal(state.weight, ref_state[1])
        assert 1e-3 < ref_state[1].mean() < 1e3  # rescaled when it started far from 1
    # the case did exercise new values (copies, merges or fresh cells), not only plain moves
    new_rows = ~(ref_state[0].reshape(-1, 1, C) == noise.reshape(1, -1, C)).all(axis=-1).any(axis=1)
    assert new_rows.sum() >= 4


def test_fold_exercises_merges_copies_and_fresh_cells():
    """The reference on the fold: merged cells are unit-norm density combinations of their sources."""
    flow, _ = FLOWS["fold"]
    noise = np.random.default_rng(2).standard_normal((H, W, C), dtype=np.float32)
    weight = np.ones((H, W), np.float32)
    _, draws = _draws(3)
    out, out_w = reference_warp_step(noise, weight, flow, None, draws)
    # target x = 3 receives x = 3 (no motion) and x = 4 (-2 * 0 - 1 ... -> 3): equal weights merge
    assert np.allclose(out[:, 3], (noise[:, 3] + noise[:, 4]) / np.sqrt(2), atol=1e-6)
    assert np.all(out_w[:, 3] == 2.0)


@pytest.mark.parametrize("grid", [1, 2])
def test_compiled_arc_equals_vectorised_arc(grid):
    flows, valid = camera_path_flows(96, 64)
    cfg = NoiseConfig(grid_factor=grid, latent_size=(8, 12), rng="numpy")
    fast = warped_noise_for_arc(flows, 45, cfg, seed=5, valid=valid, kernel="compiled")
    slow = warped_noise_for_arc(flows, 45, cfg, seed=5, valid=valid, kernel="vectorised")
    assert np.array_equal(fast, slow)


def test_compiled_kernel_compacts_and_grows_its_store():
    """A store with too few spare rows for a step's new values is compacted and grown: same bytes."""
    from videofrom3d.prepare.noise_kernel import LazyWarper

    flows, _ = zoom_flows(24, 16, 1.2, steps=4)
    noise = np.random.default_rng(4).standard_normal((16 * 24, C), dtype=np.float32)
    weight = np.ones(16 * 24, np.float32)
    warper = LazyWarper(16, 24, C, spare=8).load(noise, weight)
    state = WarpState(noise.reshape(16, 24, C), weight.reshape(16, 24))
    fast_rng, vec_rng = np.random.default_rng(6), np.random.default_rng(6)
    for flow in flows:
        d = np.floor(flow.astype(np.float64) + 0.5).astype(np.int64)
        warper.step(d[..., 1], d[..., 0], np.ones((16, 24), bool), 1, fast_rng)
        state = warp_noise_step(state, flow, generator=vec_rng, kernel="vectorised")
    assert warper.store.shape[0] > 16 * 24 + 8  # it had to grow
    assert np.array_equal(warper.dense(), state.noise.reshape(-1, C))
    assert np.array_equal(warper.weight, state.weight.reshape(-1))


def test_compiled_rounding_of_the_flow_equals_numpys():
    from videofrom3d.prepare.noise_kernel import displacement
    from videofrom3d.prepare.noise_warp import _round_disp

    halves = np.array([k / 8 for k in range(-24, 24)], np.float32)
    values = np.concatenate([halves, np.nextafter(halves, -np.inf), np.nextafter(halves, np.inf),
                             [np.nan, np.inf, -np.inf, 3e38, -3e38, 1e9]]).astype(np.float32)  # fmt: skip
    flow = np.stack([values, values[::-1]], axis=-1).reshape(6, -1, 2)
    valid = np.ones(flow.shape[:2], bool)
    valid[0, 0] = False
    for g in (1, 3, 4):
        dy, dx = np.empty(valid.shape, np.int64), np.empty(valid.shape, np.int64)
        ok = np.empty(valid.shape, bool)
        displacement(flow, valid, g, dy, dx, ok)
        with np.errstate(over="ignore"):  # 3e38 * 3 and 4 overflow to inf, which rounds to 0
            disp = _round_disp(flow * g, False)
        assert np.array_equal(dx, disp[..., 0]) and np.array_equal(dy, disp[..., 1])
        assert np.array_equal(ok, np.isfinite(flow).all(axis=-1) & valid)


def test_float64_flows_take_numpys_rounding_and_agree():
    flows, valid = zoom_flows(40, 24, 1.03, steps=8)
    cfg = NoiseConfig(grid_factor=2, latent_size=(6, 10), latent_frames=3, rng="numpy")
    fast = warped_noise_for_arc(flows.astype(np.float64), 8, cfg, seed=1, valid=valid, kernel="compiled")
    slow = warped_noise_for_arc(flows.astype(np.float64), 8, cfg, seed=1, valid=valid, kernel="vectorised")
    assert np.array_equal(fast, slow)


# the fast rng: counter-based draws and virtual (lazily made) fresh rows


@pytest.mark.parametrize("name", list(FLOWS))
def test_fast_rng_equals_the_per_cell_reference_with_injected_draws(name):
    """The fast mode's lazy machinery (virtual fresh rows read by later steps, the dense gather and the
    latent downsample) against the reference, the draws injected as a table in draw order."""
    from videofrom3d.prepare.noise_kernel import CounterRNG, LazyWarper

    flow, valid = FLOWS[name]
    start = np.random.default_rng(0)
    noise = start.standard_normal((H, W, C), dtype=np.float32)
    weight = start.uniform(0.5, 2.0, (H, W)).astype(np.float32)
    table = np.random.default_rng(1).standard_normal((10 * H * W, C), dtype=np.float32)
    taken = 0

    def ref_draws(rows, channels):
        nonlocal taken
        taken += rows
        return table[taken - rows : taken]

    ok = np.isfinite(flow).all(axis=-1) & (True if valid is None else valid)
    d = np.floor(np.where(np.isfinite(flow), flow, 0).astype(np.float64) + 0.5).astype(np.int64)
    warper = LazyWarper(H, W, C).load(noise.reshape(-1, C), weight.reshape(-1))
    rng = CounterRNG(0, table)
    ref = (noise, weight)
    seen_virtual = False
    for _ in range(4):
        ref = reference_warp_step(*ref, flow, valid, ref_draws)
        warper.step(d[..., 1], d[..., 0], ok, 1, rng)
        assert warper.key == taken  # the same number of rows drawn, so the same rows
        seen_virtual = seen_virtual or bool((warper.idx >= (1 << 30)).any())
        latent = warper.latent((H // 2, W // 2))  # makes the virtual rows while it compacts the store
        assert not (warper.idx >= (1 << 30)).any()
        assert np.array_equal(latent, downsample_to_latent(ref[0], (H // 2, W // 2)))
        assert np.array_equal(warper.weight, ref[1].reshape(-1))
    # fresh cells were left virtual until latent read them (zoom in only copies and merges)
    assert seen_virtual == (name != "zoom in")
    assert np.array_equal(warper.dense(), ref[0].reshape(-1, C))  # makes the virtual rows real
    assert not (warper.idx >= (1 << 30)).any()


def _arc(seed, threads=None, grid=2):
    import numba

    flows, valid = camera_path_flows(96, 64)
    cfg = NoiseConfig(grid_factor=grid, latent_size=(8, 12), rng="fast")
    before = numba.get_num_threads()
    try:
        if threads:
            numba.set_num_threads(threads)
        return warped_noise_for_arc(flows, 45, cfg, seed=seed, valid=valid)
    finally:
        numba.set_num_threads(before)


def test_fast_rng_is_deterministic_across_runs_and_thread_counts():
    import numba

    one = _arc(5, threads=1)
    assert np.array_equal(one, _arc(5))
    assert np.array_equal(one, _arc(5, threads=numba.config.NUMBA_NUM_THREADS))
    other = _arc(6)
    assert not np.array_equal(one, other)
    numpy_rng = warped_noise_for_arc(*camera_path_flows(96, 64)[:1], 45,
                                     NoiseConfig(grid_factor=2, latent_size=(8, 12), rng="numpy"), seed=5,
                                     valid=camera_path_flows(96, 64)[1])  # fmt: skip
    assert not np.array_equal(one, numpy_rng)  # the fast mode is its own stream


def test_fast_rng_needs_the_compiled_kernel():
    flows, valid = camera_path_flows(96, 64)
    with pytest.raises(ValueError, match="compiled kernel"):
        warped_noise_for_arc(flows, 45, NoiseConfig(latent_size=(8, 12)), seed=0, valid=valid, kernel="vectorised")
    with pytest.raises(ValueError, match="rng"):
        NoiseConfig(rng="philox")


def test_counter_normals_are_standard_normal():
    from scipy import stats

    from videofrom3d.prepare.noise_kernel import CounterRNG, fill_rows

    rng = CounterRNG(3)
    out = np.empty((1 << 16, 16), np.float32)
    fill_rows(rng.seed, rng.table_for(16), 0, out)
    x = out.ravel().astype(np.float64)
    assert abs(x.mean()) < 0.005 and abs(x.std() - 1) < 0.004  # ~5 SE at 1 M values
    assert stats.kstest(x, "norm").pvalue > 1e-4
    part = np.empty((100, 16), np.float32)
    fill_rows(rng.seed, rng.table_for(16), 500, part)  # a row is a function of its key alone
    assert np.array_equal(part, out[500:600])
