"""AKA, adaptive knowledge accumulation (Pu et al., CVPR 2021), as its public code trains it (TPCD/LifelongReID:
``lreid/operation/train_p_s.py::train_p_s_an_epoch`` with the model, losses and optimisers of
``lreid/core/base_metagraph_p_s.py`` and the graph of ``lreid/models/metagraph_fd.py``), on this project's backbone,
BN-neck heads and ReID cross-entropy (the code's own are the same ResNet-50 without stem ReLU and per-step
BN + FC classifiers with label smoothing over every identity of the order):

    L = L_CE + w_t L_plasticity(f + G(f))  [+ gamma0 L_KD + w_r L_stability from the second step on]

``loss()`` returns the weighted terms ``ce``, ``plasticity``, ``kd``, ``stability``:

* ``ce``: the CE of ``Method.reid_terms`` (``ide_criterion``, the current step's logits, label smoothing 0.1).
* ``plasticity``: ``losses.plasticity_loss`` on the fused features f + G(f), where f are the pooled backbone features
  and G the knowledge graph (``models.metagraph.MetaGraph``) fed with f **detached**: the loss trains the backbone
  through f and the graph through its prototypes. It replaces L_ReID's plain triplet (the code has no other
  triplet term); weight ``method.aka_plasticity`` (weight_t = 1), margin ``train.triplet_margin`` (t_margin 0.3).
* ``kd``: L_KD of LwF (``loss_fn_kd``: every seen class with the teacher zero-padded, times tau^2, kd_T = 2,
  weight_kd = 1: ``method.tau``, ``gamma0``, ``kd_classes``, ``kd_tau2`` as for LwF and PatchKD). The code's
  cross-entropy value is logged as ``kd_ce`` (never summed).
* ``stability``: ``losses.stability_loss`` between the graph's vertices and the previous step's
  (``MetaGraph_fd.StabilityLoss``), weight ``method.aka_stability`` (weight_r = 5e-4). It trains the vertices only.

The graph is training-only: retrieval uses the base model's BN-neck features (the code tests with
``if_test_metagraph=False``). It has its own Adam group (the code's ``metagraph`` optimiser): lr ``method.aka_lr``
(0 = ``train.lr``; code 3.5e-4), weight decay ``train.weight_decay``, x ``method.aka_decay`` (0.5) at the
global epochs ``method.aka_milestones`` (50, 100, 150, 200 of the paper's 250). The backbone's optimiser, schedule
and batch are the shared protocol's (``train.*``), as for every method of Table 2.

Switches where the code's behaviour differs from what its names and the text describe (default: the code's form;
``form: text`` sets the text's):

=========================  ========================================  ==========================================
switch                     text                                      official code (default)
=========================  ========================================  ==========================================
``method.aka_teacher``     a frozen old model (``frozen``: eval      ``copy_model_and_frozen`` returns the copy in
                           mode)                                     train mode: every BN of the teacher on batch
                                                                     statistics (``train``; running statistics
                                                                     here left untouched, never read there)
``method.kd_tau2``         shared with LwF / PatchKD                 tau^2 (``loss_fn_kd``)
``method.kd_classes``      shared with LwF / PatchKD                 every seen class, teacher zero-padded
=========================  ========================================  ==========================================

Sources: the paper's own text was not readable from this session's sources, so the table rests on the code and
on the names it gives; every hyperparameter above is the code's default (``train_test.py``).
"""
from __future__ import annotations

import torch

from ..losses import plasticity_loss, stability_loss
from ..models.heads import batch_statistics
from ..models.metagraph import MetaGraph
from .registry import register
from .lwf import LwF


@register("aka")
class AKA(LwF):
    """LwF's distillation plus a knowledge graph whose prototypes join the features in a plasticity triplet and
    whose vertices are held by a stability loss (see the module docstring)."""

    @property
    def graph(self) -> MetaGraph:
        return self.extra["graph"]

    def before_step(self, step: int, num_classes: int) -> None:
        super().before_step(step, num_classes)
        if "graph" not in self.extra:
            m = self.cfg.method
            self.extra["graph"] = MetaGraph(self.model.feat_dim, m.aka_vertices, m.aka_sigma,
                                            m.aka_dropout).to(self.device)

    def optim_groups(self) -> list[dict]:
        """The model (the code's ``tasknet`` optimiser) and the graph (its ``metagraph`` optimiser)."""
        m = self.cfg.method
        return self.with_second_optimiser(self.graph, m.aka_lr or self.cfg.train.lr, m.aka_milestones, m.aka_decay)

    def teacher(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """f^o(x) without gradients: ``method.aka_teacher="train"`` every BN on batch statistics (running statistics
        untouched), ``"frozen"`` in eval mode."""
        if self.cfg.method.aka_teacher == "frozen":
            with torch.no_grad():
                return self.old(x)
        with torch.no_grad(), batch_statistics(self.old):
            return self.old(x)

    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        m = self.cfg.method
        out = self.model(x)
        terms = {"ce": self.reid_terms(out, labels)["ce"]}
        fused = out["feat"] + self.graph(out["feat"].detach())                  # f + G(f)
        terms["plasticity"] = m.aka_plasticity * plasticity_loss(fused, labels, self.cfg.train.triplet_margin)
        self.logged = {}
        if self.old is not None:
            old_logits = self.teacher(x)["logits"]
            terms["kd"] = m.gamma0 * self.distill(out["logits"], old_logits)
            terms["stability"] = m.aka_stability * stability_loss(self.graph.vertices, self.graph.old_vertices)
            self.logged = {"kd_ce": self.code_kd_value(terms["kd"], old_logits, m.gamma0)}
        return terms

    def after_step(self, step: int) -> None:
        super().after_step(step)                    # the teacher f^o
        self.graph.remember()                       # V^o
