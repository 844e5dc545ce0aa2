"""Scenes: per-node / per-group object ids with transforms applied, every format, and every documented error."""

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from gltf_writer import GltfBuilder
from videofrom3d.scene.mesh import SceneError, load_scene, make_scene

TRI = np.array([[0.0, 0, 0], [1, 0, 0], [0, 0, 1]])


def test_glb_hierarchy_object_per_node_with_transforms(tmp_path):
    g = GltfBuilder()
    q = Rotation.from_euler("y", 90, degrees=True).as_quat().reshape(-1, 4)[0]
    parent = g.node(name="house", mesh=g.mesh(TRI, [[0, 1, 2]]), translation=[10.0, 0, 0], rotation=q, scale=[2.0, 2, 2])
    # a child with two primitives (two materials in an exporter) is still one object
    g.node(parent=parent, name="chimney", mesh=g.mesh(TRI, [[0, 1, 2]], extra_primitives=[(TRI + [0, 1, 0], [[0, 1, 2]])]),
           translation=[0.0, 3, 0])
    g.node(name="tree", mesh=g.mesh(TRI, [[0, 1, 2]]), matrix=np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [-5, 0, 0, 1.0]]).ravel())
    g.node(name="empty")
    scene = load_scene(g.write(tmp_path / "town.glb"))
    assert scene.object_names == ("house", "chimney", "tree")
    assert np.bincount(scene.face_object).tolist() == [1, 2, 1]
    R = Rotation.from_quat(q).as_matrix()
    house = scene.vertices[scene.faces[scene.face_object == 0][0]]
    assert np.allclose(house, (2 * TRI) @ R.T + [10, 0, 0])
    chimney = scene.vertices[scene.faces[scene.face_object == 1]]  # parent @ child: T(10) R S(2) T(0, 3, 0)
    assert np.allclose(chimney[0], (2 * (TRI + [0, 3, 0])) @ R.T + [10, 0, 0])
    assert np.allclose(chimney[1], (2 * (TRI + [0, 4, 0])) @ R.T + [10, 0, 0])
    assert np.allclose(scene.vertices[scene.faces[scene.face_object == 2][0]], TRI + [-5, 0, 0])
    assert scene.info() == {"triangles": 4, "objects": 3, "bounds": scene.bounds.tolist()}
    assert np.allclose(scene.bounds, [[-5, 0, -2], [12, 8, 1]])  # house rotated to z in [-2, 0]; chimney top y = 8


def test_gltf_mirroring_node_keeps_outward_winding(tmp_path):
    g = GltfBuilder()
    g.node(name="a", mesh=g.mesh(TRI, [[0, 2, 1]]), scale=[1.0, 1.0, 1.0])  # normal +y
    g.node(name="b", mesh=g.mesh(TRI, [[0, 2, 1]]), scale=[-1.0, 1.0, 1.0])  # mirrored in x
    scene = load_scene(g.write(tmp_path / "m.gltf"))
    n = scene.face_normals()
    assert np.allclose(n, [[0, 1, 0], [0, 1, 0]])


def test_obj_groups_get_object_ids(tmp_path):
    (tmp_path / "g.obj").write_text(
        "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 1 1 0\nv 0 0 1\nv 1 0 1\n"
        "g walls\nf 1 2 3\nf 2 4 3\ng floor\nf 1 5 2\no lamp\nf 5 6 2\n"
    )
    scene = load_scene(tmp_path / "g.obj")
    assert len(scene.object_names) == 3 and scene.triangle_count == 4
    counts = dict(zip(scene.object_names, np.bincount(scene.face_object).tolist(), strict=True))
    walls = next(k for k in counts if "walls" in k)
    assert counts[walls] == 2 and sorted(counts.values()) == [1, 1, 2]


@pytest.mark.parametrize("suffix", [".ply", ".stl", ".off", ".obj"])
def test_single_mesh_formats_and_axes(tmp_path, suffix):
    box = trimesh.creation.box(extents=[2.0, 4.0, 6.0])
    box.apply_translation([1.0, 2.0, 3.0])
    path = tmp_path / f"box{suffix}"
    box.export(path)
    s = load_scene(path)
    assert s.triangle_count == 12 and len(s.object_names) == 1
    assert np.allclose(s.bounds, [[0, 0, 0], [2, 4, 6]])
    z = load_scene(path, up="z", unit_scale=0.5)  # Z-up file: (x, y, z) -> (x, z, -y), then halved
    assert np.allclose(z.bounds, [[0, 0, -2], [1, 3, 0]])


def test_missing_unsupported_and_empty_files(tmp_path):
    with pytest.raises(SceneError, match="file not found"):
        load_scene(tmp_path / "nope.glb")
    (tmp_path / "scene.fbx").write_bytes(b"x")
    with pytest.raises(SceneError, match=r"scene.fbx: unsupported format '.fbx'"):
        load_scene(tmp_path / "scene.fbx")
    (tmp_path / "empty.obj").write_text("")
    with pytest.raises(SceneError, match="empty"):
        load_scene(tmp_path / "empty.obj")
    (tmp_path / "points.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    with pytest.raises(SceneError, match="points.obj: the scene has no triangles"):
        load_scene(tmp_path / "points.obj")
    g = GltfBuilder()
    g.node(name="cam", camera=g.camera(0.7))
    with pytest.raises(SceneError, match="no triangles"):
        load_scene(g.write(tmp_path / "cam_only.glb"))
    (tmp_path / "broken.glb").write_bytes(b"glTF\x02\x00\x00\x00\x30\x00\x00\x00\x08\x00\x00\x00JSON{not json")
    with pytest.raises(SceneError, match="broken.glb"):
        load_scene(tmp_path / "broken.glb")
    with pytest.raises(SceneError, match="up must be"):
        load_scene(tmp_path / "points.obj", up="x")


def test_nan_and_out_of_range_indices(tmp_path):
    g = GltfBuilder()
    g.node(name="bad", mesh=g.mesh(np.array([[0.0, 0, 0], [np.nan, 0, 0], [0, 0, 1]]), [[0, 1, 2]]))
    with pytest.raises(SceneError, match="nan.glb: 1 vertex has NaN or inf"):
        load_scene(g.write(tmp_path / "nan.glb"))
    g = GltfBuilder()
    g.node(name="bad", mesh=g.mesh(TRI, [[0, 1, 7]]))
    with pytest.raises(SceneError, match=r"index.glb: face indices out of range \(min 0, max 7, 3 vertices\)"):
        load_scene(g.write(tmp_path / "index.glb"))
    with pytest.raises(SceneError, match="inf"):
        make_scene(np.array([[0.0, 0, 0], [np.inf, 0, 0], [0, 0, 1]]), [[0, 1, 2]])
    with pytest.raises(SceneError, match="out of range"):
        make_scene(TRI, [[0, 1, -1]])


def test_degenerate_faces_dropped_with_count(tmp_path):
    v = np.array([[0.0, 0, 0], [1, 0, 0], [0, 0, 1], [2, 0, 0]])
    faces = [[0, 2, 1], [0, 0, 1], [0, 1, 3], [1, 2, 0]]  # a repeated index and a zero-area (collinear) face
    g = GltfBuilder()
    g.node(name="m", mesh=g.mesh(v, faces))
    with pytest.warns(UserWarning, match="deg.glb: dropped 2 degenerate faces"):
        s = load_scene(g.write(tmp_path / "deg.glb"))
    assert s.triangle_count == 2
    with pytest.raises(SceneError, match="all faces are degenerate"), pytest.warns(UserWarning):
        make_scene(v, [[0, 1, 3]])
