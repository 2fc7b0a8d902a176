"""SPD (Tung & Mori 2019) baseline: the loss vanishes when student == teacher, its gradient reaches the
backbone only through the student, and a smoke run completes through the Trainer."""
import pytest
import torch

from lreid_core.config import load_config, parse_overrides
from lreid_core.data.benchmark import build_benchmark
from lreid_core.losses import similarity_preserving_loss
from lreid_core.methods import create_method, list_methods
from lreid_core.train import Trainer

CLASSES = 6


pytestmark = pytest.mark.usefixtures("one_thread")   # fixture in tests/conftest.py


def second_step(weight: float = 3000.0):
    torch.manual_seed(0)
    cfg = load_config(profile_name="smoke", overrides={"method": {"spd_weight": weight}})
    m = create_method("spd", cfg)
    m.before_step(0, CLASSES)
    m.after_step(0)                       # teacher = a frozen copy of the current model
    m.before_step(1, CLASSES)
    m.train(True)
    return m


def batch(n: int = 8):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 32, 16, generator=g), torch.arange(n // 2).repeat_interleave(2) + CLASSES


def test_registered_and_default_weight():
    assert "spd" in list_methods()
    assert load_config(profile_name="smoke").method.spd_weight == 3000.0


def test_loss_matches_definition():
    f, g = torch.randn(5, 7).abs(), torch.randn(5, 7).abs()
    gram, gram_old = f @ f.t(), g @ g.t()
    ref = ((gram / gram.norm(dim=1, keepdim=True) - gram_old / gram_old.norm(dim=1, keepdim=True)) ** 2).sum() / 25
    assert torch.allclose(similarity_preserving_loss(f, g), ref)
    assert similarity_preserving_loss(f, 3 * f) < 1e-6          # invariant to a global feature scale


def test_zero_when_teacher_equals_student():
    m = second_step()
    m.train(False)                        # same BN behaviour as the eval-mode teacher
    x, y = batch()
    terms = m.loss(x, y)
    assert set(terms) == {"ce", "triplet", "spd"}
    assert terms["spd"].abs().item() < 1e-6


def test_gradient_flows_to_student_only():
    m = second_step()
    with torch.no_grad():
        for p in m.model.backbone.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, y = batch()
    spd = m.loss(x, y)["spd"]
    assert spd.item() > 0
    spd.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.model.backbone.parameters())
    assert all(p.grad is None for p in m.old.parameters())
    assert not any(p.requires_grad for p in m.old.parameters())


def test_smoke_run():
    cfg = load_config(profile_name="smoke", overrides=parse_overrides(["method.name=spd", "train.epochs=1",
                                                                       "train.iters_per_epoch=2"]))
    bench = build_benchmark(cfg)
    result = Trainer(cfg, "spd", bench, progress=False, tensorboard=False).fit()
    assert result.method == "spd" and result.status == "done" and len(result.steps) == len(bench.order)
    assert 0 <= result.seen_avg() <= 1
