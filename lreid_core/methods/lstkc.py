"""LSTKC, long short-term knowledge consolidation (Xu, Zou and Zhou, AAAI 2024), as its official code trains it
(zhoujiahuan1991/AAAI2024-LSTKC: ``reid/trainer.py::Trainer`` for the loss, ``continual_train.py`` for the fusion
after each step), on the shared protocol's backbone, BN-neck heads, optimiser and schedule (``train.*``):

    L = L_ReID  [+ lambda KL(R~_{t-1} || R_t)  from the second step on]          (R-STKT, Fig. 2(c), (e))
    M_t = alpha_t M*_t + (1 - alpha_t) M_{t-1},  alpha_t = 1 - D_t                (E-LTKC, Fig. 2(d))

``loss()`` returns ``ce``, ``triplet`` (L_ReID, ``Method.reid_terms``) and ``rstkt``:

* ``rstkt`` (``rectified_relation_kd``): R_t and R_{t-1} are the batch's affinity matrices, row-wise
  softmax(cos / 0.1) of the new model's and the old model's pooled features (the code's ``s_features``, before the
  BN neck; ``Trainer.get_normal_affinity``). The old one is rectified with the labels (``relation_split``,
  ``rectify``; ``Trainer.get_attri`` and ``cal_KL``): entries the old model ranks correctly keep their old value,
  wrong ones (a positive below the hardest negative, a negative above the hardest positive) take the new model's
  value where the new model is right, else are moved to the two models' threshold. The rows are renormalised and
  the new affinity is pulled to them by KL (batch mean). Weight ``method.lstkc_weight`` (``--AF_weight`` 1.0),
  temperature ``method.lstkc_tau`` (0.1).
* After every step but the first (``consolidate``), the trained model M*_t is fused with the long-term model M_{t-1}
  (the frozen teacher, itself the previous fusion) entry by entry of their state dicts, BN statistics included;
  the step's new class block and neck keep M*_t's values (``linear_combination``). The weight is estimated on the
  step's training images, un-augmented (``get_adaptive_alpha``): D_t = mean_i sum_j |R_ij - R^o_ij| with
  R = softmax(cos * 100) over all of them (``method.lstkc_fusion_tau`` 0.01), features of both models in eval
  mode. The fused model is evaluated and becomes the next step's teacher (``after_step``). ``alphas`` keeps each
  step's weight (checkpointed).

What the code does that the paper's figure does not show (the paper's body text was not readable from this
session's sources; Fig. 2, Table 1 and the abstract were): the rectification also reads the new model's affinity
(entries the old model gets wrong take the new value, or the two models' nearer threshold), and the rectified
target is not detached, so its new-model entries and thresholds carry gradient (``method.lstkc_target_grad``);
alpha is computed over every training image of the step, not a batch, at a sharper temperature (0.01) than the
loss (0.1), and is not clipped (D in [0, 2]). The code has no logit distillation and no other anti-forgetting term.
Ablation switches: ``method.lstkc_rectify`` (False: distil the old affinity as it is) and
``method.lstkc_consolidate`` (False: no fusion; the teacher is then the last trained model).

========================  ==========================================  ==========================================
switch                    paper (Fig. 2)                              official code (default)
========================  ==========================================  ==========================================
``lstkc_target_grad``     R~_{t-1} drawn as a fixed target             True: the target keeps R_t's gradient
                          (``False``)                                 (``cal_KL`` does not detach it)
========================  ==========================================  ==========================================

The code's own model and recipe differ from the shared protocol (GeM pooling, L2-normalised features, soft-margin
triplet, CE over every seen class without smoothing, new classifier rows initialised at the class centres, SGD):
``docs/lstkc.md`` lists them; they are the recipe's, not this method's.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config
from ..data.augment import normalize
from .registry import register
from .base import Method


def log_affinity(feat: torch.Tensor, tau: float) -> torch.Tensor:
    """log R for R_ij = softmax_j(cos(f_i, f_j) / tau), (B, C) -> (B, B) (``Trainer.get_normal_affinity``)."""
    f = F.normalize(feat.float(), dim=1)
    return F.log_softmax(f @ f.T / tau, dim=1)


def relation_split(aff: torch.Tensor, same: torch.Tensor) -> dict[str, torch.Tensor]:
    """Fig. 2(e)'s matrix splitting of a row-stochastic affinity ``aff`` (B, B) by the ground truth ``same`` (B, B,
    bool, diagonal True), margin 0 (``Trainer.get_attri``):

    ``thres_p`` (B, 1): a row's highest score of another identity (its hardest negative); ``tp``: positives scored
    above it (the diagonal always), ``fn``: the other positives; ``thres_n`` (B, 1): a row's lowest score of another
    image of its identity (its hardest positive; above 1 when there is none); ``fp``: negatives scored above it,
    ``tn``: the other negatives. Masks are float 0/1; the thresholds keep ``aff``'s gradient.
    """
    gt = same.float()
    eye = torch.eye(len(aff), device=aff.device, dtype=aff.dtype)
    thres_p = ((1 - gt) * aff).max(dim=1, keepdim=True).values
    tp = torch.maximum((aff * gt - thres_p > 0).to(aff.dtype), eye)
    thres_n = ((1 - gt) + aff + eye).min(dim=1, keepdim=True).values
    fp = (aff * (1 - gt) > thres_n).to(aff.dtype)
    return {"tp": tp, "fn": gt - tp, "fp": fp, "tn": (1 - gt) - fp, "thres_p": thres_p, "thres_n": thres_n}


def rectify(aff: torch.Tensor, old_aff: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """The rectified old affinity before row normalisation, (B, B) (``Trainer.cal_KL``, Target_1..4):

    old right (TP or TN of ``old_aff``): the old value; old wrong and new right: the new value (``aff``); a positive
    both miss (FN of both): the larger of their ``thres_p``; a negative both confuse (FP of both): the smaller of
    their ``thres_n``.
    """
    new, old = relation_split(aff, same), relation_split(old_aff, same)
    keep = old_aff * (old["tp"] + old["tn"])
    take_new = aff * (new["tp"] + new["tn"]) * (old["fn"] + old["fp"])
    raise_pos = new["fn"] * old["fn"] * torch.maximum(new["thres_p"], old["thres_p"])
    lower_neg = new["fp"] * old["fp"] * torch.minimum(new["thres_n"], old["thres_n"])
    return keep + take_new + raise_pos + lower_neg


def rectified_relation_kd(feat: torch.Tensor, old_feat: torch.Tensor, labels: torch.Tensor, tau: float = 0.1,
                          rectified: bool = True, target_grad: bool = True) -> torch.Tensor:
    """R-STKT's loss KL(R~_{t-1} || R_t), summed over entries and divided by the batch size (``Trainer.cal_KL``,
    ``nn.KLDivLoss(reduction='batchmean')``). R~_{t-1} is ``rectify``'s matrix with rows renormalised
    (``rectified=False``: the old affinity as it is); ``target_grad=False`` detaches it."""
    log_aff = log_affinity(feat, tau)
    old_aff = log_affinity(old_feat.detach(), tau).exp()
    if rectified:
        aff = log_aff.exp() if target_grad else log_aff.exp().detach()
        target = rectify(aff, old_aff, labels[:, None] == labels[None, :])
        target = target / target.sum(dim=1, keepdim=True)
    else:
        target = old_aff
    return F.kl_div(log_aff, target, reduction="batchmean")


@torch.no_grad()
def forgetting_degree(feat: torch.Tensor, old_feat: torch.Tensor, tau: float = 0.01, chunk: int = 1024) -> torch.Tensor:
    """D = (1/N) sum_i sum_j |R_ij - R^o_ij| over N images, R = softmax_j(cos / tau) of the new and the old model's
    features (``get_adaptive_alpha``'s Difference; alpha = 1 - D). Rows in chunks: no N x N matrix is held."""
    f, g = F.normalize(feat.float(), dim=1), F.normalize(old_feat.float(), dim=1)
    total = f.new_zeros(())
    for start in range(0, len(f), chunk):
        rows = slice(start, start + chunk)
        total += (F.softmax(f[rows] @ f.T / tau, dim=1) - F.softmax(g[rows] @ g.T / tau, dim=1)).abs().sum()
    return total / len(f)


@torch.no_grad()
def fuse_models(model: nn.Module, old: nn.Module, alpha: float) -> None:
    """In place: every floating entry of ``model``'s state dict that ``old`` holds in the same shape becomes
    alpha * new + (1 - alpha) * old (``linear_combination``); the others (the step's class block and neck, integer
    counters) keep ``model``'s values."""
    old_state = old.state_dict()
    for key, value in model.state_dict().items():
        prev = old_state.get(key)
        if prev is not None and value.is_floating_point() and prev.shape == value.shape:
            value.mul_(alpha).add_(prev.to(value.device), alpha=1 - alpha)


@torch.no_grad()
def pooled_features(model: nn.Module, images: torch.Tensor, batch: int, device: torch.device) -> torch.Tensor:
    """g(psi(x)) (N, C) of uint8 images (N, 3, H, W), normalised as for evaluation, in batches (``model`` as set)."""
    feats = [model.backbone(normalize(images[s:s + batch].to(device, non_blocking=True))).mean(dim=(2, 3)).float()
             for s in range(0, len(images), batch)]
    return torch.cat(feats)


@register("lstkc")
class LSTKC(Method):
    """L_ReID plus the rectified affinity distillation from M_{t-1}; after each step M*_t and M_{t-1} are fused
    (see the module docstring)."""

    def __init__(self, cfg: Config, device: torch.device):
        super().__init__(cfg, device)
        self.alphas: dict[int, float] = {}      # step -> the fusion weight alpha_t of the new model

    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model(x)
        terms = self.reid_terms(out, labels)
        if self.old is not None:
            m = self.cfg.method
            old_feat = self.teacher(x)["feat"]                       # the pooled features, before any BN neck
            terms["rstkt"] = m.lstkc_weight * rectified_relation_kd(out["feat"], old_feat, labels, m.lstkc_tau,
                                                                    m.lstkc_rectify, m.lstkc_target_grad)
        return terms

    def consolidate(self, step: int, images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """E-LTKC: estimate alpha_t on the step's training images and fuse M*_t with M_{t-1} (from the second step)."""
        m = self.cfg.method
        if self.old is None or not m.lstkc_consolidate:
            return
        training = self.model.training
        self.model.eval()
        batch = self.cfg.train.eval_batch
        degree = forgetting_degree(pooled_features(self.model, images, batch, self.device),
                                   pooled_features(self.old, images, batch, self.device), m.lstkc_fusion_tau)
        self.alphas[step] = 1.0 - float(degree)
        fuse_models(self.model, self.old, self.alphas[step])
        self.model.train(training)

    def after_step(self, step: int) -> None:
        self.freeze_teacher()                    # M_t: the next step's teacher and fusion partner

    def state_dict(self) -> dict:
        return {**super().state_dict(), "alphas": dict(self.alphas)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.alphas = {int(k): float(v) for k, v in state.get("alphas", {}).items()}
