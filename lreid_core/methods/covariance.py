"""Multi-head covariance (seed 2, Bhargava 2018) as a lifelong ReID method: one pipeline head per domain step,
earlier heads frozen, loss = cross-entropy on the current head + the covariance term (Eqs. 1-2, 4).

Readings of the seed (it is terse; each choice is documented where it is made):

* **P and N** (Sec. 3.4: "We take feature maps that we get from the second convolution block from both the
  pipelines during the second phase"): for each image of the batch we take the output of the second conv block
  of *every* pipeline, the frozen ones included, globally average pooled to (n,). The seed's feature map is
  [batch_size, 2048, 8, 4], yet after "flatten ... followed by the addition of another axis" it has
  [batch_size, 2048, 1]: only a map whose spatial extent was pooled away flattens to 2048 values, so we pool
  (the same pooling the pipeline applies before its FC). P stacks these for the positive target of every
  anchor, N for the negative target: both (T, B, n); ``i`` of Eq. 1 runs over consecutive pipelines
  (``losses.covariance_loss``).
* **Positive/negative targets** (the seed's "mask ... one for positive targets and the other for negative
  targets"): built deterministically from the PK batch by :func:`pk_pairs` (no random draw, so a step is
  reproducible and every image is used exactly once as a positive and once as a negative). Camera ids do not
  reach ``loss()``, so "the same person, taken with a different camera" is relaxed to "another image of the
  same person" (the PK sampler draws an identity's images across its cameras).
* **First domain step** (one pipeline): Eq. 1 has no consecutive pair, so the term is the constant
  lambda^2 beta^2 n^2 B (zero at the seed's beta = 0) and carries no gradient; it is still reported as ``cov``.
* **Gradient path**: the frozen pipelines' weights get no gradient, but the term reaches the trunk through
  them and through the current pipeline's conv blocks (the seed's "restricting gradient flow in the base
  model"); the FC layers are off its path.
* **Scale**: with beta = 0 the term is lambda^2 alpha^2 sum_b (sum_d [(P2-P1) - (N2-N1)]_bd)^2, quadratic in
  alpha and lambda. At the seed's alpha = 1e-9 it is ~1e-15 on the smoke model (it grows with n^2 and the
  feature scale) and its trunk gradient is ~1e-14 of cross-entropy's: the term barely acts, and what is left
  of the method is the architecture, frozen per-task heads over a trunk that keeps training (notebook 04
  shows values and gradients as alpha/lambda vary).
* **Loss** (Eq. 4): cross-entropy on the current head over the current domain's identities + the covariance
  term. No triplet loss (the seed uses none); ``method.cov_triplet > 0`` adds a batch-hard triplet on the
  current head's pooled features (``train.triplet_margin``), the metric-learning term every other method here
  has (notebook 04: without it, and at lr x 0.01 for every head after the first under the global schedule, the
  model learns little on this protocol).
* **Evaluation**: see :meth:`MultiHeadCovariance.embed`.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from ..config import Config, load_config, validate
from ..errors import LReIDError
from ..losses import batch_hard_triplet, covariance_loss
from ..models.multihead import MultiHeadReID
from .registry import register
from .base import Method


def pk_pairs(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positive and negative target index for every anchor of a batch: two (B,) index tensors.

    Identities are taken in order of first appearance (groups); within a group, images in batch order.
    For the anchor at position r of group g (group size k_g):

    * positive = position (r + 1) mod k_g of the same group (the next image of the same person, cyclically;
      the anchor itself if its identity has a single image in the batch);
    * negative = position r mod k_{g+1} of the next group, cyclically over the G groups.

    For the Trainer's PK batches (P ids x K images, grouped by identity) this is simply
    ``pos[b] = group_start + (b - group_start + 1) % K`` and ``neg[b] = (b + K) % (P*K)``. Pure tensor ops:
    no host synchronisation. Needs at least two identities in the batch (checked off-GPU only).

    >>> pk_pairs(torch.tensor([4, 4, 9, 9, 1, 1]))
    (tensor([1, 0, 3, 2, 5, 4]), tensor([2, 3, 4, 5, 0, 1]))
    """
    b = labels.shape[0]
    same = labels[:, None] == labels[None, :]                                   # (B, B)
    earlier = torch.ones(b, b, dtype=torch.bool, device=labels.device).tril(-1)  # j < i
    rank = (same & earlier).sum(1)                                              # (B,) position in its group
    size = same.sum(1)                                                          # (B,) group size
    first = rank == 0
    if labels.device.type != "cuda" and int(first.sum()) < 2:
        raise LReIDError("covariance pairs need at least two identities in a batch (train.p_ids >= 2)")
    group_of_first = torch.cumsum(first.long(), 0) - 1                          # group index at first occurrences
    first_idx = (same & first[None, :]).float().argmax(1)                       # first occurrence of my label
    group = group_of_first[first_idx]                                           # (B,) my group index
    pos = (same & (rank[None, :] == ((rank + 1) % size)[:, None])).float().argmax(1)
    next_group = (group + 1) % first.sum()
    in_next = group[None, :] == next_group[:, None]                             # (B, B) j in my next group
    size_next = (in_next.long() * size[None, :]).amax(1)
    neg = (in_next & (rank[None, :] == (rank % size_next)[:, None])).float().argmax(1)
    return pos, neg


def agnostic_features(feats: torch.Tensor, mode: str = "concat") -> torch.Tensor:
    """Task-agnostic retrieval features from all heads' pooled features ``feats`` (T, B, n):
    ``concat`` -> (B, T*n) (head 0 first), ``mean`` -> (B, n)."""
    if mode == "concat":
        return feats.permute(1, 0, 2).reshape(feats.shape[1], -1)
    if mode == "mean":
        return feats.mean(dim=0)
    raise LReIDError(f"method.cov_eval={mode!r} is not one of concat, mean")


@register("covariance")
class MultiHeadCovariance(Method):
    """Seed 2 on the LReID protocol: shared trunk, one pipeline per domain step, CE + covariance loss.

    ``before_step(step, n)`` freezes the existing pipelines and adds one for the step's ``n`` identities;
    ``loss`` returns ``{"ce", "cov"}``; ``embed`` is task-agnostic by default and task-aware under the
    ``task_aware`` variant.
    """

    variants = ("task_aware",)

    def build_model(self) -> MultiHeadReID:
        return MultiHeadReID(self.cfg.model)

    # ---- domain steps ------------------------------------------------------------------------------
    def class_blocks(self) -> list[int]:
        return self.model.class_blocks()

    def before_step(self, step: int, num_classes: int) -> None:
        """Add step ``step``'s pipeline (freezing the earlier ones). A step whose head already exists (e.g.
        after ``load_state_dict``) is left as it is when its class count matches."""
        blocks = self.class_blocks()
        if step < len(blocks):
            if blocks[step] != num_classes:
                raise LReIDError(f"step {step} already has a head for {blocks[step]} classes, not {num_classes}")
            return
        if step != len(blocks):
            raise LReIDError(f"domain steps must come in order: the model has {len(blocks)} heads, got step {step}")
        self.model.add_task(num_classes)

    @property
    def label_offset(self) -> int:
        """First global label of the current (newest) head: the benchmark numbers domains consecutively."""
        return sum(self.class_blocks()[:-1])

    # ---- loss --------------------------------------------------------------------------------------
    def covariance_term(self, feats: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Eqs. 1-2 on the pooled second-block features ``feats`` (T, B, n) of a batch, pairs from
        :func:`pk_pairs`."""
        m = self.cfg.method
        pos, neg = pk_pairs(labels)
        return covariance_loss(feats[:, pos], feats[:, neg], m.cov_lambda, m.cov_alpha, m.cov_beta)

    def loss(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Eq. 4: cross-entropy of the newest head on the current domain's identities + covariance term.

        ``labels`` are global (offset + local index); the newest head classifies the local index.
        """
        out = self.model(x)
        ce = F.cross_entropy(out["logits"].float(), labels - self.label_offset)
        terms = {"ce": ce, "cov": self.covariance_term(out["feats"], labels)}
        if self.cfg.method.cov_triplet > 0:
            terms["triplet"] = self.cfg.method.cov_triplet * batch_hard_triplet(out["feats"][-1], labels,
                                                                               self.cfg.train.triplet_margin)
        return terms

    # ---- evaluation --------------------------------------------------------------------------------
    @torch.no_grad()
    def embed(self, x: torch.Tensor, task: int | None = None, variant: str = "") -> torch.Tensor:
        """Retrieval features (pooled second-block outputs).

        * ``variant=""`` (task-agnostic, the default row): the test image's domain is unknown, so every head
          is used. ``method.cov_eval="concat"`` (default) concatenates them, (B, T*n): Euclidean distance then
          is the root of the *sum* of the per-head squared distances, an ensemble over the pipelines in which
          each head keeps its own geometry (cf. the seed's Sec. 4.2 "ensembling amongst these two pipelines").
          ``"mean"`` averages them, (B, n); it assumes channel d means the same in every head, which nothing
          but the (tiny at alpha = 1e-9) covariance term encourages, since each head starts from its own
          random init, so it is offered as the alternative, not the default.
        * ``variant="task_aware"``: a seen domain is embedded by its own head ``task`` only, (B, n), as the
          seed evaluates each task with its own pipeline (Sec. 4.3). Unseen domains (``task=None``) have no
          head of their own and get the task-agnostic features.
        """
        if variant not in ("", "task_aware"):
            raise LReIDError(f"unknown evaluation variant {variant!r}; valid: '', task_aware")
        if variant == "task_aware" and task is not None and task < self.model.num_tasks:
            return self.model.heads[task].features(self.model.trunk(x))
        return agnostic_features(self.model.head_features(x), self.cfg.method.cov_eval)

    # ---- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Plain dict: model and extra weights (BN buffers of frozen heads included) and the heads' class
        counts (``classes``), from which ``load_state_dict`` regrows the heads."""
        return {"model": self.model.state_dict(), "extra": self.extra.state_dict(), "old": None,
                "classes": self.class_blocks()}

    def load_state_dict(self, state: dict) -> None:
        """Grow the heads to the stored task sizes (freezing all but the last), then load the weights."""
        classes = [int(n) for n in state["classes"]]
        have = self.class_blocks()
        if have != classes[: len(have)]:
            raise LReIDError(f"checkpoint heads {classes} do not extend this model's heads {have}")
        for step in range(len(have), len(classes)):
            self.before_step(step, classes[step])
        self.model.load_state_dict(state["model"])
        self.extra.load_state_dict(state.get("extra") or {})
        self.model.train(self.model.training)       # re-assert eval mode of the frozen heads


def covariance_gradients(method: MultiHeadCovariance, x: torch.Tensor, labels: torch.Tensor,
                         term: str = "cov") -> dict:
    """One loss term on one batch and the norm of *its* gradient alone (``term``: ``cov`` or ``ce``) per
    parameter group.

    Returns ``{"cov": float, "ce": float, "groups": [{"group", "trainable", "grad_norm"}, ...]}`` with groups
    ``trunk``, ``head{t}.block1``, ``head{t}.block2``, ``head{t}.fc``. Frozen heads have ``trainable=False``
    and no gradient (reported as 0); parameters off the term's path (e.g. the FCs for ``cov``) report 0.
    """
    terms = method.loss(x, labels)
    named = list(method.model.named_parameters())
    params = [p for _, p in named if p.requires_grad]
    grads = [None] * len(params)
    if terms[term].requires_grad:
        grads = list(torch.autograd.grad(terms[term], params, allow_unused=True))
    by_param = dict(zip(map(id, params), grads))
    groups: dict[str, dict] = {}
    for name, p in named:
        parts = name.split(".")
        key = "trunk" if parts[0] == "trunk" else f"head{parts[1]}.{parts[2]}"
        g = groups.setdefault(key, {"group": key, "trainable": p.requires_grad, "sq": 0.0})
        grad = by_param.get(id(p))
        if grad is not None:
            g["sq"] += float(grad.float().pow(2).sum())
    rows = [{"group": g["group"], "trainable": g["trainable"], "grad_norm": g["sq"] ** 0.5} for g in groups.values()]
    return {"cov": terms["cov"].item(), "ce": terms["ce"].item(), "groups": rows}


def acting_alpha(method: MultiHeadCovariance, x: torch.Tensor, labels: torch.Tensor, ratio: float = 1.0) -> float:
    """The ``cov_alpha`` at which the covariance term's trunk gradient is ``ratio`` times cross-entropy's on this
    batch (model after at least two steps). With beta = 0 the gradient is proportional to alpha^2, so one probe at
    the config's alpha gives it: alpha * sqrt(ratio * |grad ce| / |grad cov|), rounded to one significant digit."""
    import math

    trunk = lambda r: next(g["grad_norm"] for g in r["groups"] if g["group"] == "trunk")   # noqa: E731
    cov = trunk(covariance_gradients(method, x, labels, term="cov"))
    ce = trunk(covariance_gradients(method, x, labels, term="ce"))
    if cov == 0:
        raise LReIDError("the covariance term has no trunk gradient here (one head only, or beta != 0?)")
    alpha = method.cfg.method.cov_alpha * math.sqrt(ratio * ce / cov)
    return float(f"{alpha:.0e}")


def seed_two_phase_config(base_cfg: Config | None = None, domain_a: str | None = None,
                          domain_b: str | None = None) -> Config:
    """The seed's experiment (Sec. 3.3-3.5, 4.3) on any two datasets: phase 1 trains trunk + pipeline 1 on
    ``domain_a``, phase 2 freezes pipeline 1 and trains trunk + pipeline 2 on ``domain_b``; SGD with a
    triangular cyclical LR, batch 32 (8 ids x 4 images).

    ``base_cfg`` defaults to the ``demo`` profile, the domains to its first two (synthetic) domains; pass real
    dataset names with a ``base_cfg`` whose ``data.root`` holds them. The CLR bounds are the config's
    (1e-3 / 6e-3, the common defaults of the triangular policy, which the seed says it kept); the half cycle is
    4 epochs' iterations (Smith 2017 suggests 2-10), capped by the config's value (2000) and by half a phase, so
    that short profiles still complete at least one whole triangle. The input is a copy; the result is
    validated.

    Example::

        cfg = seed_two_phase_config(load_config(profile_name="smoke"))
        Trainer(cfg, "covariance", build_benchmark(cfg)).fit()
    """
    cfg = copy.deepcopy(base_cfg) if base_cfg is not None else load_config(profile_name="demo")
    defaults = cfg.data.order
    a = domain_a or (defaults[0] if defaults else None)
    b = domain_b or (defaults[1] if len(defaults) > 1 else None)
    if not a or not b or a == b:
        raise LReIDError(f"the two-phase experiment needs two different domains, got {a!r} and {b!r}")
    cfg.data.order = [a, b]
    cfg.method.name = "covariance"
    t = cfg.train
    t.optimizer = "sgd_clr"
    t.p_ids, t.k_imgs = 8, 4
    total = t.epochs * t.iters_per_epoch                      # iterations per phase
    t.clr_step_size = max(1, min(t.clr_step_size, 4 * t.iters_per_epoch, total // 2))
    cfg.data.ids_per_domain = max(cfg.data.ids_per_domain, t.p_ids)
    validate(cfg)
    return cfg
