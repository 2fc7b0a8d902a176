"""Typed configuration: one dataclass per concern, three profiles (smoke/demo/paper), YAML load and overrides.

A run's config is fully resolved before anything is written, and it is stored in the run directory so a
checkpoint always carries the settings that produced it.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .catalog import (DEFAULT_DOMAINS, DEFAULT_UNSEEN, DEMO_ORDER, METHODS, ORDERS, SYNTH_VARIANTS, UNSEEN_REAL,
                      feature_grid, resolve_order)
from .errors import LReIDError
from .io import load_yaml, read_text
from .recipes import check_recipe_name, recipe_updates

__all__ = ["ORDERS", "UNSEEN_REAL", "Config", "load_config", "profile", "validate"]
PROFILES = ("smoke", "demo", "paper")
SEED_LIMIT = 2 ** 53        # train.seed * 1000 + step seeds a torch generator, which takes at most 2^63
MAX_INPUT_SIDE = 1024       # data.height / data.width: the paper's 256x128 times 4 (the image cache is N x 3 x H x W)
MAX_MODEL_WIDTH = 256       # model.width: the small backbone's last stage then has 2048 channels, as ResNet-50's


@dataclass
class DataConfig:
    root: str = ""                      # folder holding the datasets ("" -> the synthetic benchmark cache)
    order: list[str] = field(default_factory=list)   # seen domains in training order
    unseen: list[str] = field(default_factory=list)  # generalisation test sets
    ids_per_domain: int = 500           # training identities sampled per seen domain (LReID protocol)
    id_sampling: str = "first"          # first (official code: the first ids in sorted order) | random (text)
    unseen_eval: str = "merged"         # merged (official code's allgeneralizable: one benchmark of all unseen
                                        # sets, Unseen-Avg = its score) | per_domain (each set, then their mean)
    height: int = 256                   # model input height
    width: int = 128                    # model input width
    synthetic: bool = False             # make the synthetic benchmark under root when missing
    synth_train_ids: int = 100          # synthetic: training identities per domain
    synth_test_ids: int = 60            # synthetic: test identities per domain
    synth_images_per_id: int = 12       # synthetic: images per training identity
    synth_seed: int = 0                 # synthetic: generator seed
    synth_variant: str = "premise"      # synthetic: premise (domains differ by image-level factors) | conflict
    cache_device: str = "auto"          # where the uint8 image cache lives: auto (= model device), cpu, cuda


@dataclass
class ModelConfig:
    backbone: str = "resnet50"          # resnet50 | resnet18 | small (CPU profiles)
    pretrained: str = ""                # local path to ImageNet weights ("" -> random init, warned once); small
                                        # backbone: "synthetic" (shipped, from lreid pretrain) or a file it wrote
    last_stride: int = 1                # last-stage stride (1 as in the strong ReID baseline)
    width: int = 16                     # small backbone only: stage widths w, 2w, 4w, 8w
    small_stride: int = 8               # small backbone only: stride before the last stage, 8 or 4 (one fewer
                                        # downsampling: a 16x8 map at 64x32 input with last_stride 1)
    neck: str = "per_step"              # per_step (official code: BN neck + FC per step) | shared (one neck)
    stem_relu: bool = False             # resnet50/18 only: False (official code: conv1, bn1, max-pool, "no relu")
                                        # | True (the standard torchvision stem with its ReLU, the text's ResNet-50)


@dataclass
class TrainConfig:
    epochs: int = 50
    iters_per_epoch: int = 150          # 0: the step's training images // (P x K), as LSTKC/DKP (per_step clock)
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    milestones: list[int] = field(default_factory=lambda: [25, 35])  # epochs where lr *= lr_decay
    lr_decay: float = 0.1
    lr_schedule: str = "global"         # global (official code: milestones on step * epochs + epoch, one
                                        # optimiser for the whole order) | per_step (fresh schedule and optimiser)
    later_lr: float = 1.0               # lr factor of every step after the first (on top of the milestones; the
                                        # regime study's axis; PatchKD's sampler keeps its own schedule)
    milestone_lag: int = 1              # first decayed epoch = milestone + lag (1: the code's MultiStepLR.step(epoch)
                                        # at each epoch's end; 0: the text's "decays at the 25th epoch")
    optimizer: str = "adam"             # adam | sgd (momentum, no nesterov: LSTKC/DKP) | sgd_clr (triangular
                                        # cyclical LR, seed 2)
    momentum: float = 0.9               # sgd: momentum (LSTKC/DKP continual_train.py --momentum 0.9)
    warmup_epochs: int = 0              # linear warm-up over the clock's first epochs (0: none); per_step: every step
    warmup_factor: float = 0.01         # lr factor at epoch 0 of the warm-up, rising linearly to 1 at warmup_epochs
                                        # (WarmupMultiStepLR "linear", stepped per epoch as the LSTKC/DKP codes do)
    first_epochs: int = 0               # epochs of the first domain step (0: train.epochs, as every later step)
    clr_base_lr: float = 1e-3           # sgd_clr: lower bound of the triangle
    clr_max_lr: float = 6e-3            # sgd_clr: upper bound of the triangle
    clr_step_size: int = 2000           # sgd_clr: iterations per half cycle
    batch_size: int = 0                 # 0: P x K; otherwise P is derived as batch_size / K (must divide)
    p_ids: int = 32                     # identities per batch (P)
    k_imgs: int = 4                     # images per identity (K)
    triplet_margin: float = 0.3
    label_smoothing: float = 0.1        # official code: CrossEntropyLabelSmooth, eps spread over the order's ids
    ce_classes: str = "current"         # current (official code: the step's own classes, local labels) | seen
    amp: str = "fp16"                   # CUDA autocast (ignored on CPU): fp16 (official code: fp16 + loss scaling,
                                        # torch.amp.GradScaler) | bf16 (no scaler) | off
    channels_last: bool = True          # channels_last memory format (CUDA and CPU)
    compile: bool = False               # torch.compile the model (CUDA only)
    device: str = "auto"                # auto | cpu | cuda | cuda:N
    seed: int = 0
    deterministic: bool = False         # torch deterministic algorithms (exact CPU reproducibility)
    eval_batch: int = 256
    ckpt_every: int = 500               # iterations between resume checkpoints (0: only at each step's end)
    joint_epochs_factor: float = 1.0    # joint: epochs x number of domains x this (paper: 250 = 5 x 50)
    sync_bn: bool = False               # torchrun: BatchNorm statistics over the global batch (default per rank)
    dist_timeout: float = 300.0         # torchrun: seconds a collective may wait for the other ranks


@dataclass
class MethodConfig:
    name: str = "lwf"
    tau: float = 2.0                    # distillation temperature (Eq. 2)
    gamma0: float = 1.0                 # weight of L_KD (Eq. 3)
    kd_tau2: bool = True                # official code: KD and L_PLD times tau^2 (Eqs. 2, 11 have no tau^2)
    kd_classes: str = "all"             # all (official code: every seen class, teacher zero-padded) | old
    teacher_bn: str = "batch"           # batch (official code: the teacher's BN necks on batch statistics,
                                        # running statistics untouched) | running (eval mode)
    # PatchKD (Sec. 4.2-4.4)
    k: int = 3                          # patches per image = sampler branches
    gamma1: float = 0.5                 # weight of L_div in L_sel (Eq. 10)
    gamma2: float = 0.1                 # weight of L_PLD (Eq. 14)
    gamma3: float = 100.0               # weight of L_PRD (Eq. 14)
    scorer_hidden: int = 0              # scorer hidden channels (0 -> 2C)
    use_conf: bool = True               # ablation: w/o L_conf
    use_div: bool = True                # ablation: w/o L_div
    shared_classifier: bool = False     # ablation: phi_p = phi
    relation: str = "distance"          # distance (Eq. 12-13) | fc (all relations at once)
    random_patches: bool = False        # sanity baseline: uniform random patch locations, no learned sampler
    single_branch: bool = False         # ablation "w/o multi-branch" (Table 3): one score map sampled K times
    relation_distance: str = "rkd"      # rkd (official code: each distance set divided by its mean) | raw
    relation_reduction: str = "full"    # full (official code: mean over whole distance tensors) | set (Eq. 13)
    conf_as_kd: bool = True             # official code: L_conf = tau^2 H(softmax(z / tau)) | Eq. 8's H(softmax(z))
    div_on_bn: bool = True              # official code: L_div on the patch head's BN neck output (eval mode)
    div_offdiag: bool = True            # official code: mean over r != s | Eq. 9's 1/K^2 sum over all r, s
    routing: str = "code"               # code (L_PRD's teacher side and L_div reach the sampler / backbone)
                                        # | fig2 (our reading of Fig. 2: L_sel -> sampler only)
    sampler_lr: float = 0.0             # the sampler's own Adam (official code); 0 -> train.lr
    sampler_milestones: list[int] = field(default_factory=lambda: [75, 85])   # global epochs (official code)
    huber_delta: float = 1.0
    # multi-head covariance (seed 2)
    cov_lambda: float = 1.0
    cov_alpha: float = 1e-9
    cov_beta: float = 0.0
    cov_eval: str = "concat"            # task-agnostic features: concat | mean ; task_aware handled in eval
    cov_triplet: float = 0.0            # weight of a batch-hard triplet on the current head's features (seed: none)
    # SPD baseline
    spd_weight: float = 3000.0
    # AKA (Pu et al., CVPR 2021), defaults of its code TPCD/LifelongReID (train_test.py)
    aka_vertices: int = 64              # knowledge-graph vertices (meta_graph_vertex_num)
    aka_sigma: float = 2.0              # batch-to-vertex edge width (sigma)
    aka_dropout: float = 0.6            # dropout on the graph convolution's input
    aka_plasticity: float = 1.0         # weight of the plasticity loss (weight_t; margin train.triplet_margin)
    aka_stability: float = 5e-4         # weight of the stability loss (weight_r)
    aka_lr: float = 0.0                 # the graph's own Adam (new_module_learning_rate 3.5e-4); 0 -> train.lr
    aka_milestones: list[int] = field(default_factory=lambda: [50, 100, 150, 200])   # global epochs (code)
    aka_decay: float = 0.5              # the graph's lr factor at each milestone (new_module_gamma)
    aka_teacher: str = "train"          # train (code: the old model's copy is left in train mode, every BN on
                                        # batch statistics) | frozen (eval mode, the frozen old model of the text)
    # CRL (Zhao et al., WACV 2021), no public code: see methods/crl.py
    crl_k: int = 10                     # neighbourhood: the teacher's top-K old classes per image
    crl_beta: float = 0.1               # consistency relaxation: margin beta * H(teacher over the neighbourhood)
    crl_weight: float = 1.0             # weight of the relaxed neighbourhood distillation (lambda)
    # LSTKC (Xu et al., AAAI 2024), defaults of its code zhoujiahuan1991/AAAI2024-LSTKC: see methods/lstkc.py
    lstkc_weight: float = 1.0           # weight of the rectified affinity KL (continual_train.py --AF_weight 1.0)
    lstkc_tau: float = 0.1              # its affinity temperature: softmax(cos / 0.1) (Trainer.get_normal_affinity)
    lstkc_rectify: bool = True          # R-STKT's rectification (Trainer.cal_KL) | False: plain old affinity target
    lstkc_target_grad: bool = True      # code: the rectified target keeps the new affinity's gradient (cal_KL does
                                        # not detach it) | False: a fixed (detached) target
    lstkc_consolidate: bool = True      # E-LTKC's parameter fusion after each step (continual_train.linear_combination)
    lstkc_fusion_tau: float = 0.01      # affinity temperature of the fusion weight: softmax(cos * 100)
                                        # (continual_train.get_normal_affinity, Norm=100)
    # DKP (Xu et al., CVPR 2024), defaults of its code zhoujiahuan1991/CVPR2024-DKP: see methods/dkp.py
    dkp_samples: int = 6                # feature candidates drawn per image (--n_sampling 6, continual_train.py)
    dkp_triplet_weight: float = 1.5     # weight of the set triplet L_tri-d (reid/trainer.py: loss_tp * 1.5)
    dkp_triplet_margin: float = 0.0     # 0: soft margin (code: TripletLoss_set(margin=None) -> SoftMarginLoss)
    dkp_proto_weight: float = 0.1       # weight of L_proto-d (--AF_weight 0.1)
    dkp_lambda1: float = 0.1            # temperature of the centre-to-prototype relation (--lambda_1 0.1)
    dkp_lambda2: float = 0.1            # temperature of both affinity matrices (--lambda_2 0.1)
    dkp_fusion: float = 0.5             # weight of the new model when it is averaged with the previous step's
                                        # after every step but the first (code: linear_combination(.., 0.5)); 1: none
    dkp_classifier_init: str = "centres"    # centres (code: a step's new class rows = its L2-normalised class
                                            # centres, from the second step on) | random (the shared head's init)
    dkp_proto_keep: str = "last"        # last (code: only the previous step's prototypes, stages=1) | all steps'
    dkp_proto_bn: str = "batch"         # batch (code: prototypes extracted in train mode, BN on batch statistics)
                                        # | running (eval mode)
    dkp_proto_batch: int = 128          # images per prototype-extraction batch (code: init_loader batch_size 128)
    dkp_embed: str = "centre"           # centre (code: retrieval on the L2-normalised centre c_i) | bn (its BN neck)
    dkp_var_kernel: int = 8             # variance branch's conv kernel (code: pool_len 8), cut to the feature map
    dkp_gem_p: float = 3.0              # GeM power of both branches (code: GeneralizedMeanPoolingP(3))


@dataclass
class Config:
    profile: str = "paper"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    out_dir: str = "runs"
    form: str = "code"                  # code (what produced Table 2) | text (every TEXT_FORM switch literal)
    recipe: str = ""                    # a paper's own training recipe applied over the profile (lreid_core/recipes;
                                        # "": the shared protocol), recorded here once applied

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The paper's literal text for every switch where the official code differs (DESIGN 4); ``form: text`` applies
# them all at once, before the config file and the overrides (so an explicit key still wins).
TEXT_FORM: dict[str, Any] = {
    "data.id_sampling": "random",
    "data.unseen_eval": "per_domain",
    "model.neck": "shared",
    "model.stem_relu": True,
    "train.lr_schedule": "per_step",
    "train.milestone_lag": 0,
    "train.label_smoothing": 0.0,
    "train.ce_classes": "seen",
    "method.kd_tau2": False,
    "method.kd_classes": "old",
    "method.teacher_bn": "running",
    "method.conf_as_kd": False,
    "method.div_on_bn": False,
    "method.div_offdiag": False,
    "method.relation_reduction": "set",
    "method.routing": "fig2",
    "method.aka_teacher": "frozen",
}


def _short(value: Any) -> str:
    """``repr(value)``, cut to 80 characters for one-line errors."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def default_cache_root() -> Path:
    """Where the synthetic benchmark lives unless data.root says otherwise ($LREID_CACHE overrides)."""
    return Path(os.environ.get("LREID_CACHE", Path.home() / ".cache" / "lreid")) / "synthetic"


def profile(name: str) -> Config:
    """The three built-in profiles (DESIGN 6): smoke (tests/CI), demo (CPU <= 10 min), paper (GPU)."""
    if name == "paper":
        return Config(profile="paper", data=DataConfig(order=list(ORDERS["order1"]), unseen=list(UNSEEN_REAL)))
    if name == "demo":
        return Config(
            profile="demo",
            # the synthetic profiles report each unseen domain (a benchmark-design choice, not the paper's recipe)
            data=DataConfig(order=list(DEMO_ORDER), unseen=list(DEFAULT_UNSEEN), height=64, width=32,
                            unseen_eval="per_domain",
                            synthetic=True, ids_per_domain=500, synth_test_ids=100),
            model=ModelConfig(backbone="small", last_stride=1, small_stride=4, pretrained="synthetic"),
            # one late decay on the global clock (the paper decays at global epochs 26 and 36): every step trains at
            # lr, only the order's last two epochs (and joint's) at lr x 0.1. 120 iterations a step are too few for
            # a new class block to learn at a decayed rate (CE 4.23 -> 4.07 over a step at lr x 0.1, ln 100 = 4.6;
            # 4.15 -> 2.66 at lr); the final decay steadies the end point (README, demo benchmark)
            train=TrainConfig(epochs=6, iters_per_epoch=20, milestones=[27], lr=1e-3, p_ids=8, k_imgs=4,
                              eval_batch=64),
            # the second optimisers' global-epoch milestones at the paper's fractions of the order (75, 85 and
            # 50, 100, 150, 200 of 250 epochs) of the demo's 30
            method=MethodConfig(sampler_milestones=[9, 10], aka_milestones=[6, 12, 18, 24]),
        )
    if name == "smoke":
        return Config(
            profile="smoke",
            data=DataConfig(order=list(DEFAULT_DOMAINS[:2]), unseen=list(DEFAULT_UNSEEN[:1]), height=32, width=16,
                            unseen_eval="per_domain",
                            synthetic=True, synth_train_ids=12, synth_test_ids=8, synth_images_per_id=6),
            model=ModelConfig(backbone="small", last_stride=1),
            train=TrainConfig(epochs=2, iters_per_epoch=4, milestones=[1], lr=1e-3, p_ids=4, k_imgs=4,
                              eval_batch=256),
            method=MethodConfig(sampler_milestones=[3], aka_milestones=[2]),
        )
    raise LReIDError(f"unknown profile {_short(name)}; valid profiles: {', '.join(PROFILES)}")


def _merge(obj: Any, updates: dict[str, Any], prefix: str) -> None:
    """Set dataclass fields from a nested dict, rejecting unknown keys and wrong types."""
    names = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in updates.items():
        path = f"{prefix}{key}"
        if key not in names:
            raise LReIDError(f"unknown config key {path!r}; valid keys here: {', '.join(sorted(names))}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise LReIDError(f"config key {path!r} must be a mapping, got {value!r}")
            _merge(current, value, path + ".")
        else:
            setattr(obj, key, _coerce(path, current, value, _item_type(names[key])))


def _item_type(f: dataclasses.Field) -> Any:
    """A prototype value of a ``list[...]`` field's items (``0`` for ``list[int]``), else None."""
    match = re.fullmatch(r"list\[(int|float|str)\]", str(f.type))
    return {"int": 0, "float": 0.0, "str": ""}[match.group(1)] if match else None


def _coerce(path: str, current: Any, value: Any, item: Any = None) -> Any:
    """Convert a YAML/CLI value to the type of the field's default (list items to ``item``'s type); one-line
    error when impossible."""
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
    elif isinstance(current, (int, float)) and not isinstance(value, bool):
        if isinstance(current, int) and isinstance(value, int):
            return value                     # exact, however large (validation names the limits)
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            number = None
        if number is not None:
            if isinstance(current, int):
                if number.is_integer():
                    return int(number)
            else:
                return number
    elif isinstance(current, list):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if isinstance(value, list):
            return [_coerce(f"{path}[{i}]", item, v) if item is not None else v for i, v in enumerate(value)]
    elif isinstance(current, str):
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise LReIDError(f"config key {path!r} expects {type(current).__name__}, got {_short(value)}")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn ``["train.lr=1e-3", "method.k=2"]`` into a nested dict (values parsed as YAML scalars)."""
    nested: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise LReIDError(f"override {item!r} must look like section.key=value")
        key, raw = item.split("=", 1)
        node = nested
        parts = key.strip().split(".")
        for i, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise LReIDError(f"override {item!r}: {'.'.join(parts[:i + 1])} is already set to a value, "
                                 f"not a section")
        node[parts[-1]] = load_yaml(raw, f"override {key.strip()!r}") if raw else ""
    return nested


def with_method(cfg: Config, name: str) -> Config:
    """A copy of ``cfg`` for method ``name`` (as ``lreid demo`` stores each method's config)."""
    cfg = copy.deepcopy(cfg)
    cfg.method.name = name
    return cfg


def load_config(path: str | Path | None = None, profile_name: str | None = None,
                overrides: dict[str, Any] | None = None) -> Config:
    """Resolve a config: profile defaults <- recipe (``recipe`` of the overrides or the file) <- ``form: text``
    <- YAML file <- overrides; then validate."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise LReIDError(f"config file not found: {path}")
        data = load_yaml(read_text(path, "config file"), f"config file {path}") or {}
        if not isinstance(data, dict):
            raise LReIDError(f"config file {path} must hold a mapping at top level")
    data, overrides = _upgrade_amp(data), _upgrade_amp(copy.deepcopy(overrides or {}))
    name = profile_name or data.pop("profile", None) or "paper"
    data.pop("profile", None)
    cfg = profile(str(name))
    recipe = (overrides or {}).get("recipe", data.get("recipe", ""))
    if recipe:
        apply_recipe(cfg, recipe)
    form = (overrides or {}).get("form", data.get("form", cfg.form))
    if form == "text":
        _merge(cfg, parse_overrides([f"{k}={v}" for k, v in TEXT_FORM.items()]), "")
    _merge(cfg, data, "")
    if overrides:
        _merge(cfg, overrides, "")
    validate(cfg)
    return cfg


def apply_recipe(cfg: Config, name: str) -> None:
    """Set recipe ``name`` on ``cfg`` (as written in the paper profile, scaled to the budget of any other: see
    ``lreid_core.recipes``) and record its name in ``cfg.recipe``; one line naming the recipe otherwise."""
    if not isinstance(name, str):
        raise LReIDError(f"recipe must be a name, got {_short(name)}")
    t = cfg.train
    milestones = {f.name: list(getattr(cfg.method, f.name)) for f in dataclasses.fields(cfg.method)
                  if f.name.endswith("_milestones")}
    updates = recipe_updates(name, cfg.profile != "paper", t.epochs, t.iters_per_epoch, milestones)
    try:
        _merge(cfg, updates, "")
    except LReIDError as exc:
        raise LReIDError(f"recipe {name}: {exc}") from None
    cfg.recipe = name


def _upgrade_amp(data: dict[str, Any]) -> dict[str, Any]:
    """``train.amp`` as the bool it once was (true: autocast on CUDA) -> true: the default, false: ``off``."""
    train = data.get("train")
    if isinstance(train, dict) and isinstance(train.get("amp"), bool):
        train["amp"] = TrainConfig.amp if train["amp"] else "off"
    return data


def upgrade_stored(data: dict[str, Any]) -> dict[str, Any]:
    """A stored config dict in today's keys, meaning what it meant when it was written (a copy).

    ``train.amp`` was a bool (true: bf16 autocast on CUDA): true -> today's default, false -> ``off``. A stored
    ``model`` section of a torchvision ResNet without ``stem_relu`` predates the switch and had the stem ReLU:
    ``stem_relu: true`` (the small backbone ignores the switch: left at the default).
    """
    data = _upgrade_amp(copy.deepcopy(data))
    model = data.get("model")
    if isinstance(model, dict) and "stem_relu" not in model and model.get("backbone", "resnet50") != "small":
        model["stem_relu"] = True
    return data


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a Config stored in a run directory or checkpoint (older keys upgraded, ``upgrade_stored``)."""
    data = upgrade_stored(data)
    cfg = profile(data.pop("profile", "paper"))
    _merge(cfg, data, "")
    return cfg


def validate(cfg: Config) -> None:
    """Reject values that would fail later or silently mean nothing (one line each)."""
    t, m, d = cfg.train, cfg.method, cfg.data
    if cfg.profile not in PROFILES:
        raise LReIDError(f"profile={_short(cfg.profile)} is not one of {', '.join(PROFILES)}")
    if m.name not in METHODS:
        raise LReIDError(f"unknown method {m.name!r}; valid methods: {', '.join(METHODS)}")
    if not d.order:
        raise LReIDError("data.order is empty: give at least one seen domain")
    for name in ("epochs", "p_ids", "k_imgs", "eval_batch"):
        if getattr(t, name) <= 0:
            raise LReIDError(f"train.{name} must be positive, got {getattr(t, name)}")
    if t.iters_per_epoch == 0 and (t.lr_schedule != "per_step" or t.optimizer == "sgd_clr"):
        raise LReIDError("train.iters_per_epoch=0 (epochs as long as the data) needs train.lr_schedule=per_step "
                         "and an optimizer other than sgd_clr")
    for name in ("iters_per_epoch", "first_epochs", "warmup_epochs"):
        if getattr(t, name) < 0:
            raise LReIDError(f"train.{name} must be >= 0, got {getattr(t, name)}")
    if not (0 < t.warmup_factor <= 1 and 0 <= t.momentum < 1):
        raise LReIDError(f"train.warmup_factor must be in (0, 1] and train.momentum in [0, 1), got "
                         f"{t.warmup_factor}, {t.momentum}")
    check_recipe_name(cfg.recipe)
    if t.batch_size:
        if t.batch_size < 0 or t.batch_size % t.k_imgs:
            raise LReIDError(f"train.batch_size={t.batch_size} cannot be split into P x K with K=train.k_imgs={t.k_imgs}")
        t.p_ids, t.batch_size = t.batch_size // t.k_imgs, 0
    if t.p_ids < 2:
        raise LReIDError(f"train.p_ids must be >= 2 for the triplet loss, got {t.p_ids}")
    if not (t.lr > 0 and math.isfinite(t.lr)):
        raise LReIDError(f"train.lr must be a positive number, got {t.lr}")
    if not (t.dist_timeout > 0 and math.isfinite(t.dist_timeout)):
        raise LReIDError(f"train.dist_timeout must be a positive number of seconds, got {t.dist_timeout}")
    if m.k < 1:
        raise LReIDError(f"method.k (patches per image) must be >= 1, got {m.k}")
    for name in ("tau", "gamma0", "gamma1", "gamma2", "gamma3", "cov_lambda", "cov_alpha", "cov_beta", "cov_triplet",
                 "spd_weight", "huber_delta", "sampler_lr", "aka_plasticity", "aka_stability", "aka_lr", "crl_beta",
                 "crl_weight", "lstkc_weight", "dkp_triplet_weight",
                 "dkp_triplet_margin", "dkp_proto_weight"):
        value = getattr(m, name)
        if not math.isfinite(value) or value < 0:
            raise LReIDError(f"method.{name} must be a finite non-negative number, got {value}")
    if not 0 <= t.label_smoothing < 1:
        raise LReIDError(f"train.label_smoothing must be in [0, 1), got {t.label_smoothing}")
    if t.milestone_lag < 0:
        raise LReIDError(f"train.milestone_lag must be >= 0, got {t.milestone_lag}")
    if m.tau == 0:
        raise LReIDError("method.tau must be > 0")
    for name in ("lstkc_tau", "lstkc_fusion_tau"):
        if not (math.isfinite(getattr(m, name)) and getattr(m, name) > 0):
            raise LReIDError(f"method.{name} must be a positive number, got {getattr(m, name)}")
    if d.height < 16 or d.width < 8:
        raise LReIDError(f"input size {d.height}x{d.width} is too small (min 16x8)")
    if d.ids_per_domain < t.p_ids:
        raise LReIDError(f"data.ids_per_domain={d.ids_per_domain} is smaller than a batch's P={t.p_ids}")
    choices = {"model.backbone": (cfg.model.backbone, ("resnet50", "resnet18", "small")),
               "train.optimizer": (t.optimizer, ("adam", "sgd", "sgd_clr")),
               "method.relation": (m.relation, ("distance", "fc")),
               "method.relation_distance": (m.relation_distance, ("rkd", "raw")),
               "method.relation_reduction": (m.relation_reduction, ("full", "set")),
               "method.kd_classes": (m.kd_classes, ("all", "old")),
               "method.teacher_bn": (m.teacher_bn, ("batch", "running")),
               "method.routing": (m.routing, ("code", "fig2")),
               "model.neck": (cfg.model.neck, ("per_step", "shared")),
               "data.id_sampling": (d.id_sampling, ("first", "random")),
               "data.unseen_eval": (d.unseen_eval, ("merged", "per_domain")),
               "train.lr_schedule": (t.lr_schedule, ("global", "per_step")),
               "train.ce_classes": (t.ce_classes, ("current", "seen")),
               "train.amp": (t.amp, ("fp16", "bf16", "off")),
               "form": (cfg.form, ("code", "text")),
               "method.cov_eval": (m.cov_eval, ("concat", "mean")),
               "method.aka_teacher": (m.aka_teacher, ("train", "frozen")),
               "method.dkp_classifier_init": (m.dkp_classifier_init, ("centres", "random")),
               "method.dkp_proto_keep": (m.dkp_proto_keep, ("last", "all")),
               "method.dkp_proto_bn": (m.dkp_proto_bn, ("batch", "running")),
               "method.dkp_embed": (m.dkp_embed, ("centre", "bn")),
               "data.synth_variant": (d.synth_variant, SYNTH_VARIANTS),
               "model.small_stride": (str(cfg.model.small_stride), ("8", "4"))}
    for key, (value, valid) in choices.items():
        if value not in valid:
            raise LReIDError(f"{key}={value!r} is not one of {', '.join(valid)}")
    if t.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise LReIDError(f"train.device={t.device!r} but no CUDA device is available")
    if not 4 <= cfg.model.width <= MAX_MODEL_WIDTH:
        raise LReIDError(f"model.width must be in [4, {MAX_MODEL_WIDTH}], got {_short(cfg.model.width)}")
    if max(d.height, d.width) > MAX_INPUT_SIDE:
        raise LReIDError(f"input size {d.height}x{d.width} exceeds the limit of {MAX_INPUT_SIDE} pixels a side")
    for key, seed in (("train.seed", t.seed), ("data.synth_seed", d.synth_seed)):
        if not 0 <= seed <= SEED_LIMIT:
            raise LReIDError(f"{key} must be in [0, 2^53 = {SEED_LIMIT}], got {_short(seed)}")
    _validate_relations(cfg)
    if cfg.model.pretrained not in ("", "synthetic") and not Path(cfg.model.pretrained).is_file():
        raise LReIDError(f"model.pretrained weights file not found: {cfg.model.pretrained}")


def _validate_relations(cfg: Config) -> None:
    """Ranges the first iteration would trip over, and relations between fields (domains, K vs the grid)."""
    t, m, d = cfg.train, cfg.method, cfg.data
    if t.k_imgs < 2:
        raise LReIDError(f"train.k_imgs must be >= 2 (a triplet needs a positive of the same identity), got {t.k_imgs}")
    for name in ("lr_decay", "later_lr", "clr_base_lr", "clr_max_lr", "joint_epochs_factor"):
        value = getattr(t, name)
        if not (math.isfinite(value) and value > 0):
            raise LReIDError(f"train.{name} must be a positive number, got {value}")
    if t.lr_decay > 1:
        raise LReIDError(f"train.lr_decay must be in (0, 1] (lr *= lr_decay at each milestone), got {t.lr_decay}")
    if t.later_lr > 1:
        raise LReIDError(f"train.later_lr must be in (0, 1] (the lr factor of steps after the first), got {t.later_lr}")
    if t.clr_max_lr < t.clr_base_lr:
        raise LReIDError(f"train.clr_max_lr={t.clr_max_lr} is below train.clr_base_lr={t.clr_base_lr}")
    for name in ("weight_decay", "triplet_margin"):
        value = getattr(t, name)
        if not (math.isfinite(value) and value >= 0):
            raise LReIDError(f"train.{name} must be a finite non-negative number, got {value}")
    if t.clr_step_size < 1:
        raise LReIDError(f"train.clr_step_size must be >= 1 iteration, got {t.clr_step_size}")
    if t.ckpt_every < 0:
        raise LReIDError(f"train.ckpt_every must be >= 0 (0: only at each step's end), got {t.ckpt_every}")
    if any(ms <= 0 for ms in t.milestones):
        raise LReIDError(f"train.milestones must be positive epochs, got {t.milestones}")
    if t.device != "auto" and t.device != "cpu" and not re.fullmatch(r"cuda(:\d+)?", t.device):
        raise LReIDError(f"train.device={t.device!r} is not one of auto, cpu, cuda, cuda:N")
    if d.cache_device not in ("auto", "cpu") and not re.fullmatch(r"cuda(:\d+)?", d.cache_device):
        raise LReIDError(f"data.cache_device={d.cache_device!r} is not one of auto, cpu, cuda, cuda:N")
    if d.cache_device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise LReIDError(f"data.cache_device={d.cache_device!r} but no CUDA device is available")
    if cfg.model.last_stride not in (1, 2):
        raise LReIDError(f"model.last_stride must be 1 or 2, got {cfg.model.last_stride}")
    if m.aka_vertices < 1 or m.crl_k < 1:
        raise LReIDError(f"method.aka_vertices and method.crl_k must be >= 1, got {m.aka_vertices}, {m.crl_k}")
    if not (m.aka_sigma > 0 and 0 <= m.aka_dropout < 1 and 0 < m.aka_decay <= 1):
        raise LReIDError(f"method.aka_sigma must be > 0, aka_dropout in [0, 1), aka_decay in (0, 1]; got "
                         f"{m.aka_sigma}, {m.aka_dropout}, {m.aka_decay}")
    if any(ms <= 0 for ms in m.aka_milestones):
        raise LReIDError(f"method.aka_milestones must be positive epochs, got {m.aka_milestones}")
    if m.dkp_samples < 1 or m.dkp_var_kernel < 1 or m.dkp_proto_batch < 2:
        raise LReIDError(f"method.dkp_samples and dkp_var_kernel must be >= 1 and dkp_proto_batch >= 2, got "
                         f"{m.dkp_samples}, {m.dkp_var_kernel}, {m.dkp_proto_batch}")
    for name in ("dkp_lambda1", "dkp_lambda2", "dkp_gem_p"):
        if not (math.isfinite(getattr(m, name)) and getattr(m, name) > 0):
            raise LReIDError(f"method.{name} must be a positive number, got {getattr(m, name)}")
    if not 0 < m.dkp_fusion <= 1:
        raise LReIDError(f"method.dkp_fusion (the new model's weight) must be in (0, 1], got {m.dkp_fusion}")
    if m.scorer_hidden < 0:
        raise LReIDError(f"method.scorer_hidden must be >= 0 (0: 2C), got {m.scorer_hidden}")
    order = resolve_order(d.order)
    for key, names in (("data.order", order), ("data.unseen", d.unseen)):
        if dup := sorted({n for n in names if names.count(n) > 1}):
            raise LReIDError(f"{key} lists {', '.join(dup)} twice")
    if both := [n for n in d.unseen if n in order]:
        raise LReIDError(f"{', '.join(both)} is both seen (data.order) and unseen (data.unseen)")
    if m.name == "patchkd":
        gh, gw = feature_grid(cfg.model.backbone, d.height, d.width, cfg.model.last_stride, cfg.model.small_stride)
        if m.k > gh * gw:
            raise LReIDError(f"method.k={m.k} patches exceed the {gh}x{gw} feature grid of a {d.height}x{d.width} "
                             f"input ({cfg.model.backbone}, last_stride {cfg.model.last_stride})")


def save_config(cfg: Config, path: Path) -> None:
    from .io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
