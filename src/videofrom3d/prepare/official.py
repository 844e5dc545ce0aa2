"""Export prepared arcs in the authors' folder layout, so their anchor (SAG) and inbetween (GGI) scripts
run on any user's mesh (the layout of KIMGEONUNG/VideoFrom3D ``assets/sampleA/arcK/``).

Layout of ``OUT/`` (file names are **global, 1-based** frame numbers; consecutive arcs share their
boundary frame, which is written in both):

- ``arcK/hed/NNNN.png``  edge maps, 1080x720 8-bit, three equal channels (white lines on black)
- ``arcK/corres/NNNN.png``  at the frames the warped noise keeps (``noise_warp.keyframe_indices``: local 4, 8,
  ..., 44, 45 for N = 45), so ``corres/`` and ``noises.npy`` describe the same frames (the authors' files sit
  at ``floor(linspace(start, end, 13))[1:]``, which their unreleased warper used; see the README's fidelity
  table): for each pixel of frame NNNN its position in the previous kept frame; 360x240, 16-bit, stored so
  that ``cv2.imread(..., IMREAD_UNCHANGED)`` gives BGR with x = R / 65536 * W, y = (65535 - G) / 65536 * H,
  B = 65535 where valid (0 elsewhere)
- ``arcK/corres_end.png``  the same for the arc's end view -> its start view (f_{N->0}, used by SAG)
- ``arcK/noises.npy``  (13, 60, 90, 16) float32 warped noise (F H W C, as ggi.py reads it), when computed
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from videofrom3d.io.atomic import atomic_path
from videofrom3d.prepare.arcs import PrepareConfig, PreparedArc
from videofrom3d.prepare.flow import geometric_flow, write_correspondence
from videofrom3d.prepare.noise_warp import keyframe_indices, to_official_layout

HED_SIZE = (1080, 720)
CORRES_SIZE = (360, 240)


def latent_aligned_frames(first: int, last: int, latent_frames: int = 13) -> list[int]:
    """``floor(linspace(first, last, latent_frames))``: the frames that CogVideoX's latent frames start on."""
    return [int(x) for x in np.floor(np.linspace(first, last, latent_frames))]


def export_official(
    arcs: list[PreparedArc],
    scene,
    out_dir: str | os.PathLike,
    cfg: PrepareConfig | None = None,
    renderer=None,
    hed_size: tuple[int, int] = HED_SIZE,
    corres_size: tuple[int, int] = CORRES_SIZE,
    hed=None,
) -> Path:
    """Write ``arcs`` (``PreparedArc`` from :func:`videofrom3d.prepare.prepare_arc`) in the authors' layout.

    The scene is re-rendered at ``hed_size`` for the edge maps (unless the arcs already have that size) and
    at ``corres_size`` for the correspondences, with the edge options of ``cfg``. ``renderer`` (built by
    ``make_renderer(scene, cfg.backend)`` when None) can be passed to reuse one. Each arc folder is written
    to a temp name and renamed. ``hed``: the edge detector the arcs were made with (None: drawn lines), so
    re-rendered edge maps are made the same way. Returns ``out_dir``."""
    import cv2

    from videofrom3d.prepare.edges import edge_map, hed_edge_map, topology_for
    from videofrom3d.prepare.gbuffer import make_renderer

    cfg = cfg or PrepareConfig()
    if renderer is None:
        renderer = make_renderer(scene, cfg.backend)
    ecfg = cfg.edge_config()
    topo = topology_for(renderer, ecfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for arc in arcs:
        n = arc.frame_count
        with atomic_path(out / f"arc{arc.index}", suffix="") as tmp:
            (tmp / "hed").mkdir(parents=True)
            (tmp / "corres").mkdir()
            # edge maps, 1080x720, three equal channels
            for i, cam in enumerate(arc.cameras):
                if arc.size == tuple(hed_size):
                    e = arc.edge_maps[i]
                else:
                    s = cfg.supersample
                    render_cam = cam.resized(hed_size[0] * s, hed_size[1] * s)
                    e = edge_map(renderer.render(render_cam), render_cam, topo, ecfg, size=hed_size)
                    if hed is not None:
                        small = cam.resized(*hed_size)
                        e = hed_edge_map(renderer.render(small), small, e, hed)
                e8 = (np.clip(e, 0, 1) * 255 + 0.5).astype(np.uint8)
                name = f"{arc.first_frame + i + 1:04d}.png"
                cv2.imwrite(str(tmp / "hed" / name), np.repeat(e8[..., None], 3, axis=-1))
            # correspondences at the frames the noise keeps, each into the previous one, and end -> start
            local = list(dict.fromkeys(keyframe_indices(n - 1)))
            small_cams = {i: arc.cameras[i].resized(*corres_size) for i in set(local) | {0, n - 1}}
            small = {i: renderer.render(c) for i, c in small_cams.items()}
            for prev, k in zip(local[:-1], local[1:]):
                flow, valid = geometric_flow(small[k], small_cams[k], small[prev], small_cams[prev], cfg.depth_tolerance)
                write_correspondence(tmp / "corres" / f"{arc.first_frame + k + 1:04d}.png", flow, valid)
            flow, valid = geometric_flow(small[n - 1], small_cams[n - 1], small[0], small_cams[0], cfg.depth_tolerance)
            write_correspondence(tmp / "corres_end.png", flow, valid)
            if arc.warped_noise is not None:
                np.save(tmp / "noises.npy", to_official_layout(arc.warped_noise.astype(np.float32)))
    return out
