"""Compact storage of flows and depth (io/compact.py, prepare/arcs.py): round-trip error <= 1/64 px, the
noise warper's rounding kept, lossless depth, format-1 folders still read, newer formats refused in one line."""

import json

import numpy as np
import pytest

from videofrom3d.errors import VideoFrom3DError
from videofrom3d.io import compact
from videofrom3d.prepare.arcs import PreparedArc, load_flows
from videofrom3d.prepare.noise_warp import _round_disp
from videofrom3d.scene.camera import Camera, intrinsics_from_fov, look_at


def _round_trip(flow):
    return compact.decode_flow(compact.encode_flow(flow, "f"), "f")


@pytest.mark.parametrize("scale", [3.0, 300.0, 5000.0])  # int16, int16 near its limit, int32
def test_flow_round_trip_error_is_below_a_64th_pixel(scale):
    rng = np.random.default_rng(0)
    flow = (rng.standard_normal((3, 20, 30, 2)) * scale / 4).clip(-scale, scale).astype(np.float32)
    flow[0, 5, 5] = (scale * 0.999, -scale * 0.999)
    members = compact.encode_flow(flow, "f")
    back = compact.decode_flow(members, "f")
    assert back.dtype == np.float32 and back.shape == flow.shape
    err = flow.astype(np.float64) - back
    assert err.min() >= 0 and err.max() < 1 / 64
    assert members["f_q"].dtype == (np.int16 if scale < 512 else np.int32)


def test_non_finite_flow_is_kept_as_float32():
    flow = np.zeros((4, 5, 2), np.float32)
    flow[1, 2, 0] = np.nan
    back = _round_trip(flow)
    assert np.isnan(back[1, 2, 0]) and np.array_equal(np.nan_to_num(back), np.zeros_like(flow))


def test_stored_flow_keeps_the_warpers_rounding():
    """floor(g f + 0.5) is the same from the stored flow for grid factors 1, 2, 4, 8: the half-cell
    boundaries are multiples of 1/64 px, and values just below one stay below it."""
    edges = np.array([k / 8 - 1 / 16 for k in range(-40, 40)] + [k / 16 for k in range(-40, 40)], np.float32)
    near = np.concatenate([edges, np.nextafter(edges, -np.inf), np.nextafter(edges, np.inf)])
    flow = np.stack([near, near[::-1]], axis=-1).reshape(1, -1, 2)
    back = _round_trip(flow)
    assert not np.array_equal(back, flow)
    for g in (1, 2, 4, 8):  # the warper's own rounding (float64 after the float32 product)
        assert np.array_equal(_round_disp(flow * g, False), _round_disp(back * g, False))


def test_masks_and_depth_are_lossless():
    rng = np.random.default_rng(1)
    mask = rng.random((3, 7, 9)) > 0.4
    depth = np.where(rng.random((3, 7, 9)) > 0.2, rng.uniform(0.5, 90, (3, 7, 9)), 0).astype(np.float32)
    assert np.array_equal(compact.decode_mask(compact.encode_mask(mask, "m"), "m"), mask)
    assert np.array_equal(compact.decode_float_planes(compact.encode_float_planes(depth, "d"), "d"), depth)


def _arc(n=3, w=16, h=12):
    rng = np.random.default_rng(2)
    K = intrinsics_from_fov(w, h, fov_x_deg=60)
    cams = tuple(Camera(K, look_at((0.1 * i, 0, -3), (0, 0, 0)), w, h) for i in range(n))
    return PreparedArc(
        index=0, first_frame=0, cameras=cams,
        edge_maps=rng.random((n, h, w)).astype(np.float32),
        depth=rng.uniform(1, 5, (n, h, w)).astype(np.float32),
        normals=np.zeros((n, h, w, 3), np.float32),
        object_ids=np.zeros((n, h, w), np.int32),
        flow_forward=rng.normal(0, 3, (n - 1, h, w, 2)).astype(np.float32),
        flow_forward_valid=rng.random((n - 1, h, w)) > 0.3,
        flow_end_to_start=rng.normal(0, 30, (h, w, 2)).astype(np.float32),
        flow_end_to_start_valid=rng.random((h, w)) > 0.3,
    )  # fmt: skip


def test_format_1_folder_still_reads(tmp_path):
    arc = _arc()
    folder = arc.save(tmp_path / "arc000")
    # rewrite it as format 1: float32 arrays under their plain names, no "format" in arc.json
    np.savez(folder / "flow.npz", forward=arc.flow_forward, forward_valid=arc.flow_forward_valid,
             end_to_start=arc.flow_end_to_start, end_to_start_valid=arc.flow_end_to_start_valid)  # fmt: skip
    np.savez(folder / "depth.npz", depth=arc.depth)
    meta = json.loads((folder / "arc.json").read_text())
    del meta["format"]
    (folder / "arc.json").write_text(json.dumps(meta))
    back = PreparedArc.load(folder)
    assert np.array_equal(back.flow_forward, arc.flow_forward) and np.array_equal(back.depth, arc.depth)
    assert np.array_equal(load_flows(folder)["forward_valid"], arc.flow_forward_valid)


def test_newer_or_broken_folder_says_rerun_prepare(tmp_path):
    folder = _arc().save(tmp_path / "arc000")
    meta = json.loads((folder / "arc.json").read_text())
    (folder / "arc.json").write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(VideoFrom3DError, match="re-run `videofrom3d prepare`") as e:
        PreparedArc.load(folder)
    assert "\n" not in str(e.value)
    (folder / "arc.json").write_text(json.dumps(meta))
    np.savez(folder / "flow.npz", something_else=np.zeros(3))
    with pytest.raises(VideoFrom3DError, match="flow.npz unreadable.*re-run `videofrom3d prepare`"):
        PreparedArc.load(folder)


def test_written_npz_digest_is_remembered_and_equals_the_read_back_one(tmp_path, monkeypatch):
    from videofrom3d.io import manifest

    rng = np.random.default_rng(1)
    arrays = {**compact.encode_flow(rng.normal(0, 4, (2, 6, 7, 2)).astype(np.float32), "forward"),
              **compact.encode_mask(rng.random((2, 6, 7)) > 0.5, "valid"), "f": np.asfortranarray(rng.random((3, 4)))}
    path = compact.write_npz(tmp_path / "a.npz", arrays)
    remembered = manifest.digest_file(path)
    moved = path.rename(tmp_path / "b.npz")  # the atomic writes rename; the digest stays known
    assert manifest.digest_file(moved) == remembered
    monkeypatch.setattr(manifest, "_WRITTEN", {})
    assert manifest.digest_file(moved) == remembered  # read back and hashed: the same digest
    np.savez(moved, x=np.zeros(3))  # rewritten by someone else: its size and time change, the entry misses
    assert manifest.digest_file(moved) == manifest.digest_npz_arrays({"x": np.zeros(3)}) != remembered
