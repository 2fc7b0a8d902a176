"""BNNeck head phi: BatchNorm1d neck(s) + a bias-free linear classifier that grows by one block per domain step."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


def make_neck(in_dim: int, device: torch.device | str | None = None) -> nn.BatchNorm1d:
    """A BNNeck (Luo et al.): BatchNorm1d with weight 1, bias 0 and the bias frozen."""
    neck = nn.BatchNorm1d(in_dim, device=device)
    neck.bias.requires_grad_(False)
    return neck


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
    """phi(.) of Sec. 4.1: BN neck(s) (bias frozen, as in the strong ReID baseline) then the growing classifier.

    ``per_step=True`` (the official code's ``BNClassifier`` per step): every step adds its own BN neck with its
    class block; step s's logits come from neck s, and retrieval uses the latest neck. ``per_step=False``: one
    neck shared by all class blocks (a single classifier, the paper's Table 5c).
    """

    def __init__(self, in_dim: int, per_step: bool = True):
        super().__init__()
        self.in_dim, self.per_step = in_dim, per_step
        self.necks = nn.ModuleList([] if per_step else [make_neck(in_dim)])
        self.classifier = GrowingClassifier(in_dim)

    @property
    def neck(self) -> nn.BatchNorm1d:
        """The neck that gives retrieval features: the latest step's (or the shared one)."""
        if not len(self.necks):
            raise RuntimeError("the head has no class block yet: call grow() first")
        return self.necks[-1]

    def grow(self, n: int) -> None:
        """Add a class block of ``n`` classes (and, per step, its neck) for a new domain step."""
        if self.per_step:
            self.necks.append(make_neck(self.in_dim, self.classifier.anchor.device))
        self.classifier.grow(n)

    def truncate(self, blocks: int) -> None:
        """Keep the first ``blocks`` class blocks (and their necks): a teacher saved mid-step knows fewer."""
        del self.classifier.blocks[blocks:]
        if self.per_step:
            del self.necks[blocks:]

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C) pooled features -> (BN features used for retrieval, logits over all classes)."""
        if not self.per_step:
            bn = self.necks[0](feat)
            return bn, self.classifier(bn)
        bns = [neck(feat) for neck in self.necks]
        return bns[-1], torch.cat([blk(bn) for blk, bn in zip(self.classifier.blocks, bns)], dim=1)


@contextlib.contextmanager
def batch_statistics(module: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Every BatchNorm in ``module`` normalises with the batch's own statistics and leaves its running statistics
    untouched (the official code's ``set_bn_to_train`` on the frozen teacher's classifiers)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] if enabled else []
    saved = [(m.training, m.track_running_stats) for m in norms]
    for m in norms:
        m.training, m.track_running_stats = True, False
    try:
        yield
    finally:
        for m, (training, track) in zip(norms, saved):
            m.training, m.track_running_stats = training, track
