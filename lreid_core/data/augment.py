"""Batched augmentation on uint8 image tensors, on whatever device they live: pad + random crop,
horizontal flip, random erasing, ImageNet normalisation (Sec. 5.2).

``share=(rank, world)``: the batch is that rank's equal part of a global batch; every random draw is made for
the whole global batch and this part's rows are kept, so the ranks' generators stay in step and the union of
their outputs is the single-process augmentation of the global batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def normalize(images: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, 3, H, W) uint8 -> float, ImageNet-normalised."""
    mean = torch.tensor(MEAN, device=images.device, dtype=dtype).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=images.device, dtype=dtype).view(1, 3, 1, 1) * 255
    return (images.to(dtype) - mean) / std


Share = tuple[int, int]


def _part(t: torch.Tensor, share: Share) -> torch.Tensor:
    """This rank's rows of a draw made for the global batch."""
    n = t.shape[0] // share[1]
    return t[share[0] * n: (share[0] + 1) * n]


def random_flip(x: torch.Tensor, g: torch.Generator, p: float = 0.5, share: Share = (0, 1)) -> torch.Tensor:
    flip = _part(torch.rand(x.shape[0] * share[1], device=x.device, generator=g), share) < p
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def random_crop(x: torch.Tensor, g: torch.Generator, pad: int, share: Share = (0, 1)) -> torch.Tensor:
    """Zero-pad by ``pad`` pixels and crop back to the input size at a random offset per image."""
    if pad <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = _part(torch.randint(0, 2 * pad + 1, (b * share[1],), device=x.device, generator=g), share)
    ox = _part(torch.randint(0, 2 * pad + 1, (b * share[1],), device=x.device, generator=g), share)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]         # (B, H, 1)
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]         # (B, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def random_erasing(x: torch.Tensor, g: torch.Generator, p: float = 0.5, area: tuple[float, float] = (0.02, 0.4),
                   ratio: tuple[float, float] = (0.3, 3.3), share: Share = (0, 1)) -> torch.Tensor:
    """Erase one random rectangle per image (with probability ``p``), filling it with 0 (= the mean)."""
    b, _, h, w = x.shape
    dev = x.device
    n = b * share[1]
    target = _part(torch.empty(n, device=dev).uniform_(*area, generator=g), share) * h * w
    log_r = torch.empty(n, device=dev).uniform_(torch.log(torch.tensor(ratio[0])).item(),
                                                torch.log(torch.tensor(ratio[1])).item(), generator=g)
    log_r = _part(log_r, share)
    eh = (target * log_r.exp()).sqrt().round().clamp(1, h)
    ew = (target / log_r.exp()).sqrt().round().clamp(1, w)
    y0 = (_part(torch.rand(n, device=dev, generator=g), share) * (h - eh + 1)).floor()
    x0 = (_part(torch.rand(n, device=dev, generator=g), share) * (w - ew + 1)).floor()
    on = _part(torch.rand(n, device=dev, generator=g), share) < p
    ys = torch.arange(h, device=dev)[None, :]
    xs = torch.arange(w, device=dev)[None, :]
    in_y = (ys >= y0[:, None]) & (ys < (y0 + eh)[:, None])                    # (B, H)
    in_x = (xs >= x0[:, None]) & (xs < (x0 + ew)[:, None])                    # (B, W)
    mask = (in_y[:, :, None] & in_x[:, None, :] & on[:, None, None])[:, None]  # (B, 1, H, W)
    return x.masked_fill(mask, 0.0)


def augment(images: torch.Tensor, g: torch.Generator, share: Share = (0, 1)) -> torch.Tensor:
    """Training transform of a uint8 batch: flip, pad (H/25.6 px, 10 px at 256x128) + crop, normalise, erase."""
    x = random_flip(images, g, share=share)
    x = random_crop(x, g, pad=round(images.shape[2] / 25.6), share=share)
    return random_erasing(normalize(x), g, share=share)
