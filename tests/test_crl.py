"""CRL: neighbourhood selection and consistency relaxation by hand, each term's gradient reaches only what it
names, a teacher equal to the student distils nothing, and a smoke run."""
import math

import pytest
import torch
import torch.nn.functional as F

from lreid_core.config import load_config
from lreid_core.data.benchmark import build_benchmark
from lreid_core.losses import neighbour_kd_loss
from lreid_core.methods.crl import CRL
from lreid_core.train import Trainer

from method_steps import batch, method_at

pytestmark = pytest.mark.usefixtures("one_thread")   # fixture in tests/conftest.py


def make(steps: float = 2, **method) -> CRL:
    """CRL in its first step (1), right after it (1.5: teacher = student) or in its second step (2)."""
    return method_at("crl", steps, **method)


# ---- the term ----------------------------------------------------------------------------------------------------
def test_neighbour_kd_by_hand():
    torch.manual_seed(0)
    old, new = torch.randn(4, 12), torch.randn(4, 12)
    idx = old.topk(3, dim=-1).indices
    p = F.softmax(old.gather(1, idx) / 2, -1)
    q = F.softmax(new.gather(1, idx) / 2, -1)
    kl = (p * (p.log() - q.log())).sum(-1)
    h = -(p * p.log()).sum(-1)
    assert torch.allclose(neighbour_kd_loss(new, old, 3, 2.0, 0.0), kl.mean(), atol=1e-6)
    assert torch.allclose(neighbour_kd_loss(new, old, 3, 2.0, 0.2), torch.relu(kl - 0.2 * h).mean(), atol=1e-6)
    assert neighbour_kd_loss(old, old, 3) == 0
    assert neighbour_kd_loss(new, old, 3, 2.0, 100.0) == 0           # fully relaxed: within the margin
    assert torch.allclose(neighbour_kd_loss(new, old, 50, 2.0, 0.0), neighbour_kd_loss(new, old, 12, 2.0, 0.0))


def test_only_the_neighbourhood_gets_gradient():
    torch.manual_seed(0)
    old = torch.randn(4, 12)
    new = torch.randn(4, 12, requires_grad=True)
    neighbour_kd_loss(new, old, 3, 2.0, 0.0).backward()
    chosen = torch.zeros(4, 12, dtype=torch.bool).scatter_(1, old.topk(3, dim=-1).indices, True)
    assert torch.all(new.grad[~chosen] == 0) and new.grad[chosen].abs().sum() > 0


# ---- the method --------------------------------------------------------------------------------------------------
def test_first_step_is_the_plain_reid_loss():
    m = make(steps=1)
    assert set(m.loss(*batch(offset=0))) == {"ce", "triplet"}


def test_teacher_equal_to_the_student_distils_nothing():
    m = make(steps=1.5)
    terms = m.loss(*batch(offset=0))
    assert set(terms) == {"ce", "triplet", "crl"} and terms["crl"].item() == 0


@pytest.mark.parametrize("term, reached", [
    ("ce", {"backbone", "new_block"}),
    ("triplet", {"backbone"}),
    ("crl", {"backbone", "old_block"}),
])
def test_each_term_trains_only_what_it_names(term, reached):
    m = make(crl_beta=0.0)
    terms = m.loss(*batch())
    blocks = m.model.head.classifier.blocks
    groups = {"backbone": [p for p in m.model.backbone.parameters()], "old_block": [blocks[0].weight],
              "new_block": [blocks[1].weight]}
    params = [p for ps in groups.values() for p in ps]
    grads = dict(zip(map(id, params), torch.autograd.grad(terms[term], params, allow_unused=True)))
    got = {k for k, ps in groups.items() if any(grads[id(p)] is not None and grads[id(p)].abs().sum() > 0
                                                for p in ps)}
    assert got == reached


def test_smoke_run_end_to_end(tmp_path):
    cfg = load_config(profile_name="smoke", overrides={"method": {"name": "crl"}})
    result = Trainer(cfg, "crl", build_benchmark(cfg), tmp_path / "run", progress=False, tensorboard=False).fit()
    assert result.status == "done" and len(result.steps) == 2
    assert all(math.isfinite(v) and 0 <= v <= 1 for row in result.steps for mt in row.values() for v in mt.values())
