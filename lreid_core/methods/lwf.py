"""LwF, the PatchKD base model: L_base = L_ReID + gamma0 * L_KD (Eqs. 1-3)."""
from __future__ import annotations

import torch

from ..losses import kd_cross_entropy, kd_loss
from .registry import register
from .base import Method


@register("lwf")
class LwF(Method):
    """Distils the old model's logits over the old classes on the new domain's images (Eq. 2)."""

    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model(x)
        terms = self.reid_terms(out, labels)
        self.logged = {}
        if self.old is not None:
            old_logits = self.teacher(x)["logits"]
            terms["kd"] = self.cfg.method.gamma0 * self.distill(out["logits"], old_logits)
            self.logged = {"kd_ce": self.code_kd_value(terms["kd"], old_logits, self.cfg.method.gamma0)}
        return terms

    def code_kd_value(self, kd: torch.Tensor, old_logits: torch.Tensor, weight: float) -> torch.Tensor:
        """The official code's logged value of a weighted KL term (``losses.kd_cross_entropy``), detached."""
        m = self.cfg.method
        return kd_cross_entropy(kd, old_logits, m.tau, m.kd_tau2, weight)

    def distill(self, logits: torch.Tensor, old_logits: torch.Tensor) -> torch.Tensor:
        """L_KD (Eq. 2) of the student's logits against the teacher's (``method.kd_classes``, ``method.kd_tau2``)."""
        m = self.cfg.method
        return kd_loss(self.old_class_logits(logits, old_logits), old_logits, m.tau, m.kd_tau2)

    def after_step(self, step: int) -> None:
        self.freeze_teacher()
