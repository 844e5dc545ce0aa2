import cv2
import numpy as np
import pytest

from prepare_scenes import BACKENDS, box, combine, quad, translated
from videofrom3d.prepare.flow import (
    arc_flows,
    correspondence_map,
    decode_correspondence,
    encode_correspondence,
    geometric_flow,
    read_correspondence,
    write_correspondence,
)
from videofrom3d.prepare.gbuffer import make_renderer
from videofrom3d.scene.camera import Camera, look_at

WALL = quad([[-50, -50, 10], [50, -50, 10], [50, 50, 10], [-50, 50, 10]])


def _front_cam(w=160, h=120, f=100.0):
    return Camera(np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]]), np.eye(4), w, h)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("t", [(0.3, 0.0, 0.0), (0.1, -0.25, 0.0)])
def test_plane_flow_is_minus_f_t_over_d(backend, t):
    d = 4.0
    scene = combine(quad([[-50, -50, d], [50, -50, d], [50, 50, d], [-50, 50, d]]))
    r = make_renderer(scene, backend)
    ci = _front_cam()
    cj = translated(ci, t)
    flow, valid = geometric_flow(r.render(ci), ci, r.render(cj), cj)
    expected = -100.0 * np.array(t[:2]) / d
    assert valid.mean() > 0.8
    assert np.abs(flow[valid] - expected).max() < 1e-3
    # pixels whose target falls outside image j are invalid, the others valid (a plane hides nothing)
    grid = correspondence_map(np.zeros_like(flow)) + expected
    inside = (grid[..., 0] >= 0) & (grid[..., 0] < 160) & (grid[..., 1] >= 0) & (grid[..., 1] < 120)
    assert (valid == inside).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_forward_then_backward_returns(backend):
    scene = combine(WALL, box([-1, -1, 5], [1, 1, 7]), box([2, 0, 3], [2.5, 3, 3.5]))
    r = make_renderer(scene, backend)
    ci = Camera(_front_cam().K, look_at((0.3, 0.5, -1), (0, 0, 8)), 160, 120)
    cj = Camera(_front_cam().K, look_at((1.2, 0.2, -0.5), (0.5, 0.3, 8)), 160, 120)
    gi, gj = r.render(ci), r.render(cj)
    f_ij, v_ij = geometric_flow(gi, ci, gj, cj)
    f_ji, v_ji = geometric_flow(gj, cj, gi, ci)
    pos = correspondence_map(f_ij)  # continuous positions in j
    mx = (pos[..., 0] - 0.5).astype(np.float32)
    my = (pos[..., 1] - 0.5).astype(np.float32)
    back = cv2.remap(f_ji, mx, my, cv2.INTER_LINEAR)
    # keep pixels whose 2x2 bilinear neighbourhood in j is one triangle and valid back to i
    x0, y0 = np.floor(mx).astype(int), np.floor(my).astype(int)
    ok = v_ij & (x0 >= 0) & (y0 >= 0) & (x0 < 159) & (y0 < 119)
    x0c, y0c = np.clip(x0, 0, 158), np.clip(y0, 0, 118)
    t = gj.triangle_id
    for dy in (0, 1):
        for dx in (0, 1):
            ok &= (t[y0c + dy, x0c + dx] == t[y0c, x0c]) & v_ji[y0c + dy, x0c + dx]
    assert ok.sum() > 5000
    err = np.linalg.norm(f_ij + back, axis=-1)[ok]
    assert err.max() < 0.05


@pytest.mark.parametrize("backend", BACKENDS)
def test_occluded_pixels_are_invalid(backend):
    # a box in front of a wall: wall points hidden behind the box in view j are invalid, visible ones valid
    lo, hi = np.array([-1.0, -1.0, 5.0]), np.array([1.0, 1.0, 6.0])
    scene = combine(WALL, box(lo, hi))
    r = make_renderer(scene, backend)
    ci = _front_cam()
    cj = translated(ci, (1.5, 0.0, 0.0))
    gi, gj = r.render(ci), r.render(cj)
    flow, valid = geometric_flow(gi, ci, gj, cj)
    wall = gi.object_id == 0
    ys, xs = np.nonzero(wall)
    P = np.stack([(xs + 0.5 - 80) / 100 * 10, (ys + 0.5 - 60) / 100 * 10, np.full(xs.shape, 10.0)], 1)
    C = cj.center
    # slab test of the segment C -> P against the box, with a margin so boundary pixels are not judged
    d = P - C
    with np.errstate(divide="ignore"):
        t0, t1 = (lo - C) / d, (hi - C) / d
    tmin = np.minimum(t0, t1).max(axis=1)
    tmax = np.maximum(t0, t1).min(axis=1)
    hidden = tmax - tmin > 0.02
    visible = tmax - tmin < -0.02
    uj = xs + 0.5 + flow[ys, xs, 0]
    in_j = (uj >= 1) & (uj < 159)
    assert hidden.sum() > 300
    assert not valid[ys, xs][hidden & in_j].any()
    assert valid[ys, xs][visible & in_j].all()


def test_arc_flows_shapes_and_end_to_start():
    scene = combine(WALL, box([-1, -1, 5], [1, 1, 6]))
    r = make_renderer(scene, "embree")
    base = _front_cam(64, 48, 40.0)
    cams = [translated(base, (0.05 * i, 0, 0)) for i in range(5)]
    gbs = [r.render(c) for c in cams]
    fwd, fwd_valid, e2s, e2s_valid = arc_flows(gbs, cams)
    assert fwd.shape == (4, 48, 64, 2) and fwd_valid.shape == (4, 48, 64) and e2s.shape == (48, 64, 2)
    # the wall (depth 10) moves by +40*0.2/10 = +0.8 px from the end view back to the start view
    ok = e2s_valid & (gbs[-1].object_id == 0)
    assert np.abs(e2s[ok][:, 0] - 0.8).max() < 1e-3


def test_correspondence_png_decodes_to_the_flow(tmp_path):
    rng = np.random.default_rng(0)
    h, w = 240, 360
    flow = rng.uniform(-30, 30, size=(h, w, 2)).astype(np.float32)
    pos = correspondence_map(flow)
    valid = (pos[..., 0] >= 0) & (pos[..., 0] < w) & (pos[..., 1] >= 0) & (pos[..., 1] < h)
    valid &= rng.random((h, w)) > 0.1
    path = write_correspondence(tmp_path / "0004.png", flow, valid)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint16 and raw.shape == (h, w, 3)
    # the authors' decoder: BGR; x = R / 65536 * W, y = (65535 - G) / 65536 * H, B = 65535 valid
    B, G, R = raw[..., 0], raw[..., 1], raw[..., 2]
    assert ((B == 65535) == valid).all() and (raw[~valid] == 0).all()
    x = R.astype(float) / 65536 * w
    y = (65535 - G.astype(float)) / 65536 * h
    q = 0.5 * w / 65536 + 1e-4
    assert np.abs(x - pos[..., 0])[valid].max() < q and np.abs(y - pos[..., 1])[valid].max() < q
    # their integer lookup lands in the pixel that contains the continuous source position
    assert (np.floor(R.astype(float) * w / 65536) == np.floor(pos[..., 0]))[valid].mean() > 0.99
    f2, v2 = read_correspondence(path)
    assert (v2 == valid).all() and np.abs(f2 - flow)[valid].max() < q


def test_encode_decode_other_source_size():
    flow = np.zeros((20, 30, 2), np.float32)
    img = encode_correspondence(flow, np.ones((20, 30), bool), source_size=(60, 40))
    f, v = decode_correspondence(img, source_size=(60, 40))
    assert v.all() and np.abs(f).max() < 0.01 * 60 / 65536 * 100
