"""The GGI training objective (paper 3.4, Eq. 3, as the authors' code computes it), pure tensor maths.

Per sample: warped noise ``n`` blended with fresh noise at ``alpha ~ U(0, 1)`` (Go-with-the-Flow
degradation), a timestep ``t ~ U{0..999}``, the noisy latents ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) n``.
The transformer predicts v; the prediction is turned into a clean-latent estimate
``x0_hat = sqrt(abar_t) x_t - sqrt(1 - abar_t) v_hat`` (diffusers' ``get_velocity(v_hat, x_t, t)``) and the
loss is ``mean((x0_hat - x_0)^2) / (1 - abar_t)``: v-prediction with the paper's weighting (the paper writes
eps_w; the code is v-prediction, research/ggi-and-noise-warping.md section 3). Since
``x0_hat - x_0 = -sqrt(1 - abar_t) (v_hat - v)``, this equals the plain v-MSE.
"""

from __future__ import annotations

import torch


def mix_noise(warped: torch.Tensor, fresh: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``(alpha * fresh + (1 - alpha) * warped) / sqrt(alpha^2 + (1 - alpha)^2)`` per sample (variance
    preserving; alpha of shape (B,)). The same blend as ``prepare.noise_warp.degrade_noise``."""
    a = alpha.reshape(-1, *([1] * (warped.ndim - 1))).to(warped.dtype)
    return (a * fresh + (1 - a) * warped) / torch.sqrt(a**2 + (1 - a) ** 2)


def alphas_cumprod_at(scheduler, t: torch.Tensor) -> torch.Tensor:
    """abar_t of the scheduler for integer timesteps ``t`` (B,), float32 on t's device."""
    return scheduler.alphas_cumprod.to(device=t.device, dtype=torch.float32)[t]


def add_noise(x0: torch.Tensor, noise: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(abar) x0 + sqrt(1 - abar) noise (DDPM forward process; abar of shape (B,))."""
    a = abar.reshape(-1, *([1] * (x0.ndim - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def clean_estimate(v_pred: torch.Tensor, x_t: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """x0_hat = sqrt(abar) x_t - sqrt(1 - abar) v_pred (diffusers ``get_velocity(v_pred, x_t, t)``)."""
    a = abar.reshape(-1, *([1] * (x_t.ndim - 1)))
    return a.sqrt() * x_t - (1 - a).sqrt() * v_pred


def ggi_loss(v_pred: torch.Tensor, x_t: torch.Tensor, x0: torch.Tensor, abar: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``mean((x0_hat - x0)^2) / (1 - abar_t)``, in float32."""
    x0_hat = clean_estimate(v_pred.float(), x_t.float(), abar)
    per_sample = ((x0_hat - x0.float()) ** 2).flatten(1).mean(dim=1)
    return (per_sample / (1 - abar)).mean()
