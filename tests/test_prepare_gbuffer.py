import numpy as np
import pytest
import trimesh

from prepare_scenes import BACKENDS, box, camera, combine, moderngl_ok, quad
from videofrom3d.prepare.gbuffer import make_renderer, projection_matrix
from videofrom3d.scene.camera import Camera


def _scene():
    s = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    sphere = (np.asarray(s.vertices) + [0.0, 1.0, 0.0], np.asarray(s.faces))
    floor = quad([[-20, 0, -20], [-20, 0, 20], [20, 0, 20], [20, 0, -20]])
    return combine(sphere, box([1.5, 0, -1], [2.5, 1.5, 0]), floor)


@pytest.mark.parametrize("backend", BACKENDS)
def test_plane_depth_is_exact_and_ids_are_per_face(backend):
    # a quad at z = 4 facing a camera at the origin: depth 4 everywhere, object id 0, normal -z
    scene = combine(quad([[-10, -10, 4], [10, -10, 4], [10, 10, 4], [-10, 10, 4]]))
    cam = Camera(np.array([[100.0, 0, 40], [0, 100, 30], [0, 0, 1]]), np.eye(4), 80, 60)
    gb = make_renderer(scene, backend).render(cam)
    assert gb.hit.all()
    assert np.abs(gb.depth - 4.0).max() < 1e-5
    assert set(np.unique(gb.triangle_id)) == {0, 1} and (gb.object_id == 0).all()
    assert np.allclose(np.abs(gb.normal[..., 2]), 1.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pixel_centre_convention(backend):
    # a quad covering x in [0, 3) world units at depth 1 with f = 10, cx = 0: its right edge projects to u = 30,
    # so exactly the pixel columns 0..29 (centres 0.5 .. 29.5) are covered
    scene = combine(quad([[0, -5, 1], [3, -5, 1], [3, 5, 1], [0, 5, 1]]))
    K = np.array([[10.0, 0, 0.0], [0, 10, 20], [0, 0, 1]])
    gb = make_renderer(scene, backend).render(Camera(K, np.eye(4), 60, 40))
    cols = np.flatnonzero(gb.hit[20])
    assert cols.min() == 0 and cols.max() == 29


def test_backends_agree():
    if not moderngl_ok():
        pytest.skip("no EGL context here")
    scene = _scene()
    cams = [camera((4, 3, 6), (0, 0.8, 0), 240, 160), camera((-3, 1.5, 4), (1, 0.5, 0), 240, 160, fov_x=80)]
    ra, rb = make_renderer(scene, "moderngl"), make_renderer(scene, "embree")
    for cam in cams:
        a, b = ra.render(cam), rb.render(cam)
        both = a.hit & b.hit
        assert (a.hit != b.hit).mean() < 0.005
        assert (a.triangle_id == b.triangle_id)[both].mean() >= 0.995
        rel = np.abs(a.depth[both] - b.depth[both]) / b.depth[both]
        assert np.median(rel) < 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_depth_matches_projection_of_the_hit_triangle(backend):
    # every pixel's depth equals the depth where its ray meets the plane of its triangle
    scene = _scene()
    cam = camera((4, 3, 6), (0, 0.8, 0), 120, 80)
    gb = make_renderer(scene, backend).render(cam)
    ys, xs = np.nonzero(gb.hit)
    tri = scene.vertices[scene.faces[gb.triangle_id[ys, xs]]]
    Kinv = np.linalg.inv(cam.K)
    rays = np.stack([xs + 0.5, ys + 0.5, np.ones_like(xs, float)], 1) @ Kinv.T
    c2w = cam.cam_to_world
    d = rays @ c2w[:3, :3].T
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    s = np.einsum("ij,ij->i", n, tri[:, 0] - c2w[:3, 3]) / np.einsum("ij,ij->i", n, d)
    assert np.median(np.abs(gb.depth[ys, xs] - s) / s) < 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_near_plane_clipping_keeps_the_floor(backend):
    # a huge floor passing under the camera must still cover the lower half (triangles crossing z = 0)
    scene = combine(quad([[-1000, 0, -1000], [-1000, 0, 1000], [1000, 0, 1000], [1000, 0, -1000]]))
    cam = camera((0, 1.0, 0), (0, 1.0, -1), 80, 60)
    gb = make_renderer(scene, backend).render(cam)
    assert gb.hit[31:].all() and not gb.hit[:29].any()
    # analytic depth along each lower-half pixel ray: the camera is 1 above the floor
    ys, xs = np.nonzero(gb.hit)
    rays = np.stack([xs + 0.5, ys + 0.5, np.ones_like(xs, float)], 1) @ np.linalg.inv(cam.K).T
    dir_y = (rays @ cam.cam_to_world[:3, :3].T)[:, 1]
    expected = -1.0 / dir_y
    assert np.abs(gb.depth[ys, xs] - expected).max() / expected.max() < 1e-4
    assert gb.depth[ys, xs].max() > 25  # the far rows reach far along the floor


def test_projection_matrix_maps_pixel_edges_to_ndc():
    cam = Camera(np.array([[50.0, 0, 40], [0, 50, 30], [0, 0, 1]]), np.eye(4), 80, 60)
    P = projection_matrix(cam, 0.1, 100.0)
    # the point projecting to pixel coordinates (0, 0) (top-left image corner) -> NDC (-1, -1); (W, H) -> (1, 1)
    for (u, v), ndc in (((0, 0), (-1, -1)), ((80, 60), (1, 1)), ((40, 30), (0, 0))):
        X = np.array([(u - 40) / 50 * 7, (v - 30) / 50 * 7, 7.0, 1.0])
        c = P @ X
        assert np.allclose(c[:2] / c[3], ndc)


def test_supersample_renders_at_the_scaled_size():
    scene = _scene()
    r = make_renderer(scene, "embree")
    cam = camera((4, 3, 6), (0, 0.8, 0), 40, 30)
    g3 = r.render(cam, supersample=3)
    g1 = r.render(cam)
    assert g3.depth.shape == (90, 120)
    # the centre sub-pixel of each 3x3 block is the 1x pixel centre
    assert (g3.triangle_id[1::3, 1::3] == g1.triangle_id).mean() > 0.999


def test_auto_backend_and_bad_name():
    scene = _scene()
    r = make_renderer(scene, "auto")
    assert r.backend in ("moderngl", "embree")
    with pytest.raises(ValueError, match="backend"):
        make_renderer(scene, "optix")


def test_view_culling_draws_the_same_buffers_as_drawing_every_face(monkeypatch):
    # many small objects around the camera: most chunks are culled, and the buffers equal a draw of every face
    if not moderngl_ok():
        pytest.skip("no EGL context here")
    from videofrom3d.prepare import gbuffer

    parts = [box([x, 0, z], [x + 0.8, 1 + (x * z) % 2, z + 0.8]) for x in range(-6, 7, 2) for z in range(-6, 7, 2)]
    scene = combine(*parts, quad([[-20, 0, -20], [-20, 0, 20], [20, 0, 20], [20, 0, -20]]))
    renderer = make_renderer(scene, "moderngl")
    cams = [camera((0.5, 1.2, 0.3), (3, 0.5, 4), 160, 120), camera((-7, 4, 9), (0, 0, 0), 160, 120, fov_x=40),
            camera((0, 0.5, 0), (0, 0.5, -10), 160, 120)]  # inside the grid, from outside it, low
    culled = [gbuffer.visible_face_runs(renderer._chunks, c) for c in cams]
    assert all(sum(b - a for a, b in runs) < scene.triangle_count for runs in culled[:1] + culled[2:])
    views = [renderer.render(c) for c in cams]
    monkeypatch.setattr(gbuffer, "visible_face_runs", lambda chunks, cam: [(0, scene.triangle_count)])
    for cam, got in zip(cams, views):
        want = renderer.render(cam)
        for name in ("depth", "normal", "triangle_id", "object_id", "hit"):
            assert np.array_equal(getattr(got, name), getattr(want, name)), name
        assert got.hit.any()
