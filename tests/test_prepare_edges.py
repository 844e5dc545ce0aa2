import dataclasses

import numpy as np
import pytest

from prepare_scenes import BACKENDS, box, camera, combine, quad, segment_distance
from videofrom3d.prepare.edges import (
    EDGE_TYPES,
    EdgeConfig,
    LineLook,
    classify_edges,
    debug_image,
    mesh_topology,
    render_edge_map,
    soft_lines,
    topology_for,
)
from videofrom3d.prepare.gbuffer import make_renderer
from videofrom3d.scene.camera import project
from videofrom3d.scene.mesh import make_scene

FLOOR = quad([[-30, 0, -30], [-30, 0, 30], [30, 0, 30], [30, 0, -30]])


def _segments(cam, pairs):
    return [project(np.array([a, b], float), cam)[0] for a, b in pairs]


def _pixels(mask):
    ys, xs = np.nonzero(mask)
    return np.stack([xs + 0.5, ys + 0.5], 1)


def _near_any(points, segs):
    return np.min([segment_distance(points, a, b) for a, b in segs], axis=0)


def _covered(mask, a, b, margin=3.0, tol=1.0):
    """Fraction of sample points along segment a-b (ends trimmed by ``margin`` px) with a line pixel
    within ``tol`` px."""
    pts = _pixels(mask)
    L = np.linalg.norm(b - a)
    ts = np.linspace(margin / L, 1 - margin / L, 60)
    samples = a + ts[:, None] * (b - a)
    d = np.linalg.norm(samples[:, None] - pts[None], axis=-1).min(axis=1)
    return (d <= tol).mean()


def _cube_view(backend, w=320, h=240):
    scene = combine(box([-1, 0, -1], [1, 2, 1]), FLOOR)
    cam = camera((4.0, 5.0, 6.0), (0, 0.8, 0), w, h, fov_x=50)
    r = make_renderer(scene, backend)
    gb = r.render(cam)
    masks = classify_edges(gb, cam, topology_for(r, EdgeConfig()), EdgeConfig())
    return scene, cam, gb, masks


# visible faces of the cube from (4, 5, 6): +x, +y, +z
CREASES = [((1, 2, -1), (1, 2, 1)), ((-1, 2, 1), (1, 2, 1)), ((1, 0, 1), (1, 2, 1))]
SILHOUETTES = [((-1, 2, -1), (1, 2, -1)), ((-1, 2, -1), (-1, 2, 1)), ((1, 0, -1), (1, 2, -1)), ((-1, 0, 1), (-1, 2, 1))]
CONTACTS = [((1, 0, -1), (1, 0, 1)), ((-1, 0, 1), (1, 0, 1))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_cube_on_plane_lines_fall_on_the_projected_edges(backend):
    _, cam, _, masks = _cube_view(backend)
    # near the floor the cube's outline has no depth jump: there it is an object border (contact), so the
    # silhouette edges are covered by silhouette or border lines
    outline = masks["silhouette"] | masks["border"]
    for kind, edges, allowed in (
        ("silhouette", SILHOUETTES, SILHOUETTES),
        ("crease", CREASES, CREASES),
        ("border", CONTACTS, CONTACTS + SILHOUETTES),
    ):
        pts = _pixels(masks[kind])
        assert len(pts) > 50, kind
        assert _near_any(pts, _segments(cam, allowed)).max() <= 1.0, kind  # every line pixel on its edges
        for a, b in _segments(cam, edges):  # and every edge is drawn
            assert _covered(masks[kind] if kind != "silhouette" else outline, a, b) == 1.0, kind
    assert not masks["intersection"].any()


def test_interpenetrating_boxes_give_the_intersection_segment():
    # box B pokes through face x = 1 of box A (same object): the visible intersection lines are
    # x = 1, y = 0.5 (z in [-0.5, 0.5]) and x = 1, z = 0.5 (y in [-0.5, 0.5])
    va, fa = box([-1, -1, -1], [1, 1, 1])
    vb, fb = box([0, -0.5, -0.5], [2.5, 0.5, 0.5])
    one = make_scene(np.concatenate([va, vb]), np.concatenate([fa, fb + 8]))
    cam = camera((5.0, 3.0, 4.0), (0.5, 0, 0), 320, 240, fov_x=50)
    r = make_renderer(one, "embree")
    gb = r.render(cam)
    masks = classify_edges(gb, cam, topology_for(r, EdgeConfig()), EdgeConfig())
    segs = _segments(cam, [((1, 0.5, -0.5), (1, 0.5, 0.5)), ((1, -0.5, 0.5), (1, 0.5, 0.5))])
    pts = _pixels(masks["intersection"])
    assert len(pts) > 30
    # where B's silhouette meets face x = 1 the depth is continuous too: skip 4 px around the segment ends
    ends = np.concatenate(segs)
    away = np.linalg.norm(pts[:, None] - ends[None], axis=-1).min(axis=1) > 4
    assert _near_any(pts[away], segs).max() <= 1.0
    for a, b in segs:
        assert _covered(masks["intersection"], a, b) == 1.0
    # as two objects, the same lines are object borders
    two = combine((va, fa), (vb, fb))
    r2 = make_renderer(two, "embree")
    m2 = classify_edges(r2.render(cam), cam, topology_for(r2, EdgeConfig()), EdgeConfig())
    assert not m2["intersection"].any()
    assert (m2["border"] == masks["intersection"]).mean() > 0.999


def test_switching_a_type_off_removes_exactly_its_lines():
    va, fa = box([-1, -1, -1], [1, 1, 1])
    vb, fb = box([0, -0.5, -0.5], [2.5, 0.5, 0.5])
    vf, ff = quad([[-30, -1, -30], [-30, -1, 30], [30, -1, 30], [30, -1, -30]])
    scene = make_scene(np.concatenate([va, vb, vf]), np.concatenate([fa, fb + 8, ff + 16]),
                       np.r_[np.zeros(24, int), np.ones(2, int)])
    cam = camera((5.0, 3.0, 4.0), (0.5, 0, 0), 320, 240, fov_x=50)
    r = make_renderer(scene, "embree")
    gb = r.render(cam)
    cfg = EdgeConfig()
    full = classify_edges(gb, cam, topology_for(r, cfg), cfg)
    assert all(full[k].sum() > 20 for k in EDGE_TYPES)
    full_map = render_edge_map(full, cfg)
    for kind in EDGE_TYPES:
        off = dataclasses.replace(cfg, **{kind: False})
        masks = classify_edges(gb, cam, topology_for(r, off), off)
        assert kind not in masks
        for other in masks:
            assert (masks[other] == full[other]).all()
        m = render_edge_map(masks, off)
        others = np.any([full[o] for o in masks], axis=0)
        # pixels on this type's lines far from every other line go dark; pixels far from it are unchanged
        from scipy.ndimage import distance_transform_edt

        far_from_others = distance_transform_edt(~others) > 12
        far_from_kind = distance_transform_edt(~full[kind]) > 12
        assert (m[full[kind] & far_from_others] == 0).all()
        assert full_map[full[kind] & far_from_others].min() > 0.5
        assert np.array_equal(m[far_from_kind], full_map[far_from_kind])


def test_grazing_floor_of_many_triangles_has_no_false_lines():
    # a finely triangulated floor seen at a grazing angle: no lines at all below the horizon
    n = 60
    xs = np.linspace(-30, 30, n + 1)
    gx, gz = np.meshgrid(xs, xs)
    v = np.stack([gx.ravel(), np.zeros(gx.size), gz.ravel()], 1)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
    faces = np.concatenate([np.stack([a, c, b], 1), np.stack([a, d, c], 1)])
    # split the vertices so no triangle shares an edge with another (a polygon soup): welding must fix it
    scene = make_scene(v[faces.reshape(-1)], np.arange(faces.size).reshape(-1, 3))
    cam = camera((0.3, 0.4, 0.1), (0, 0.3, -10), 320, 240, fov_x=70)
    r = make_renderer(scene, "embree")
    gb = r.render(cam)
    masks = classify_edges(gb, cam, topology_for(r, EdgeConfig()), EdgeConfig())
    below = np.zeros(gb.hit.shape, bool)
    below[gb.hit] = True
    below &= np.roll(gb.hit, 3, axis=0)  # 3 rows under the horizon line (floor against background)
    lines = np.any([masks[k] for k in ("crease", "border", "intersection")], axis=0) | masks["silhouette"] & below
    assert lines.sum() == 0


def test_topology_welds_and_finds_open_boundaries():
    v, f = box([0, 0, 0], [1, 1, 1])
    soup = make_scene(v[f.reshape(-1)], np.arange(36).reshape(12, 3))
    topo = mesh_topology(soup)
    assert not topo.open_face.any()  # welded: closed
    assert topo.adjacent(np.array([0]), np.array([1]))[0]  # two halves of one quad
    q = make_scene(*quad([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]]))
    assert mesh_topology(q).open_face.all()


def test_soft_line_profile_and_scaling():
    mask = np.zeros((60, 200), bool)
    mask[29:31, :] = True  # a line centred on the boundary between rows 29 and 30
    look = LineLook(core=4.0, softness=1.0, intensity=0.8)
    prof = soft_lines(mask, look, scale=1.0)[:, 100]
    assert np.isclose(prof.max(), 0.8)
    assert (prof[28:32] == np.float32(0.8)).all()  # core: 2 px each side of the centre
    assert prof[25] < 0.05 and prof[20] == 0
    mask2 = np.zeros((120, 400), bool)
    mask2[59:61, :] = True  # the same line found at twice the resolution (still two pixels marked)
    wide = soft_lines(mask2, look, scale=2.0)[:, 200]
    assert abs((wide > 0.4).sum() - 2 * (prof > 0.4).sum()) <= 1  # width scales with resolution


def test_debug_image_colours_types():
    _, _, _, masks = _cube_view("embree", 160, 120)
    img = debug_image(masks)
    assert img.shape == (120, 160, 3)
    only = masks["crease"] & ~masks["silhouette"] & ~masks["border"] & ~masks["intersection"]
    assert only.sum() > 20 and (img[only] == np.float32([0.2, 0.6, 1.0])).all()
    assert (img[~np.any(list(masks.values()), axis=0)] == 0).all()
