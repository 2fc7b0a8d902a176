"""Seed-2 model (Bhargava 2018, Sec. 3.1-3.2): one shared trunk, one pipeline head per task.

    x (B, 3, H, W) -> trunk (ResNet-50 without avgpool/fc, or the small CNN) -> fmap (B, n, h, w)
    fmap -> pipeline t: block1 = 1x1 conv n -> n/2 + BN + LeakyReLU          (B, n/2, h, w)
                        block2 = 3x3 conv n/2 -> n + BN + LeakyReLU          (B, n, h, w)
                        global average pooling                               (B, n)
                        FC -> logits over task t's identities                (B, classes_t)

The seed says the second block "takes in n input channels and outputs n channels"; it follows a block that
outputs n/2 channels, so it can only chain if it takes n/2 input channels. We read it that way: the
pipeline maps n -> n/2 -> n ("So in this process dimensionality is not changed").

Training (Sec. 3.5): when a new task starts, every earlier pipeline is frozen ("we freeze the first
pipeline and then train the base model along with the second pipeline"); the trunk keeps training. A frozen
pipeline has ``requires_grad=False`` *and* stays in eval mode whatever ``train()`` is called with, so its
BatchNorm running statistics never move again.
"""
from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig
from ..errors import LReIDError
from .backbone import build_backbone

LEAKY_SLOPE = 0.01   # LeakyReLU negative slope (the seed gives none; PyTorch's default)


def _conv_block(cin: int, cout: int, kernel: int) -> nn.Sequential:
    """conv (stride 1, 'same' padding, no bias: BN follows) + BN + LeakyReLU."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride=1, padding=kernel // 2, bias=False),
                         nn.BatchNorm2d(cout), nn.LeakyReLU(LEAKY_SLOPE, inplace=True))


class Pipeline(nn.Module):
    """One task head: two conv blocks (n -> n/2 -> n), global average pooling, an FC classifier."""

    def __init__(self, n: int, num_classes: int):
        super().__init__()
        if n % 2:
            raise LReIDError(f"a pipeline needs an even number of trunk channels, got {n}")
        self.block1 = _conv_block(n, n // 2, 1)
        self.block2 = _conv_block(n // 2, n, 3)
        self.fc = nn.Linear(n, num_classes)

    @property
    def num_classes(self) -> int:
        return self.fc.out_features

    def features(self, fmap: torch.Tensor) -> torch.Tensor:
        """Pooled output of the second conv block: (B, n, h, w) -> (B, n). This is the head's retrieval
        feature and the P/N feature of the covariance loss."""
        return self.block2(self.block1(fmap)).mean(dim=(2, 3))

    def forward(self, fmap: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every intermediate, for inspection: block1 (B, n/2, h, w), block2 (B, n, h, w), feat (B, n),
        logits (B, classes)."""
        b1 = self.block1(fmap)
        b2 = self.block2(b1)
        feat = b2.mean(dim=(2, 3))
        return {"block1": b1, "block2": b2, "feat": feat, "logits": self.fc(feat)}


class MultiHeadReID(nn.Module):
    """Shared trunk + a growing list of pipelines; every pipeline but the newest is frozen.

    ``forward`` returns the same dict in train and eval mode: ``fmap`` (B, n, h, w), ``feats`` (T, B, n)
    the pooled second-block outputs of all T pipelines (frozen ones included: gradient still flows through
    them into the trunk), and ``logits`` (B, classes of the newest task) from the newest pipeline's FC.

    Example::

        model = MultiHeadReID(ModelConfig(backbone="small"))
        model.add_task(12); model.add_task(10)       # two tasks -> head 0 frozen
        out = model(torch.randn(8, 3, 32, 16))       # feats (2, 8, 256), logits (8, 10)
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.trunk = build_backbone(cfg.backbone, cfg.pretrained, cfg.last_stride, cfg.width, cfg.small_stride,
                                    cfg.stem_relu)
        self.n = self.trunk.out_channels             # n of the seed (2048 for ResNet-50)
        self.heads = nn.ModuleList()

    # ---- tasks -------------------------------------------------------------------------------------
    @property
    def num_tasks(self) -> int:
        return len(self.heads)

    def class_blocks(self) -> list[int]:
        return [h.num_classes for h in self.heads]

    def add_task(self, num_classes: int) -> Pipeline:
        """Freeze every existing pipeline, then append a new trainable one for ``num_classes`` identities."""
        if num_classes < 1:
            raise LReIDError(f"a task needs at least one class, got {num_classes}")
        for head in self.heads:
            head.requires_grad_(False)
            head.eval()
            for p in head.parameters():
                p.grad = None                # drop the previous step's last gradient
        ref = next(self.trunk.parameters())
        head = Pipeline(self.n, num_classes).to(device=ref.device)
        head.train(self.training)
        self.heads.append(head)
        return head

    def frozen(self, t: int) -> bool:
        return t < self.num_tasks - 1

    def train(self, mode: bool = True) -> "MultiHeadReID":
        """Like ``nn.Module.train`` but frozen pipelines always stay in eval mode (BN stats fixed)."""
        super().train(mode)
        for t, head in enumerate(self.heads):
            if self.frozen(t):
                head.eval()
        return self

    # ---- forward -----------------------------------------------------------------------------------
    def _check(self) -> None:
        if not self.heads:
            raise LReIDError("the multi-head model has no task head yet: call add_task(num_classes) first")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        self._check()
        fmap = self.trunk(x)                                             # (B, n, h, w)
        feats = [head.features(fmap) for head in self.heads[:-1]]        # frozen heads: (B, n) each
        last = self.heads[-1](fmap)
        feats.append(last["feat"])
        return {"fmap": fmap, "feats": torch.stack(feats), "logits": last["logits"]}   # feats (T, B, n)

    def head_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled second-block features of every pipeline: (T, B, n)."""
        self._check()
        fmap = self.trunk(x)
        return torch.stack([head.features(fmap) for head in self.heads])
