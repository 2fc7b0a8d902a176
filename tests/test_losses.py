"""Each loss term against a small hand-computed case."""
import math

import pytest
import torch

from lreid_core import losses


def test_batch_hard_triplet_hand_case():
    feats = torch.tensor([[0.0], [1.0], [3.0], [5.0]])
    pids = torch.tensor([0, 0, 1, 1])
    # anchors: (d_ap, d_an) = (1, 3), (1, 2), (2, 2), (2, 4) -> only anchor 2 violates: 0.3 / 4
    assert losses.batch_hard_triplet(feats, pids, margin=0.3).item() == pytest.approx(0.075)


def test_reid_loss_terms():
    logits = torch.tensor([[10.0, -10.0], [-10.0, 10.0]])
    out = losses.reid_loss(logits, torch.tensor([[0.0], [5.0]]), torch.tensor([0, 1]))
    assert set(out) == {"ce", "triplet"}
    assert out["ce"].item() < 1e-6


def test_kd_loss_hand_case():
    # softmax(old/2) = (.5, .5); softmax(new/2) = (.25, .75): KL = .5 ln 2 + .5 ln(2/3) = .5 ln(4/3)
    new = torch.tensor([[0.0, 2 * math.log(3.0)]])
    old = torch.zeros(1, 2)
    assert losses.kd_loss(new, old, tau=2.0).item() == pytest.approx(0.5 * math.log(4 / 3), rel=1e-5)
    assert losses.kd_loss(new, old, tau=2.0, tau2=True).item() == pytest.approx(2.0 * math.log(4 / 3), rel=1e-5)
    assert losses.kd_loss(new, new, tau=2.0).item() == pytest.approx(0.0, abs=1e-7)


def test_confidence_loss_is_entropy():
    uniform = torch.zeros(2, 3, 4)                       # (B, K, classes)
    assert losses.confidence_loss(uniform).item() == pytest.approx(math.log(4), rel=1e-6)
    peaked = torch.tensor([[100.0, 0.0, 0.0]])
    assert losses.confidence_loss(peaked).item() == pytest.approx(0.0, abs=1e-6)


def test_diversity_loss_hand_case():
    orthogonal = torch.tensor([[[1.0, 0.0], [0.0, 3.0]]])   # cos matrix [[1, 0], [0, 1]] -> mean 0.5
    assert losses.diversity_loss(orthogonal).item() == pytest.approx(0.5)
    same = torch.tensor([[[1.0, 2.0], [2.0, 4.0]]])
    assert losses.diversity_loss(same).item() == pytest.approx(1.0)
    # the official code's form: the mean over r != s only
    assert losses.diversity_loss(orthogonal, offdiag=True).item() == pytest.approx(0.0, abs=1e-7)
    assert losses.diversity_loss(same, offdiag=True).item() == pytest.approx(1.0)


def test_patch_logit_distill_old_classes_and_zero_padded_teacher():
    old = torch.zeros(2, 3, 2)                            # (B, K, old classes)
    new = torch.cat([torch.zeros(2, 3, 2), torch.full((2, 3, 5), 7.0)], dim=-1)
    # restricted to the old classes (Eq. 11): identical distributions
    assert losses.patch_logit_distill(new[..., :2], old, tau=2.0).item() == pytest.approx(0.0, abs=1e-7)
    # all classes (official code): teacher (0.5, 0.5, 0, ...) against softmax over 7 classes at tau = 2
    expected = math.log(0.5) + math.log(2 + 5 * math.exp(3.5))
    assert losses.patch_logit_distill(new, old, tau=2.0).item() == pytest.approx(expected, rel=1e-5)
    assert losses.patch_logit_distill(new, old, tau=2.0, tau2=True).item() == pytest.approx(4 * expected, rel=1e-5)


def test_patch_relation_loss_hand_case():
    # B=2 images, K=2 patches, C=1. New: image 0 patches (0, 1), image 1 patches (0, 3). Old: (0, 1), (0, 1).
    new = torch.tensor([[[0.0], [1.0]], [[0.0], [3.0]]])
    old = torch.tensor([[[0.0], [1.0]], [[0.0], [1.0]]])
    # intra: image 0 distances equal; image 1: |3 - 1| = 2 -> Huber_1 = 1.5, twice (r,s and s,r) -> 3 / |S_intra| = 4
    # inter: branch 0 distances 0 vs 0; branch 1: 2 vs 0 -> 1.5 twice -> 3 / |S_inter| = 4
    assert losses.patch_relation_loss(new, old, distance="raw").item() == pytest.approx(1.5, abs=1e-4)
    assert losses.patch_relation_loss(old, old, distance="raw").item() == pytest.approx(0.0, abs=1e-6)


def test_patch_relation_loss_k1_has_no_intra_term():
    new = torch.tensor([[[0.0]], [[3.0]]])
    old = torch.tensor([[[0.0]], [[1.0]]])
    assert losses.patch_relation_loss(new, old, distance="raw").item() == pytest.approx(1.5, abs=1e-4)


def reference_rkd(new: torch.Tensor, old: torch.Tensor, reduction: str) -> float:
    """Eqs. 12-13 with RKD distances written out pair by pair (an independent reading of the official code)."""
    b, k, _ = new.shape

    def term(pairs, size_full):
        d = [float((new[i, r] - new[j, s]).norm()) for i, r, j, s in pairs]
        d_old = [float((old[i, r] - old[j, s]).norm()) for i, r, j, s in pairs]
        mu, mu_old = sum(d) / len(d), sum(d_old) / len(d_old)
        total = 0.0
        for x, y in zip(d, d_old):
            diff = abs(x / mu - y / mu_old)
            total += 0.5 * diff ** 2 if diff < 1 else diff - 0.5
        return total / (len(pairs) if reduction == "set" else size_full)

    intra = [(i, r, i, s) for i in range(b) for r in range(k) for s in range(k) if r != s]
    inter = [(i, r, j, r) for r in range(k) for i in range(b) for j in range(b) if i != j]
    return term(intra, b * k * k) + term(inter, k * b * b)


@pytest.mark.parametrize("reduction", ["set", "full"])
def test_patch_relation_rkd_matches_pairwise_reference(reduction):
    g = torch.Generator().manual_seed(0)
    new, old = torch.randn(5, 3, 8, generator=g), 4 * torch.randn(5, 3, 8, generator=g)
    got = losses.patch_relation_loss(new, old, reduction=reduction).item()
    assert got == pytest.approx(reference_rkd(new, old, reduction), rel=1e-4)


def test_patch_relation_rkd_is_scale_invariant_and_raw_is_not():
    g = torch.Generator().manual_seed(1)
    new, old = torch.randn(6, 3, 16, generator=g), torch.randn(6, 3, 16, generator=g)
    base = losses.patch_relation_loss(new, old).item()
    assert losses.patch_relation_loss(7.0 * new, 0.2 * old).item() == pytest.approx(base, rel=1e-4)
    assert losses.patch_relation_loss(30.0 * new, 30.0 * old).item() == pytest.approx(base, rel=1e-4)
    raw = losses.patch_relation_loss(new, old, distance="raw").item()
    assert losses.patch_relation_loss(30.0 * new, 30.0 * old, distance="raw").item() > 10 * raw


def test_patch_relation_fc_mode_uses_all_pairs():
    new = torch.tensor([[[0.0], [1.0]], [[0.0], [3.0]]])
    old = torch.tensor([[[0.0], [1.0]], [[0.0], [1.0]]])
    # all 4 patches: new positions (0, 1, 0, 3), old (0, 1, 0, 1); 12 ordered pairs.
    pos_new, pos_old = [0.0, 1.0, 0.0, 3.0], [0.0, 1.0, 0.0, 1.0]
    total = 0.0
    for a in range(4):
        for b in range(4):
            if a != b:
                diff = abs(abs(pos_new[a] - pos_new[b]) - abs(pos_old[a] - pos_old[b]))
                total += 0.5 * diff ** 2 if diff < 1 else diff - 0.5
    got = losses.patch_relation_loss(new, old, distance="raw", mode="fc").item()
    assert got == pytest.approx(total / 12, abs=1e-4)


def test_covariance_loss_hand_case():
    pos = torch.tensor([[[1.0, 2.0]], [[3.0, 5.0]]])     # (T=2, B=1, D=2)
    neg = torch.tensor([[[0.0, 0.0]], [[1.0, 1.0]]])
    # (P2 - P1) - (N2 - N1) = (2, 3) - (1, 1) = (1, 2); A A^T = [[1, 2], [2, 4]] -> sum 9
    assert losses.covariance_loss(pos, neg, lam=1, alpha=1, beta=0).item() == pytest.approx(9.0)
    assert losses.covariance_loss(pos, neg, lam=1, alpha=1, beta=1).item() == pytest.approx(1.0)   # A = (0, 1)
    assert losses.covariance_loss(pos, neg, lam=2, alpha=1, beta=0).item() == pytest.approx(36.0)
    explicit = torch.tensor([[1.0], [2.0]])
    assert (explicit @ explicit.T).sum().item() == pytest.approx(9.0)


def test_similarity_preserving_zero_for_same_features():
    f = torch.randn(6, 4)
    assert losses.similarity_preserving_loss(f, f).item() == pytest.approx(0.0, abs=1e-7)
    assert losses.similarity_preserving_loss(f, torch.randn(6, 4)).item() > 0
