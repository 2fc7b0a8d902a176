"""Batched augmentation on uint8 image tensors, on whatever device they live: pad + random crop,
horizontal flip, random erasing, ImageNet normalisation (Sec. 5.2)."""
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


def random_flip(x: torch.Tensor, g: torch.Generator, p: float = 0.5) -> torch.Tensor:
    flip = torch.rand(x.shape[0], device=x.device, generator=g) < p
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def random_crop(x: torch.Tensor, g: torch.Generator, pad: int) -> torch.Tensor:
    """Zero-pad by ``pad`` pixels and crop back to the input size at a random offset per image."""
    if pad <= 0:
        return x
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), device=x.device, generator=g)
    ox = torch.randint(0, 2 * pad + 1, (b,), device=x.device, generator=g)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]         # (B, H, 1)
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]         # (B, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def random_erasing(x: torch.Tensor, g: torch.Generator, p: float = 0.5, area: tuple[float, float] = (0.02, 0.4),
                   ratio: tuple[float, float] = (0.3, 3.3)) -> torch.Tensor:
    """Erase one random rectangle per image (with probability ``p``), filling it with 0 (= the mean)."""
    b, _, h, w = x.shape
    dev = x.device
    target = torch.empty(b, device=dev).uniform_(*area, generator=g) * h * w
    log_r = torch.empty(b, device=dev).uniform_(torch.log(torch.tensor(ratio[0])).item(),
                                                torch.log(torch.tensor(ratio[1])).item(), generator=g)
    eh = (target * log_r.exp()).sqrt().round().clamp(1, h)
    ew = (target / log_r.exp()).sqrt().round().clamp(1, w)
    y0 = (torch.rand(b, device=dev, generator=g) * (h - eh + 1)).floor()
    x0 = (torch.rand(b, device=dev, generator=g) * (w - ew + 1)).floor()
    on = torch.rand(b, device=dev, generator=g) < p
    ys = torch.arange(h, device=dev)[None, :]
    xs = torch.arange(w, device=dev)[None, :]
    in_y = (ys >= y0[:, None]) & (ys < (y0 + eh)[:, None])                    # (B, H)
    in_x = (xs >= x0[:, None]) & (xs < (x0 + ew)[:, None])                    # (B, W)
    mask = (in_y[:, :, None] & in_x[:, None, :] & on[:, None, None])[:, None]  # (B, 1, H, W)
    return x.masked_fill(mask, 0.0)


def augment(images: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Training transform of a uint8 batch: flip, pad (H/25.6 px, 10 px at 256x128) + crop, normalise, erase."""
    x = random_flip(images, g)
    x = random_crop(x, g, pad=round(images.shape[2] / 25.6))
    return random_erasing(normalize(x), g)
