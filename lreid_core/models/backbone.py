"""Backbones psi(.) returning the last feature map (B, C, h, w): torchvision ResNets with last stride 1,
or a small residual CNN for CPU profiles. ImageNet weights come only from a local file; the small CNN can start
from the shipped ``model.pretrained=synthetic`` weights (``lreid pretrain`` on a disjoint pool of synthetic
domains, see the README) or a file that command wrote."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet18, resnet50
from torchvision.models.resnet import BasicBlock

from ..errors import LReIDError
from ..io import safe_load

_warned_random_init = False
SYNTHETIC_WEIGHTS = Path(__file__).parent / "weights" / "small_synthetic.pt"
"""``model.pretrained=synthetic``: the small backbone pretrained by ``lreid pretrain --seed 0`` (shipped)."""


class SmallResNet(nn.Module):
    """A 4-stage residual CNN (widths w, 2w, 4w, 8w) for CPU profiles: a stride-2 stem, then one BasicBlock per
    stage with strides 1, 2, 2, last_stride (``stride=8``: a 8x4 map at 64x32 input with last stride 1) or 1, 2, 1,
    last_stride (``stride=4``: a 16x8 map at 64x32, the paper's patch grid)."""

    def __init__(self, last_stride: int = 1, width: int = 16, stride: int = 8):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        widths = [width, width * 2, width * 4, width * 8]
        if stride not in (4, 8):
            raise LReIDError(f"small backbone stride must be 4 or 8, got {stride}")
        strides = [1, 2, 2 if stride == 8 else 1, last_stride]
        layers, cin = [], width
        for w, s in zip(widths, strides):
            down = None
            if s != 1 or cin != w:
                down = nn.Sequential(nn.Conv2d(cin, w, 1, s, bias=False), nn.BatchNorm2d(w))
            layers.append(BasicBlock(cin, w, stride=s, downsample=down))
            cin = w
        self.layers = nn.Sequential(*layers)
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.stem(x))


class TorchvisionTrunk(nn.Module):
    """A torchvision ResNet without avgpool/fc; layer4's first block gets ``last_stride``.

    ``stem_relu=False`` (``model.stem_relu``, the official code's form: PatchKD's and LifelongReID's
    ``lwf_net.py`` comment the stem ReLU out, "no relu"): conv1, bn1, max-pool. bn1's bias then has no effect on
    anything trained: a per-channel shift passes the max-pool and is removed by layer1's first BNs (1x1 conv and
    downsample in a Bottleneck; not so in resnet18, whose first block adds its input back). ``True``: the standard
    torchvision stem, conv1, bn1, ReLU, max-pool (the paper's text, "ResNet-50").
    """

    def __init__(self, net: nn.Module, last_stride: int, stem_relu: bool = False):
        super().__init__()
        block = net.layer4[0]
        for conv in (getattr(block, "conv2", None) if hasattr(block, "conv3") else block.conv1, block.downsample[0]):
            conv.stride = (last_stride, last_stride)
        act = net.relu if stem_relu else nn.Identity()        # an Identity keeps the state-dict keys of both forms
        self.body = nn.Sequential(net.conv1, net.bn1, act, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4)
        self.out_channels = net.fc.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _load_imagenet(net: nn.Module, path: str, name: str) -> None:
    """Load a local ImageNet state dict into a torchvision net; one-line error on a wrong file."""
    global _warned_random_init
    if not path:
        if not _warned_random_init:
            warnings.warn(f"no ImageNet weights given (model.pretrained) for {name}: using random init", stacklevel=3)
            _warned_random_init = True
        return
    file = Path(path)
    state = safe_load(file, "ImageNet weights file")
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise LReIDError(f"weights file {file} is not a state dict (name -> tensor), it holds a {type(state).__name__}")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = net.state_dict()
    missing = [k for k in own if k not in state and not k.startswith("fc.")]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and state[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise LReIDError(f"weights file {file} does not fit {name}: {len(missing)} missing, {len(unexpected)} "
                         f"unexpected, {len(wrong)} wrongly shaped tensors")
    net.load_state_dict(state, strict=False)


def _load_small(net: SmallResNet, file: Path, width: int, stride: int) -> None:
    """Load weights written by ``lreid pretrain`` (a dict with ``state_dict``, ``width``, ``stride``)."""
    if not file.is_file():
        raise LReIDError(f"small-backbone weights file not found: {file}")
    ckpt = safe_load(file, "small-backbone weights file")
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in ("state_dict", "width", "stride")):
        held = "a dict without state_dict, width, stride" if isinstance(ckpt, dict) else f"a {type(ckpt).__name__}"
        raise LReIDError(f"small-backbone weights {file} are not a file written by lreid pretrain (it holds {held})")
    state, w, s = ckpt["state_dict"], ckpt["width"], ckpt["stride"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise LReIDError(f"small-backbone weights {file}: state_dict is not a state dict (name -> tensor), it holds "
                         f"a {type(state).__name__}")
    if (w, s) != (width, stride):
        raise LReIDError(f"weights {file} are for model.width={w}, model.small_stride={s}; "
                         f"the config has {width}, {stride}")
    try:
        net.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError:
        raise LReIDError(f"weights {file} do not fit the small backbone (last_stride?)") from None


def build_backbone(name: str, pretrained: str = "", last_stride: int = 1, width: int = 16,
                   small_stride: int = 8, stem_relu: bool = False) -> nn.Module:
    """``resnet50`` (paper), ``resnet18`` or ``small`` (of stage width ``width``, ``small_stride`` before the last
    stage); the module has ``out_channels``. ``stem_relu`` applies to the torchvision ResNets only (see
    ``TorchvisionTrunk``); the small CPU backbone is this project's own net, not the official code's, and keeps
    its stem ReLU (its shipped ``synthetic`` weights were trained with it)."""
    if name == "small":
        net = SmallResNet(last_stride, width, small_stride)
        if pretrained:
            _load_small(net, SYNTHETIC_WEIGHTS if pretrained == "synthetic" else Path(pretrained), width, small_stride)
        return net
    builders = {"resnet50": resnet50, "resnet18": resnet18}
    if name not in builders:
        raise LReIDError(f"unknown backbone {name!r}; valid: resnet50, resnet18, small")
    net = builders[name](weights=None)
    _load_imagenet(net, pretrained, name)
    return TorchvisionTrunk(net, last_stride, stem_relu)
