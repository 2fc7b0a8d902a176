"""The method registry: ``register(name)`` (a class decorator), ``create_method(name, cfg, device)``,
``list_methods()``. Names come from ``catalog.METHODS``, which the config layer validates against."""
from __future__ import annotations

from typing import Callable

import torch

from ..catalog import METHODS
from ..config import Config
from ..errors import LReIDError
from .base import Method

_REGISTRY: dict[str, type[Method]] = {}


def register(name: str) -> Callable[[type[Method]], type[Method]]:
    if name not in METHODS:
        raise LReIDError(f"method {name!r} is not in catalog.METHODS; add it there (table-row order) to register it")

    def deco(cls: type[Method]) -> type[Method]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return deco


def list_methods() -> list[str]:
    """The registered methods in ``catalog.METHODS`` order (Table 2's rows)."""
    return [m for m in METHODS if m in _REGISTRY]


def create_method(name: str, cfg: Config, device: torch.device | str = "cpu") -> Method:
    if name not in _REGISTRY:
        raise LReIDError(f"unknown method {name!r}; valid methods: {', '.join(list_methods())}")
    return _REGISTRY[name](cfg, torch.device(device))
