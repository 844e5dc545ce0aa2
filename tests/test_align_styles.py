"""One LoRA, two styles: the identifier picks the style at sampling time (tiny random models)."""

import numpy as np
import pytest

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

from tiny_models import one_torch_thread, style_job, tiny_flux_components  # noqa: E402, F401
from videofrom3d.align import AlignConfig, train_style_lora  # noqa: E402
from videofrom3d.anchors.generate import AnchorConfig, AnchorGenerator, encode_image  # noqa: E402

COLOURS = {"red": (0.9, 0.1, 0.1), "blue": (0.1, 0.2, 0.9)}


def test_identifier_chooses_the_style(tmp_path):
    """Overfit two solid colours, one identifier each; sampling with "red" must land nearer the red latents
    than sampling with "blue" does (same seed, same edges), and vice versa. The tiny VAE is random, so the
    comparison is made on latents, where the two colours differ most."""
    images = {k: np.ones((32, 32, 3), np.float32) * np.array(c, np.float32) for k, c in COLOURS.items()}
    job = style_job(tmp_path, images)
    comps = tiny_flux_components(seed=0)
    cfg = AlignConfig(steps=100, learning_rate=3e-2, resolution=32, aspects=("none",), max_sequence_length=8,
                      edge_detector="classical", checkpoint_every=1000)
    refs = {k: encode_image(comps, img) for k, img in images.items()}
    acfg = AnchorConfig(steps=4, true_cfg=1.0, guidance=1.0, max_sequence_length=8)
    edge = np.zeros((32, 32), np.float32)
    direction = (refs["red"] - refs["blue"]).flatten()

    def follows(gen, seed):
        red, blue = (gen.generate_latents(edge, k, seed=seed) for k in COLOURS)
        diff = (red - blue).flatten()
        cos = float(diff @ direction / diff.norm() / direction.norm())
        dist = {(o, r): float((out - refs[r]).norm()) for o, out in (("red", red), ("blue", blue)) for r in COLOURS}
        return cos, dist

    untrained = AnchorGenerator(comps, acfg, list(COLOURS))
    cos_before = [follows(untrained, s)[0] for s in range(2)]
    train_style_lora(job, cfg, tmp_path / "align", models=comps, progress=False)
    gen = AnchorGenerator(comps, acfg, list(COLOURS))
    for seed in range(3):
        cos, dist = follows(gen, seed)
        assert cos > 0.3, (seed, cos)
        assert dist["red", "red"] < dist["blue", "red"] and dist["blue", "blue"] < dist["red", "blue"], dist
    assert max(abs(c) for c in cos_before) < 0.2  # before training the identifier does not pick a colour
