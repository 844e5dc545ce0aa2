import warnings

import cv2
import numpy as np
import pytest

from prepare_scenes import BACKENDS, box, camera, combine, quad
from videofrom3d.errors import VideoFrom3DError
from videofrom3d.io.video import read_video
from videofrom3d.prepare import PrepareConfig, PreparedArc, make_renderer, prepare_arc, write_arc_preview
from videofrom3d.prepare.edges import edge_map, topology_for
from videofrom3d.prepare.flow import arc_flows
from videofrom3d.prepare.gbuffer import GBuffer
from videofrom3d.prepare.official import export_official, latent_aligned_frames

FLOOR = quad([[-30, 0, -30], [-30, 0, 30], [30, 0, 30], [30, 0, -30]])


@pytest.fixture(scope="module")
def scene():
    return combine(box([-1, 0, -1], [1, 2, 1]), box([1.5, 0, -2], [2.5, 1, -1]), FLOOR)


@pytest.fixture(scope="module")
def renderer(scene):
    return make_renderer(scene, "auto")


def _orbit(n, w=96, h=64, start=0.0, span=0.5):
    return [
        camera((6 * np.sin(a), 3.0, 6 * np.cos(a)), (0, 0.8, 0), w, h) for a in np.linspace(start, start + span, n)
    ]


def test_prepare_arc_shapes_and_save_load(renderer, scene, tmp_path):
    cams = _orbit(6)
    arc = prepare_arc(renderer, scene, cams, PrepareConfig(), index=2, first_frame=90,
                      noise_fn=lambda f, v: np.ones((13, 16, 60, 90)) * f.shape[0])
    assert arc.edge_maps.shape == (6, 64, 96) and arc.flow_forward.shape == (5, 64, 96, 2)
    assert arc.depth.shape == (6, 64, 96) and arc.normals.shape == (6, 64, 96, 3)
    assert arc.warped_noise.dtype == np.float16 and arc.warped_noise[0, 0, 0, 0] == 5
    assert 0.01 < (arc.edge_maps > 0.04).mean() < 0.6 and arc.edge_maps.max() == pytest.approx(1.0, abs=0.01)
    assert arc.flow_forward_valid.mean() > 0.7
    path = arc.save(tmp_path / "arc002")
    back = PreparedArc.load(path)
    assert back.index == 2 and back.first_frame == 90 and back.frame_count == 6
    assert np.abs(back.edge_maps - arc.edge_maps).max() <= 0.5 / 255 + 1e-6
    err = arc.flow_forward - back.flow_forward  # forward flows are stored at 1/64 px (floor)
    assert err.min() >= 0 and err.max() < 1 / 64 and np.array_equal(back.object_ids, arc.object_ids)
    assert np.array_equal(back.flow_end_to_start, arc.flow_end_to_start)  # exact: anchors are warped by it
    assert np.array_equal(back.flow_forward_valid, arc.flow_forward_valid)
    assert np.array_equal(back.depth, arc.depth) and back.warped_noise.shape == (13, 16, 60, 90)
    hit = arc.object_ids >= 0
    assert np.abs(back.normals - arc.normals)[hit].max() < 1.5 / 127 and (back.normals[~hit] == 0).all()
    raw = cv2.imread(str(path / "edges" / "0005.png"), cv2.IMREAD_UNCHANGED)
    assert raw.dtype == np.uint8 and raw.shape == (64, 96)


def test_supersampled_edges_keep_the_1x_buffers(renderer, scene):
    cams = _orbit(2)
    a1 = prepare_arc(renderer, scene, cams, PrepareConfig())
    a3 = prepare_arc(renderer, scene, cams, PrepareConfig(supersample=3))
    assert (a1.object_ids == a3.object_ids).mean() > 0.999
    assert np.abs(a1.flow_forward - a3.flow_forward)[a1.flow_forward_valid].max() < 1e-3
    # anti-aliased: the supersampled map has intermediate values where the 1x map has none
    assert a3.edge_maps.shape == a1.edge_maps.shape
    assert a3.edge_maps.max() > 0.9 and np.corrcoef(a1.edge_maps.ravel(), a3.edge_maps.ravel())[0, 1] > 0.5


def _serial_arc(renderer, cams, cfg: PrepareConfig):
    """The reference for prepare_arc's threaded path: each view rendered, then its edge map, one after the
    other; the 1x G-buffer is the centre sub-pixel of each s x s block; then every flow by ``arc_flows``."""
    s, c = cfg.supersample, cfg.supersample // 2
    ecfg = cfg.edge_config()
    topo = topology_for(renderer, ecfg)
    gbuffers, edges = [], []
    for cam in cams:
        big_cam = cam.resized(cam.width * s, cam.height * s)
        big = renderer.render(big_cam)
        edges.append(edge_map(big, big_cam, topo, ecfg, size=(cam.width, cam.height)))
        fields = (big.depth, big.normal, big.triangle_id, big.object_id, big.hit)
        gbuffers.append(GBuffer(*(np.ascontiguousarray(f[c::s, c::s]) for f in fields)))
    return gbuffers, np.stack(edges), arc_flows(gbuffers, cams, cfg.depth_tolerance)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("supersample", [1, 3])
def test_threaded_prepare_arc_equals_a_serial_reference(scene, backend, supersample):
    cams = _orbit(5)
    cfg = PrepareConfig(supersample=supersample)
    arc = prepare_arc(make_renderer(scene, backend), scene, cams, cfg)
    gbuffers, edges, (fwd, fwd_valid, e2s, e2s_valid) = _serial_arc(make_renderer(scene, backend), cams, cfg)
    assert np.array_equal(arc.depth, np.stack([g.depth for g in gbuffers]))
    assert np.array_equal(arc.normals, np.stack([g.normal for g in gbuffers]))
    assert np.array_equal(arc.object_ids, np.stack([g.object_id for g in gbuffers]))
    assert np.array_equal(arc.edge_maps, edges) and edges.max() > 0.5
    assert np.array_equal(arc.flow_forward, fwd) and np.array_equal(arc.flow_forward_valid, fwd_valid)
    assert np.array_equal(arc.flow_end_to_start, e2s) and np.array_equal(arc.flow_end_to_start_valid, e2s_valid)
    assert fwd_valid.mean() > 0.5 and e2s_valid.any()


def test_bad_views_warn_naming_frames(renderer, scene):
    cams = _orbit(4)
    cams[1] = camera((0, 50, 0), (0, 100, 0), 96, 64)  # looks at the sky
    cams[2] = camera((0, 1.0, 0), (1, 1.0, 0), 96, 64)  # inside the closed box
    with pytest.warns(UserWarning) as rec:
        prepare_arc(renderer, scene, cams, PrepareConfig(), first_frame=45)
    text = " ".join(str(w.message) for w in rec)
    assert "sees nothing" in text and "frame(s) 46" in text
    assert "inside a closed mesh" in text and "frame(s) 47" in text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare_arc(renderer, scene, _orbit(3), PrepareConfig())  # a good arc does not warn


def test_nan_pose_errors_before_anything_is_written(renderer, scene, tmp_path):
    cams = _orbit(3)
    cams[1].world_to_cam[0, 3] = np.nan  # a camera corrupted after construction
    calls = []
    with pytest.raises(VideoFrom3DError, match=r"frame\(s\) 11"):
        prepare_arc(renderer, scene, cams, PrepareConfig(), first_frame=10, noise_fn=lambda *a: calls.append(1))
    assert not calls and not any(tmp_path.iterdir())


def test_preview_video(renderer, scene, tmp_path):
    arc = prepare_arc(renderer, scene, _orbit(4), PrepareConfig())
    path = write_arc_preview(arc, tmp_path / "preview.mp4", scale=1.0)
    video = read_video(path)
    assert video.shape == (4, 64, 3 * 96, 3)
    assert video[0, :, :96].mean() > 5 and video[0, :, 96:192].mean() > 20 and video[0, :, 192:].mean() > 20


def test_config_rejects_even_supersampling():
    with pytest.raises(ValueError, match="supersample"):
        PrepareConfig(supersample=2)


def test_latent_aligned_frames_match_the_official_sample():
    assert latent_aligned_frames(1, 46)[1:] == [4, 8, 12, 16, 19, 23, 27, 31, 34, 38, 42, 46]
    assert latent_aligned_frames(46, 91)[0] == 46


def test_export_official_layout(renderer, scene, tmp_path):
    cams = _orbit(27, span=0.6)
    noise = np.random.default_rng(0).standard_normal((13, 16, 60, 90)).astype(np.float16)
    a0 = prepare_arc(renderer, scene, cams[:14], PrepareConfig(), index=0, first_frame=0)
    a1 = prepare_arc(renderer, scene, cams[13:], PrepareConfig(), index=1, first_frame=13, noise_fn=lambda *a: noise)
    out = export_official([a0, a1], scene, tmp_path / "official", renderer=renderer)
    hed0 = sorted(p.name for p in (out / "arc0" / "hed").iterdir())
    hed1 = sorted(p.name for p in (out / "arc1" / "hed").iterdir())
    assert hed0[0] == "0001.png" and hed0[-1] == "0014.png" and len(hed0) == 14
    assert hed1[0] == "0014.png" and hed1[-1] == "0027.png"  # the boundary frame is in both arcs
    img = cv2.imread(str(out / "arc0" / "hed" / "0014.png"), cv2.IMREAD_UNCHANGED)
    assert img.shape == (720, 1080, 3) and img.dtype == np.uint8
    assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all() and img.max() > 200
    corres = sorted(p.name for p in (out / "arc0" / "corres").iterdir())
    # at the frames noises.npy was warped through (N = 13: 4, 8, 12, 13), not floor(linspace) (issue 12)
    assert corres == ["0005.png", "0009.png", "0013.png", "0014.png"]
    c = cv2.imread(str(out / "arc0" / "corres_end.png"), cv2.IMREAD_UNCHANGED)
    assert c.shape == (240, 360, 3) and c.dtype == np.uint16
    assert set(np.unique(c[..., 0])) <= {0, 65535} and (c[..., 0] == 65535).mean() > 0.3
    # the end -> start map agrees with the arc's own end -> start flow (different resolutions: compare in
    # normalised coordinates at the arc's pixels)
    x = c[..., 2].astype(float) / 65536
    y = (65535 - c[..., 1].astype(float)) / 65536
    ys, xs = np.nonzero(a0.flow_end_to_start_valid)
    pos = (np.stack([xs, ys], 1) + 0.5 + a0.flow_end_to_start[ys, xs]) / [96, 64]
    ci, cj = ((ys + 0.5) / 64 * 240).astype(int), ((xs + 0.5) / 96 * 360).astype(int)
    ok = c[ci, cj, 0] == 65535
    err = np.abs(np.stack([x[ci, cj], y[ci, cj]], 1) - pos)[ok]
    assert ok.mean() > 0.9 and np.median(err) < 1e-3
    assert not (out / "arc0" / "noises.npy").exists()
    n = np.load(out / "arc1" / "noises.npy")
    assert n.shape == (13, 60, 90, 16) and np.allclose(n, noise.astype(np.float32).transpose(0, 2, 3, 1))
