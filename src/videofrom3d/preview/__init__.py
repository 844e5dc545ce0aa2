"""The preview engine: no weights, CPU, deterministic. Same interfaces as the diffusion stages
(``generate(edge_map, prompt, seed, guide, arc=...)`` for anchors, ``inbetween(start, end, edge_maps,
warped_noise, prompt, seed, arc=...)`` for the frames between), shading from the prepared G-buffers with the
style image's palette and moving pixels along the exact flow, so ``videofrom3d render`` shows a whole video
on any machine in about a minute."""

from videofrom3d.preview.config import PreviewConfig, PreviewError
from videofrom3d.preview.engine import PreviewAnchors, PreviewGuide, PreviewInbetweener
from videofrom3d.preview.style import PreviewStyle, style_from_files, style_from_images

__all__ = [
    "PreviewAnchors",
    "PreviewConfig",
    "PreviewError",
    "PreviewGuide",
    "PreviewInbetweener",
    "PreviewStyle",
    "style_from_files",
    "style_from_images",
]
