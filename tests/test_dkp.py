"""DKP: each term by hand and reaching only what it names, the prototypes against independently computed
statistics, the fusion, the store through a weights-only checkpoint and an exact mid-order resume, a smoke run."""
import math

import pytest
import torch
import torch.nn.functional as F

from lreid_core.config import load_config
from lreid_core.data.augment import normalize
from lreid_core.data.benchmark import build_benchmark
from lreid_core.methods import create_method
from lreid_core.methods.dkp import DKP, distribution_ce, identity_prototypes, prototype_transfer_loss, set_triplet_loss
from lreid_core.train import Trainer

from method_steps import CLASSES, batch, method_at, stop_and_resume

pytestmark = pytest.mark.usefixtures("one_thread")   # fixture in tests/conftest.py


def images(n_ids: int = 5, per_id: int = 4, seed: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    imgs = torch.randint(0, 256, (n_ids * per_id, 3, 32, 16), generator=g, dtype=torch.uint8)
    return imgs, torch.arange(n_ids).repeat_interleave(per_id)


def make(steps: float = 2, **method) -> DKP:
    """DKP in its first step (1), right after it (1.5: prototypes of step 1 stored) or in its second step (2)."""
    return method_at("dkp", steps, between=lambda m: m.consolidate(0, *images(CLASSES)),
                     second=lambda m: m.start_domain(1, *images(CLASSES, seed=3)), **method)


# ---- the terms by hand -------------------------------------------------------------------------------------------
def test_identity_prototypes_are_each_identity_mean_and_mixture_std():
    torch.manual_seed(0)
    centres, stds = torch.randn(12, 5), torch.rand(12, 5)
    labels = torch.tensor([3, 1, 3, 7, 1, 1, 7, 3, 3, 7, 1, 3])
    ids, mean, std = identity_prototypes(centres, stds, labels)
    assert ids.tolist() == [1, 3, 7]
    for row, k in enumerate(ids):
        own = labels == k
        assert torch.allclose(mean[row], centres[own].mean(0), atol=1e-6)
        var = centres[own].var(0, unbiased=False) + (stds[own] ** 2).mean(0)     # law of total variance
        assert torch.allclose(std[row], var.sqrt(), atol=1e-5)


def test_distribution_ce_averages_the_centre_and_every_candidate():
    torch.manual_seed(0)
    logits, labels = torch.randn(4, 3, 5), torch.tensor([0, 4, 2, 2])
    ref = sum(F.cross_entropy(logits[:, s], labels) for s in range(3)) / 3
    assert torch.allclose(distribution_ce(logits, labels), ref, atol=1e-6)


def test_set_triplet_by_hand():
    torch.manual_seed(0)
    cand, labels = torch.randn(4, 3, 6), torch.tensor([0, 0, 1, 1])
    losses = []
    for i in range(4):
        for j in range(1, 3):
            d = (cand[i, j] - cand[:, 0]).norm(dim=1)
            pos, neg = d[labels == labels[i]].max(), d[labels != labels[i]].min()
            losses.append(torch.log1p(torch.exp(pos - neg)))
    assert torch.allclose(set_triplet_loss(cand, labels), torch.stack(losses).mean(), atol=1e-5)
    hinge = set_triplet_loss(cand, labels, margin=0.3)
    assert hinge >= 0 and not torch.allclose(hinge, set_triplet_loss(cand, labels))


def test_prototype_transfer_by_hand():
    torch.manual_seed(0)
    c, mu, sigma = F.normalize(torch.randn(6, 8), dim=1), torch.randn(10, 8), torch.rand(10, 8)
    torch.manual_seed(5)
    got = prototype_transfer_loss(c, mu, sigma, 0.1, 0.2)
    torch.manual_seed(5)
    g = F.normalize(torch.randn(10, 8) * sigma + mu, dim=1)
    s = torch.softmax(F.cosine_similarity(c[:, None], g[None], dim=-1) / 0.1, dim=1)
    a_new = torch.softmax(F.cosine_similarity(c[:, None], c[None], dim=-1) / 0.2, dim=1)
    a_old = torch.softmax(F.cosine_similarity(s[:, None], s[None], dim=-1) / 0.2, dim=1)
    ref = (a_old * (a_old.log() - a_new.log())).sum() / 6
    assert torch.allclose(got, ref, atol=1e-5)


# ---- the method --------------------------------------------------------------------------------------------------
def test_first_step_has_no_prototype_term():
    m = make(steps=1)
    assert set(m.loss(*batch(offset=0))) == {"ce", "triplet"} and len(m.prototypes["mean"]) == 0


def test_prototypes_match_the_models_features():
    """The stored mean of each identity is the mean of its images' centres computed here independently (eval mode);
    the std is at least the spread of those centres; running statistics stay untouched with batch statistics."""
    m = make(steps=1, dkp_proto_bn="running")
    imgs, labels = images(4, 5, seed=7)
    m.consolidate(0, imgs, labels)
    m.train(False)
    with torch.no_grad():
        centres, stds = m.idm(m.model.backbone(normalize(imgs)))
    assert m.prototypes["labels"].tolist() == [0, 1, 2, 3] and m.prototypes["steps"].tolist() == [0] * 4
    for k in range(4):
        own = labels == k
        assert torch.allclose(m.prototypes["mean"][k], centres[own].mean(0), atol=1e-5)
        var = centres[own].var(0, unbiased=False) + (stds[own] ** 2).mean(0)
        assert torch.allclose(m.prototypes["std"][k], var.sqrt(), atol=1e-5)
    batch_mode = make(steps=1)
    before = [b.clone() for b in batch_mode.model.buffers()]
    batch_mode.consolidate(0, imgs, labels)
    assert all(torch.equal(u, v) for u, v in zip(before, batch_mode.model.buffers()))
    assert not torch.allclose(batch_mode.prototypes["mean"], m.prototypes["mean"])   # batch vs running statistics


def test_store_keeps_the_last_step_or_all():
    for keep, expected in (("last", [1] * CLASSES), ("all", [0] * CLASSES + [1] * CLASSES)):
        m = make(dkp_proto_keep=keep)
        imgs, labels = images(CLASSES, seed=3)
        m.consolidate(1, imgs, labels + CLASSES)
        assert m.prototypes["steps"].tolist() == expected


def owners(m: DKP) -> dict[str, list[torch.nn.Parameter]]:
    groups = {"backbone": m.model.backbone.parameters(), "head": m.model.head.parameters(),
              "idm_mean": m.idm.mean.parameters(),
              "idm_var": list(m.idm.var_conv.parameters()) + list(m.idm.var.parameters())}
    return {k: [p for p in ps if p.requires_grad] for k, ps in groups.items()}


@pytest.mark.parametrize("term, reached", [
    ("ce", {"backbone", "head", "idm_mean", "idm_var"}),
    ("triplet", {"backbone", "idm_mean", "idm_var"}),
    ("proto", {"backbone", "idm_mean"}),
])
def test_each_term_trains_only_what_it_names(term, reached):
    m = make()
    torch.manual_seed(3)
    terms = m.loss(*batch())
    assert set(terms) == {"ce", "triplet", "proto"}
    groups = owners(m)
    params = [p for ps in groups.values() for p in ps]
    grads = dict(zip(map(id, params), torch.autograd.grad(terms[term], params, allow_unused=True)))
    got = {k for k, ps in groups.items() if any(grads[id(p)] is not None and grads[id(p)].abs().sum() > 0
                                                for p in ps)}
    assert got == reached


def test_classifier_rows_start_at_the_class_centres():
    m = make()
    imgs, labels = images(CLASSES, seed=3)
    m.train(False)
    with torch.no_grad():
        centres, _ = m.idm(m.model.backbone(normalize(imgs)))
    rows = F.normalize(torch.stack([centres[labels == k].mean(0) for k in range(CLASSES)]), dim=1)
    assert torch.allclose(m.model.head.classifier.blocks[1].weight, rows, atol=1e-5)
    assert not torch.allclose(make(dkp_classifier_init="random").model.head.classifier.blocks[1].weight, rows)


def test_fusion_averages_with_the_previous_step_and_keeps_the_new_block():
    m = make()
    imgs, labels = images(CLASSES, seed=3)
    with torch.no_grad():
        for p in list(m.model.parameters()) + list(m.extra.parameters()):
            p.add_(0.1 * torch.randn_like(p))
    new, old = m.model.state_dict(), m.old.state_dict()
    new, old = {k: v.clone() for k, v in new.items()}, {k: v.clone() for k, v in old.items()}
    new_idm, old_idm = m.idm.mean.weight.clone(), m.old_extra["idm"].mean.weight.clone()
    m.consolidate(1, imgs, labels + CLASSES)
    fused = m.model.state_dict()
    for k in ("backbone.stem.0.weight", "head.classifier.blocks.0.weight", "head.necks.0.running_var"):
        assert torch.allclose(fused[k], 0.5 * new[k] + 0.5 * old[k], atol=1e-6), k
    assert torch.equal(fused["head.classifier.blocks.1.weight"], new["head.classifier.blocks.1.weight"])
    assert torch.allclose(m.idm.mean.weight, 0.5 * new_idm + 0.5 * old_idm, atol=1e-6)
    off = make(dkp_fusion=1.0)
    before = {k: v.clone() for k, v in off.model.state_dict().items()}
    off.consolidate(1, imgs, labels + CLASSES)
    assert all(torch.equal(before[k], v) for k, v in off.model.state_dict().items())


def test_fusion_with_a_frozen_copy_of_the_student_changes_nothing():
    """DKP distils from no teacher; its frozen copy (``freeze_teacher``) is the fusion partner, and fusing the
    student with a copy of itself leaves it as it is (the prototypes are rebuilt all the same)."""
    m = make()
    m.freeze_teacher()
    before = {k: v.clone() for k, v in m.model.state_dict().items()}
    before_idm = {k: v.clone() for k, v in m.extra.state_dict().items()}
    m.consolidate(1, *images(CLASSES, seed=3))
    assert all(torch.equal(before[k], v) for k, v in m.model.state_dict().items())
    assert all(torch.equal(before_idm[k], v) for k, v in m.extra.state_dict().items())
    assert m.prototypes["steps"].tolist() == [1] * CLASSES


def test_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    m = make()
    torch.save(m.state_dict(), tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)
    fresh = create_method("dkp", m.cfg)
    fresh.load_state_dict(state)
    for k, v in m.prototypes.items():
        assert torch.equal(fresh.prototypes[k], v)
    for key, module in (("old", m.old), ("old_extra", m.old_extra)):
        restored = getattr(fresh, key).state_dict()
        assert all(torch.equal(restored[k], v) for k, v in module.state_dict().items()), key
    x, _ = batch()
    fresh.train(False), m.train(False)
    assert torch.equal(fresh.embed(x), m.embed(x))
    assert not torch.equal(m.embed(x), make(dkp_embed="bn").embed(x))


def test_resume_mid_order_keeps_the_store_and_the_run(tmp_path):
    """Stop inside the second step, resume from last.pt: the store is the one of the stop, the end equals an
    uninterrupted run's."""
    first, resumed, reference = stop_and_resume("dkp", tmp_path)
    assert first.method.prototypes and set(resumed.method.prototypes) == set(first.method.prototypes)
    for k, v in first.method.prototypes.items():
        assert torch.equal(resumed.method.prototypes[k], v)
    assert resumed.fit().steps == reference.steps


def test_smoke_run_end_to_end(tmp_path):
    cfg = load_config(profile_name="smoke", overrides={"method": {"name": "dkp"}})
    result = Trainer(cfg, "dkp", build_benchmark(cfg), tmp_path / "run", progress=False, tensorboard=False).fit()
    assert result.status == "done" and len(result.steps) == 2
    assert all(math.isfinite(v) and 0 <= v <= 1 for row in result.steps for mt in row.values() for v in mt.values())
