"""Finetune: train on each new domain with L_ReID only (Eq. 1); the lower bound."""
from .registry import register
from .base import Method


@register("finetune")
class Finetune(Method):
    """No protection against forgetting."""
