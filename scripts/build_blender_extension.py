"""Build and validate the Blender extension zip with Blender's own extension tooling.

    python scripts/build_blender_extension.py [--out dist] [--blender /path/to/blender]

With ``--blender`` it runs ``blender --command extension validate|build``; otherwise the same command's
implementation from the bpy module (``bl_pkg.bl_extension_cli``, the code behind ``--command extension``),
re-running itself with ``.venv-bpy/bin/python`` when this Python has no bpy. Prints the zip's path.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "blender" / "videofrom3d"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default dist/)")
    ap.add_argument("--blender", help="a Blender 4.2+ executable (default: the bpy module)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    steps = (["validate", str(SOURCE)], ["build", "--source-dir", str(SOURCE), "--output-dir", str(args.out)])
    if args.blender:
        for step in steps:
            subprocess.run([args.blender, "--factory-startup", "--command", "extension", *step], check=True)
    else:
        if importlib.util.find_spec("bpy") is None:
            venv = ROOT / ".venv-bpy" / "bin" / "python"
            if not venv.exists() or Path(sys.prefix).resolve() == venv.parents[1].resolve():
                sys.exit("build_blender_extension: no bpy here and no .venv-bpy; pass --blender or run .ci/run")
            os.execv(str(venv), [str(venv), __file__, *(argv if argv is not None else sys.argv[1:])])
        import bpy  # noqa: F401  (puts Blender's add-on folders on sys.path)
        from bl_pkg import bl_extension_cli

        for step in steps:
            if bl_extension_cli.cli_extension_handler(step) != 0:
                sys.exit(f"build_blender_extension: `extension {step[0]}` failed")
    manifest = (SOURCE / "blender_manifest.toml").read_text()
    version = next(ln.split('"')[1] for ln in manifest.splitlines() if ln.startswith("version"))
    print(args.out / f"videofrom3d-{version}.zip")
    return 0


if __name__ == "__main__":
    sys.exit(main())
