"""The shared cache: results that depend only on a style image and weights (encoded Redux references, the
quick alignment's crop latents, edge maps and identifier embeddings), kept across jobs so that a second
scene with the same style skips that work.

Location: ``$VIDEOFROM3D_CACHE`` if set, else ``$XDG_CACHE_HOME/videofrom3d``, else ``~/.cache/videofrom3d``;
one folder per kind, one safetensors file per key (``<kind>/<hash of the key>.safetensors``), the key's
JSON in the file's metadata. Files are written atomically; deleting the folder is always safe (it only
costs the recomputation).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from videofrom3d.io.atomic import atomic_path
from videofrom3d.io.manifest import digest_json

CACHE_ENV = "VIDEOFROM3D_CACHE"


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "videofrom3d"


class SharedCache:
    """Tensors by key in ``cache_root()/kind``: ``get(key, make)`` returns the stored dict of tensors for a
    JSON-able ``key``, or runs ``make()`` (a dict of tensors), stores and returns it. ``hits``/``misses``
    count this object's look-ups."""

    def __init__(self, kind: str, root: Path | None = None):
        self.folder = (root or cache_root()) / kind
        self.hits = self.misses = 0

    def path(self, key) -> Path:
        return self.folder / f"{digest_json(key)}.safetensors"

    def get(self, key, make: Callable[[], dict]) -> dict:
        from safetensors import SafetensorError
        from safetensors.torch import load_file, save

        path = self.path(key)
        if path.is_file():
            try:
                tensors = load_file(str(path))
                self.hits += 1
                return tensors
            except (SafetensorError, OSError):
                pass  # unreadable (another version, a disk error): recompute and overwrite
        self.misses += 1
        tensors = {k: v.detach().cpu().contiguous() for k, v in make().items()}
        with atomic_path(path) as tmp:
            tmp.write_bytes(save(tensors, metadata={"key": json.dumps(key, sort_keys=True, default=str)}))
        return tensors
