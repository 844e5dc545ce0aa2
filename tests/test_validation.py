"""Every bad input of issue 19 through `videofrom3d ...`: exit code 2, the exact one-line message, no engine
line, and no work folder or output file left behind. Plus the README's job table against the schema, the
memory estimate under a real address-space limit, and the output of a good run (notes, warnings, table)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_pipeline_jobs import make_job
from videofrom3d.cli import main
from videofrom3d.job import job_schema, stage_tables

README = Path(__file__).resolve().parents[1] / "README.md"


def run(*argv) -> int:
    return main([str(a) for a in argv])


def read_only_folder(tmp_path: Path) -> Path:
    """A folder nobody may write to: chmod for users; sysfs for root (who ignores permission bits)."""
    if os.geteuid() == 0:
        return Path("/sys/fs")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return ro


def _insert(text: str, table: str, line: str) -> str:
    return text.replace(f"{table}\n", f"{table}\n{line}\n", 1)


# (case, how the job changes, extra flags, the message after "videofrom3d: error: ", with {job} {dir} {ro})
TYPOS = [
    ("top-level", lambda t: "sede = 1\n" + t, "{job}: sede: unknown key or table; did you mean 'seed'?"),
    ("scene", lambda t: _insert(t, "[scene]", "unit_scael = 0.01"),
     "{job}: [scene] unit_scael: unknown key; did you mean 'unit_scale'?"),
    ("trajectory", lambda t: _insert(t, "[trajectory]", 'camrea = "Camera"'),
     "{job}: [trajectory] camrea: unknown key; did you mean 'camera'?"),
    ("size", lambda t: _insert(t, "[size]", "widht = 320"), "{job}: [size] widht: unknown key; did you mean 'width'?"),
    ("arcs", lambda t: _insert(t, "[arcs]", "frames_per_ark = 45"),
     "{job}: [arcs] frames_per_ark: unknown key; did you mean 'frames_per_arc'?"),
    ("style", lambda t: _insert(t, "[[style]]", 'identifer = "x"'),
     "{job}: [[style]] identifer: unknown key; did you mean 'identifier'?"),
    ("anchor_prompts", lambda t: t + '[anchor_prompts]\ntwo = "snow"\n',
     "{job}: [anchor_prompts.two] must be keyed by an anchor index (integer), got 'two'"),
    ("models", lambda t: t + '[models]\nflx = "/models/flux"\n', "{job}: [models] flx: unknown key; did you mean 'flux'?"),
    ("prepare", lambda t: _insert(t, "[prepare]", "crease_angel = 30"),
     "{job}: [prepare] crease_angel: unknown key; did you mean 'crease_angle_deg'?"),
    ("noise", lambda t: t + "[noise]\ngrid_factr = 2\n", "{job}: [noise] grid_factr: unknown key; did you mean 'grid_factor'?"),
    ("preview", lambda t: t + "[preview]\nambeint = 0.3\n", "{job}: [preview] ambeint: unknown key; did you mean 'ambient'?"),
    ("align", lambda t: t + "[align]\nstpes = 3\n", "{job}: [align] stpes: unknown key; did you mean 'steps'?"),
    ("anchors", lambda t: t + "[anchors]\nstpes = 3\n", "{job}: [anchors] stpes: unknown key; did you mean 'steps'?"),
    ("inbetween", lambda t: t + "[inbetween]\nguidance = 6\n",
     "{job}: [inbetween] guidance: unknown key; did you mean 'guidance_scale'?"),
    ("type", lambda t: t + "[anchors]\nsteps = \"many\"\n", "{job}: [anchors].steps must be an integer, got 'many'"),
    ("range", lambda t: t + "[anchors]\nsteps = 0\n", "{job}: [anchors].steps must be >= 1, got 0"),
]


def test_every_table_of_the_schema_has_a_typo_case():
    tables = {case for case, _, _ in TYPOS} - {"top-level", "type", "range"}
    assert tables == set(job_schema()) - {""}


@pytest.mark.parametrize("case, change, message", TYPOS, ids=[c for c, _, _ in TYPOS])
def test_job_file_typos(tmp_path, capsys, case, change, message):
    job = make_job(tmp_path)
    job.write_text(change(job.read_text()))
    capsys.readouterr()
    assert run("render", job, "--engine", "preview", "--quiet") == 2
    out, err = capsys.readouterr()
    assert err.splitlines() == [f"videofrom3d: error: {message.format(job=job)}"]
    assert "engine:" not in out
    assert not (tmp_path / "work").exists()


def _nan_scene(d: Path) -> list:
    (d / "scene.obj").write_text("v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    return ["--scene", d / "scene.obj"]


def _empty_scene(d: Path) -> list:
    (d / "scene.obj").write_text("v 0 0 0\nv 1 0 0\n")
    return ["--scene", d / "scene.obj"]


def _one_key(d: Path) -> list:
    (d / "one.json").write_text('{"fov_y": 50, "keys": [{"position": [0, 2, 10], "look_at": [0, 1, 0]}]}')
    return ["--trajectory", d / "one.json"]


def _file(p: Path) -> bool:
    p.write_text("")
    return True


def _not_an_image(d: Path) -> list:
    (d / "style.png").write_text("not a picture")
    return []


# (case, setup(dir) -> extra argv, argv before the job, message, the output that must not exist)
BAD_INPUTS = [
    ("read-only work folder", lambda d: ["--out", read_only_folder(d) / "work"], "render",
     "cannot write the work folder {ro}/work: Permission denied", "{ro}/work"),
    ("work folder under a file", lambda d: _file(d / "f") and ["--out", d / "f" / "work"], "render",
     "cannot write the work folder {dir}/f/work: {dir}/f is not a folder", "{dir}/f/work"),
    ("style is not an image", _not_an_image, "render",
     "style image {dir}/style.png cannot be decoded: not an image PIL can read", "{dir}/work"),
    ("NaN scene", _nan_scene, "render", "{dir}/scene.obj: 1 vertex has NaN or inf coordinates", "{dir}/work"),
    ("empty scene", _empty_scene, "render", "{dir}/scene.obj: the scene has no triangles", "{dir}/work"),
    ("one-key path", _one_key, "render",
     "{dir}/one.json: 1 camera; a camera path needs at least 2 (a start and an end)", "{dir}/work"),
    ("--frames 1", lambda d: ["--frames", 1], "render", "[trajectory.frames] must be an integer >= 2, got 1",
     "{dir}/work"),
    ("--size 4096x4096 over memory", lambda d: ["--size", "4096x4096"], "render",
     "4096x4096 with arcs of 7 frames needs about 7.00 GiB of memory per arc, 1.00 GiB available; use a smaller "
     "--size (or [size]), or --force to try anyway", "{dir}/work"),
    ("preview -o read-only", lambda d: ["-o", read_only_folder(d) / "path.png"], "trajectory preview",
     "cannot write the output folder {ro}: Permission denied", "{ro}/path.png"),
    ("export -o read-only", lambda d: ["-o", read_only_folder(d) / "cams.json"], "trajectory export",
     "cannot write the output folder {ro}: Permission denied", "{ro}/cams.json"),
    ("export --frames 1", lambda d: ["-o", d / "out.json", "--frames", 1], "trajectory export",
     "--frames must be at least 2 (a start and an end), got 1", "{dir}/out.json"),
]


@pytest.mark.parametrize("case, setup, command, message, left", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_inputs_are_one_line_and_leave_nothing(tmp_path, capsys, monkeypatch, case, setup, command, message,
                                                   left):
    from videofrom3d.pipeline import preflight

    monkeypatch.setattr(preflight, "available_memory", lambda: 2**30)
    job = make_job(tmp_path)
    extra = setup(tmp_path)
    engine = ["--engine", "preview", "--quiet"] if command == "render" else []
    capsys.readouterr()
    assert run(*command.split(), job, *extra, *engine) == 2
    out, err = capsys.readouterr()
    ro = read_only_folder(tmp_path) if "{ro}" in message + left else None
    assert err.splitlines() == [f"videofrom3d: error: {message.format(dir=tmp_path, ro=ro)}"]
    assert "engine:" not in out
    assert not Path(left.format(dir=tmp_path, ro=ro)).exists()
    assert not (tmp_path / "work").exists()


def test_huge_size_is_refused_under_an_address_space_limit(tmp_path):
    """A real limit (ulimit -v 3 GiB) instead of a monkeypatch: the estimate refuses before any allocation."""
    job = make_job(tmp_path, frames_per_arc=45, arcs=1)
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30)); "
            "from videofrom3d.cli import main; "
            f"sys.exit(main(['render', {str(job)!r}, '--size', '4096x4096', '--engine', 'preview', '--quiet']))")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "OPENBLAS_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 2, p.stderr
    assert re.fullmatch(r"videofrom3d: error: 4096x4096 with arcs of 46 frames needs about 46\.00 GiB of memory "
                        r"per arc, \d\.\d\d GiB available; use a smaller --size \(or \[size\]\), or --force to try "
                        r"anyway\n", p.stderr), p.stderr
    assert not (tmp_path / "work").exists()


def test_force_goes_on_with_a_warning(tmp_path, capsys, monkeypatch):
    from videofrom3d.pipeline import preflight

    monkeypatch.setattr(preflight, "available_memory", lambda: 2**20)
    job = make_job(tmp_path)
    assert run("prepare", job, "--engine", "preview", "--quiet", "--no-noise", "--force") == 0
    err = capsys.readouterr().err
    assert err == "videofrom3d: warning: 128x96 with arcs of 7 frames needs about 5.2 MiB of memory per arc, " \
                  "1.0 MiB available; going on (--force)\n"
    assert (tmp_path / "work" / "manifest.json").exists()


def test_good_run_output(tmp_path, capsys, monkeypatch):
    """Resampling notes with both counts, plurals, the stage table once, and no escape codes or carriage
    returns on a stderr that is not a terminal (even with progress bars asked for)."""
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    job = make_job(tmp_path)  # cams.json: 19 frames
    text = job.read_text().replace("frames_per_arc = 6", "frames_per_arc = 30")
    job.write_text(text)
    assert run("render", job, "--engine", "preview") == 0
    out, err = capsys.readouterr()
    assert "\x1b" not in err and "\r" not in err
    assert err.splitlines() == [
        f"videofrom3d: note: the camera path {tmp_path / 'cams.json'} gives 19 frames, but arcs of 30+1 frames "
        "with shared ends need K*30+1; resampled to 31 frames (1 arc). Set [trajectory] frames = 31 "
        "(or another K*N+1) to choose."]
    assert [line.split()[0] for line in out.splitlines()].count("prepare") == 1
    assert out.startswith("engine: preview")

    assert run("trajectory", "export", job, "-o", tmp_path / "e.json", "--frames", 25) == 0
    err = capsys.readouterr().err
    assert err.splitlines() == [f"videofrom3d: note: {tmp_path / 'cams.json'}: 19 frames resampled to 25 (--frames)"]


def test_warnings_are_one_line_without_a_source_line(tmp_path, capsys):
    from videofrom3d.scene.mesh import SceneError  # noqa: F401  (the module that warns)

    (tmp_path / "deg.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 2 0 0\nf 1 2 3\nf 1 2 4\n")
    assert run("scene", "info", tmp_path / "deg.obj") == 0
    err = capsys.readouterr().err
    assert err == f"videofrom3d: warning: {tmp_path / 'deg.obj'}: dropped 1 degenerate face\n"


def test_scene_info_warns_about_units(tmp_path, capsys):
    import trimesh

    trimesh.creation.box((1472, 300, 1200)).export(tmp_path / "level.obj")
    assert run("scene", "info", tmp_path / "level.obj") == 0
    err = capsys.readouterr().err
    assert err == (f"videofrom3d: warning: {tmp_path / 'level.obj'} is 1472 x 300 x 1200 units (x, y, z), which as "
                   "metres is unusually large; if it is in centimetres, set [scene] unit_scale = 0.01 (scene info: "
                   "--unit-scale 0.01)\n")
    assert run("scene", "info", tmp_path / "level.obj", "--unit-scale", 0.01) == 0
    assert capsys.readouterr().err == ""


# ------------------------------------------------------------------------------------ README against schema


def readme_job_table() -> dict[str, set[str]]:
    """{table: keys} of the README's job-file table ("" = top level)."""
    text = README.read_text()
    section = text[text.index("## Job files"):text.index("## Scenes")]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    found: dict[str, set[str]] = {}
    for row in rows:
        names = re.findall(r"`([^`]+)`", row.split("|")[1])
        table = ""
        for name in names:
            m = re.fullmatch(r"\[\[?(\w+)\]?\](?: (\w+))?", name)
            if m:
                table = m.group(1)
                found.setdefault(table, set())
                found.setdefault("", set()).add(table)
                if m.group(2):
                    found[table].add(m.group(2))
            else:
                found.setdefault(table, set()).add(name)
    return found


def test_readme_job_table_matches_the_schema():
    schema = job_schema()
    readme = readme_job_table()
    assert readme[""] == set(schema[""]), "top-level keys and tables"
    for table, keys in schema.items():
        if not table or keys is None:
            continue
        if table in readme and readme[table]:  # the job's own tables: every key a row
            assert readme[table] == set(keys), table
        else:  # stage tables and [models]: named; their keys are the config classes' fields
            assert table in readme, table
    stage_row = next(line for line in README.read_text().splitlines() if line.startswith("| `[prepare]`"))
    assert re.findall(r"`\[(\w+)\]`", stage_row) == list(stage_tables())
    models_row = next(line for line in README.read_text().splitlines() if line.startswith("| `[models]`"))
    assert re.findall(r"`(\w+)`", models_row.split("|")[3]) == list(schema["models"])


# ------------------------------------------------------------------------------------- generator defaults


def test_generator_defaults_come_from_the_scene_bounds(tmp_path, capsys):
    from videofrom3d.job import job_cameras, load_job
    from videofrom3d.scene.mesh import load_scene
    from videofrom3d.scene.trajectory import EYE_HEIGHT

    job = make_job(tmp_path)
    lo, hi = load_scene(tmp_path / "scene.glb").bounds
    job.write_text(job.read_text().replace('path = "cams.json"', 'generator = "orbit"\nframes = 19'))
    centres = np.array([c.center for c in job_cameras(load_job(job))])
    mid = (lo + hi) / 2
    radius = np.hypot(hi[0] - lo[0], hi[2] - lo[2]) / 2
    assert np.allclose(np.hypot(centres[:, 0] - mid[0], centres[:, 2] - mid[2]), radius)
    assert np.allclose(centres[:, 1], lo[1] + max((hi[1] - lo[1]) / 2, EYE_HEIGHT))
    note = capsys.readouterr().err.splitlines()
    assert note == [f"videofrom3d: note: orbit from the scene's bounds: center = [{mid[0]:.3g}, {lo[1]:.3g}, "
                    f"{mid[2]:.3g}], radius = {radius:.3g}, height = {max((hi[1] - lo[1]) / 2, EYE_HEIGHT):.3g} "
                    "(scene units; set them in [trajectory])"]

    job.write_text(job.read_text().replace('generator = "orbit"', 'generator = "flythrough"\nradius = 3'))
    with pytest.raises(Exception, match="radius: unknown key"):
        load_job(job)
    job.write_text(job.read_text().replace("radius = 3\n", ""))
    centres = np.array([c.center for c in job_cameras(load_job(job))])
    assert np.allclose(centres[:, 1], lo[1] + EYE_HEIGHT)  # eye height above the ground, across the footprint
    assert np.isclose(np.ptp(centres[:, 0]) if hi[0] - lo[0] >= hi[2] - lo[2] else np.ptp(centres[:, 2]),
                      max(hi[0] - lo[0], hi[2] - lo[2]))


def test_export_camera_picks_one_of_several(tmp_path, capsys):
    from test_trajectory import build_animated_glb
    from videofrom3d.scene.camera import load_cameras
    from videofrom3d.scene.trajectory_formats import load_trajectory

    build_animated_glb(tmp_path / "anim.glb")  # two cameras: "shot" and "cubic cam"
    assert run("trajectory", "export", tmp_path / "anim.glb", "-o", tmp_path / "x.json") == 2
    assert "2 cameras; pick one with [trajectory] camera = NAME" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()
    assert run("trajectory", "export", tmp_path / "anim.glb", "-o", tmp_path / "x.json", "--camera", "shot",
               "--size", "720x480") == 0
    cams = load_cameras(tmp_path / "x.json")
    want = load_trajectory(tmp_path / "anim.glb", camera="shot", size=(720, 480))
    assert len(cams) == want.natural_frames() >= 2
    assert np.allclose(cams[-1].world_to_cam, want.resample(len(cams)).cameras(720, 480)[-1].world_to_cam)


def test_frames_flag_and_the_resampling_note(tmp_path, capsys):
    job = make_job(tmp_path)  # 19 per-frame cameras, arcs of 6
    assert run("prepare", job, "--frames", 13, "--engine", "preview", "--quiet", "--no-noise") == 0
    assert sorted(p.name for p in (tmp_path / "work" / "prepare").iterdir()) == ["arc000", "arc001"]
    err = capsys.readouterr().err
    assert err == f"videofrom3d: note: {tmp_path / 'cams.json'}: 19 frames resampled to 13 ([trajectory] frames)\n"


def test_camera_checks_warn_on_every_run_and_render_once(tmp_path, capsys, monkeypatch):
    from videofrom3d.prepare import camera_checks
    from videofrom3d.scene.camera import Camera, intrinsics_from_fov, look_at, save_cameras

    job = make_job(tmp_path)
    K = intrinsics_from_fov(128, 96, fov_y_deg=50)
    cams = [Camera(K, look_at((x, 2, 20), (x, 50 if 3 <= i <= 4 else 1, 19.9 if 3 <= i <= 4 else 0)), 128, 96)
            for i, x in enumerate(np.linspace(-6, 6, 19))]
    save_cameras(tmp_path / "cams.json", cams)
    warning = "videofrom3d: warning: view mostly empty (geometry in under 20% of it) at 2 frames: 3-4"
    assert run("prepare", job, "--engine", "preview", "--quiet", "--no-noise") == 0
    assert capsys.readouterr().err.splitlines() == [warning]

    def no_render(*a, **kw):
        raise AssertionError("the checks of the same scene and cameras are read from the manifest")

    monkeypatch.setattr(camera_checks, "check_cameras_in_scene", no_render)
    assert run("prepare", job, "--engine", "preview", "--quiet", "--no-noise") == 0
    assert capsys.readouterr().err.splitlines() == [warning]
