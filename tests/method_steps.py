"""Shared by the per-method term tests (CRL, AKA, LSTKC, DKP): a method of the smoke profile at a chosen point of a
two-step order, and one deterministic batch of two images per identity."""
from __future__ import annotations

from typing import Callable

import torch

from lreid_core.config import load_config
from lreid_core.methods import Method, create_method

CLASSES = 6


def perturb(m: Method) -> None:
    """Move the student away from its teacher: every model parameter plus small noise."""
    with torch.no_grad():
        for p in m.model.parameters():
            p.add_(0.05 * torch.randn_like(p))


def method_at(name: str, steps: float = 2, between: Callable[[Method], None] = lambda m: None,
              second: Callable[[Method], None] = perturb, **method) -> Method:
    """``name`` in its first step (``steps=1``), right after it (``1.5``: teacher = student) or in its second step
    (``2``, the student moved by ``second``); ``between`` runs after step 1's training, before ``after_step``."""
    torch.manual_seed(0)
    m = create_method(name, load_config(profile_name="smoke", overrides={"method": {"name": name, **method}}))
    m.before_step(0, CLASSES)
    if steps > 1:
        between(m)
        m.after_step(0)
    if steps == 2:
        m.before_step(1, CLASSES)
        second(m)
    m.train(True)
    return m


def batch(n: int = 8, offset: int = CLASSES) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 32, 16, generator=g), torch.arange(n // 2).repeat_interleave(2) + offset
