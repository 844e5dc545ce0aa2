"""Files: atomic writes, images, video, the work-folder manifest."""

from videofrom3d.io.atomic import atomic_path, atomic_write_bytes, atomic_write_text
from videofrom3d.io.images import read_image, read_mask, write_image, write_mask

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "read_image",
    "read_mask",
    "write_image",
    "write_mask",
]
