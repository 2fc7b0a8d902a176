"""PatchKD (Sun et al., ACM MM 2022): LwF's base model plus a learned patch sampler, patch logit distillation
and patch relation distillation (Sec. 4.2-4.4):

    L = L_base + L_sel + gamma2 * L_PLD + gamma3 * L_PRD                      (Eq. 14)
    L_base = L_ReID + gamma0 * L_KD (Eq. 3),  L_sel = L_conf + gamma1 * L_div (Eq. 10)

``loss()`` returns every term as its own named, already weighted entry: ``ce``, ``triplet`` (L_ReID),
``kd`` (gamma0 L_KD), ``conf`` (L_conf), ``div`` (gamma1 L_div), ``pld`` (gamma2 L_PLD), ``prd`` (gamma3 L_PRD).
In the first domain step there is no old model: the loss is L_ReID alone (as for LwF), the sampler and the
patch classifier receive no gradient and stay at their initialisation.

Defaults are the official code (feifeiobama/PatchKD, which produced Table 2; DESIGN 4); ``form: text`` in the
config turns every row marked "text" below to the paper's literal form at once (``config.TEXT_FORM``).

Gradient routing, ``method.routing="code"`` (default; ``"fig2"`` in brackets, our reading of Fig. 2 where only
L_conf and L_div point at the sampler):

* The sampler scores the **new** model's feature map **detached** (Eq. 4): the sampler never trains psi.
* One set of masks M per step (Eq. 5) is shared by the old and the new feature map (Eq. 6).
* L_conf: phi^o on p^o pooled with the *live* masks from the detached old map: reaches the scorer only.
* L_div: p pooled from the *live* feature map with the *live* masks, through the patch head's latest BN neck
  in eval mode: reaches the scorer, the backbone and that neck's weight [fig2: detached map -> scorer only].
* L_PLD: phi_p(p) with p pooled through *detached* masks: trains the backbone and phi_p, never the sampler.
* L_PRD: the student side pools through detached masks, the teacher side p^o through the *live* masks, so
  L_PRD trains the backbone and the sampler [fig2: both sides detached -> backbone only].
* The old model f^o is frozen: backbone in eval mode, its BN necks on batch statistics with their running
  statistics untouched (``method.teacher_bn="batch"``; the code's ``set_bn_to_train`` also updates them, which
  nothing reads) for both its image and its patch logits; it runs once per iteration, as does the new model.
* The sampler and phi_p are training-only: ``embed`` is the base model's and never touches them (Remarks,
  Sec. 4.4). Both persist across domain steps; phi_p grows one class block (and, per step, one BN neck) per
  step like phi. The sampler has its own Adam group with its own milestones (the code's ``patchnet``).

All patch losses are computed in fp32 (autocast off) from features that may be bf16 on the GPU.

Where the paper's text and the official code differ (every switch below; the default is the code's form):

==============================  ===============================  ====================================  ========
switch                          paper text                       official code                         default
==============================  ===============================  ====================================  ========
``method.relation_distance``    d(.,.) unspecified, cites RKD    each distance set divided by its      code
                                [42] (``raw``: Euclidean)        mean, student and teacher apart       (rkd)
``method.relation_reduction``   Eq. 13: sum / |S| per set        smooth-L1 mean over the full (B,K,K)  code
                                (``set``)                        and (K,B,B) tensors, zero diagonals   (full)
                                                                 included (intra weighted (K-1)/K)
``method.kd_tau2``              Eqs. 2, 11: no tau^2             L_KD and L_PLD times tau^2            code
``method.conf_as_kd``           Eq. 8: H(softmax(z))             tau^2 H(softmax(z / tau))             code
``method.kd_classes``           Eq. 2: old classes (``old``)     every seen class, the teacher's       code
                                                                 softmax zero-padded (``all``)         (all)
``method.teacher_bn``           f^o frozen (``running``)         teacher's BN necks on batch stats     code
``method.div_on_bn``            Eq. 9 on p                       on p through phi_p's current BN       code
                                                                 neck in eval mode
``method.div_offdiag``          Eq. 9: 1/K^2 sum over all r, s   mean over r != s                      code
``method.routing``              Fig. 2 (``fig2``)                see above (``code``)                  code
``train.lr_schedule``           per step (``per_step``)          one Adam for the whole order,         code
                                                                 milestones on the global epoch        (global)
                                                                 step*epochs+epoch: steps > 1 train
                                                                 at lr x 0.01
``train.milestone_lag``         decay at the milestone (0)       MultiStepLR.step(epoch) at epoch end: code (1)
                                                                 decay one epoch later
``train.label_smoothing``       Eq. 1: plain CE (0)              eps 0.1 spread over the order's ids   code
``train.ce_classes``            Eq. 1 over the classifier        the current step's classes, local     code
                                (``seen``)                       labels (``current``)
``model.neck``                  one classifier (``shared``)      BN + FC per step, retrieval on the    code
                                                                 latest step's BN (``per_step``)
``model.stem_relu``             ResNet-50 (torchvision: conv1,   conv1, bn1, max-pool ("no relu";      code
                                bn1, ReLU, max-pool; ``True``)   resnet50/18; the small CPU net keeps  (False)
                                                                 its ReLU)
``data.id_sampling``            "randomly sample 500 ids"        the first 500 ids in sorted order     code
                                (``random``)                     (``first``)
``data.unseen_eval``            average over the unseen sets     all unseen sets merged into one       code
                                (``per_domain``)                 benchmark (``merged``); the demo and
                                                                 smoke profiles report each set
==============================  ===============================  ====================================  ========

Where the paper is silent and the code decides (no text form): the sampler's own Adam (``method.sampler_lr``,
0 = ``train.lr``) with milestones 75/85 on the global epoch (``method.sampler_milestones``); the scorer's
Gumbel-softmax at temperature 1; L_conf weight 1; the scorer's first layer with a bias (``PatchSampler``);
fp16 autocast with loss scaling on a GPU (``train.amp=fp16``; ``bf16`` / ``off`` on request).
Logged only (never trained): ``kd_ce`` and ``pld_ce``, the code's ``loss_fn_kd`` values of L_KD and L_PLD
(cross-entropy against the teacher's softmax = the KL + the teacher's entropy; ``losses.kd_cross_entropy``).

Ablations of Tables 3/4 and other switches (``cfg.method``):

===========================  ====================================  ===========================================
switch                       paper reference                       effect
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
``huber_delta`` (1)          Eq. 13 l_delta                        Huber threshold (the code's smooth-L1: 1)
===========================  ====================================  ===========================================
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import confidence_loss, diversity_loss, patch_logit_distill, patch_relation_loss
from ..models.heads import BNNeckHead, batch_statistics
from ..models.patch import PatchSampler, pool_patches, random_masks
from .registry import register
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
            self.extra["patch_head"] = BNNeckHead(c, per_step=self.cfg.model.neck == "per_step").to(self.device)

    def before_step(self, step: int, num_classes: int) -> None:
        super().before_step(step, num_classes)               # grows phi
        self.build_extra()
        if not self.cfg.method.shared_classifier:
            self.extra["patch_head"].grow(num_classes)

    def optim_groups(self) -> list[dict]:
        """The model and phi_p (the code's ``tasknet`` optimiser) and the sampler (its ``patchnet`` optimiser)."""
        if self.sampler is None:
            return super().optim_groups()
        m = self.cfg.method
        return self.with_second_optimiser(self.sampler, m.sampler_lr or self.cfg.train.lr, m.sampler_milestones)

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

    def old_patch_logits(self, old_patches: torch.Tensor) -> torch.Tensor:
        """phi^o(p^o) for (B, K, C) patches -> (B, K, old classes), BN necks as ``method.teacher_bn`` says."""
        b, k = old_patches.shape[:2]
        with batch_statistics(self.old.head, self.cfg.method.teacher_bn == "batch"):
            return self.old.head(old_patches.flatten(0, 1))[1].view(b, k, -1)

    def diversity_input(self, fmap: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """The (B, K, C) patches L_div compares (Eq. 9): live masks; with ``routing="code"`` the live feature map,
        with ``div_on_bn`` through phi_p's latest BN neck in eval mode (running statistics, live weight)."""
        m = self.cfg.method
        code = m.routing == "code"
        live = pool_patches(fmap if code else fmap.detach(), masks)
        if not m.div_on_bn:
            return live
        neck = self.patch_head.neck
        weight, bias = (neck.weight, neck.bias) if code else (neck.weight.detach(), neck.bias.detach())
        b, k = live.shape[:2]
        return F.batch_norm(live.flatten(0, 1).float(), neck.running_mean, neck.running_var, weight, bias,
                            training=False, eps=neck.eps).view(b, k, -1)

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
        old_live = pool_patches(old_fmap.detach(), masks)                       # p^o with live masks (Eq. 6)
        old_logits = self.old_patch_logits(old_live)                            # phi^o(p^o)
        patches = pool_patches(fmap, masks.detach())                            # p: trains psi, never the sampler
        logits = self.patch_head(patches.flatten(0, 1))[1].view(b, k, -1)      # phi_p(p), (B, K, classes)
        terms: dict[str, torch.Tensor] = {}
        with torch.autocast(fmap.device.type, enabled=False):
            if scores is not None:                                              # L_sel (Eq. 10)
                if m.use_conf:
                    if m.conf_as_kd:
                        terms["conf"] = confidence_loss(old_logits.float() / m.tau) * m.tau ** 2
                    else:
                        terms["conf"] = confidence_loss(old_logits)
                if m.use_div:
                    terms["div"] = m.gamma1 * diversity_loss(self.diversity_input(fmap, masks), m.div_offdiag)
            target = old_logits.detach()
            terms["pld"] = m.gamma2 * patch_logit_distill(self.old_class_logits(logits, target), target, m.tau,
                                                          m.kd_tau2)                          # Eq. 11
            teacher_side = old_live if m.routing == "code" else old_live.detach()
            terms["prd"] = m.gamma3 * patch_relation_loss(patches, teacher_side, m.huber_delta,   # Eqs. 12-13
                                                          m.relation_distance, m.relation_reduction, m.relation)
        parts = {"scores": scores, "masks": masks, "patches": patches.detach(), "old_patches": old_live.detach(),
                 "old_patch_logits": target}
        return terms, parts

    # ---- hooks -------------------------------------------------------------------------------------
    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.model(x)                                                     # one pass of f
        terms = self.reid_terms(out, labels)
        self.logged = {}
        if self.old is None:                                                    # first step: L_ReID only
            return terms
        m = self.cfg.method
        old = self.teacher(x)                                                   # one pass of f^o
        terms["kd"] = m.gamma0 * self.distill(out["logits"], old["logits"])
        patch, parts = self.patch_terms(out["fmap"], old["fmap"])
        terms.update(patch)
        self.logged = {"kd_ce": self.code_kd_value(terms["kd"], old["logits"], m.gamma0),       # logged only
                       "pld_ce": self.code_kd_value(terms["pld"], parts["old_patch_logits"], m.gamma2)}
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
                                                      m.relation_distance, m.relation_reduction, m.relation)
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
        if "patch_head" in self.extra:
            head = self.extra["patch_head"]
            for n in state.get("patch_classes", [])[len(head.classifier.blocks):]:
                head.grow(n)
        for key, module in self.modules().items():
            module.load_state_dict(state[key])
        self.old = None
        if state.get("old") is not None:
            self.freeze_teacher()
            self.old.head.truncate(state["old_blocks"])
            self.old.load_state_dict(state["old"])
