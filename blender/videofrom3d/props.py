# SPDX-License-Identifier: GPL-3.0-or-later
"""Per-scene settings and job state (``scene.videofrom3d``)."""

from __future__ import annotations

import bpy
from bpy.props import CollectionProperty, EnumProperty, FloatProperty, IntProperty, StringProperty

ENGINES = (
    ("auto", "Auto", "Diffusion when its weights and a GPU are present, else the preview engine"),
    ("preview", "Preview", "CPU engine with no weights: fast, shows the motion and the style's colours"),
    ("diffusion", "Diffusion", "FLUX anchors and CogVideoX in-betweens (needs the weights and a GPU)"),
)
STATES = ("idle", "queued", "running", "done", "failed", "cancelled")


class VIDEOFROM3D_PG_style(bpy.types.PropertyGroup):
    path: StringProperty(name="Style image", subtype="FILE_PATH", description="A picture of the look you want")


class VIDEOFROM3D_PG_scene(bpy.types.PropertyGroup):
    styles: CollectionProperty(type=VIDEOFROM3D_PG_style)
    prompt: StringProperty(name="Prompt", default="a painting of sks scene",
                           description="Identifier prompt of the style (paper 3.2), e.g. 'a painting of sks town'")
    seed: IntProperty(name="Seed", default=0, min=0)
    engine: EnumProperty(name="Engine", items=ENGINES, default="preview")
    frames_per_arc: IntProperty(name="Frames per arc", default=45, min=1, max=240,
                                description="Frames between anchor views (paper 3.3: 45); the nearest value that "
                                "splits the frame range evenly is used")
    work_dir: StringProperty(name="Work folder", subtype="DIR_PATH", default="//videofrom3d/",
                             description="Where exports, jobs and results go (// = beside the .blend file)")
    # job state, written only on the main thread
    job_id: StringProperty()
    state: StringProperty(default="idle")
    stage: StringProperty()
    fraction: FloatProperty(min=0.0, max=1.0, subtype="FACTOR")
    message: StringProperty()
    video: StringProperty(subtype="FILE_PATH")
    edges: StringProperty(subtype="DIR_PATH")
    frames: IntProperty()


classes = (VIDEOFROM3D_PG_style, VIDEOFROM3D_PG_scene)


def register() -> None:
    for c in classes:
        bpy.utils.register_class(c)
    bpy.types.Scene.videofrom3d = bpy.props.PointerProperty(type=VIDEOFROM3D_PG_scene)


def unregister() -> None:
    del bpy.types.Scene.videofrom3d
    for c in reversed(classes):
        bpy.utils.unregister_class(c)
