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


def stop_and_resume(name: str, tmp_path):
    """Train ``name`` in the smoke profile, stop it two iterations into its second step (``KeyboardInterrupt``), and
    resume from ``last.pt``: returns (the stopped trainer, the resumed one, not yet fitted, and the result of an
    uninterrupted run of the same config)."""
    import pytest

    from lreid_core.data.benchmark import build_benchmark
    from lreid_core.train import Trainer

    cfg = load_config(profile_name="smoke", overrides={"method": {"name": name},
                                                       "train": {"deterministic": True, "ckpt_every": 2}})
    bench = build_benchmark(cfg)
    first = Trainer(cfg, name, bench, tmp_path / "run", progress=False, tensorboard=False)
    calls, loss = [0], first.method.loss

    def stop_in_step_two(x, y):
        calls[0] += 1
        if calls[0] > cfg.train.epochs * cfg.train.iters_per_epoch + 3:
            raise KeyboardInterrupt
        return loss(x, y)

    first.method.loss = stop_in_step_two
    with pytest.raises(KeyboardInterrupt):
        first.fit()
    first.lock.close()
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.pt", weights_only=True)
    assert (ckpt["step"], ckpt["iter"]) == (1, 2)
    resumed = Trainer(cfg, name, bench, tmp_path / "run", progress=False, tensorboard=False)
    resumed.resume()
    return first, resumed, Trainer(cfg, name, bench, progress=False, tensorboard=False).fit()
