"""CRL, continual representation learning (Zhao et al., WACV 2021, "Continual representation learning for biometric
identification"): LwF's logit distillation made to scale to many identities by **neighbourhood selection** and made
tolerant by **consistency relaxation**:

    L = L_ReID + lambda * L_CRL,   L_CRL = mean_i max(0, KL(p_i || q_i) - beta * H(p_i))

with p_i, q_i the teacher's and the student's softmax (temperature tau) over S_i, the K old identities the teacher
scores highest for image i (``losses.neighbour_kd_loss``). ``loss()`` returns ``ce``, ``triplet`` (L_ReID, as every
method of Table 2) and ``crl`` (lambda L_CRL, from the second step on). The teacher is the previous step's model f^o,
run as for LwF (``Method.teacher``, ``method.teacher_bn``); the student's logits are those of the same old classes.

Sources and the choices made where none fixes a detail: the authors published no code. The paper's abstract names
the two strategies; the one public re-implementation found (a continual-learning library's ``crl`` method, read
for facts only) selects each sample's top-K classes of the old model's logits, takes the KL between the two softmaxes
over them at temperature 2, and relaxes it by subtracting beta times the teacher's entropy over the same K, clipped at
zero, per sample, then averages; no tau^2 factor. That form is used here. Its weight defaults there to 1 and K to 10
(``method.crl_weight``, ``method.crl_k``). Its beta default reads ``10*1-3`` (= 7, a margin above log K for any
teacher, which would switch the term off: evidently a typo), so beta is this project's choice: ``method.crl_beta``
= 0.1, a sample is pulled back only once its neighbourhood distribution has drifted by more than a tenth of the
teacher's own uncertainty over it. tau is the shared ``method.tau`` (2). K is capped at the number of old classes.
CRL needs no extra module: the shared protocol's backbone, BN-neck heads, optimiser and schedule (``train.*``).
"""
from __future__ import annotations

import torch

from ..losses import neighbour_kd_loss
from .registry import register
from .lwf import LwF


@register("crl")
class CRL(LwF):
    """L_ReID plus the relaxed neighbourhood distillation from f^o (see the module docstring)."""

    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model(x)
        terms = self.reid_terms(out, labels)
        self.logged = {}
        if self.old is not None:
            m = self.cfg.method
            old_logits = self.teacher(x)["logits"]                              # (B, old classes)
            student = out["logits"][:, : old_logits.shape[1]]                   # the same old classes
            terms["crl"] = m.crl_weight * neighbour_kd_loss(student, old_logits, m.crl_k, m.tau, m.crl_beta)
        return terms
