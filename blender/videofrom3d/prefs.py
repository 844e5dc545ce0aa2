# SPDX-License-Identifier: GPL-3.0-or-later
"""Extension preferences: local CLI or ``videofrom3d serve``, its URL and token."""

from __future__ import annotations

import shlex
from pathlib import Path

import bpy
from bpy.props import EnumProperty, StringProperty

from .client import read_server_json

ADDON = __package__  # "bl_ext.<repo>.videofrom3d" when installed as an extension


class VIDEOFROM3D_AP_prefs(bpy.types.AddonPreferences):
    bl_idname = ADDON

    mode: EnumProperty(name="Run on", items=(
        ("LOCAL", "This computer (CLI)", "Run the videofrom3d command as a subprocess"),
        ("SERVER", "Job server", "Send jobs to `videofrom3d serve`"),
    ), default="LOCAL")
    cli: StringProperty(name="Command", default="videofrom3d",
                        description="The videofrom3d command, e.g. /path/to/venv/bin/videofrom3d or 'python -m videofrom3d'")
    url: StringProperty(name="Server URL", default="http://127.0.0.1:8765")
    token: StringProperty(name="Token", subtype="PASSWORD", description="Bearer token (empty: read from server.json)")
    server_json: StringProperty(name="server.json", subtype="FILE_PATH",
                                description="The server's server.json (URL and token), written by `videofrom3d serve`")

    def draw(self, context):
        col = self.layout.column()
        col.prop(self, "mode")
        if self.mode == "LOCAL":
            col.prop(self, "cli")
        else:
            col.prop(self, "url")
            col.prop(self, "token")
            col.prop(self, "server_json")


class Settings:
    """What the operators need from the preferences (defaults where the add-on is not enabled as such)."""

    def __init__(self, context):
        addon = context.preferences.addons.get(ADDON)
        p = addon.preferences if addon is not None else None
        self.mode = getattr(p, "mode", "LOCAL")
        self.cli = shlex.split(getattr(p, "cli", "videofrom3d") or "videofrom3d")
        self.url = getattr(p, "url", "http://127.0.0.1:8765")
        self.token = getattr(p, "token", "")
        sj = getattr(p, "server_json", "")
        if sj and Path(bpy.path.abspath(sj)).is_file():
            self.url, token = read_server_json(Path(bpy.path.abspath(sj)))
            self.token = self.token or token


classes = (VIDEOFROM3D_AP_prefs,)
