"""BNNeck head phi: BatchNorm1d neck + a bias-free linear classifier that grows by one block per domain step."""
from __future__ import annotations

import torch
from torch import nn


class GrowingClassifier(nn.Module):
    """Linear classifier over one growing class space: one weight block per domain step, logits concatenated."""

    def __init__(self, in_dim: int):
        super().__init__()
        self.in_dim = in_dim
        self.blocks = nn.ModuleList()
        self.register_buffer("anchor", torch.empty(0), persistent=False)   # follows .to(): where new blocks go

    @property
    def num_classes(self) -> int:
        return sum(b.out_features for b in self.blocks)

    def grow(self, n: int) -> None:
        """Append ``n`` new classes (on the device of the existing weights)."""
        block = nn.Linear(self.in_dim, n, bias=False, device=self.anchor.device)
        nn.init.normal_(block.weight, std=0.001)
        self.blocks.append(block)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C) -> (B, num_classes)
        return torch.cat([b(x) for b in self.blocks], dim=1)


class BNNeckHead(nn.Module):
    """phi(.) of Sec. 4.1: BN neck (bias frozen, as in the strong ReID baseline) then the growing classifier."""

    def __init__(self, in_dim: int):
        super().__init__()
        self.neck = nn.BatchNorm1d(in_dim)
        self.neck.bias.requires_grad_(False)
        self.classifier = GrowingClassifier(in_dim)

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C) pooled features -> (BN features used for retrieval, logits)."""
        bn = self.neck(feat)
        return bn, self.classifier(bn)
