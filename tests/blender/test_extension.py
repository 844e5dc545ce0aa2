"""The Blender extension inside bpy (background mode): registration, export, a local-mode render brought back
onto the timeline and behind the camera, edge previews, and Blender's own manifest validation and build.

Run by tests/test_blender_extension.py with .venv-bpy's python; VF3D_CLI names the videofrom3d command."""

import json
import os
import shlex
import sys
import threading
import zipfile
from pathlib import Path

import bpy_helpers as h
import pytest

bpy = h.bpy
CLI = os.environ.get("VF3D_CLI")


@pytest.fixture
def ext():
    h.reset()
    mod = h.enable_extension(cli=CLI)
    yield mod
    if h.MODULE in bpy.context.preferences.addons:
        h.disable_extension()


class SlowRunner:
    """Yields nothing until cancelled (a job in flight)."""

    def __init__(self):
        self.cancelled = threading.Event()

    def events(self):
        self.cancelled.wait(10)
        yield {"type": "state", "state": "cancelled"}

    def cancel(self):
        self.cancelled.set()


def test_register_unregister_leaves_no_classes_or_timers(ext):
    classes = (*ext.prefs.classes, *ext.ops.classes, *ext.ui.classes, *ext.props.classes)
    names = [c.__name__ for c in (*ext.ops.classes, *ext.ui.classes)]  # these appear in bpy.types
    assert all(c.is_registered for c in classes) and all(hasattr(bpy.types, n) for n in names)
    assert hasattr(bpy.types.Scene, "videofrom3d") and bpy.ops.videofrom3d.export.poll()
    runner = SlowRunner()
    ext.jobs.run(bpy.context.scene, runner, sync=False)  # the interactive path: a thread and a timer
    assert bpy.app.timers.is_registered(ext.jobs._tick) and ext.jobs.running(bpy.context.scene)
    h.disable_extension()
    assert runner.cancelled.is_set()
    assert not bpy.app.timers.is_registered(ext.jobs._tick)
    assert [c.__name__ for c in classes if c.is_registered] == []
    assert [n for n in names if hasattr(bpy.types, n)] == []
    assert not hasattr(bpy.types.Scene, "videofrom3d")


def test_export_operator_writes_glb_and_camera_json(ext, tmp_path):
    h.disable_extension()
    scene, cam = h.camera_scene(frames=5)
    h.enable_extension()
    assert bpy.ops.videofrom3d.export(directory=str(tmp_path)) == {"FINISHED"}
    doc = json.loads((tmp_path / "camera.json").read_text())
    assert doc["format"] == "videofrom3d.blender-camera/1" and [f["frame"] for f in doc["frames"]] == [1, 2, 3, 4, 5]
    assert (tmp_path / "scene.glb").read_bytes()[:4] == b"glTF"
    assert scene.frame_current == 1


def test_orthographic_camera_is_refused_in_one_line(ext, tmp_path):
    h.disable_extension()
    scene, cam = h.camera_scene(frames=5)
    cam.data.type = "ORTHO"
    h.enable_extension()
    with pytest.raises(RuntimeError, match="only perspective cameras"):
        bpy.ops.videofrom3d.export(directory=str(tmp_path))
    assert not (tmp_path / "camera.json").exists()


def test_arc_length_covers_the_timeline(ext):
    assert ext.ops.arc_length(136, 45) == 45
    assert ext.ops.arc_length(48, 45) == 47
    assert ext.ops.arc_length(10, 45) == 9
    assert ext.ops.arc_length(61, 16) == 15
    text = ext.ops.job_toml("a \"b\"", 23.976, 48, 47, (720, 480), 3, ["style0.png"], "a painting")
    import tomllib

    job = tomllib.loads(text)
    assert job["name"] == 'a "b"' and job["trajectory"] == {"path": "camera.json", "frames": 48}
    assert job["style"] == [{"image": "style0.png", "identifier": "a painting"}]


@pytest.mark.skipif(not CLI, reason="VF3D_CLI (the videofrom3d command) not set; tests/test_blender_extension.py sets it")
def test_local_render_puts_strip_and_camera_background(tmp_path):
    h.camera_scene(width=128, height=96, frames=10, fps=12)
    ext = h.enable_extension(cli=CLI)
    scene = bpy.context.scene
    p = scene.videofrom3d
    p.engine, p.work_dir = "preview", str(tmp_path) + os.sep
    assert bpy.ops.videofrom3d.render() == {"FINISHED"}  # synchronous in background mode
    assert p.state == "done", p.message
    assert Path(p.video).is_file() and p.fraction == 1.0
    assert len(list(Path(p.edges).glob("*.png"))) == 10
    job = (Path(p.video).parents[1] / "input" / "job.toml").read_text()
    assert "frames_per_arc = 9" in job and "fps = 12.0" in job

    assert bpy.ops.videofrom3d.import_strip() == {"FINISHED"}
    se = scene.sequence_editor
    strip = (se.strips if hasattr(se, "strips") else se.sequences)["videofrom3d"]
    assert strip.frame_start == scene.frame_start and strip.frame_final_duration == 10
    assert strip.fps == pytest.approx(12.0)

    assert bpy.ops.videofrom3d.camera_background() == {"FINISHED"}
    bg = [b for b in scene.camera.data.background_images if b.source == "MOVIE_CLIP"]
    assert len(bg) == 1 and bg[0].clip.frame_duration == 10 and bg[0].clip.fps == pytest.approx(12.0)
    assert bg[0].clip.frame_start == scene.frame_start and scene.camera.data.show_background_images

    assert bpy.ops.videofrom3d.preview_edges() == {"FINISHED"}
    img = [b for b in scene.camera.data.background_images if b.source == "IMAGE"]
    assert len(img) == 1 and img[0].image.source == "SEQUENCE" and img[0].image_user.frame_duration == 10
    for f in (1, 2, 10):  # timeline frame f shows edge map f - 1 (global frame index from 0000.png)
        scene.frame_set(f)
        assert img[0].image_user.frame_current == f - scene.frame_start
    h.disable_extension()
    del ext


def test_local_render_failure_is_one_line(tmp_path):
    h.camera_scene(width=128, height=96, frames=10, fps=12)
    h.enable_extension(cli=shlex.join([sys.executable, "-c", "import sys; print('videofrom3d: error: no way'); sys.exit(2)"]))
    p = bpy.context.scene.videofrom3d
    p.work_dir = str(tmp_path) + os.sep
    with pytest.raises(RuntimeError, match="no way"):
        bpy.ops.videofrom3d.render()
    assert p.state == "failed" and p.message == "videofrom3d: error: no way"
    h.disable_extension()


class FakeLayout:
    """Records what a panel draws (panels cannot draw in background mode)."""

    def __init__(self, log):
        self.log = log

    def __getattr__(self, name):
        def call(*args, **kw):
            self.log.append((name, args, kw))
            return FakeLayout(self.log) if name in ("row", "column") else type("Op", (), {})()
        return call


def test_panel_draws_every_control(ext, tmp_path):
    from types import SimpleNamespace

    h.disable_extension()
    h.camera_scene(frames=5)
    mod = h.enable_extension()
    p = bpy.context.scene.videofrom3d
    p.styles.add()
    p.state, p.stage, p.fraction, p.video = "running", "anchors · step 3/25", 0.3, str(tmp_path / "video.mp4")
    log = []
    mod.ui.VIDEOFROM3D_PT_panel.draw(SimpleNamespace(layout=FakeLayout(log)), bpy.context)
    ops = [a[0] for name, a, kw in log if name == "operator"]
    assert ops == ["videofrom3d.style_remove", "videofrom3d.style_add", "videofrom3d.preview_edges", "videofrom3d.render",
                   "videofrom3d.import_strip", "videofrom3d.camera_background", "videofrom3d.open_viewer"]
    props = [a[1] for name, a, kw in log if name == "prop"]
    assert {"prompt", "seed", "frames_per_arc", "engine", "path"} <= set(props)
    bar = [kw for name, a, kw in log if name == "progress"]
    assert bar == [{"factor": pytest.approx(0.3), "type": "BAR", "text": "running anchors · step 3/25"}]


def test_server_mode_fails_fast_when_no_server_answers(ext, tmp_path):
    h.disable_extension()
    h.camera_scene(frames=5)
    h.enable_extension()
    prefs = bpy.context.preferences.addons[h.MODULE].preferences
    prefs.mode, prefs.url = "SERVER", "http://127.0.0.1:9"
    p = bpy.context.scene.videofrom3d
    p.work_dir = str(tmp_path) + os.sep
    with pytest.raises(RuntimeError, match="unreachable"):
        bpy.ops.videofrom3d.render()
    assert p.state == "failed"


def test_manifest_validates_and_builds_with_blenders_tooling(tmp_path):
    from bl_pkg import bl_extension_cli

    assert bl_extension_cli.cli_extension_handler(["validate", str(h.SOURCE)]) == 0
    assert bl_extension_cli.cli_extension_handler(["build", "--source-dir", str(h.SOURCE), "--output-dir", str(tmp_path)]) == 0
    (zip_path,) = tmp_path.glob("videofrom3d-*.zip")
    names = zipfile.ZipFile(zip_path).namelist()
    assert {"blender_manifest.toml", "LICENSE", "__init__.py", "client.py"} <= set(names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert bl_extension_cli.cli_extension_handler(["validate", str(zip_path)]) == 0
    h.reset()  # the zip installs and enables like a user's download
    assert bpy.ops.extensions.package_install_files(filepath=str(zip_path), repo="user_default",
                                                    enable_on_install=True) == {"FINISHED"}
    assert "bl_ext.user_default.videofrom3d" in bpy.context.preferences.addons
    assert hasattr(bpy.types, "VIDEOFROM3D_PT_panel")
    import addon_utils

    addon_utils.disable("bl_ext.user_default.videofrom3d", default_set=True)
    assert not hasattr(bpy.types, "VIDEOFROM3D_PT_panel")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "blender_manifest.toml").write_text((h.SOURCE / "blender_manifest.toml").read_text().replace('"add-on"', '"plugin"'))
    assert bl_extension_cli.cli_extension_handler(["validate", str(bad)]) != 0
