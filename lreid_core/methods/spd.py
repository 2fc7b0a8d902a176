"""SPD, similarity-preserving knowledge distillation (Tung & Mori, ICCV 2019), the feature-distillation
baseline of PatchKD's Table 2:

    L = L_ReID + spd_weight * L_SP(feat, feat^o),    L_SP = || G~ - G~^o ||_F^2 / B^2

where G~ is the row-L2-normalised B x B Gram matrix of a batch's features (``losses.similarity_preserving_loss``),
``feat`` the new model's pooled backbone features g(psi(x)) and ``feat^o`` those of the frozen previous-step model
f^o on the same (new-domain) images. The student is thus asked to keep which images of the batch look alike,
not the features themselves.

``method.spd_weight`` (default 3000) is the SPD paper's gamma for its CIFAR-10 experiments; the PatchKD paper
does not state the weight it used for its SPD row. SPD's paper forms G from the flattened activation map of a
layer group (B x C*h*w); here it is formed from the pooled (B, C) features (the same Gram normalisation,
a smaller matrix; the PatchKD paper does not say which layer its SPD row distils). In the first domain step
there is no teacher and the loss is L_ReID alone (as for LwF).

Example::

    m = create_method("spd", load_config(profile_name="smoke"))
    m.before_step(0, 10); m.after_step(0); m.before_step(1, 10)
    terms = m.loss(x, labels)          # {"ce", "triplet", "spd"}
"""
from __future__ import annotations

import torch

from ..losses import similarity_preserving_loss
from .registry import register
from .base import Method


@register("spd")
class SPD(Method):
    """L_ReID plus similarity-preserving distillation of the batch's pooled features from f^o."""

    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model(x)
        terms = self.reid_terms(out, labels)
        if self.old is not None:
            with torch.no_grad():
                old_feat = self.old.backbone(x).mean(dim=(2, 3))          # g(psi^o(x)), (B, C)
            terms["spd"] = self.cfg.method.spd_weight * similarity_preserving_loss(out["feat"], old_feat)
        return terms

    def after_step(self, step: int) -> None:
        self.freeze_teacher()
