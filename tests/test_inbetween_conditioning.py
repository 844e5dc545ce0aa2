"""Endpoint and edge latent layouts of the inbetweening stage (paper 3.3; ggi.py prepare_latents)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from tiny_models import one_torch_thread  # noqa: E402, F401  (one intra-op thread for tiny models)
from videofrom3d.inbetween.conditioning import (  # noqa: E402
    edge_latents,
    endpoint_latents,
    images_to_video_tensor,
    latent_frame_count,
    pad_to_valid_length,
    vae_encode_video,
    video_frame_count,
)

pytestmark = pytest.mark.torch

H, W = 32, 48


@pytest.fixture(scope="module")
def vae():
    from diffusers import AutoencoderKLCogVideoX

    from videofrom3d.inbetween.components import tiny_vae_config

    torch.manual_seed(0)
    return AutoencoderKLCogVideoX(**tiny_vae_config(H, W)).eval()


def _img(seed):
    return np.random.default_rng(seed).random((H, W, 3)).astype(np.float32)


def test_frame_counts():
    assert latent_frame_count(46) == 13 and latent_frame_count(49) == 13 and latent_frame_count(1) == 1
    assert video_frame_count(13) == 49


def test_endpoint_layout(vae):
    start, end = _img(0), _img(1)
    with torch.no_grad():
        z = endpoint_latents(vae, start, end, 13, mode="mode")
        alone_start = vae_encode_video(vae, images_to_video_tensor(start[None]), mode="mode")
        alone_end = vae_encode_video(vae, images_to_video_tensor(end[None]), mode="mode")
    assert z.shape == (1, 13, 16, H // 8, W // 8)
    assert torch.count_nonzero(z[:, 1:12]) == 0
    assert torch.equal(z[:, :1], alone_start) and torch.equal(z[:, 12:], alone_end)
    assert z[:, 0].abs().mean() > 0.01 and z[:, 12].abs().mean() > 0.01
    # times the scaling factor 0.7: the raw posterior mean is larger by 1/0.7
    raw = vae.encode(images_to_video_tensor(start[None])).latent_dist.mode()
    assert torch.allclose(alone_start[:, 0], 0.7 * raw[:, :, 0], atol=1e-6)
    with torch.no_grad():
        no_end = endpoint_latents(vae, start, None, 13, mode="mode")
    assert torch.count_nonzero(no_end[:, 1:]) == 0 and torch.equal(no_end[:, :1], alone_start)


def test_endpoint_samples_are_seeded(vae):
    start, end = _img(0), _img(1)
    with torch.no_grad():
        a = endpoint_latents(vae, start, end, 13, torch.Generator().manual_seed(1))
        b = endpoint_latents(vae, start, end, 13, torch.Generator().manual_seed(1))
        c = endpoint_latents(vae, start, end, 13, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_edge_tail_repeat_and_layout(vae):
    edges = np.random.default_rng(0).random((46, H, W)).astype(np.float32)
    padded = pad_to_valid_length(edges)
    assert padded.shape == (49, H, W)
    assert all(np.array_equal(padded[i], edges[45]) for i in (46, 47, 48))
    assert np.array_equal(padded[:46], edges)
    assert pad_to_valid_length(padded).shape == (49, H, W)
    seen = []
    original = vae.encode

    def spy(x, *a, **k):
        seen.append(x.clone())
        return original(x, *a, **k)

    vae.encode = spy
    try:
        with torch.no_grad():
            z = edge_latents(vae, edges, mode="mode")
    finally:
        del vae.encode
    assert z.shape == (1, 13, 16, H // 8, W // 8)
    (video,) = seen  # one VAE call for the whole arc: a 49-frame video, grey edges in [-1, 1]
    assert video.shape == (1, 3, 49, H, W)
    assert torch.equal(video[:, :, 46:], video[:, :, 45:46].expand(-1, -1, 3, -1, -1))
    assert torch.allclose(video[0, 1, 10], torch.from_numpy(edges[10]) * 2 - 1)
    assert float(video.min()) >= -1 and float(video.max()) <= 1
    with torch.no_grad():
        other = edge_latents(vae, np.flip(edges, axis=2).copy(), mode="mode")
    assert (other - z).abs().max() > 1e-4
