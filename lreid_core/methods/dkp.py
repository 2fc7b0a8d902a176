"""DKP, distribution-aware knowledge prototyping (Xu, Zou, Peng, Zhou, CVPR 2024), as its official code trains it
(zhoujiahuan1991/CVPR2024-DKP: ``continual_train.py``, ``reid/trainer.py``, ``reid/models/resnet_uncertainty.py``,
``reid/loss/loss_uncertrainty.py``, ``reid/utils/feature_tools.py``), on this project's backbone and heads:

    L = L_ce-d + w_tri L_tri-d  [+ w_proto L_proto-d from the second step on]         (Fig. 2; trainer.py 69-103)

No exemplar and no old model is used in training: the old domain lives on as one Gaussian per identity.

* IDM, instance-level distribution modelling (Fig. 2b): ``models.dkp.DistributionHead`` gives every image a centre
  c_i (L2-normalised) and a standard deviation v_i from the backbone's feature map (``self.extra["idm"]``); n feature
  candidates c_i + v_i * eps, L2-normalised, are drawn beside c_i (``models.dkp.sample_candidates``).
* ``ce``, L_ce-d: the shared head's CE over the centre and all candidates, averaged (``distribution_ce``).
* ``triplet``, L_tri-d: the set triplet, candidates as anchors against the batch's centres (``set_triplet_loss``).
* ``proto``, L_proto-d, PKT (Fig. 2c): one pseudo-feature drawn per stored prototype; the batch's centre affinity
  is pulled towards its affinity seen through the prototypes (``prototype_transfer_loss``).
* DPG, prototype generation (Fig. 2d, Eqs. 4-5): after a step, every identity's mean of c_i and the std of the
  mixture of its images' Gaussians (``identity_prototypes``), kept in ``self.prototypes`` (plain tensors in
  ``state_dict``) from the step's images the Trainer passes to ``consolidate``.
* What the code does beyond the figure: after every step but the first the trained model is averaged with the
  previous step's (``consolidate``, before the step's evaluation; ``linear_combination`` with 0.5), and a new
  step's class rows start at the L2-normalised class centres of its images (``initial_classifier``).

Retrieval uses c_i (``dkp_embed="centre"``; the code's eval output ``out_mean``), Euclidean as every method here.

Switches (default: the official code; the paper's own text was not readable from this session's sources, so the
"paper" column is what Fig. 2 and the summary in DKC (CVPR 2025, Eq. 1: L_ce-d + L_trip-d + L_proto-d) show):

=============================  ================================  =========================================  =======
switch                         paper (Fig. 2 / DKC's summary)     official code                              default
=============================  ================================  =========================================  =======
``dkp_triplet_weight``         1 (unweighted sum)                1.5 (``loss_tp * 1.5``)                    code
``dkp_proto_weight``           1 (unweighted sum)                0.1 (``--AF_weight``)                      code
``dkp_proto_keep``             P_{t-1} of step t-1 (Fig. 2c)     ``last``: only the previous step's         code
                                                                 identities (``stages=1``)
``dkp_fusion``                 not shown                         0.5: average with the previous step's      code
                                                                 model after each step > 1 (1 = off)
``dkp_classifier_init``        not shown                         ``centres`` from the second step on        code
``dkp_proto_bn``               not shown                         ``batch``: prototypes extracted in train   code
                                                                 mode (BN on batch statistics of 128 images;
                                                                 the code also updates the running ones,
                                                                 which nothing reads before the next step's
                                                                 classifier initialisation; here untouched)
``dkp_embed``                  not shown                         ``centre`` c_i (before the BN neck)        code
=============================  ================================  =========================================  =======

Where the shared protocol differs from DKP's own recipe (``docs/dkp.md``): the backbone (the code cuts ResNet-50
after layer3, 1024 channels, and projects them to 2048; here the shared backbone's last map is projected to its own
width), one BN neck + one classifier (here ``model.neck``), CE without label smoothing over every seen class (here
``train.label_smoothing``, ``train.ce_classes``), SGD (here Adam), all of which the recipe sets.
"""
from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ..catalog import feature_grid
from ..config import Config
from ..data.augment import normalize
from ..losses import smoothed_cross_entropy
from ..models.dkp import DistributionHead, sample_candidates
from ..models.heads import batch_statistics
from .base import Method
from .lstkc import fuse_models
from .registry import register


# ---- terms -------------------------------------------------------------------------------------------------------
def distribution_ce(logits: torch.Tensor, labels: torch.Tensor, eps: float = 0.0,
                    smooth_classes: int = 0) -> torch.Tensor:
    """L_ce-d (Fig. 2b): the CE of the centre and of every candidate, averaged over the 1 + n of them
    (``trainer.py`` 72-74). ``logits`` (B, 1 + n, classes), ``labels`` (B,) in the logits' class space."""
    b, s, k = logits.shape
    return smoothed_cross_entropy(logits.reshape(b * s, k), labels.repeat_interleave(s), eps, smooth_classes)


def set_triplet_loss(candidates: torch.Tensor, labels: torch.Tensor, margin: float = 0.0) -> torch.Tensor:
    """L_tri-d (Fig. 2b; the code's ``TripletLoss_set``): every sampled candidate f_i^(j) (B * n anchors) against the
    batch's centres c: the farthest centre of its identity and the nearest of another, Euclidean;
    mean softplus(d_ap - d_an) (``margin`` 0, the code's soft margin) or mean relu(d_ap - d_an + margin).
    ``candidates`` (B, 1 + n, D) with the centre first."""
    centres, samples = candidates[:, 0].float(), candidates[:, 1:].float()
    b, n, _ = samples.shape
    dist = torch.cdist(samples.reshape(b * n, -1), centres)                  # (B * n, B)
    same = labels.repeat_interleave(n)[:, None] == labels[None, :]
    d_ap = dist.masked_fill(~same, float("-inf")).amax(dim=1)
    d_an = dist.masked_fill(same, float("inf")).amin(dim=1)
    return F.relu(d_ap - d_an + margin).mean() if margin > 0 else F.softplus(d_ap - d_an).mean()


def affinity(x: torch.Tensor, temperature: float) -> torch.Tensor:
    """Row-softmax of the cosine similarities of the rows of ``x`` over ``temperature`` (the code's
    ``get_normal_affinity``): (N, C) -> (N, N)."""
    unit = F.normalize(x.float(), dim=1)
    return F.softmax(unit @ unit.t() / temperature, dim=1)


def prototype_transfer_loss(centres: torch.Tensor, proto_mean: torch.Tensor, proto_std: torch.Tensor,
                            lambda1: float = 0.1, lambda2: float = 0.1) -> torch.Tensor:
    """L_proto-d (PKT, Fig. 2c; ``trainer.py`` 87-103): one pseudo-feature g_k = normalise(mu_k + sigma_k * eps) per
    prototype; the batch's relation to them s_i = softmax(cos(c_i, g) / lambda1); KL(A_old || A_new) over the batch
    (``KLDivLoss(reduction="batchmean")``) with A_new = affinity(c, lambda2) and A_old = affinity(s, lambda2).
    Neither side is detached (as in the code): both reach the centres."""
    noise = torch.randn(proto_mean.shape, device=proto_mean.device, dtype=torch.float32)
    pseudo = F.normalize(noise * proto_std.float() + proto_mean.float(), dim=1)          # (N, D)
    relation = F.softmax(F.normalize(centres.float(), dim=1) @ pseudo.t() / lambda1, dim=1)  # (B, N)
    new, old = affinity(centres, lambda2), affinity(relation, lambda2)
    return F.kl_div(new.log(), old, reduction="batchmean")


def identity_prototypes(centres: torch.Tensor, stds: torch.Tensor, labels: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPG (Fig. 2d, Eqs. 4-5; the code's ``extract_features_uncertain``): per identity k (sorted), the mean mu_k of
    its images' centres and the std of the mixture of their Gaussians N(c_i, v_i^2):
    sigma_k^2 = mean_i v_i^2 + mean_i c_i^2 - mu_k^2. Returns (ids (K,), mu (K, D), sigma (K, D))."""
    ids, inverse, counts = labels.unique(sorted=True, return_inverse=True, return_counts=True)
    n = counts[:, None].to(centres.dtype)

    def per_id(values: torch.Tensor) -> torch.Tensor:
        return values.new_zeros(len(ids), values.shape[1]).index_add_(0, inverse, values) / n

    mean = per_id(centres)
    var = per_id(stds * stds) + per_id(centres * centres) - mean * mean
    return ids, mean, var.clamp_min(0).sqrt()


@contextlib.contextmanager
def modes(*modules: torch.nn.Module, training: bool) -> Iterator[None]:
    """Every module in ``training`` mode inside the block; their own modes restored after it."""
    saved = [(m, m.training) for mod in modules for m in mod.modules()]
    for mod in modules:
        mod.train(training)
    try:
        yield
    finally:
        for m, mode in saved:
            m.training = mode


# ---- the method --------------------------------------------------------------------------------------------------
@register("dkp")
class DKP(Method):
    """IDM + DPG + PKT over the shared Trainer (see the module docstring)."""

    def __init__(self, cfg: Config, device: torch.device):
        super().__init__(cfg, device)
        self.prototypes = self.empty_store()                 # DPG's store: mean, std, labels, steps
        self.old_extra: torch.nn.ModuleDict | None = None    # the previous step's IDM head (fused with the model)

    def empty_store(self) -> dict[str, torch.Tensor]:
        dim = self.model.feat_dim
        return {"mean": torch.zeros(0, dim, device=self.device), "std": torch.zeros(0, dim, device=self.device),
                "labels": torch.zeros(0, dtype=torch.long, device=self.device),
                "steps": torch.zeros(0, dtype=torch.long, device=self.device)}

    @property
    def idm(self) -> DistributionHead:
        return self.extra["idm"]

    def before_step(self, step: int, num_classes: int) -> None:
        super().before_step(step, num_classes)
        if "idm" not in self.extra:
            m, d, mc = self.cfg.method, self.cfg.data, self.cfg.model
            gh, gw = feature_grid(mc.backbone, d.height, d.width, mc.last_stride, mc.small_stride)
            kernel = (min(m.dkp_var_kernel, gh), min(m.dkp_var_kernel, gw))
            c = self.model.feat_dim
            self.extra["idm"] = DistributionHead(c, c, kernel, m.dkp_gem_p).to(self.device)

    def distribution(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``centre`` and ``std`` (B, D), ``candidates`` (B, 1 + n, D) and their ``logits`` (B, 1 + n, classes)."""
        centre, std = (v.float() for v in self.idm(self.model.backbone(x)))     # fp32 under autocast too
        candidates = sample_candidates(centre, std, self.cfg.method.dkp_samples)
        b, s, d = candidates.shape
        logits = self.model.head(candidates.reshape(b * s, d))[1].view(b, s, -1)
        return {"centre": centre, "std": std, "candidates": candidates, "logits": logits}

    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        m, t = self.cfg.method, self.cfg.train
        out = self.distribution(x)
        logits, target = out["logits"], labels
        if t.ce_classes == "current":
            offset = logits.shape[-1] - self.class_blocks()[-1]
            logits, target = logits[..., offset:], labels - offset
        with torch.autocast(x.device.type, enabled=False):                     # every term in fp32
            terms = {"ce": distribution_ce(logits, target, t.label_smoothing, self.label_space),
                     "triplet": m.dkp_triplet_weight * set_triplet_loss(out["candidates"], labels,
                                                                        m.dkp_triplet_margin)}
            if len(self.prototypes["mean"]):
                terms["proto"] = m.dkp_proto_weight * prototype_transfer_loss(
                    out["centre"], self.prototypes["mean"], self.prototypes["std"], m.dkp_lambda1, m.dkp_lambda2)
        return terms

    # ---- domain passes -----------------------------------------------------------------------------------------
    @torch.no_grad()
    def domain_statistics(self, images: torch.Tensor, batch_statistics_bn: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """c_i and v_i (N, D) of uint8 images, in batches of ``dkp_proto_batch``, without gradients; the backbone's
        BNs on each batch's statistics (running statistics untouched) or, with ``batch_statistics_bn`` False, eval."""
        size = self.cfg.method.dkp_proto_batch
        centres, stds = [], []
        with modes(self.model, self.extra, training=False), batch_statistics(self.model.backbone, batch_statistics_bn):
            for start in range(0, len(images), size):
                x = normalize(images[start:start + size].to(self.device))
                centre, std = self.idm(self.model.backbone(x))
                centres.append(centre.float())
                stds.append(std.float())
        return torch.cat(centres), torch.cat(stds)

    def start_domain(self, step: int, images: torch.Tensor, labels: torch.Tensor) -> None:
        """The code's ``initial_classifier`` (from the second step on, ``dkp_classifier_init="centres"``): the new
        class block's rows = the L2-normalised mean centre c_i of each class's images, the model in eval mode."""
        if step == 0 or self.cfg.method.dkp_classifier_init != "centres":
            return
        centres, _ = self.domain_statistics(images, batch_statistics_bn=False)
        ids, mean, _ = identity_prototypes(centres, torch.zeros_like(centres), labels.to(self.device))
        block = self.model.head.classifier.blocks[-1]
        offset = self.model.head.classifier.num_classes - block.out_features
        with torch.no_grad():
            block.weight[ids - offset] = F.normalize(mean, dim=1).to(block.weight)

    def consolidate(self, step: int, images: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        """From the second step on, the trained model and IDM head are averaged with the previous step's
        (``dkp_fusion``; the code's ``linear_combination``, here ``lstkc.fuse_models``); then DPG builds this step's
        prototypes with the fused model (``dkp_proto_bn``), replacing the store (``dkp_proto_keep="last"``) or added
        to it (``"all"``)."""
        alpha = self.cfg.method.dkp_fusion
        if self.old is not None and alpha < 1:
            fuse_models(self.model, self.old, alpha)
            fuse_models(self.extra, self.old_extra, alpha)
        centres, stds = self.domain_statistics(images, self.cfg.method.dkp_proto_bn == "batch")
        ids, mean, std = identity_prototypes(centres, stds, labels.to(self.device))
        new = {"mean": mean, "std": std, "labels": ids, "steps": torch.full_like(ids, step)}
        if self.cfg.method.dkp_proto_keep == "all":
            new = {k: torch.cat([self.prototypes[k], v]) for k, v in new.items()}
        self.prototypes = new

    def after_step(self, step: int) -> None:
        """The (fused) model and IDM head, frozen: the next step's fusion partner (no teacher: DKP distils from none
        of them)."""
        self.freeze_teacher()

    def freeze_teacher(self) -> None:
        super().freeze_teacher()
        self.old_extra = copy.deepcopy(self.extra).eval().requires_grad_(False)

    @torch.no_grad()
    def embed(self, x: torch.Tensor, task: int | None = None, variant: str = "") -> torch.Tensor:
        """c_i (``dkp_embed="centre"``, the code's ``out_mean``) or its BN neck (``"bn"``)."""
        centre, _ = self.idm(self.model.backbone(x))
        return centre if self.cfg.method.dkp_embed == "centre" else self.model.head.neck(centre)

    # ---- checkpoints -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = super().state_dict()
        state["prototypes"] = {k: v.detach().clone() for k, v in self.prototypes.items()}
        state["old_extra"] = self.old_extra.state_dict() if self.old_extra is not None else None
        return state

    def load_state_dict(self, state: dict) -> None:
        self.old_extra = None
        super().load_state_dict(state)                       # freeze_teacher() copies the IDM head with f^o
        self.prototypes = {k: state["prototypes"][k].to(self.device) for k in ("mean", "std", "labels", "steps")}
        if self.old_extra is not None:
            self.old_extra.load_state_dict(state["old_extra"])
