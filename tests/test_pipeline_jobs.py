"""Small jobs the pipeline tests render (a ground plane and a few boxes, a sideways camera path, a style
image), written by code into a temporary folder, and file-hash helpers to compare work folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from videofrom3d.io.manifest import digest_file


def write_scene(path: Path, boxes: int = 6, seed: int = 0) -> Path:
    import trimesh

    scene = trimesh.Scene()
    ground = trimesh.creation.box((40, 0.2, 40), trimesh.transformations.translation_matrix((0, -0.1, 0)))
    scene.add_geometry(ground, node_name="ground")
    rng = np.random.default_rng(seed)
    for i in range(boxes):
        h = rng.uniform(2, 6)
        box = trimesh.creation.box((2.5, h, 2.5), trimesh.transformations.translation_matrix(
            (rng.uniform(-8, 8), h / 2, rng.uniform(-8, 4))))
        scene.add_geometry(box, node_name=f"house{i}")
    scene.export(path)
    return path


def write_cameras(path: Path, count: int, width: int, height: int, x_range=(-6.0, 6.0)) -> Path:
    from videofrom3d.scene.camera import Camera, intrinsics_from_fov, look_at, save_cameras

    K = intrinsics_from_fov(width, height, fov_y_deg=50)
    cams = [Camera(K, look_at((x, 3.0, 14.0), (x * 0.5, 1.5, 0.0)), width, height)
            for x in np.linspace(x_range[0], x_range[1], count)]
    return save_cameras(path, cams)


def write_style(path: Path) -> Path:
    import cv2

    img = np.zeros((64, 96, 3), np.uint8)
    img[:20] = (235, 190, 140)  # BGR: a light blue sky
    img[20:] = (60, 120, 170)
    img[40:, :48] = (40, 60, 90)
    img[40:, 48:] = (90, 90, 90)
    cv2.imwrite(str(path), img)
    return path


def make_job(folder: Path, width: int = 128, height: int = 96, frames_per_arc: int = 6, arcs: int = 3,
             extra: str = "", out: str = "work") -> Path:
    """A job file (and its scene, cameras, style image) in ``folder``; returns the job file's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_scene(folder / "scene.glb")
    write_cameras(folder / "cams.json", frames_per_arc * arcs + 1, width, height)
    write_style(folder / "style.png")
    job = folder / "job.toml"
    job.write_text(
        f'name = "tiny"\nseed = 3\nout = "{out}"\n'
        '[scene]\npath = "scene.glb"\n[trajectory]\npath = "cams.json"\n'
        f"[size]\nwidth = {width}\nheight = {height}\n[arcs]\nframes_per_arc = {frames_per_arc}\n"
        '[[style]]\nimage = "style.png"\nidentifier = "a photo of sks town"\n'
        "[prepare]\npreview = false\n" + extra
    )
    return job


def tree_digests(work: Path, skip=("manifest.json",)) -> dict[str, str]:
    """{relative path: content hash} of every file in a work folder (npz by arrays), without ``skip``."""
    work = Path(work)
    out = {}
    for p in sorted(work.rglob("*")):
        rel = p.relative_to(work).as_posix()
        if p.is_file() and rel not in skip and not any(part.startswith(".") for part in p.relative_to(work).parts):
            out[rel] = digest_file(p)
    return out


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {k for k in set(before) | set(after) if before.get(k) != after.get(k)}


def test_small_job_has_three_arcs(tmp_path):
    from videofrom3d.job import job_cameras, load_job
    from videofrom3d.prepare.arcs import arc_ranges

    job = load_job(make_job(tmp_path))
    cams = job_cameras(job)
    assert len(cams) == 19
    assert arc_ranges(len(cams), job.frames_per_arc) == [(0, 6), (6, 12), (12, 18)]
    assert (cams[0].width, cams[0].height) == (128, 96)
    assert job.work_dir == tmp_path / "work"
