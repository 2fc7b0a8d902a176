"""The hook interface every method implements; the Trainer calls these and nothing else."""
from __future__ import annotations

import copy

import torch
from torch import nn

from ..config import Config
from ..losses import reid_loss
from ..models.heads import batch_statistics
from ..models.reid import ReIDModel


class Method:
    """A lifelong method: a model plus hooks named after the phases of a domain step.

    ``before_step(step, num_classes)`` grows the classifiers for the new domain; ``loss(x, labels)`` returns
    named loss terms (summed by the Trainer); ``after_step(step)`` runs after training on a domain (e.g. keeps
    a frozen copy of the model as the next step's teacher); ``embed(x)`` gives retrieval features.
    """

    name = "base"
    joint = False                 # True: all seen domains are merged into one training step
    variants: tuple[str, ...] = ()   # extra evaluation variants, reported as extra table rows "name[variant]"

    def __init__(self, cfg: Config, device: torch.device):
        self.cfg, self.device = cfg, device
        self.model = self.build_model().to(device)
        self.old: nn.Module | None = None       # frozen teacher f^o (distillation methods)
        self.extra = nn.ModuleDict()            # method-specific trainable modules (sampler, patch head, ...)
        self.label_space = 0                    # identities of the whole order (the Trainer sets it; 0: unknown)
        self.logged: dict[str, torch.Tensor] = {}   # detached values of the last loss() the Trainer logs, never sums

    def build_model(self) -> nn.Module:
        return ReIDModel(self.cfg.model)

    def modules(self) -> dict[str, nn.Module]:
        """Everything that is trained and checkpointed."""
        return {"model": self.model, "extra": self.extra}

    def parameters(self) -> list[nn.Parameter]:
        return [p for m in self.modules().values() for p in m.parameters() if p.requires_grad]

    def named_parameters(self) -> dict[str, nn.Parameter]:
        """Trainable parameters by a name that is stable across steps (carries optimiser state between steps)."""
        return {f"{k}.{n}": p for k, m in self.modules().items() for n, p in m.named_parameters() if p.requires_grad}

    def optim_groups(self) -> list[dict]:
        """Optimiser parameter groups: ``params``, ``lr``, the ``milestones`` of their step decay (epochs) and
        ``later_lr``, their factor from the second domain step on (``train.lr_factor``)."""
        t = self.cfg.train
        return [{"params": self.parameters(), "lr": t.lr, "milestones": list(t.milestones), "later_lr": t.later_lr}]

    def with_second_optimiser(self, module: nn.Module, lr: float, milestones: list[int],
                              decay: float | None = None) -> list[dict]:
        """The model's group of ``optim_groups`` without ``module``'s parameters, and a group of their own (``lr``,
        ``milestones``, ``decay``; no ``later_lr``): an official code's second optimiser, on its own schedule."""
        own = {id(p) for p in module.parameters()}
        main = Method.optim_groups(self)[0]
        main["params"] = [p for p in main["params"] if id(p) not in own]
        return [main, {"params": list(module.parameters()), "lr": lr, "milestones": list(milestones), "decay": decay}]

    def reid_terms(self, out: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """L_ReID (Eq. 1) of the model's output ``out`` for global ``labels``.

        ``train.ce_classes="current"`` (official code): CE over the current step's class block with local labels;
        ``"seen"``: over every seen class. ``train.label_smoothing`` spreads eps over ``label_space`` identities.
        """
        t = self.cfg.train
        logits = out["logits"]
        if t.ce_classes == "current":
            offset = logits.shape[1] - self.class_blocks()[-1]
            logits, labels = logits[:, offset:], labels - offset
        return reid_loss(logits, out["feat"], labels, t.triplet_margin, t.label_smoothing, self.label_space)

    def teacher(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """f^o(x) without gradients; ``method.teacher_bn="batch"`` (official code) runs the teacher's BN necks on
        the batch's statistics (running statistics untouched), ``"running"`` in eval mode."""
        with torch.no_grad(), batch_statistics(self.old.head, self.cfg.method.teacher_bn == "batch"):
            return self.old(x)

    def old_class_logits(self, logits: torch.Tensor, old_logits: torch.Tensor) -> torch.Tensor:
        """The student logits L_KD compares with the teacher's: all of them (``method.kd_classes="all"``, the
        official code, teacher zero-padded) or the old classes only (``"old"``, Eq. 2)."""
        return logits if self.cfg.method.kd_classes == "all" else logits[..., : old_logits.shape[-1]]

    def train(self, mode: bool = True) -> None:
        for m in self.modules().values():
            m.train(mode)

    def before_step(self, step: int, num_classes: int) -> None:
        self.model.head.grow(num_classes)

    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.reid_terms(self.model(x), labels)

    def consolidate(self, step: int, images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """Runs after training on a domain, before ``after_step``, with that step's training images (uint8,
        (N, 3, H, W), un-augmented) and their global labels. Default: nothing (LSTKC fuses its long- and short-term
        models here; DKP fuses and builds its prototypes)."""

    def after_step(self, step: int) -> None:
        pass

    def start_domain(self, step: int, images: torch.Tensor, labels: torch.Tensor) -> None:
        """After ``before_step`` of a fresh step (not on resume): the step's training images (uint8, N x 3 x H x W)
        and global labels, for a method whose official code initialises from the new domain (DKP's classifier
        rows). Default: nothing."""

    @torch.no_grad()
    def embed(self, x: torch.Tensor, task: int | None = None, variant: str = "") -> torch.Tensor:
        """Retrieval features; ``task`` is the test domain's step index (None for unseen domains)."""
        return self.model.embed(x)

    def freeze_teacher(self) -> None:
        """Keep a frozen eval-mode copy of the current model as f^o."""
        self.old = copy.deepcopy(self.model).eval().requires_grad_(False)

    def state_dict(self) -> dict:
        state = {k: m.state_dict() for k, m in self.modules().items()}
        state["old"] = self.old.state_dict() if self.old is not None else None
        state["old_blocks"] = len(self.old.head.classifier.blocks) if self.old is not None else 0
        state["classes"] = self.class_blocks()
        return state

    def class_blocks(self) -> list[int]:
        return [b.out_features for b in self.model.head.classifier.blocks]

    def load_state_dict(self, state: dict) -> None:
        """Restore from ``state_dict()``: grow the heads to the stored class blocks, then load weights."""
        for step, n in enumerate(state["classes"]):
            if step >= len(self.class_blocks()):
                self.before_step(step, n)
        for k, m in self.modules().items():
            m.load_state_dict(state[k])
        if state.get("old") is not None:
            self.freeze_teacher()
            self.old.head.truncate(state["old_blocks"])   # mid-step: the teacher knows fewer classes
            self.old.load_state_dict(state["old"])
