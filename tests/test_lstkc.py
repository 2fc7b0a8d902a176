"""LSTKC: the relation split and the rectification by hand, the distillation's value and gradient routes, a teacher
equal to the student, the fusion weight and the fusion itself, checkpoints and a smoke run."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from lreid_core.checkpoints import load_checkpoint
from lreid_core.config import load_config
from lreid_core.data.benchmark import build_benchmark
from lreid_core.errors import LReIDError
from lreid_core.methods import create_method
from lreid_core.methods.lstkc import (LSTKC, forgetting_degree, fuse_models, log_affinity, rectified_relation_kd,
                                      rectify, relation_split)
from lreid_core.train import Trainer

from method_steps import CLASSES, batch, method_at, stop_and_resume

pytestmark = pytest.mark.usefixtures("one_thread")   # fixture in tests/conftest.py
LABELS = torch.tensor([0, 0, 1, 1])
SAME = LABELS[:, None] == LABELS[None, :]
# row 0 right; row 1 ranks its positive (0.2) below a negative (0.3): FN at (1, 0), FP at (1, 2); rows 2, 3 right
OLD = torch.tensor([[0.50, 0.30, 0.10, 0.10],
                    [0.20, 0.40, 0.30, 0.10],
                    [0.10, 0.10, 0.60, 0.20],
                    [0.25, 0.05, 0.30, 0.40]])


def make(steps: float = 2, **method) -> LSTKC:
    """LSTKC in its first step (1), right after it (1.5: teacher = student) or in its second step (2)."""
    return method_at("lstkc", steps, **method)


def images(n: int = 12) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 32, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))


# ---- R-STKT ------------------------------------------------------------------------------------------------------
def test_relation_split_by_hand():
    s = relation_split(OLD, SAME)
    wrong_pos, wrong_neg = torch.zeros(4, 4), torch.zeros(4, 4)
    wrong_pos[1, 0], wrong_neg[1, 2] = 1, 1
    assert torch.equal(s["fn"], wrong_pos) and torch.equal(s["fp"], wrong_neg)
    assert torch.equal(s["tp"] + s["fn"], SAME.float()) and torch.equal(s["tn"] + s["fp"], (~SAME).float())
    assert torch.allclose(s["thres_p"].squeeze(1), torch.tensor([0.1, 0.3, 0.1, 0.25]))   # hardest negatives
    assert torch.allclose(s["thres_n"].squeeze(1), torch.tensor([0.3, 0.2, 0.2, 0.3]))    # hardest positives


def test_rectification_changes_exactly_the_old_mistakes():
    new = OLD.clone()
    new[1] = torch.tensor([0.35, 0.45, 0.10, 0.10])          # the new model gets row 1 right
    fixed = rectify(new, OLD, SAME)
    mistakes = torch.zeros(4, 4, dtype=torch.bool)
    mistakes[1, 0] = mistakes[1, 2] = True
    assert torch.equal(fixed[~mistakes], OLD[~mistakes])      # what the old model ranks right is kept
    assert torch.equal(fixed[mistakes], new[mistakes])        # its mistakes take the (right) new values
    both = rectify(OLD, OLD, SAME)                            # both models wrong: moved to their thresholds
    assert torch.equal(both[~mistakes], OLD[~mistakes])
    assert both[1, 0] == 0.3 and both[1, 2] == 0.2           # positive up to thres_p, negative down to thres_n


def test_rectified_kd_value_by_hand():
    torch.manual_seed(0)
    feat, old_feat = torch.randn(6, 5), torch.randn(6, 5)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    aff = log_affinity(feat, 0.1).exp()
    assert torch.allclose(aff.sum(1), torch.ones(6))
    f = F.normalize(feat, dim=1)
    assert torch.allclose(aff[0, 3], (f[0] @ f[3] / 0.1).exp() / (f[0] @ f.T / 0.1).exp().sum())
    target = rectify(aff, log_affinity(old_feat, 0.1).exp(), labels[:, None] == labels[None, :])
    target = target / target.sum(1, keepdim=True)
    kl = sum(target[i, j] * math.log(target[i, j] / aff[i, j]) for i in range(6) for j in range(6) if target[i, j] > 0)
    assert torch.allclose(rectified_relation_kd(feat, old_feat, labels), kl / 6, atol=1e-6)


def test_teacher_equal_to_the_student_distils_nothing():
    m = make(steps=1.5, lstkc_rectify=False)
    m.train(False)                    # the teacher runs in eval mode (the code's old_model.eval()): so must its copy
    terms = m.loss(*batch(offset=0))
    assert set(terms) == {"ce", "triplet", "rstkt"} and abs(terms["rstkt"].item()) < 1e-6
    clusters = torch.eye(3).repeat_interleave(2, dim=0) + 0.01 * torch.randn(6, 3)   # every relation right
    labels = torch.arange(3).repeat_interleave(2)
    assert abs(rectified_relation_kd(clusters, clusters, labels).item()) < 1e-6
    mixed = clusters[[0, 2, 1, 3, 4, 5]]                      # rows 0-3 wrong: the rectification still pulls
    assert rectified_relation_kd(mixed, mixed, labels) > 1e-3


def test_first_step_is_the_plain_reid_loss():
    assert set(make(steps=1).loss(*batch(offset=0))) == {"ce", "triplet"}


@pytest.mark.parametrize("term, reached", [
    ("ce", {"backbone", "new_block", "necks"}),
    ("triplet", {"backbone"}),
    ("rstkt", {"backbone"}),
])
def test_each_term_trains_only_what_it_names(term, reached):
    m = make()
    terms = m.loss(*batch())
    blocks = m.model.head.classifier.blocks
    groups = {"backbone": list(m.model.backbone.parameters()), "old_block": [blocks[0].weight],
              "new_block": [blocks[1].weight], "necks": list(m.model.head.necks.parameters())}
    params = [p for ps in groups.values() for p in ps if p.requires_grad]
    grads = dict(zip(map(id, params), torch.autograd.grad(terms[term], params, allow_unused=True)))
    got = {k for k, ps in groups.items() if any(grads.get(id(p)) is not None and grads[id(p)].abs().sum() > 0
                                                for p in ps)}
    assert got == reached
    assert not any(p.requires_grad for p in m.old.parameters())


def test_target_gradient_switch():
    """The code's target keeps the new affinity's gradient; ``lstkc_target_grad=False`` makes it a constant."""
    torch.manual_seed(0)
    old_feat = torch.randn(8, 4)
    labels = torch.arange(4).repeat_interleave(2)
    feat = torch.randn(8, 4, requires_grad=True)
    live, = torch.autograd.grad(rectified_relation_kd(feat, old_feat, labels), feat)
    fixed, = torch.autograd.grad(rectified_relation_kd(feat, old_feat, labels, target_grad=False), feat)
    aff = log_affinity(feat, 0.1)
    target = rectify(aff.exp(), log_affinity(old_feat, 0.1).exp(), labels[:, None] == labels[None, :]).detach()
    by_hand, = torch.autograd.grad(F.kl_div(aff, target / target.sum(1, keepdim=True), reduction="batchmean"), feat)
    assert torch.allclose(fixed, by_hand, atol=1e-6) and not torch.allclose(live, fixed, atol=1e-4)


# ---- E-LTKC ------------------------------------------------------------------------------------------------------
def test_forgetting_degree_by_hand():
    torch.manual_seed(0)
    new, old = torch.randn(7, 4), torch.randn(7, 4)

    def aff(f):
        f = F.normalize(f, dim=1)
        return F.softmax(f @ f.T * 100, dim=1)

    expected = (aff(new) - aff(old)).abs().sum(1).mean()
    assert torch.allclose(forgetting_degree(new, old), expected, atol=1e-5)
    assert torch.allclose(forgetting_degree(new, old, chunk=2), expected, atol=1e-5)
    assert forgetting_degree(new, new) == 0 and 0 < forgetting_degree(new, old) <= 2


def test_fusion_mixes_shared_entries_and_keeps_the_new_block():
    m = make()
    before = {k: v.clone() for k, v in m.model.state_dict().items()}
    old = m.old.state_dict()
    fuse_models(m.model, m.old, 0.25)
    after = m.model.state_dict()
    for key, value in after.items():
        if key in old and value.is_floating_point():
            assert torch.allclose(value, 0.25 * before[key] + 0.75 * old[key], atol=1e-6), key
        else:                                                  # the step's block and neck, BN counters
            assert torch.equal(value, before[key]), key
    assert any(k not in old for k in after)


def test_consolidating_identical_models_changes_nothing():
    m = make(steps=1.5)
    m.before_step(1, CLASSES)
    before = {k: v.clone() for k, v in m.model.state_dict().items()}
    m.consolidate(1, images())
    assert m.alphas == {1: 1.0}
    assert all(torch.equal(v, before[k]) for k, v in m.model.state_dict().items())


def test_consolidation_fuses_with_the_estimated_weight_and_the_result_teaches():
    m = make()
    trained, old = copy.deepcopy(m.model), copy.deepcopy(m.old)
    m.consolidate(1, images())
    alpha = m.alphas[1]
    assert 0 < alpha < 1
    expected = copy.deepcopy(trained)
    fuse_models(expected, old, alpha)
    assert all(torch.equal(v, expected.state_dict()[k]) for k, v in m.model.state_dict().items())
    assert m.model.training                                    # the mode it had
    m.after_step(1)
    assert all(torch.equal(v, m.model.state_dict()[k]) for k, v in m.old.state_dict().items())


def test_consolidation_switch_off_and_first_step():
    m = make(lstkc_consolidate=False)
    before = {k: v.clone() for k, v in m.model.state_dict().items()}
    m.consolidate(1, images())
    assert m.alphas == {} and all(torch.equal(v, before[k]) for k, v in m.model.state_dict().items())
    first = make(steps=1)
    first.consolidate(0, images())
    assert first.alphas == {}


# ---- state, config, end to end -----------------------------------------------------------------------------------
def test_state_round_trips_through_a_checkpoint(tmp_path):
    m = make()
    m.consolidate(1, images())
    torch.save(m.state_dict(), tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    fresh = create_method("lstkc", m.cfg)
    fresh.load_state_dict(state)
    assert fresh.alphas == m.alphas
    for a, b in ((fresh.model, m.model), (fresh.old, m.old)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    fresh.train(True)
    x, y = batch()
    assert all(torch.allclose(v, m.loss(x, y)[k]) for k, v in fresh.loss(x, y).items())


@pytest.mark.parametrize("override", ["method.lstkc_tau=0", "method.lstkc_fusion_tau=-1", "method.lstkc_weight=-1"])
def test_bad_values_are_refused(override):
    key, value = override.split("=")
    with pytest.raises(LReIDError, match=key.split(".")[1]):
        load_config(profile_name="smoke", overrides={"method": {key.split(".")[1]: float(value)}})


def test_smoke_run_end_to_end(tmp_path):
    cfg = load_config(profile_name="smoke", overrides={"method": {"name": "lstkc"}})
    trainer = Trainer(cfg, "lstkc", build_benchmark(cfg), tmp_path / "run", progress=False, tensorboard=False)
    result = trainer.fit()
    assert result.status == "done" and len(result.steps) == 2
    assert all(math.isfinite(v) and 0 <= v <= 1 for row in result.steps for mt in row.values() for v in mt.values())
    assert set(trainer.method.alphas) == {1} and math.isfinite(trainer.method.alphas[1])
    restored = load_checkpoint(tmp_path / "run" / "checkpoints" / "step2.pt")
    assert restored.alphas == trainer.method.alphas


def test_resume_mid_step_is_exact(tmp_path):
    """Stop inside the second step, resume from last.pt: the teacher (the step-1 model) is the one of the stop, and
    the run ends as an uninterrupted one does, fusion weights included."""
    first, resumed, reference = stop_and_resume("lstkc", tmp_path)
    old, back = first.method.old.state_dict(), resumed.method.old.state_dict()
    assert old.keys() == back.keys() and all(torch.equal(old[k], back[k]) for k in old)
    result = resumed.fit()
    assert result.steps == reference.steps and 1 in resumed.method.alphas
