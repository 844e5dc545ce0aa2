"""The static report (`videofrom3d report` / `view`): the folder it writes, and the page in headless Chromium
(system package, driven by playwright without a downloaded browser): no console errors, one frustum per
anchor, frustum matrices equal to Python's camera-to-world with the OpenGL axis flip, video seeks that move
the frustum, and the look-through silhouette against the prepare stage's object masks (the cross-language
camera convention check, with an off-centre principal point)."""

from __future__ import annotations

import base64
import os
import shutil
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from videofrom3d.report import ReportInputError, read_work, write_report
from videofrom3d.scene.camera import GL_TO_CV, Camera, intrinsics_from_focal, look_at, save_cameras

W, H, N, ARCS = 128, 96, 6, 2


def _job(folder: Path) -> Path:
    """Four boxes of different heights (no ground, so the silhouette is a small, asymmetric part of the
    image), a sideways path of 13 frames, and a principal point 9 px right of and 5 px above the centre."""
    import trimesh

    folder.mkdir(parents=True, exist_ok=True)
    scene = trimesh.Scene()
    for i, (x, z, h) in enumerate([(-5, 0, 4), (-1, -3, 7), (3, 1, 2.5), (6, -2, 5)]):
        scene.add_geometry(trimesh.creation.box((2.0, h, 2.0), trimesh.transformations.translation_matrix((x, h / 2, z))),
                           node_name=f"box{i}")
    scene.export(folder / "scene.glb")
    K = intrinsics_from_focal(W, H, focal_px=90.0, principal=(W / 2 + 9, H / 2 - 5))
    cams = [Camera(K, look_at((x, 4.0, 16.0), (x * 0.4, 2.5, 0.0)), W, H) for x in np.linspace(-5, 5, N * ARCS + 1)]
    save_cameras(folder / "cams.json", cams)
    job = folder / "job.toml"
    job.write_text('name = "boxes"\nseed = 1\nout = "work"\n[scene]\npath = "scene.glb"\n[trajectory]\npath = "cams.json"\n'
                   f"[size]\nwidth = {W}\nheight = {H}\n[arcs]\nframes_per_arc = {N}\n[prepare]\npreview = false\n")
    return job


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    from videofrom3d import load_job, render

    job = _job(tmp_path_factory.mktemp("report") / "job")
    render(load_job(job), engine="preview", progress=False, log=lambda s: None)
    return job.parent / "work"


@pytest.fixture(scope="module")
def report(work) -> Path:
    import json

    (work / "eval.json").write_text(json.dumps([{"run": str(work), "warp_error": 0.0123, "frames": 13, "missing": []}]))
    return write_report(work)


def test_report_folder(work, report):
    inputs = read_work(work)
    assert report == work / "report" / "index.html" and report.is_file()
    out = report.parent
    for name in ("data.js", "scene.js", "scene.glb", "video.mp4", "viewer.js", "three/three.min.js", "three/LICENSE"):
        assert (out / name).is_file(), name
    assert "MIT" in (out / "three" / "LICENSE").read_text()
    assert len(inputs.cameras) == N * ARCS + 1 and inputs.anchor_frames == [0, N, 2 * N]
    data = (out / "data.js").read_text()
    assert '"warp_error",0.0123' in data and '"fps":8.0' in data  # the eval table and the video's rate


def test_report_refuses_unprepared_folder(tmp_path):
    (tmp_path / "w").mkdir()
    with pytest.raises(ReportInputError, match="no prepared arcs"):
        write_report(tmp_path / "w")
    assert not (tmp_path / "w" / "report").exists()


def test_report_without_scene_or_video_shows_the_cameras(work, tmp_path):
    shutil.copytree(work / "prepare", tmp_path / "w" / "prepare")  # a prepared folder from elsewhere: no manifest
    with pytest.warns(UserWarning, match="names no scene"):
        index = write_report(tmp_path / "w")
    data = (index.parent / "data.js").read_text()
    assert '"scene":null' in data and '"video":null' in data and not (index.parent / "scene.glb").exists()


def test_scene_glb_is_decimated_per_object_with_one_colour_each():
    import io

    import trimesh

    from videofrom3d.report.scene_glb import object_colours, scene_glb
    from videofrom3d.scene.mesh import make_scene

    sphere = trimesh.creation.icosphere(subdivisions=4)  # 5120 faces
    box = trimesh.creation.box((1, 1, 1), trimesh.transformations.translation_matrix((3, 0, 0)))
    scene = make_scene(np.concatenate([sphere.vertices, box.vertices]),
                       np.concatenate([sphere.faces, box.faces + len(sphere.vertices)]),
                       np.repeat([0, 1], [len(sphere.faces), len(box.faces)]))
    glb, faces = scene_glb(scene, max_faces=1000)
    mesh = trimesh.load(io.BytesIO(glb), file_type="glb", force="mesh", process=False)
    assert faces == len(mesh.faces) and 900 <= faces <= 1100
    colours = mesh.visual.vertex_colors[:, :3]
    on_box = mesh.vertices[:, 0] > 2  # the box (12 faces) is kept whole and keeps its own colour
    assert on_box.sum() == 8 and (colours[on_box] == object_colours(2)[1]).all()
    assert (colours[~on_box] == object_colours(2)[0]).all()
    np.testing.assert_allclose(np.linalg.norm(mesh.vertices[~on_box], axis=1), 1.0, atol=0.05)


def test_cli_report_and_view_server(work, tmp_path, capsys):
    from videofrom3d.cli import main
    from videofrom3d.report.build import report_index
    from videofrom3d.report.serve import make_server, server_url

    assert main(["report", str(work), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "index.html").is_file() and "file://" in capsys.readouterr().out
    assert report_index(work, tmp_path / "r") == (tmp_path / "r" / "index.html", False)
    later = (tmp_path / "r" / "index.html").stat().st_mtime + 5
    os.utime(work / "manifest.json", (later, later))  # a newer render: `view` rewrites the report
    assert report_index(work, tmp_path / "r")[1] and report_index(work, tmp_path / "nothing")[1]
    server = make_server(tmp_path / "r")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = server_url(server)
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200 and b"viewer.js" in r.read()
        with pytest.raises(urllib.error.HTTPError):  # only the report folder is served
            urllib.request.urlopen(url.replace("index.html", "../manifest.json"), timeout=10)
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------------------------------------ the page


def chromium_path() -> str | None:
    """The system Chromium (Debian's `chromium`), or $VIDEOFROM3D_CHROMIUM."""
    env = os.environ.get("VIDEOFROM3D_CHROMIUM")
    if env:
        return env if Path(env).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.fixture(scope="module")
def page(report):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed (test extra)")
    exe = chromium_path()
    if exe is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set VIDEOFROM3D_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader"])
        pg = browser.new_page(viewport={"width": 1000, "height": 640})
        messages = []
        pg.on("console", lambda m: messages.append((m.type, m.text)))
        pg.on("pageerror", lambda e: messages.append(("pageerror", str(e))))
        pg.goto(report.resolve().as_uri())  # from disk, as a user opens it
        pg.wait_for_function("window.vf3d && vf3d.ready && vf3d.videoReady", timeout=60_000)
        pg.messages = messages
        yield pg
        browser.close()


def test_page_loads_with_one_frustum_per_anchor(page, work):
    errors = [m for m in page.messages if m[0] in ("error", "pageerror")]
    assert errors == []
    inputs = read_work(work)
    assert page.evaluate("vf3d.frameCount") == len(inputs.cameras)
    assert page.evaluate("vf3d.frustumCount") == len(inputs.anchor_frames) == ARCS + 1


def test_frustum_matrices_are_camera_to_world_with_axis_flip(page, work):
    cams = read_work(work).cameras
    for i, cam in enumerate(cams):
        js = np.array(page.evaluate(f"vf3d.frustumMatrix({i})")).reshape(4, 4).T  # three.js is column-major
        np.testing.assert_allclose(js, cam.cam_to_world @ GL_TO_CV, atol=1e-6, err_msg=f"frame {i}")
    anchors = page.evaluate("vf3d.anchorMatrices()")
    for frame, m in zip(read_work(work).anchor_frames, anchors):
        np.testing.assert_allclose(np.array(m).reshape(4, 4).T, cams[frame].cam_to_world @ GL_TO_CV, atol=1e-6)


@pytest.mark.parametrize("t", [0.0, 0.3, 0.77, 1.1, 1.49])
def test_seek_moves_the_frustum(page, t):
    page.evaluate("""t => new Promise(done => {
        const v = document.getElementById('video');
        v.addEventListener('seeked', () => done(), {once: true});
        v.currentTime = t;
    })""", t)
    fps = page.evaluate("VF3D_DATA.fps")
    assert page.evaluate("vf3d.currentFrame") == round(t * fps)
    frame = page.evaluate("vf3d.currentFrame")
    assert page.evaluate("document.getElementById('frame').value") == str(frame)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_look_through_silhouette_matches_object_mask(page, work):
    inputs = read_work(work)
    for frame in (0, N - 1, N, 2 * N):
        arc, local = inputs.arc_of(frame)
        hit = _objects(arc.objects(local)) > 0
        sil = np.frombuffer(base64.b64decode(page.evaluate(f"vf3d.silhouette({frame})")), np.uint8).reshape(H, W) > 0
        assert 0.05 < hit.mean() < 0.6  # the boxes fill part of the view: the check has something to miss
        assert _iou(sil, hit) > 0.98, f"frame {frame}: IoU {_iou(sil, hit):.4f}"
        # the same check fails for the conventions one gets wrong: y not flipped, principal point ignored
        assert _iou(sil[::-1], hit) < 0.9
        assert _iou(np.roll(sil, (5, -9), axis=(0, 1)), hit) < 0.9


def _objects(path: Path) -> np.ndarray:
    import cv2

    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
