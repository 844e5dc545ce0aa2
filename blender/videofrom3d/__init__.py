# SPDX-License-Identifier: GPL-3.0-or-later
"""VideoFrom3D for Blender: export the scene and camera, render with videofrom3d (local CLI or job server)
and bring the video back onto the timeline. Registration only; see the modules for the parts.

Stable interface: ``bpy.ops.videofrom3d.export(directory=DIR)`` writes ``DIR/scene.glb`` and
``DIR/camera.json`` for the active scene and camera (works in background mode).
"""

from __future__ import annotations

import bpy

from . import jobs, ops, prefs, props, ui

_classes = (*prefs.classes, *ops.classes, *ui.classes)


def register() -> None:
    props.register()
    for c in _classes:
        bpy.utils.register_class(c)


def unregister() -> None:
    jobs.shutdown()
    for c in reversed(_classes):
        bpy.utils.unregister_class(c)
    props.unregister()
