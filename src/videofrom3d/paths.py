"""Where the bundled example lives: ``examples/`` beside ``src/`` in a source checkout (editable install).

``example_job()`` is what ``videofrom3d demo``, the benchmarks and the tests use to find the town example.
A wheel or sdist install does not carry ``examples/``; then these functions raise
:class:`ExampleNotFoundError`, naming what was looked for. ``$VIDEOFROM3D_EXAMPLES`` points at another
examples folder (one holding ``town/job.toml``) and wins over the source tree.
"""

from __future__ import annotations

import os
from pathlib import Path

from videofrom3d.errors import VideoFrom3DError

EXAMPLES_ENV = "VIDEOFROM3D_EXAMPLES"


class ExampleNotFoundError(VideoFrom3DError, FileNotFoundError):
    """The bundled example is not where a source checkout keeps it."""


def repo_root() -> Path:
    """The source checkout this package was imported from (the folder holding ``pyproject.toml`` and
    ``src/videofrom3d``); raises :class:`ExampleNotFoundError` for an install without its source tree."""
    package = Path(__file__).resolve().parent
    root = package.parent.parent  # <root>/src/videofrom3d/paths.py
    if package.parent.name == "src" and (root / "pyproject.toml").is_file():
        return root
    raise ExampleNotFoundError(
        f"videofrom3d was imported from {package}, not from a source checkout (<repo>/src/videofrom3d), so the "
        f"bundled example is not on disk; clone the repository and `pip install -e .`, or set ${EXAMPLES_ENV} "
        "to a folder holding town/job.toml"
    )


def examples_dir() -> Path:
    """``$VIDEOFROM3D_EXAMPLES`` if set, else ``<repo>/examples``; an error naming the paths if absent."""
    env = os.environ.get(EXAMPLES_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise ExampleNotFoundError(f"${EXAMPLES_ENV} is {env!r}, which is not a folder")
        return path
    path = repo_root() / "examples"
    if not path.is_dir():
        raise ExampleNotFoundError(
            f"no examples folder at {path}; regenerate it with `python examples/make_town.py`"
        )
    return path


def example_job() -> Path:
    """The bundled example's job file, ``examples/town/job.toml``."""
    path = examples_dir() / "town" / "job.toml"
    if not path.is_file():
        raise ExampleNotFoundError(
            f"the bundled example's job file {path} is missing; regenerate it with `python examples/make_town.py`"
        )
    return path
