"""Where the bpy test environment is: ``.venv-bpy`` (made by ``.ci/run``; bpy from PyPI) or ``VF3D_BPY_PYTHON``.

Tests that need bpy run that interpreter in a subprocess, so the main environment never imports bpy.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BPY_PYTHON = Path(os.environ.get("VF3D_BPY_PYTHON") or ROOT / ".venv-bpy" / "bin" / "python")


def bpy_missing() -> str | None:
    """Why bpy cannot be used here (one line), or None."""
    if not BPY_PYTHON.exists():
        return f"no bpy environment at {BPY_PYTHON} (.ci/run creates it: python3.11 -m venv .venv-bpy; pip install bpy)"
    r = subprocess.run([str(BPY_PYTHON), "-c", "import bpy"], capture_output=True, text=True, env=bpy_env())
    if r.returncode != 0:
        return f"bpy does not import in {BPY_PYTHON}: {(r.stderr.strip().splitlines() or ['?'])[-1]}"
    return None


def bpy_env() -> dict:
    """The environment for bpy subprocesses: no PYTHONPATH (the extension and the main package share the
    name videofrom3d), local-mode CLI = this interpreter running the main package."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    src = str(ROOT / "src")
    env["VF3D_CLI"] = shlex.join(["env", f"PYTHONPATH={src}", sys.executable, "-m", "videofrom3d"])
    return env


def require_bpy() -> None:
    reason = bpy_missing()
    if reason:
        pytest.skip(reason)
