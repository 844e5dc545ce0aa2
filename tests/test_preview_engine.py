"""The preview engine on an analytic scene: a plane facing cameras that slide sideways, so every flow and
every colour has a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from videofrom3d.engines import AnchorGuide
from videofrom3d.prepare.arcs import PreparedArc
from videofrom3d.prepare.flow import reprojection_flow
from videofrom3d.prepare.warp import remap
from videofrom3d.preview import (
    PreviewAnchors,
    PreviewConfig,
    PreviewError,
    PreviewInbetweener,
    style_from_images,
)
from videofrom3d.preview.style import kmeans
from videofrom3d.scene.camera import Camera

W, H, F_PX, D = 64, 48, 100.0, 10.0


def camera(x: float) -> Camera:
    K = np.array([[F_PX, 0, W / 2], [0, F_PX, H / 2], [0, 0, 1.0]])
    w2c = np.eye(4)
    w2c[0, 3] = -x  # centre at (x, 0, 0), looking down +z (OpenCV axes = world axes)
    return Camera(K, w2c, W, H)


def plane_arc(xs, edges: np.ndarray | None = None) -> PreparedArc:
    """The plane z = D seen from cameras at (x, 0, 0): object 0 where world X < 0, object 1 where X >= 0."""
    cams = tuple(camera(x) for x in xs)
    n = len(cams)
    u = np.arange(W) + 0.5
    depth = np.full((n, H, W), D, np.float32)
    world_x = np.array([x + (u - W / 2) * D / F_PX for x in xs])  # (n, W)
    objects = np.broadcast_to((world_x >= 0).astype(np.int32)[:, None, :], (n, H, W)).copy()
    normals = np.zeros((n, H, W, 3), np.float32)
    normals[..., 2] = -1.0
    fwd = [reprojection_flow(depth[i], cams[i], depth[i + 1], cams[i + 1]) for i in range(n - 1)]
    e2s, e2s_valid = reprojection_flow(depth[-1], cams[-1], depth[0], cams[0])
    return PreparedArc(
        index=0, first_frame=0, cameras=cams,
        edge_maps=np.zeros((n, H, W), np.float32) if edges is None else edges,
        depth=depth, normals=normals, object_ids=objects,
        flow_forward=np.stack([f for f, _ in fwd]), flow_forward_valid=np.stack([v for _, v in fwd]),
        flow_end_to_start=e2s, flow_end_to_start_valid=e2s_valid,
    )


STYLE = style_from_images([np.concatenate([
    np.tile(np.array([0.3, 0.5, 0.9], np.float32), (8, 40, 1)),
    np.concatenate([np.tile(np.array([0.8, 0.2, 0.1], np.float32), (40, 20, 1)),
                    np.tile(np.array([0.1, 0.7, 0.2], np.float32), (40, 20, 1))], axis=1),
])], palette_size=2)
PLAIN = PreviewConfig(line_strength=0.0, fog_strength=0.0, observed_weight=1.0, erode_px=0, feather_px=0.0,
                      colour_jitter=0.0)


def test_flow_on_a_plane_is_minus_f_t_over_d_and_invalid_outside():
    t = 0.4
    flow, valid = reprojection_flow(np.full((H, W), D, np.float32), camera(0.0), np.full((H, W), D, np.float32), camera(t))
    expected = -F_PX * t / D  # -4 px
    assert np.abs(flow[..., 0][valid] - expected).max() < 1e-3
    assert np.abs(flow[..., 1][valid]).max() < 1e-3
    # the 4 leftmost columns leave the image in view j; everything else stays
    assert not valid[:, :4].any() and valid[:, 4:].all()


def test_flow_marks_occluded_pixels_invalid():
    depth_j = np.full((H, W), D, np.float32)
    depth_j[10:20, 30:40] = D / 2  # something in front in view j
    flow, valid = reprojection_flow(np.full((H, W), D, np.float32), camera(0.0), depth_j, camera(0.0))
    assert not valid[10:20, 30:40].any()
    assert valid.sum() == H * W - 100
    assert np.abs(flow).max() < 1e-4


def test_style_palette_and_sky_come_from_the_reference():
    pal = np.array(STYLE.palette)
    assert len(pal) == 2
    for colour in ([0.8, 0.2, 0.1], [0.1, 0.7, 0.2]):
        assert np.abs(pal - colour).sum(axis=1).min() < 1e-3
    assert np.allclose(STYLE.sky_top, [0.3, 0.5, 0.9], atol=1e-3)
    centres, weights = kmeans(np.array([[0, 0, 0]] * 30 + [[1, 1, 1]] * 10, float), 4, seed=1)
    assert len(centres) == 2 and np.allclose(weights, [0.75, 0.25])  # only two distinct colours


def test_guided_anchor_keeps_observed_pixels_and_newly_seen_parts_take_the_observed_colour():
    arc = plane_arc(np.linspace(0.0, 1.0, 5))  # the end view sees 10 new columns on the right
    eng = PreviewAnchors(STYLE, PLAIN)
    first = eng.generate(arc.edge_maps[0], "", seed=1, arc=arc)
    warped, observed = remap(first, arc.flow_end_to_start, border="replicate"), arc.flow_end_to_start_valid
    assert observed[:, :54].all() and not observed[:, 54:].any()
    obj1 = arc.object_ids[-1] == 1
    # a seed whose own colour for object 1 differs from anchor 0's (2 palette colours: some seed does)
    seed = next(s for s in range(2, 40) if np.abs(
        eng.generate(arc.edge_maps[-1], "", seed=s, arc=arc, frame=4)[~observed & obj1] - first[arc.object_ids[0] == 1].mean(0)
    ).max() > 0.05)
    second = eng.generate(arc.edge_maps[-1], "", seed=seed, guide=AnchorGuide(warped, observed), arc=arc)
    assert np.abs(second[observed] - warped[observed]).max() < 1e-6
    # the new columns belong to object 1, already seen: they get its observed colour, not the seed's
    assert np.abs(second[~observed & obj1] - second[observed & obj1].mean(0)).max() < 1e-4


def test_anchor_is_deterministic_and_the_seed_matters():
    arc = plane_arc(np.linspace(0.0, 1.0, 5))
    eng = PreviewAnchors(STYLE, PreviewConfig())
    a = eng.generate(arc.edge_maps[0], "", seed=1, arc=arc)
    assert np.array_equal(a, PreviewAnchors(STYLE, PreviewConfig()).generate(arc.edge_maps[0], "x", seed=1, arc=arc))
    others = [eng.generate(arc.edge_maps[0], "", seed=s, arc=arc) for s in range(2, 8)]
    assert max(np.abs(a - o).max() for o in others) > 0.1
    with pytest.raises(PreviewError):
        eng.generate(arc.edge_maps[0], "", seed=1)


def test_lines_are_drawn_from_the_edge_map():
    edges = np.zeros((5, H, W), np.float32)
    edges[:, 20, :] = 1.0
    arc = plane_arc(np.linspace(0.0, 1.0, 5), edges)
    a = PreviewAnchors(STYLE, PreviewConfig(line_strength=1.0)).generate(edges[0], "", seed=1, arc=arc)
    assert np.allclose(a[20], STYLE.line_colour, atol=1e-6)
    assert np.abs(a[21] - np.array(STYLE.line_colour)).max() > 0.05


def test_inbetween_ends_are_the_anchors_and_inner_frames_follow_the_flow():
    xs = np.linspace(0.0, 1.2, 7)
    arc = plane_arc(xs)
    rng = np.random.default_rng(0)
    # a smooth texture on the plane, seen by the start view; the end anchor is the same texture in its view
    import cv2

    start = cv2.GaussianBlur(rng.random((H, W, 3)).astype(np.float32), (0, 0), 2.0)
    end = remap(start, arc.flow_end_to_start, border="replicate")
    end[~arc.flow_end_to_start_valid] = 0.5
    frames = PreviewInbetweener(STYLE, PLAIN).inbetween(start, end, arc.edge_maps, None, "", 0, arc=arc)
    assert frames.shape == (7, H, W, 3)
    assert np.array_equal(frames[0], start) and np.array_equal(frames[-1], end)
    for i in range(1, 6):
        f_i0, v_i0 = reprojection_flow(arc.depth[i], arc.cameras[i], arc.depth[0], arc.cameras[0])
        expected = remap(start, f_i0, border="replicate")
        inner = v_i0.copy()
        inner[:, W - 13 :] = False  # columns the end view could not confirm
        inner[:, :2] = False
        assert np.abs(frames[i][inner] - expected[inner]).max() < 0.03, i
    with pytest.raises(PreviewError):
        PreviewInbetweener(STYLE, PLAIN).inbetween(start, end, arc.edge_maps, None, "", 0)
