"""LwF, the PatchKD base model: L_base = L_ReID + gamma0 * L_KD (Eqs. 1-3)."""
from __future__ import annotations

import torch

from ..losses import kd_loss, reid_loss
from . import register
from .base import Method


@register("lwf")
class LwF(Method):
    """Distils the old model's logits over the old classes on the new domain's images (Eq. 2)."""

    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model(x)
        terms = reid_loss(out["logits"], out["feat"], labels, self.cfg.train.triplet_margin)
        if self.old is not None:
            terms["kd"] = self.cfg.method.gamma0 * self.distill(x, out)
        return terms

    def distill(self, x: torch.Tensor, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """L_KD (Eq. 2) between the new logits restricted to the old classes and the teacher's logits."""
        with torch.no_grad():
            old_logits = self.old(x)["logits"]
        m = self.cfg.method
        return kd_loss(out["logits"][:, : old_logits.shape[1]], old_logits, m.tau, m.kd_tau2)

    def after_step(self, step: int) -> None:
        self.freeze_teacher()
