"""One function per paper term. Equation numbers refer to PatchKD (ACM MM 2022) unless marked "seed 2"
(Bhargava 2018, multi-head covariance)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def batch_hard_triplet(features: torch.Tensor, pids: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Batch-hard triplet loss (the L_tri of Eq. 1): for every anchor the farthest positive and the
    closest negative in the batch; ``margin`` <= 0 gives the soft-margin form log(1 + exp(d_ap - d_an))."""
    dist = torch.cdist(features.float(), features.float())          # (B, B)
    same = pids[:, None] == pids[None, :]
    d_ap = dist.masked_fill(~same, float("-inf")).amax(dim=1)
    d_an = dist.masked_fill(same, float("inf")).amin(dim=1)
    if margin > 0:
        return F.relu(d_ap - d_an + margin).mean()
    return F.softplus(d_ap - d_an).mean()


def smoothed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, eps: float = 0.0,
                           num_classes: int = 0) -> torch.Tensor:
    """The L_CE of Eq. 1 with label smoothing: targets (1 - eps) one_hot + eps / num_classes (Szegedy et al.).

    ``num_classes`` = 0 spreads eps over the logits' classes (a distribution); the official code spreads it over
    every identity of the order (its ``pid_num``, 2500) while its logits cover one step's 500 classes.
    """
    log_p = F.log_softmax(logits.float(), dim=-1)
    nll = -log_p.gather(1, labels[:, None]).squeeze(1)
    if eps == 0:
        return nll.mean()
    n = num_classes or logits.shape[-1]
    return ((1 - eps) * nll - eps / n * log_p.sum(dim=-1)).mean()


def reid_loss(logits: torch.Tensor, features: torch.Tensor, pids: torch.Tensor, margin: float = 0.3,
              label_smoothing: float = 0.0, smooth_classes: int = 0) -> dict[str, torch.Tensor]:
    """L_ReID of Eq. 1: cross-entropy on the classifier logits + batch-hard triplet on pooled features."""
    return {"ce": smoothed_cross_entropy(logits, pids, label_smoothing, smooth_classes),
            "triplet": batch_hard_triplet(features, pids, margin)}


def kd_loss(logits: torch.Tensor, old_logits: torch.Tensor, tau: float = 2.0, tau2: bool = False) -> torch.Tensor:
    """L_KD of Eq. 2: mean over the batch of KL(softmax(old/tau) || softmax(new/tau)).

    ``logits`` restricted to the old classes give Eq. 2. With more columns than ``old_logits`` (the new classes
    after the old ones) the student's softmax runs over all of them and the teacher's distribution is
    zero-padded, as the official code's ``loss_fn_kd`` does (which returns the cross-entropy: the KL plus the
    teacher's entropy, the same gradient). ``tau2`` multiplies by tau^2 (Hinton's gradient-scale correction,
    used by the official code; the paper writes no such factor).
    """
    n_old = old_logits.shape[-1]
    log_p_new = F.log_softmax(logits.float() / tau, dim=-1)[..., :n_old]
    log_p_old = F.log_softmax(old_logits.float() / tau, dim=-1)
    kl = (log_p_old.exp() * (log_p_old - log_p_new)).sum(dim=-1).mean()
    return kl * tau * tau if tau2 else kl


def kd_cross_entropy(kd: torch.Tensor, old_logits: torch.Tensor, tau: float = 2.0, tau2: bool = False,
                     weight: float = 1.0) -> torch.Tensor:
    """For logging only (detached): the value the official code's ``loss_fn_kd`` reports for a (weighted) KL term
    ``kd`` = weight * ``kd_loss``: the cross-entropy against the teacher's softmax, KL + H(softmax(old / tau)),
    times tau^2 with ``tau2``. The entropy does not depend on the student: the gradient is the KL's."""
    entropy = confidence_loss(old_logits.detach().float() / tau)          # mean over rows, as kd_loss
    return (kd.detach() + weight * (tau * tau if tau2 else 1.0) * entropy).detach()


def confidence_loss(old_patch_logits: torch.Tensor) -> torch.Tensor:
    """L_conf of Eq. 8: mean entropy H(softmax(phi^o(p^o))) over all B*K sampled patches.

    ``old_patch_logits``: (..., classes) logits of the old classifier on the old model's patch features.
    """
    log_p = F.log_softmax(old_patch_logits.float(), dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1).mean()


def diversity_loss(patches: torch.Tensor, offdiag: bool = False) -> torch.Tensor:
    """L_div of Eq. 9: (1 / B K^2) sum_i sum_{r,s} cos(p_ir, p_is) for ``patches`` shaped (B, K, C).

    The sum runs over all r, s including r = s, exactly as Eq. 9 writes it (the diagonal adds a constant 1/K).
    ``offdiag=True`` is the official code's ``loss_fn_div``: the mean over the K(K-1) pairs r != s (0 for K = 1).
    """
    unit = F.normalize(patches.float(), dim=-1)
    cos = unit @ unit.transpose(1, 2)                                   # (B, K, K)
    if not offdiag:
        return cos.mean(dim=(1, 2)).mean()
    k = patches.shape[1]
    return (cos.sum(dim=(1, 2)) - cos.diagonal(dim1=1, dim2=2).sum(-1)).mean() / max(k * (k - 1), 1)


def patch_logit_distill(patch_logits: torch.Tensor, old_patch_logits: torch.Tensor, tau: float = 2.0,
                        tau2: bool = False) -> torch.Tensor:
    """L_PLD of Eq. 11: mean over the B*K patches of KL(softmax(phi^o(p^o)/tau) || softmax(phi_p(p)/tau)).

    ``patch_logits`` (..., classes) with more classes than ``old_patch_logits``: zero-padded teacher, as ``kd_loss``.
    """
    return kd_loss(patch_logits.reshape(-1, patch_logits.shape[-1]),
                   old_patch_logits.reshape(-1, old_patch_logits.shape[-1]), tau, tau2)


def pairwise_distances(x: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between the rows of each matrix in a batch: (..., n, c) -> (..., n, n), zero diagonal."""
    sq = (x * x).sum(-1)
    d2 = sq[..., :, None] + sq[..., None, :] - 2 * x @ x.transpose(-1, -2)
    eye = torch.eye(x.shape[-2], dtype=torch.bool, device=x.device)
    return d2.clamp_min(1e-12).sqrt().masked_fill(eye, 0.0)


def relation_distances(d: torch.Tensor, keep: torch.Tensor, distance: str = "rkd") -> torch.Tensor:
    """The distances d(.,.) of Eq. 12 over one relation set (the entries where ``keep``).

    ``distance="rkd"`` (Park et al., CVPR 2019, ref. [42]; the official code's ``loss_fn_rd``): every distance
    divided by the mean of its set, so the set has mean 1 whatever the feature scale; ``"raw"``: Euclidean as is.
    Masked sums instead of boolean indexing: no host synchronisation in the training step.
    """
    if distance == "raw":
        return d
    keep = keep.to(d.dtype)
    return d / ((d * keep).sum() / keep.sum().clamp_min(1)).clamp_min(1e-12)


def _relation_term(d: torch.Tensor, d_old: torch.Tensor, keep: torch.Tensor, delta: float, distance: str,
                   reduction: str) -> torch.Tensor:
    """Huber loss between the two models' distances of one relation set (a term of Eq. 13).

    ``reduction="set"``: the sum over the set divided by its size |S| (Eq. 13); ``"full"``: the mean over the whole
    distance tensors, zero diagonals included (the official code's ``smooth_l1_loss(..., reduction="mean")``).
    """
    keep_f = keep.to(d.dtype).expand_as(d)
    d, d_old = relation_distances(d, keep_f, distance), relation_distances(d_old, keep_f, distance)
    total = (F.huber_loss(d, d_old, reduction="none", delta=delta) * keep_f).sum()
    return total / (keep_f.sum().clamp_min(1) if reduction == "set" else d.numel())


def patch_relation_loss(patches: torch.Tensor, old_patches: torch.Tensor, delta: float = 1.0,
                        distance: str = "rkd", reduction: str = "set", mode: str = "distance") -> torch.Tensor:
    """L_PRD of Eqs. 12-13 for ``patches`` and ``old_patches`` shaped (B, K, C).

    S_intra: d(p_ir, p_is) for every image i and every ordered pair r != s (B*K*(K-1) distances).
    S_inter: d(p_ir, p_jr) for every branch r and every ordered pair i != j (K*B*(B-1) distances).
    L_PRD = sum Huber(d_intra - d_intra^o) / |S_intra| + sum Huber(d_inter - d_inter^o) / |S_inter|.
    With K = 1 the intra set is empty and contributes 0.

    ``distance`` (see ``relation_distances``): "rkd" (default, the code's reading of d; student and teacher sets
    each normalised by their own mean) or "raw". ``reduction``: "set" (Eq. 13) or "full" (the official code).
    ``mode="fc"`` is the Table-4 ablation "FC": all B*K patches form one fully connected relation graph,
    distilled at once (every ordered pair of distinct patches, one set).
    """
    patches, old_patches = patches.float(), old_patches.float()
    b, k, _ = patches.shape
    if mode == "fc":
        flat, flat_old = patches.reshape(1, b * k, -1), old_patches.reshape(1, b * k, -1)
        keep = ~torch.eye(b * k, dtype=torch.bool, device=patches.device)[None]
        return _relation_term(pairwise_distances(flat), pairwise_distances(flat_old), keep, delta, distance,
                              reduction)
    off_k = ~torch.eye(k, dtype=torch.bool, device=patches.device)
    off_b = ~torch.eye(b, dtype=torch.bool, device=patches.device)
    intra = _relation_term(pairwise_distances(patches), pairwise_distances(old_patches), off_k, delta, distance,
                           reduction)
    by_branch, by_branch_old = patches.transpose(0, 1), old_patches.transpose(0, 1)   # (K, B, C)
    inter = _relation_term(pairwise_distances(by_branch), pairwise_distances(by_branch_old), off_b, delta,
                           distance, reduction)
    return intra + inter


def similarity_preserving_loss(features: torch.Tensor, old_features: torch.Tensor) -> torch.Tensor:
    """SPD (Tung & Mori 2019): || G - G^o ||_F^2 / B^2 with G the row-L2-normalised batch Gram matrix of
    (B, C) features, here the pooled backbone features."""
    g = F.normalize(features.float() @ features.float().t(), dim=1)
    g_old = F.normalize(old_features.float() @ old_features.float().t(), dim=1)
    return (g - g_old).pow(2).sum() / features.shape[0] ** 2


def covariance_loss(pos: torch.Tensor, neg: torch.Tensor, lam: float = 1.0, alpha: float = 1e-9,
                    beta: float = 0.0) -> torch.Tensor:
    """Seed 2, Eqs. 1-2: A = lambda * (alpha * sum_i ((P_{i+1} - P_i) - (N_{i+1} - N_i)) - beta), X = A A^T,
    loss = sum of the elements of X.

    ``pos`` and ``neg`` are (T, B, D): the flattened outputs of the T task pipelines ("feature maps that we get
    from the second convolution block from both the pipelines") for the positive and the negative target of
    each of B anchors; i runs over consecutive pipelines. Per anchor A_b is a (D, 1) column ("an embedding
    matrix of shape [batch_size, 2048, 1]"), and sum(A_b A_b^T) = (sum_d A_bd)^2; the loss sums over anchors.
    With a single pipeline there is no difference to take and the loss is lambda^2 * beta^2 * D^2 * B.
    """
    pos, neg = pos.float(), neg.float()
    diff = (pos[1:] - pos[:-1]) - (neg[1:] - neg[:-1])                 # (T-1, B, D)
    a = lam * (alpha * diff.sum(dim=0) - beta)                          # (B, D)
    if pos.shape[0] == 1:
        a = torch.full_like(pos[0], -lam * beta)
    return a.sum(dim=1).pow(2).sum()    # sum of A_b A_b^T without building the (B, D, D) tensor


# ---- AKA (Pu et al., CVPR 2021; the official code TPCD/LifelongReID) -------------------------------------------
def plasticity_loss(features: torch.Tensor, pids: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """AKA's plasticity loss (code: ``lreid/losses/loss.py::PlasticityLoss``, Euclidean, no L2 normalisation): the
    batch-hard triplet of Eq. 1 on softplus-transformed distances, mean_i relu(s(d_ap) - s(d_an) + margin) with
    s(d) = log(1 + exp(d)). s is increasing, so the hardest positive and negative are those of the plain triplet.
    ``features``: AKA's fused features f + the graph's prototypes (B, C)."""
    x = features.float()
    dist = pairwise_distances(x[None])[0].clamp_min(1e-6)              # (B, B); the code clamps d^2 at 1e-12
    soft = F.softplus(dist)
    same = pids[:, None] == pids[None, :]
    d_ap = soft.masked_fill(~same, float("-inf")).amax(dim=1)
    d_an = soft.masked_fill(same, float("inf")).amin(dim=1)
    return F.relu(d_ap - d_an + margin).mean()


def stability_loss(vertices: torch.Tensor, old_vertices: torch.Tensor) -> torch.Tensor:
    """AKA's stability loss (code: ``MetaGraph_fd.StabilityLoss``): mean over the N graph vertices of
    || v_j / |v_j| - v^o_j / |v^o_j| ||^2, the new knowledge graph's vertices (N, C) against the previous step's."""
    return (F.normalize(vertices.float(), dim=-1) - F.normalize(old_vertices.float().detach(), dim=-1)
            ).pow(2).sum(-1).mean()


# ---- CRL (Zhao et al., WACV 2021) ------------------------------------------------------------------------------
def neighbour_kd_loss(logits: torch.Tensor, old_logits: torch.Tensor, k: int = 10, tau: float = 2.0,
                      beta: float = 0.1) -> torch.Tensor:
    """CRL's distillation with neighbourhood selection and consistency relaxation.

    Neighbourhood selection: per image, the K old classes the teacher scores highest, S_i = top-K(old_logits_i);
    p_i = softmax(old_logits_i[S_i] / tau), q_i = softmax(logits_i[S_i] / tau), both over S_i only (K classes
    instead of every identity seen). Consistency relaxation: a sample is penalised only past a margin that grows
    with the teacher's own uncertainty, mean_i max(0, KL(p_i || q_i) - beta * H(p_i)). ``logits``: the student's
    logits over (at least) the teacher's classes, in the same order; K is capped at the number of old classes.
    """
    k = min(k, old_logits.shape[-1])
    idx = old_logits.detach().topk(k, dim=-1).indices                   # (B, K)
    log_p = F.log_softmax(old_logits.detach().float().gather(1, idx) / tau, dim=-1)
    log_q = F.log_softmax(logits.float().gather(1, idx) / tau, dim=-1)
    p = log_p.exp()
    kl = (p * (log_p - log_q)).sum(-1)                                  # (B,)
    entropy = -(p * log_p).sum(-1)
    return F.relu(kl - beta * entropy).mean()
