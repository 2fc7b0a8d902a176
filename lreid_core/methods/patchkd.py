"""PatchKD (Sun et al., ACM MM 2022): LwF's base model plus a learned patch sampler, patch logit distillation
and patch relation distillation (Sec. 4.2-4.4):

    L = L_base + L_sel + gamma2 * L_PLD + gamma3 * L_PRD                      (Eq. 14)
    L_base = L_ReID + gamma0 * L_KD (Eq. 3),  L_sel = L_conf + gamma1 * L_div (Eq. 10)

``loss()`` returns every term as its own named, already weighted entry: ``ce``, ``triplet`` (L_ReID),
``kd`` (gamma0 L_KD), ``conf`` (L_conf), ``div`` (gamma1 L_div), ``pld`` (gamma2 L_PLD), ``prd`` (gamma3 L_PRD).
In the first domain step there is no old model: the loss is L_ReID alone (as for LwF), the sampler and the
patch classifier receive no gradient and stay at their initialisation.

Gradient routing (our reading of Fig. 2, where only L_conf and L_div point at the sampler):

* The sampler scores the **new** model's feature map **detached** (Eq. 4): the sampler never trains psi.
* One set of masks M per step (Eq. 5) is shared by the old and the new feature map (Eq. 6).
* L_sel (L_conf on phi^o(p^o), L_div on p) is computed from feature maps detached from both backbones and
  the *live* straight-through masks: its gradient reaches the scorer only (phi^o is frozen).
* L_PLD (phi^o(p^o) vs phi_p(p), Eq. 11) and L_PRD (Eqs. 12-13) use the masks *detached*: they train the
  backbone and phi_p but never move the sampler.
* The old model f^o is frozen (no parameter takes a gradient); it runs once per step (its logits serve L_KD,
  its feature map the patches) and the new model runs once per step.
* The sampler and phi_p are training-only: ``embed`` is the base model's and never touches them (Remarks,
  Sec. 4.4). Both persist across domain steps (the paper does not reset them); phi_p grows one class block
  per step like phi, and L_PLD reads its old-class logits only.

All patch losses are computed in fp32 (autocast off) from features that may be bf16 on the GPU.

Switches (``cfg.method``), paper form by default:

===========================  ====================================  ===========================================
switch                       paper reference                       effect / official-code difference
===========================  ====================================  ===========================================
``k`` (3)                    K, Sec. 4.2 / Fig. 6a                 patches per image = sampler branches;
                                                                   ``k=1``: a single patch per image
``single_branch`` (False)    Table 3 "w/o multi-branch", Fig. 3a   one score map, K cells drawn without
                                                                   replacement (Gumbel top-k)
``gamma1`` / ``use_div``     Eqs. 9-10, Table 3 "w/o L_div"        weight of L_div / drop L_div
``use_conf``                 Eq. 8, Table 3 "w/o L_conf"           drop L_conf
``gamma2``                   Eq. 11, 14                            weight of L_PLD
``gamma3``                   Eqs. 12-14 (Fig. 8 uses gamma3 = 0)   weight of L_PRD
``shared_classifier``        Table 4 row "phi"                     phi_p = phi (patches go through the image
                                                                   head, its BN statistics included)
``relation="fc"``            Table 4 row "FC"                      one relation set over all B*K patches
``random_patches``           sanity baseline (not in the paper)    uniform random cells, no sampler, no L_sel
``scorer_hidden`` (0 = 2C)   Sec. 5.2 "4096 hidden units"          scorer width
``huber_delta`` (1)          Eq. 13 l_delta                        Huber threshold
``relation_norm``            Eq. 13 (``set_size``)                 official code: ``mean_distance``, each
                                                                   distance set divided by its mean (RKD)
``conf_as_kd``               Eq. 8 (off)                           official code: L_conf as KD of the old
                                                                   patch logits with themselves, i.e.
                                                                   tau^2 * H(softmax(phi^o(p^o) / tau))
``div_on_bn``                Eq. 9 (off)                           official code: L_div on BN-normalised
                                                                   patch features (batch statistics and the
                                                                   affine of the patch head's BN neck, both
                                                                   without gradient)
``kd_tau2``                  Eqs. 2, 11 (off)                      official code: L_KD and L_PLD times tau^2
===========================  ====================================  ===========================================
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import (confidence_loss, diversity_loss, kd_loss, patch_logit_distill, patch_relation_loss,
                      reid_loss)
from ..models.heads import BNNeckHead
from ..models.patch import PatchSampler, pool_patches, random_masks
from . import register
from .lwf import LwF


@register("patchkd")
class PatchKD(LwF):
    """LwF + differentiable patch sampler + patch logit / relation distillation (see the module docstring)."""

    # ---- modules -----------------------------------------------------------------------------------
    @property
    def sampler(self) -> PatchSampler | None:
        """The learned sampler (None with ``random_patches``, or before the first ``before_step``)."""
        return self.extra["sampler"] if "sampler" in self.extra else None

    @property
    def patch_head(self) -> BNNeckHead:
        """phi_p, or the image head phi with ``shared_classifier``."""
        return self.model.head if self.cfg.method.shared_classifier else self.extra["patch_head"]

    def build_extra(self) -> None:
        """Create the sampler and phi_p (once) with the backbone's feature channels."""
        m, c = self.cfg.method, self.model.feat_dim
        if not m.random_patches and "sampler" not in self.extra:
            branches = 1 if m.single_branch else m.k
            self.extra["sampler"] = PatchSampler(c, m.k, m.scorer_hidden, branches).to(self.device)
        if not m.shared_classifier and "patch_head" not in self.extra:
            self.extra["patch_head"] = BNNeckHead(c).to(self.device)

    def before_step(self, step: int, num_classes: int) -> None:
        super().before_step(step, num_classes)               # grows phi
        self.model.head.classifier.to(self.device)           # GrowingClassifier puts a first block on the CPU
        self.build_extra()
        if not self.cfg.method.shared_classifier:
            self.extra["patch_head"].classifier.grow(num_classes)
            self.extra["patch_head"].to(self.device)

    # ---- patches -----------------------------------------------------------------------------------
    def select(self, fmap: torch.Tensor, gumbel: bool = True, tau: float = 1.0,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(scores (B, R, h*w) or None, masks (B, K, h*w)) for the new model's feature map (B, C, h, w).

        The scorer sees ``fmap`` detached. With ``random_patches`` there are no scores and the masks are
        uniformly random.
        """
        b, _, h, w = fmap.shape
        if self.sampler is None:
            return None, random_masks(b, self.cfg.method.k, h * w, fmap.device, generator)
        scores = self.sampler(fmap.detach())                  # (B, R, h*w)
        return scores, self.sampler.sample(scores, hard=True, tau=tau, gumbel=gumbel, generator=generator)

    def patch_terms(self, fmap: torch.Tensor, old_fmap: torch.Tensor, masks: torch.Tensor | None = None,
                    generator: torch.Generator | None = None
                    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """L_sel, L_PLD and L_PRD terms for the new/old feature maps (B, C, h, w), plus the parts used.

        ``masks`` (B, K, h*w) overrides the sampler (for visualisation and tests). Returns ``(terms, parts)``;
        ``parts`` holds ``scores``, ``masks`` (live), ``patches`` / ``old_patches`` (B, K, C, detached) and
        ``old_patch_logits`` (B, K, old classes, detached).
        """
        m = self.cfg.method
        scores = None
        if masks is None:
            scores, masks = self.select(fmap, generator=generator)
        b, k = masks.shape[:2]
        head, old_head = self.patch_head, self.old.head
        # the same masks M pick p^o and p (Eq. 6); features detached, masks live: this graph reaches the sampler only
        old_live = pool_patches(old_fmap.detach(), masks)                       # (B, K, C)
        old_logits = old_head(old_live.flatten(0, 1))[1].view(b, k, -1)        # phi^o(p^o), (B, K, old classes)
        hard = masks.detach()
        patches = pool_patches(fmap, hard)                                      # p, (B, K, C): trains psi only
        logits = head(patches.flatten(0, 1))[1].view(b, k, -1)                  # phi_p(p), (B, K, classes)
        terms: dict[str, torch.Tensor] = {}
        with torch.autocast(fmap.device.type, enabled=False):
            if scores is not None:                                              # L_sel (Eq. 10)
                if m.use_conf:
                    if m.conf_as_kd:
                        terms["conf"] = confidence_loss(old_logits.float() / m.tau) * m.tau ** 2
                    else:
                        terms["conf"] = confidence_loss(old_logits)
                if m.use_div:
                    new_live = pool_patches(fmap.detach(), masks)               # (B, K, C), grad -> masks only
                    if m.div_on_bn:
                        neck = head.neck
                        new_live = F.batch_norm(new_live.flatten(0, 1).float(), None, None, neck.weight.detach(),
                                                neck.bias.detach(), training=True, eps=neck.eps).view(b, k, -1)
                    terms["div"] = m.gamma1 * diversity_loss(new_live)
            old_patches, target = old_live.detach(), old_logits.detach()
            terms["pld"] = m.gamma2 * patch_logit_distill(logits, target, m.tau, m.kd_tau2)     # Eq. 11
            terms["prd"] = m.gamma3 * patch_relation_loss(patches, old_patches, m.huber_delta,   # Eqs. 12-13
                                                          m.relation_norm, m.relation)
        parts = {"scores": scores, "masks": masks, "patches": patches.detach(), "old_patches": old_patches,
                 "old_patch_logits": target}
        return terms, parts

    # ---- hooks -------------------------------------------------------------------------------------
    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model(x)                                                     # one pass of f
        terms = reid_loss(out["logits"], out["feat"], labels, self.cfg.train.triplet_margin)
        if self.old is None:                                                    # first step: L_ReID only
            return terms
        with torch.no_grad():
            old = self.old(x)                                                   # one pass of f^o
        m = self.cfg.method
        terms["kd"] = m.gamma0 * kd_loss(out["logits"][:, : old["logits"].shape[1]], old["logits"], m.tau, m.kd_tau2)
        terms.update(self.patch_terms(out["fmap"], old["fmap"])[0])
        return terms

    @torch.no_grad()
    def inspect(self, x: torch.Tensor, gumbel: bool = False, tau: float = 1.0,
                generator: torch.Generator | None = None, teacher: nn.Module | None = None,
                masks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Everything the notebooks draw, without gradients and without touching BN statistics.

        Runs the model (and the teacher: ``teacher`` or ``self.old``, when there is one) in eval mode on
        ``x`` and returns ``fmap`` (B, C, h, w), ``scores`` (B, R, h*w) or None, ``probs`` (softmax of the
        scores), ``masks`` (B, K, h*w) and ``patches`` (B, K, C); with a teacher also ``old_patches`` and the
        unweighted ``loss_prd`` (L_PRD of these patches).
        """
        modes = [(mod, mod.training) for mod in (self.model, self.extra)]
        for mod, _ in modes:
            mod.train(False)
        try:
            fmap = self.model(x)["fmap"]
            scores, sampled = self.select(fmap, gumbel=gumbel, tau=tau, generator=generator)
            masks = sampled if masks is None else masks.to(fmap.device)
            res = {"fmap": fmap, "scores": scores, "masks": masks, "patches": pool_patches(fmap, masks),
                   "probs": None if scores is None else F.softmax(scores.float() / tau, dim=-1)}
            teacher = teacher if teacher is not None else self.old
            if teacher is not None:
                m = self.cfg.method
                res["old_patches"] = pool_patches(teacher(x)["fmap"], masks)
                res["loss_prd"] = patch_relation_loss(res["patches"], res["old_patches"], m.huber_delta,
                                                      m.relation_norm, m.relation)
        finally:
            for mod, mode in modes:
                mod.train(mode)
        return res

    # ---- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = super().state_dict()
        if "patch_head" in self.extra:
            state["patch_classes"] = [blk.out_features for blk in self.extra["patch_head"].classifier.blocks]
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore from ``state_dict()``: grow phi and phi_p to their stored class blocks (creating the sampler),
        load the weights, and rebuild the teacher with its own number of class blocks (a state saved inside a
        step has a teacher with fewer classes than the model)."""
        if state["classes"]:
            self.build_extra()
        for step, n in enumerate(state["classes"]):
            if step >= len(self.class_blocks()):
                super(LwF, self).before_step(step, n)             # phi only (Method.before_step)
        self.model.head.classifier.to(self.device)
        if "patch_head" in self.extra:
            grown = self.extra["patch_head"].classifier
            for n in state.get("patch_classes", [])[len(grown.blocks):]:
                grown.grow(n)
            grown.to(self.device)
        for key, module in self.modules().items():
            module.load_state_dict(state[key])
        self.old = None
        if state.get("old") is not None:
            self.freeze_teacher()
            blocks = self.old.head.classifier.blocks
            stored = sum(1 for k in state["old"] if k.startswith("head.classifier.blocks."))
            del blocks[stored:]
            self.old.load_state_dict(state["old"])
