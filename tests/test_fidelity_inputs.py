"""The inputs the trained weights expect (issue 12 items 1-2): HED edge maps of the normal-shaded render as
the authors make them, the edge-mode decision and its errors, and anchors at the authors' 1.5x size with a
height-scaled erosion sampled to the latent grid by nearest neighbour."""

import numpy as np
import pytest

from prepare_scenes import box, camera, combine, quad
from videofrom3d.anchors.generate import (
    AnchorConfig,
    anchor_size,
    erode_px_at,
    make_anchor_guide,
)
from videofrom3d.job import JobError, config_from_options
from videofrom3d.prepare import PrepareConfig, make_renderer, prepare_arc
from videofrom3d.prepare.edge_mode import MissingHEDError, align_edge_detector, choose_edge_mode

FLOOR = quad([[-30, 0, -30], [-30, 0, 30], [30, 0, 30], [30, 0, -30]])


@pytest.fixture(scope="module")
def renderer():
    return make_renderer(combine(box([-1, 0, -1], [1, 2, 1]), FLOOR), "embree")


def _cams(n=3, w=96, h=64):
    return [camera((6 * np.sin(a), 3.0, 6 * np.cos(a)), (0, 0.8, 0), w, h) for a in np.linspace(0, 0.3, n)]


# ------------------------------------------------------------------------------------------ edge mode


def test_edge_mode_decision():
    w = "/m/ControlNetHED.pth"
    assert choose_edge_mode("auto", "diffusion", "real", w).mode == "hed"
    assert choose_edge_mode("auto", "preview", "real", w).record() == {"mode": "hed", "hed": "weights", "weights": w}
    assert choose_edge_mode("lines", "diffusion", "real", None).mode == "lines"
    tiny = choose_edge_mode("auto", "diffusion", "tiny-random", None)
    assert (tiny.mode, tiny.hed) == ("hed", "tiny-random")
    fallback = choose_edge_mode("auto", "preview", "real", None)
    assert fallback.mode == "lines" and "not found" in fallback.notice and "\n" not in fallback.notice
    for requested, engine in (("auto", "diffusion"), ("hed", "preview"), ("hed", "diffusion")):
        with pytest.raises(MissingHEDError) as err:
            choose_edge_mode(requested, engine, "real", None)
        msg = str(err.value)
        assert "ControlNetHED.pth" in msg and 'edges = "lines"' in msg and "\n" not in msg
    with pytest.raises(ValueError, match="edges"):
        choose_edge_mode("sobel", "preview", "real", None)


def test_alignment_control_images_follow_the_same_rule():
    assert align_edge_detector("auto", "real", "/m/ControlNetHED.pth") == "network"
    assert align_edge_detector("auto", "tiny-random", None) == "classical"
    assert align_edge_detector("classical", "real", None) == "classical"
    with pytest.raises(MissingHEDError, match='edge_detector = "classical"'):
        align_edge_detector("auto", "real", None)  # today: a silent Sobel fallback


def test_prepare_config_has_the_edges_key():
    assert PrepareConfig().edges == "auto"
    assert config_from_options(PrepareConfig, {"edges": "lines"}, "prepare").edges == "lines"
    with pytest.raises(JobError, match=r"\[prepare\].edges"):
        config_from_options(PrepareConfig, {"edges": "sobel"}, "prepare")


# ------------------------------------------------------------------------------------------ HED edges


def test_normal_shading_colours_view_space_normals():
    from videofrom3d.prepare.edges import hed_input, normal_shading
    from videofrom3d.prepare.gbuffer import GBuffer

    cam = camera((0, 0, 5), (0, 0, 0), 4, 2)  # looks down -z, y up
    n = np.zeros((2, 4, 3), np.float32)
    n[0, :2] = (0, 0, 1)  # facing the camera
    n[0, 2:] = (1, 0, 0)  # facing right
    n[1, :2] = (0, 1, 0)  # facing up
    hit = np.ones((2, 4), bool)
    hit[1, 3] = False
    gb = GBuffer(np.ones((2, 4), np.float32), n, np.zeros((2, 4), np.int32), np.zeros((2, 4), np.int32), hit)
    rgb = normal_shading(gb, cam)
    assert np.allclose(rgb[0, 0], (0.5, 0.5, 1.0), atol=1e-5)
    assert np.allclose(rgb[0, 3], (1.0, 0.5, 0.0), atol=1e-5)
    assert np.allclose(rgb[1, 0], (0.5, 1.0, 0.0), atol=1e-5)
    assert np.array_equal(rgb[1, 3], (0, 0, 0))
    lines = np.zeros((2, 4), np.float32)
    lines[0, 0] = 1.0
    lines[0, 3] = 0.5
    shaded = hed_input(gb, cam, lines)
    assert np.allclose(shaded[0, 0], 1.0) and np.allclose(shaded[0, 3], (1.0, 0.75, 0.5))


@pytest.mark.torch
def test_prepare_arc_runs_hed_on_the_shaded_render(renderer):
    pytest.importorskip("torch")
    from videofrom3d.prepare.arcs import make_hed_detector
    from videofrom3d.prepare.edges import edge_map, hed_input, topology_for

    cams = _cams()
    seen = []
    hed = make_hed_detector(choose_edge_mode("auto", "diffusion", "tiny-random", None), device="cpu")

    def spy(image):
        seen.append(image)
        return hed(image)

    arc = prepare_arc(renderer, None, cams, PrepareConfig(edges="hed"), hed=spy)
    lines = prepare_arc(renderer, None, cams, PrepareConfig(edges="lines"))
    assert len(seen) == 3
    gb = renderer.render(cams[1])
    ecfg = PrepareConfig().edge_config()
    drawn = edge_map(gb, cams[1], topology_for(renderer, ecfg), ecfg)
    # HED saw the shaded render with the drawn lines on top, and its output is the edge map
    assert np.allclose(seen[1], hed_input(gb, cams[1], drawn), atol=1e-6)
    assert seen[1][gb.hit].std() > 0.05  # shading, not just lines on black
    assert np.allclose(arc.edge_maps[1], hed(seen[1]))
    assert not np.allclose(arc.edge_maps, lines.edge_maps, atol=0.05)
    with pytest.raises(ValueError, match="HED detector"):
        prepare_arc(renderer, None, cams, PrepareConfig(edges="hed"))


# ------------------------------------------------------------------------------------------ anchor size


def test_anchor_size_is_the_authors_1_5x():
    assert anchor_size((720, 480)) == (1072, 720)
    assert anchor_size((720, 480), (720, 480)) == (720, 480)
    assert anchor_size((96, 64)) == (144, 96)
    assert AnchorConfig().size is None
    assert config_from_options(AnchorConfig, {"size": [1024, 688]}, "anchors").size == (1024, 688)
    with pytest.raises(ValueError, match="multiples of 16"):
        config_from_options(AnchorConfig, {"size": [1080, 720]}, "anchors")


def test_erosion_scales_with_height_and_mask_is_sampled_nearest():
    assert erode_px_at(720) == 24 and erode_px_at(480) == 16 and erode_px_at(1440) == 48

    class Arc:
        def __init__(self, h, w):
            self.flow_end_to_start = np.zeros((h, w, 2), np.float32)
            self.flow_end_to_start_valid = np.ones((h, w), bool)
            self.flow_end_to_start_valid[:, :64] = False

    for h in (720, 480):
        w = h * 3 // 2
        guide = make_anchor_guide(np.zeros((h, w, 3), np.float32), Arc(h, w), erode_px=24)
        first = int(np.argmax(guide.observed_mask[h // 2]))
        assert first == 64 + erode_px_at(h)  # 88 at 720 px, 80 at 480 px (today: 88 at both)


@pytest.mark.torch
def test_latent_mask_is_nearest_sampled():
    pytest.importorskip("torch")
    from videofrom3d.anchors.generate import latent_mask

    observed = np.zeros((16, 24), bool)
    observed[0:1, 0:1] = True  # only the top-left pixel of cell (0, 0)
    observed[8:16, 9:16] = True  # all of cell (1, 1) but its top-left pixel
    cells = latent_mask(observed, 8)[0, 0].numpy()
    assert cells.tolist() == [[True, False, False], [False, False, False]]


def test_anchor_view_inputs_are_rendered_at_the_anchor_size(renderer, tmp_path):
    from videofrom3d.prepare.anchor_inputs import AnchorViews, anchor_view_inputs
    from videofrom3d.prepare.edges import edge_map, topology_for
    from videofrom3d.prepare.flow import geometric_flow

    cams = _cams(2)
    size = anchor_size((96, 64))
    views = anchor_view_inputs(renderer, cams[0], cams[-1], size, PrepareConfig(edges="lines"))
    assert views.size == (144, 96) and views.flow_end_to_start.shape == (96, 144, 2)
    big = [c.resized(*size) for c in cams]
    gbs = [renderer.render(c) for c in big]
    ecfg = PrepareConfig().edge_config()
    assert np.allclose(views.edge_end, edge_map(gbs[1], big[1], topology_for(renderer, ecfg), ecfg))
    flow, valid = geometric_flow(gbs[1], big[1], gbs[0], big[0])
    assert np.array_equal(views.flow_end_to_start_valid, valid) and np.allclose(views.flow_end_to_start, flow)
    # flow in anchor-size pixels: 1.5x the job-size flow at the same scene points (job pixel 2m sits at
    # anchor pixel 3m + 0.25)
    small = [renderer.render(c) for c in cams]
    f_small, v_small = geometric_flow(small[1], cams[1], small[0], cams[0])
    both = v_small[::2, ::2] & valid[::3, ::3]
    err = np.abs(flow[::3, ::3][both] - 1.5 * f_small[::2, ::2][both])
    assert both.sum() > 500 and np.median(err) < 0.3
    back = AnchorViews.load(views.save(tmp_path / "anchor_views.npz"))
    assert np.abs(back.edge_end - views.edge_end).max() <= 0.5 / 255 + 1e-6
    assert np.array_equal(back.flow_end_to_start_valid, views.flow_end_to_start_valid)


# ------------------------------------------------------------------------------------------ the run


def test_diffusion_run_without_hed_stops_before_any_work(tmp_path, capsys, monkeypatch):
    from test_pipeline_jobs import make_job
    from videofrom3d.cli import main
    from videofrom3d.models import MODELS

    root = tmp_path / "models"
    for key in ("flux", "controlnet_hed", "cogvideox", "ggi"):  # every weight but HED "found"
        (root / MODELS[key].repo_id).mkdir(parents=True)
        (root / MODELS[key].repo_id / MODELS[key].marker).write_text("{}")
    monkeypatch.setenv("VIDEOFROM3D_MODELS", str(root))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    job = make_job(tmp_path)
    assert main(["render", str(job), "--engine", "diffusion", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ControlNetHED.pth" in err[0] and 'edges = "lines"' in err[0]
    assert not (tmp_path / "work").exists()
    # the preview engine falls back to drawn lines and says so; the manifest and doctor name the choice
    assert main(["prepare", str(job), "--engine", "preview", "--no-noise"]) == 0
    assert "edge maps are drawn lines" in capsys.readouterr().out
    manifest = __import__("json").loads((tmp_path / "work" / "manifest.json").read_text())
    assert manifest["stages"]["prepare"]["edges"] == {"mode": "lines", "hed": None, "weights": None}
    assert main(["doctor", "--json"]) == 0
    assert "drawn lines" in __import__("json").loads(capsys.readouterr().out)["edges"]


@pytest.mark.torch
def test_sag_encodes_the_warped_anchor_with_a_seeded_posterior_sample():
    """x-flux's AE.encode samples the posterior (review item 10): ours too, from the anchor's seed."""
    torch = pytest.importorskip("torch")
    from videofrom3d.anchors.components import tiny_flux_components
    from videofrom3d.anchors.generate import AnchorGenerator, AnchorGuide, encode_image, latent_posterior

    comps = tiny_flux_components(seed=0)
    img = np.random.default_rng(0).random((32, 48, 3)).astype(np.float32)
    mean, std = latent_posterior(comps, img)
    z = encode_image(comps, img, torch.Generator().manual_seed(8))
    assert torch.allclose(z, mean + std * torch.randn(mean.shape, generator=torch.Generator().manual_seed(8)))
    assert not torch.allclose(z, mean) and torch.equal(encode_image(comps, img), mean)
    guide = AnchorGuide(img, np.ones((32, 48), bool))
    edge = np.zeros((32, 48), np.float32)
    outs = {}
    for mode in ("sample", "mode"):
        gen = AnchorGenerator(comps, AnchorConfig(steps=2, replace_steps=2, true_cfg=1.0, max_sequence_length=16,
                                                  encode_mode=mode), prompts=["a"])
        outs[mode] = [gen.generate_latents(edge, "a", 7, guide) for _ in range(2)]
    assert torch.equal(*outs["sample"]) and not torch.equal(outs["sample"][0], outs["mode"][0])


def test_export_official_makes_its_edge_maps_the_same_way(renderer, tmp_path):
    import cv2

    from videofrom3d.prepare.official import export_official

    cams = _cams(3)
    arc = prepare_arc(renderer, None, cams, PrepareConfig(edges="lines"))
    calls = []

    def fake_hed(image):
        calls.append(image.shape)
        return np.full(image.shape[:2], 0.5, np.float32)

    out = export_official([arc], renderer.scene, tmp_path / "off", renderer=renderer, hed_size=(144, 96), hed=fake_hed)
    assert calls == [(96, 144, 3)] * 3  # HED ran on each re-rendered shaded frame
    assert (cv2.imread(str(out / "arc0" / "hed" / "0002.png"))[..., 0] == 128).all()
