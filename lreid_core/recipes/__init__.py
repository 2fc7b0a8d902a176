"""Named training recipes: a paper's own optimiser, schedule, batch and input settings, stored as data.

A recipe is ``<name>.yaml`` in this folder: config sections (``train``, ``data``, ``model``) and a one-line
``description``, every value commented with the official file it comes from. It holds training settings only, never
a method: the method is chosen separately (``--method``, ``--methods`` or ``method.name``), so any method can run
under any recipe, and every method can still run under the shared protocol (the profile, no recipe).
``config.load_config`` applies it in this order: profile <- recipe <- ``form: text`` <- YAML config file <- --set.

Scaling rule (every profile except ``paper``, where a recipe applies as written). The profile sets the budget: its
iterations per domain step T = ``train.epochs`` x ``train.iters_per_epoch``, its input size, model and batch
(P, K). The recipe keeps everything else (optimiser, lr, momentum, weight decay, decay factor, warm-up form and
factor, schedule clock) and its epoch-valued keys are rescaled:

* later steps train E' epochs of T / E' iterations, E' the largest divisor of T not above the recipe's ``epochs``
  E (so a later step is exactly T iterations, and E' = E whenever T allows it: 120 = 60 x 2 for the demo);
* with s = E' / E: ``first_epochs`` -> round(s x first_epochs) (the first step keeps the recipe's first/later
  ratio, e.g. 80/60), each milestone -> max(1, round(s x m)), ``warmup_epochs`` -> max(1, round(s x w)) when w > 0;
* the recipe's budget keys (``data.height``/``width``, the ``model`` section, ``train.p_ids``/``k_imgs``/
  ``batch_size``/``iters_per_epoch``/``amp``) are dropped: the profile's stay.

In both modes a changed epoch unit moves the methods' own global-epoch milestones (``method.*_milestones``: PatchKD's
sampler, AKA's graph) by the same factor (the recipe's later-step epochs over the profile's), so they keep their
place in the order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import LReIDError
from ..io import load_yaml, read_text

RECIPE_DIR = Path(__file__).parent
REPORTED = "reported"            # reported.yaml: the papers' own numbers (report.py), not a recipe
SECTIONS = ("train", "data", "model")
# the profile's budget under scaling: these recipe keys are dropped (None: the whole section)
BUDGET: dict[str, tuple[str, ...] | None] = {"data": ("height", "width"), "model": None,
                                             "train": ("p_ids", "k_imgs", "batch_size", "iters_per_epoch", "amp")}


def list_recipes() -> list[str]:
    """The shipped recipe names (``<name>.yaml`` in this folder), sorted."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.yaml") if p.stem != REPORTED)


def read_recipe(name: str) -> dict[str, Any]:
    """Recipe ``name`` as written (sections only, ``description`` removed); one line for an unknown name or a file
    that is not a mapping of known sections (the values are checked when the config merges them)."""
    valid = list_recipes()
    if not isinstance(name, str) or name not in valid:
        raise LReIDError(f"unknown recipe {str(name)[:80]!r}; valid recipes: {', '.join(valid)}")
    path = RECIPE_DIR / f"{name}.yaml"
    data = load_yaml(read_text(path, "recipe file"), f"recipe file {path}")
    if not isinstance(data, dict):
        raise LReIDError(f"recipe file {path} must hold a mapping at top level")
    data = dict(data)
    data.pop("description", None)
    for key, value in data.items():
        if key not in SECTIONS or not isinstance(value, dict):
            raise LReIDError(f"recipe file {path}: {str(key)[:80]!r} is not one of the sections "
                             f"{', '.join(SECTIONS)} (each a mapping)")
    return data


def _count(name: str, section: dict[str, Any], key: str, default: int, low: int = 1) -> int:
    """An integer epoch count of the recipe (``default`` when absent), >= ``low``; one line otherwise."""
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise LReIDError(f"recipe {name}: train.{key} must be an integer >= {low}, got {str(value)[:80]}")
    return value


def budget_epochs(total_iters: int, epochs: int) -> int:
    """The largest divisor of ``total_iters`` not above ``epochs`` (epochs of a step of ``total_iters``)."""
    return max(e for e in range(1, min(epochs, total_iters) + 1) if total_iters % e == 0)


def _scale(values: list[int], factor: float) -> list[int]:
    return [max(1, round(v * factor)) for v in values]


def recipe_updates(name: str, scaled: bool, epochs: int, iters_per_epoch: int,
                   method_milestones: dict[str, list[int]]) -> dict[str, Any]:
    """The config updates of recipe ``name`` on top of a profile of ``epochs`` x ``iters_per_epoch`` per step
    (``scaled``: fitted to that budget by the module's rule; else as written) and the profile's
    ``method_milestones`` (field -> global epochs), moved with the epoch unit."""
    data = read_recipe(name)
    train = dict(data.get("train", {}))
    r_epochs = _count(name, train, "epochs", epochs)
    r_first = _count(name, train, "first_epochs", 0, low=0) or r_epochs
    new_epochs = r_epochs
    if scaled:
        for section, keys in BUDGET.items():
            if keys is None:
                data.pop(section, None)
            elif section in data:
                data[section] = {k: v for k, v in data[section].items() if k not in keys}
        train = data.get("train", {})
        new_epochs = budget_epochs(epochs * iters_per_epoch, r_epochs)
        s = new_epochs / r_epochs
        milestones = train.get("milestones", [])
        if not isinstance(milestones, list) or not all(isinstance(m, int) and not isinstance(m, bool) for m in milestones):
            raise LReIDError(f"recipe {name}: train.milestones must be a list of integers, got {str(milestones)[:80]}")
        warmup = _count(name, train, "warmup_epochs", 0, low=0)
        train.update(epochs=new_epochs, iters_per_epoch=epochs * iters_per_epoch // new_epochs,
                     first_epochs=0 if r_first == r_epochs else max(1, round(r_first * s)),
                     milestones=_scale(milestones, s), warmup_epochs=max(1, round(warmup * s)) if warmup else 0)
        data["train"] = train
    if new_epochs != epochs:
        data["method"] = {k: _scale(v, new_epochs / epochs) for k, v in method_milestones.items()}
    return data


def recipe_keys() -> set[str]:
    """Every dotted config key a shipped recipe may set (its files' keys, the scaled ones, the moved milestones)."""
    keys = {f"{section}.{key}" for name in list_recipes() for section, values in read_recipe(name).items()
            for key in values}
    return keys | {"train.epochs", "train.first_epochs", "train.iters_per_epoch", "train.milestones",
                   "train.warmup_epochs", "method.sampler_milestones", "method.aka_milestones"}


def check_recipe_name(name: str) -> None:
    """``name`` is empty (no recipe) or a shipped recipe; one line listing them otherwise."""
    if name and name not in list_recipes():
        raise LReIDError(f"unknown recipe {name[:80]!r}; valid recipes: {', '.join(list_recipes())}")


__all__ = ["BUDGET", "RECIPE_DIR", "budget_epochs", "check_recipe_name", "list_recipes", "read_recipe",
           "recipe_keys", "recipe_updates"]
