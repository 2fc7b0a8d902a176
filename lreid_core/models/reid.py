"""The base ReID model f = phi o g o psi (PatchKD Sec. 4.1)."""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from .backbone import build_backbone
from .heads import BNNeckHead


class ReIDModel(nn.Module):
    """Backbone psi -> global average pooling g -> BNNeck head phi.

    ``forward`` always returns the same dict in train and eval mode: ``fmap`` (B, C, h, w), ``feat``
    (B, C, pooled, used by the triplet loss), ``bn`` (B, C, BN-neck features used for retrieval) and
    ``logits`` (B, num_classes).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.backbone = build_backbone(cfg.backbone, cfg.pretrained, cfg.last_stride, cfg.width, cfg.small_stride,
                                       cfg.stem_relu)
        self.feat_dim = self.backbone.out_channels
        self.head = BNNeckHead(self.feat_dim, per_step=cfg.neck == "per_step")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        fmap = self.backbone(x)                   # (B, C, h, w)
        feat = fmap.mean(dim=(2, 3))              # g(psi(x)), (B, C)
        bn, logits = self.head(feat)
        return {"fmap": fmap, "feat": feat, "bn": bn, "logits": logits}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Retrieval features: BN-neck output of the pooled feature map (B, C)."""
        return self.head.neck(self.backbone(x).mean(dim=(2, 3)))
