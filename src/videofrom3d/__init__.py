"""videofrom3d: coarse 3D geometry + camera path + style image -> style-consistent video.

Public API (imported lazily so the base install needs no torch)::

    from videofrom3d import load_job, render
    job = load_job("job.toml")
    result = render(job, engine="preview")
"""

from __future__ import annotations

__version__ = "0.1.0"

_API = {
    "load_job": "videofrom3d.job",
    "load_scene": "videofrom3d.scene.mesh",
    "Camera": "videofrom3d.scene.camera",
    "PreparedArc": "videofrom3d.prepare.arcs",
    "prepare": "videofrom3d.pipeline",
    "align": "videofrom3d.pipeline",
    "generate_anchors": "videofrom3d.pipeline",
    "inbetween": "videofrom3d.pipeline",
    "render": "videofrom3d.pipeline",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'videofrom3d' has no attribute {name!r}")
