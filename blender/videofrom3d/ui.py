# SPDX-License-Identifier: GPL-3.0-or-later
"""The sidebar panel (View3D > Sidebar > VideoFrom3D)."""

from __future__ import annotations

import bpy

from . import jobs


class VIDEOFROM3D_PT_panel(bpy.types.Panel):
    bl_label = "VideoFrom3D"
    bl_idname = "VIDEOFROM3D_PT_panel"
    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "VideoFrom3D"

    def draw(self, context):
        layout = self.layout
        scene = context.scene
        p = scene.videofrom3d
        col = layout.column(align=True)
        for i, st in enumerate(p.styles):
            row = col.row(align=True)
            row.prop(st, "path", text="")
            row.operator("videofrom3d.style_remove", text="", icon="X").index = i
        col.operator("videofrom3d.style_add", icon="ADD")
        layout.prop(p, "prompt")
        row = layout.row(align=True)
        row.prop(p, "seed")
        row.prop(p, "frames_per_arc", text="Per arc")
        layout.prop(p, "engine")
        layout.prop(p, "work_dir")
        cam = scene.camera
        if cam is None or cam.type != "CAMERA" or cam.data.type != "PERSP":
            layout.label(text="Needs an active perspective camera", icon="ERROR")
        busy = jobs.running(scene)
        row = layout.row(align=True)
        row.operator("videofrom3d.preview_edges", icon="MOD_EDGESPLIT")
        row.operator("videofrom3d.render", icon="RENDER_ANIMATION")
        if busy:
            row.operator("videofrom3d.cancel", icon="CANCEL")
        if p.state in ("queued", "running"):
            text = f"{p.state} {p.stage}".strip()
            if hasattr(layout, "progress"):  # Blender 4.0+
                layout.progress(factor=p.fraction, type="BAR", text=text)
            else:
                layout.label(text=f"{text} {p.fraction:.0%}")
        elif p.state in ("failed", "cancelled"):
            layout.label(text=p.message or p.state, icon="ERROR")
        if p.video:
            col = layout.column(align=True)
            col.operator("videofrom3d.import_strip", icon="SEQUENCE")
            col.operator("videofrom3d.camera_background", icon="CAMERA_DATA")
            col.operator("videofrom3d.open_viewer", icon="URL")


classes = (VIDEOFROM3D_PT_panel,)
