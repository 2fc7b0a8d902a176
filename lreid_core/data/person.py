"""Where the person is: the synthetic benchmark's person masks read at the sampler's feature grid.

The generator writes each image's mask beside it (``<domain>/person_mask/<split>/<stem>.png``,
``synthetic.MASKS``); real datasets have none.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import LReIDError
from .cache import load_images
from .synthetic import MASKS


def mask_path(image: str | Path) -> Path:
    """The person mask of ``image`` (``<domain>/<split>/<stem>.jpg`` -> ``<domain>/person_mask/<split>/<stem>.png``)."""
    image = Path(image)
    return image.parent.parent / MASKS / image.parent.name / f"{image.stem}.png"


def person_fractions(images: list[str], size: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """(N, h*w): for each image and feature-grid cell, the share of the cell's pixels on the person, with the
    masks resized to the model's input ``size`` as the images are (the cell grid tiles the input evenly)."""
    paths = [str(mask_path(p)) for p in images]
    if missing := next((p for p in paths if not Path(p).is_file()), None):
        raise LReIDError(f"no person mask {missing}: masks exist only for the synthetic benchmark written by "
                         f"generator version 6 or later (real datasets have none)")
    masks = load_images(paths, *size, desc="person masks")[:, :1].float() / 255.0
    return F.adaptive_avg_pool2d(masks, grid).flatten(1)
