"""Metric maths on synthetic inputs with known answers (tier 0, numpy only)."""

import math

import numpy as np
import pytest

from videofrom3d.eval.consistency import (
    canny_edges,
    chi2_distance,
    color_distances,
    edge_alignment,
    flow_agreement,
    lab_histogram,
    sliced_wasserstein,
    to_lab,
    warp_error,
)
from videofrom3d.eval.fidelity import composite_pseudo_gt, masked_scores
from videofrom3d.eval.metrics import psnr, ssim
from videofrom3d.eval.synthetic import render_view
from videofrom3d.prepare.flow import reprojection_flow
from videofrom3d.scene.camera import Camera, intrinsics_from_fov


def _img(seed=0, h=48, w=64):
    import cv2

    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 1.0)


def test_psnr_identical_is_inf_and_known_offset():
    a = _img().astype(np.float64)
    assert psnr(a, a) == math.inf
    b = np.clip(a + 0.1, 0, 2)  # MSE 0.01 -> 20 dB exactly
    assert psnr(a, b) == pytest.approx(20.0, abs=1e-6)
    # peak 255: an offset of 1 grey level -> 48.13 dB
    assert psnr(np.zeros((4, 4)), np.ones((4, 4)), peak=255.0) == pytest.approx(20 * math.log10(255), abs=1e-9)


def test_psnr_ssim_masked_ignore_pixels_outside_the_mask():
    a = _img(1)
    b = a.copy()
    mask = np.zeros(a.shape[:2], bool)
    mask[:, :32] = True
    b[:, 40:] = 1.0 - b[:, 40:]  # garbage only outside the mask (and > 5 px away from it)
    assert psnr(a, b, mask) == math.inf
    assert ssim(a, b, mask) == pytest.approx(1.0, abs=1e-9)
    assert psnr(a, b) < 20
    assert ssim(a, b) < 0.8


def test_ssim_identical_is_one_and_noise_lowers_it():
    a = _img(2)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    noisy = a + np.random.default_rng(0).normal(0, 0.05, a.shape)
    s = ssim(a, noisy)
    assert 0.3 < s < 0.95
    assert ssim(a, a + 0.2) < 1.0  # a luminance shift also costs


def _cams(shift=0.3, w=96, h=64):
    K = intrinsics_from_fov(w, h, fov_y_deg=50.0)
    a = Camera(K, np.eye(4), w, h)
    t = np.eye(4)
    t[0, 3] = -shift  # camera centre at x = +shift
    return a, Camera(K, t, w, h), K


def test_reprojection_flow_of_a_plane_is_minus_f_t_over_d():
    cam_a, cam_b, K = _cams(0.3)
    d = 4.0
    depth = np.full((64, 96), d, np.float32)
    flow, valid = reprojection_flow(depth, cam_a, depth, cam_b)
    expected = -K[0, 0] * 0.3 / d
    assert np.allclose(flow[valid][:, 0], expected, atol=1e-4)
    assert np.allclose(flow[valid][:, 1], 0.0, atol=1e-4)
    # the strip that leaves the image on the left is not valid, everything else is
    lost = int(math.ceil(-expected))
    assert not valid[:, : lost - 1].any() and valid[:, lost + 1 :].all()


def test_reprojection_flow_marks_occluded_pixels_invalid():
    cam_a, cam_b, _ = _cams(0.4)
    _, da, _ = render_view(cam_a)
    _, db, ob = render_view(cam_b)
    flow, valid = reprojection_flow(da, cam_a, db, cam_b)
    # wall pixels that land behind the card in view b are invalid
    h, w = da.shape
    ys, xs = np.mgrid[0:h, 0:w]
    tx = np.clip(np.round(xs + flow[..., 0]).astype(int), 0, w - 1)
    ty = np.clip(np.round(ys + flow[..., 1]).astype(int), 0, h - 1)
    wall_behind_card = (da > 5) & (ob[ty, tx] == 1) & (np.abs(flow[..., 0]) > 0)
    assert wall_behind_card.sum() > 20
    assert valid[wall_behind_card].mean() < 0.1
    assert valid.mean() > 0.7


def test_warp_error_zero_for_a_static_video_and_for_exact_motion():
    cam_a, cam_b, _ = _cams(0.2)
    img_a, da, _ = render_view(cam_a)
    img_b, db, _ = render_view(cam_b)
    static_flow = np.zeros(da.shape + (2,), np.float32)
    l1, p = warp_error(img_a, img_a, static_flow, np.ones(da.shape, bool))
    assert l1 == 0.0 and p == math.inf
    flow_b_to_a, valid = reprojection_flow(db, cam_b, da, cam_a)
    l1_true, _ = warp_error(img_a, img_b, flow_b_to_a, valid)
    l1_frozen, _ = warp_error(img_a, img_a, flow_b_to_a, valid)  # video that ignores the camera motion
    assert l1_true < 0.02
    assert l1_frozen > 3 * l1_true


def test_flow_agreement_finds_a_known_shift():
    cam_a, cam_b, K = _cams(0.25, w=160, h=112)
    img_a, da, _ = render_view(cam_a)
    img_b, db, _ = render_view(cam_b)
    flow_ab, valid = reprojection_flow(da, cam_a, db, cam_b)
    epe, u1, u3 = flow_agreement(img_a, img_b, flow_ab, valid)
    assert epe < 0.6 and u3 > 0.95
    epe_static, _, _ = flow_agreement(img_a, img_a, flow_ab, valid)  # frozen video: error = true motion
    assert epe_static == pytest.approx(np.linalg.norm(flow_ab[valid], axis=-1).mean(), rel=0.2)


def test_edge_alignment_known_offset():
    geo = np.zeros((40, 60), bool)
    geo[5:35, 20] = True
    gen = np.zeros_like(geo)
    gen[5:35, 23] = True  # 3 px to the right
    tight = edge_alignment(gen, geo, tol=2.0)
    loose = edge_alignment(gen, geo, tol=4.0)
    assert tight["recall"] == 0.0 and tight["precision"] == 0.0 and tight["f"] == 0.0
    assert loose["recall"] == 1.0 and loose["precision"] == 1.0 and loose["f"] == 1.0
    assert loose["chamfer"] == pytest.approx(3.0, abs=1e-3)
    same = edge_alignment(geo, geo, tol=1.0)
    assert same["chamfer"] == 0.0 and same["f"] == 1.0
    assert edge_alignment(np.zeros_like(geo), geo, 2.0)["recall"] == 0.0


def test_canny_finds_a_step_edge():
    img = np.zeros((40, 60, 3), np.float32)
    img[:, 30:] = 0.8
    e = canny_edges(img)
    cols = np.flatnonzero(e.any(axis=0))
    assert e.sum() >= 30 and cols.min() >= 28 and cols.max() <= 31


def test_colour_distances_zero_for_same_and_exact_for_a_lightness_shift():
    a = _img(3, 64, 64) * 0.5 + 0.2
    la = to_lab(a)
    d = color_distances(la, la)
    assert d == {"swd": 0.0, "chi2": 0.0, "moments": 0.0}
    lb = la.copy()
    lb[..., 0] += 10.0  # pure L shift: every projection moves by 10 |dir_L|
    from videofrom3d.eval.consistency import _directions

    expected = 10.0 * np.abs(_directions(64, 0)[:, 0]).mean()
    assert sliced_wasserstein(lb, la) == pytest.approx(expected, rel=1e-5)
    assert color_distances(lb, la)["moments"] == pytest.approx(10.0, rel=1e-5)
    assert chi2_distance(lab_histogram(la), lab_histogram(la + np.array([0, 100, 0], np.float32))) > 0.9


def test_pseudo_gt_composite_takes_the_nearer_anchor_and_unions_the_masks():
    h, w = 8, 10
    start = np.full((h, w, 3), 0.2, np.float32)
    end = np.full((h, w, 3), 0.8, np.float32)
    zero = np.zeros((h, w, 2), np.float32)
    v0 = np.zeros((h, w), bool)
    v0[:, :6] = True
    vn = np.zeros((h, w), bool)
    vn[:, 4:] = True
    g = composite_pseudo_gt(start, end, zero, v0, zero, vn, prefer_start=True)
    assert np.allclose(g.target[:, :6], 0.2) and np.allclose(g.target[:, 6:], 0.8)
    assert g.known.all()
    g2 = composite_pseudo_gt(start, end, zero, v0, zero, vn, prefer_start=False)
    assert np.allclose(g2.target[:, :4], 0.2) and np.allclose(g2.target[:, 4:], 0.8)
    # the frame equal to the composite is perfect; unknown pixels do not count
    v0[:] = False
    vn[:, :5] = False
    g3 = composite_pseudo_gt(start, end, zero, v0, zero, vn, prefer_start=True)
    frame = g3.target.copy()
    frame[:, :5] = 1.0
    s = masked_scores(frame, g3)
    assert s["psnr"] == 100.0  # capped
