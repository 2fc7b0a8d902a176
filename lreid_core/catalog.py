"""Names every layer shares, with no dependency above ``errors``: the real and synthetic domain orders, the
synthetic variants, the method names, and the backbones' feature-grid arithmetic.

``config`` validates against these; the modules that own the things named here (``data.synthetic``,
``data.benchmark``, ``methods``, ``models.backbone``) import them from here, so the config layer never loads a
generator, a registry or a network.
"""
from __future__ import annotations

ORDERS: dict[str, list[str]] = {
    # Training order-1 and order-2 of the LReID benchmark (PatchKD, Table 2).
    "order1": ["market1501", "cuhk_sysu", "dukemtmc", "msmt17", "cuhk03"],
    "order2": ["dukemtmc", "msmt17", "market1501", "cuhk_sysu", "cuhk03"],
}
UNSEEN_REAL: list[str] = ["viper", "prid", "grid", "ilids", "cuhk01", "cuhk02", "sensereid"]

DEFAULT_DOMAINS: list[str] = ["synth_a", "synth_b", "synth_c", "synth_d", "synth_e"]
DEMO_ORDER: list[str] = ["synth_c", "synth_d", "synth_b", "synth_a", "synth_e"]
"""The demo profile's training order, chosen on the validation generator seed (``data.synth_seed=1``): the domains
that later steps overwrite most (the low-resolution CCTV and the two without white balance) come first, the sunny
street, which every later step keeps, comes fourth, and the night street last."""
DEFAULT_UNSEEN: list[str] = ["synth_u1", "synth_u2"]
SYNTH_VARIANTS: tuple[str, ...] = ("premise", "conflict", "pretrain")
"""``data.synth_variant`` values: the keys of ``data.synthetic.STYLE_VARIANTS``."""

METHODS: tuple[str, ...] = ("finetune", "spd", "lwf", "crl", "aka", "patchkd", "lstkc", "dkp", "covariance", "joint")
"""Every method the registry (``lreid_core.methods``) may register, in table-row order; a new method adds its
name here and registers under it."""


def resolve_order(order: list[str] | str) -> list[str]:
    """``"order1"``/``"order2"`` or a comma list or a list of dataset names -> list of names."""
    if isinstance(order, str):
        if order in ORDERS:
            return list(ORDERS[order])
        order = [o for o in order.split(",") if o]
    if len(order) == 1 and order[0] in ORDERS:
        return list(ORDERS[order[0]])
    return list(order)


def feature_grid(name: str, height: int, width: int, last_stride: int = 1, small_stride: int = 8) -> tuple[int, int]:
    """(h, w) of the feature map for an input of ``height x width``, without building the net.

    Every stride-s layer (3x3/pad 1 convs, 1x1 downsample convs, resnet's 7x7/pad 3 stem and 3x3/pad 1
    max-pool) maps n to ceil(n / s): ``small`` has strides 2, 1, 2, 2 (1 with ``small_stride=4``), last_stride;
    the torchvision ResNets 2 (stem), 2 (max-pool), 1, 2, 2, last_stride.
    """
    small = [2, 1, 2, 2 if small_stride == 8 else 1, last_stride]
    strides = small if name == "small" else [2, 2, 1, 2, 2, last_stride]
    h, w = height, width
    for s in strides:
        h, w = -(-h // s), -(-w // s)
    return h, w
