"""The preview engine: no weights, CPU, deterministic. The engine interface of :mod:`videofrom3d.engines`
like the diffusion engine, shading from the prepared G-buffers with the
style image's palette and moving pixels along the exact flow, so ``videofrom3d render`` shows a whole video
on any machine in about a minute."""

from videofrom3d.preview.config import PreviewConfig, PreviewError
from videofrom3d.preview.engine import PreviewAligner, PreviewAnchors, PreviewInbetweener
from videofrom3d.preview.style import PreviewStyle, style_from_files, style_from_images

__all__ = [
    "PreviewAligner",
    "PreviewAnchors",
    "PreviewConfig",
    "PreviewError",
    "PreviewInbetweener",
    "PreviewStyle",
    "style_from_files",
    "style_from_images",
]
