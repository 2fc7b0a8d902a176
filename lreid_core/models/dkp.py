"""DKP's instance-level distribution modelling network (IDM, Xu et al. CVPR 2024, Fig. 2b): from the backbone's
feature map, an instance centre c_i (the mean branch: pooling + linear) and an instance standard deviation v_i (the
variance branch: conv + pooling + linear), as the official code's ``ResNetSimCLR``
(``reid/models/resnet_uncertainty.py``) computes them on top of its backbone."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def l2_normalise(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """x / (||x||_2 + 1e-4) along ``dim`` (the code's ``Normalize(2, dim)``, which adds 1e-4 to the norm)."""
    return x / (x.norm(p=2, dim=dim, keepdim=True) + 1e-4)


def gem_pool(fmap: torch.Tensor, p: float = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """Generalised-mean pooling (B, C, h, w) -> (B, C): (mean over cells of clamp(x, eps)^p)^(1/p) (the code's
    ``GeneralizedMeanPoolingP(3)``; p = 1 is average pooling of the clamped map)."""
    return fmap.clamp(min=eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


class DistributionHead(nn.Module):
    """c_i and v_i of every image from a feature map (B, C, h, w); both (B, dim).

    Mean branch: GeM -> Linear(C, dim) -> L2 normalisation (``linear_mean``, ``l2norm_mean``).
    Variance branch: Conv2d(C, C, kernel, no bias) -> GeM -> + 1e-4 -> Linear(C, dim) -> L2 normalisation -> ReLU
    -> + 1e-4 (``conv_var``, ``linear_var``, ``var_choice='L2'``). v_i is a standard deviation: the code samples with
    ``MultivariateNormal(c_i, scale_tril=diag(v_i))``. ``kernel`` is the code's ``pool_len`` 8 x 8 cut to the map.
    """

    def __init__(self, channels: int, dim: int, kernel: tuple[int, int], gem_p: float = 3.0):
        super().__init__()
        self.gem_p = gem_p
        self.mean = nn.Linear(channels, dim)
        self.var_conv = nn.Conv2d(channels, channels, kernel_size=kernel, bias=False)
        self.var = nn.Linear(channels, dim)

    def forward(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        centre = l2_normalise(self.mean(gem_pool(fmap, self.gem_p)))                    # (B, dim)
        spread = self.var(gem_pool(self.var_conv(fmap), self.gem_p) + 1e-4)            # (B, dim)
        return centre, F.relu(l2_normalise(spread)) + 1e-4


def sample_candidates(centre: torch.Tensor, std: torch.Tensor, n: int) -> torch.Tensor:
    """The m feature candidates f_i^(j) of IDM (Fig. 2b): ``n`` reparameterised draws c_i + v_i * eps per image,
    each L2-normalised, after the centre itself: (B, 1 + n, dim) (the code's ``merge_feat``, ``l2norm_sample``)."""
    noise = torch.randn((n,) + tuple(centre.shape), device=centre.device, dtype=centre.dtype)   # (n, B, dim)
    samples = l2_normalise(centre[None] + std[None] * noise)
    return torch.cat([centre[None], samples]).transpose(0, 1)
