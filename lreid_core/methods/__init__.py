"""Method registry: ``create_method(name, cfg, device)``, ``list_methods()``; methods register on import."""
from __future__ import annotations

from typing import Callable

import torch

from ..config import Config
from ..errors import LReIDError
from .base import Method

_REGISTRY: dict[str, type[Method]] = {}


def register(name: str) -> Callable[[type[Method]], type[Method]]:
    def deco(cls: type[Method]) -> type[Method]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return deco


def list_methods() -> list[str]:
    return list(_REGISTRY)


def create_method(name: str, cfg: Config, device: torch.device | str = "cpu") -> Method:
    if name not in _REGISTRY:
        raise LReIDError(f"unknown method {name!r}; valid methods: {', '.join(list_methods())}")
    return _REGISTRY[name](cfg, torch.device(device))


# registration order = Table 2's row order
from . import finetune, spd, lwf, crl, aka, patchkd, covariance, joint  # noqa: E402,F401
