"""Method registry: ``create_method(name, cfg, device)``, ``list_methods()``; methods register on import."""
from __future__ import annotations

from . import aka, covariance, crl, dkp, finetune, joint, lstkc, lwf, patchkd, spd  # noqa: F401  (they register)
from .base import Method
from .registry import create_method, list_methods, register

__all__ = ["Method", "create_method", "list_methods", "register"]
