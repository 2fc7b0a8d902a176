"""Trainer checkpoints read back: the checks a loaded checkpoint passes before use, and a method restored from
one (``checkpoints/stepN.pt`` or ``last.pt``), always through ``io.safe_load`` (``weights_only=True``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .config import Config, config_from_dict
from .errors import LReIDError
from .io import brief, safe_load
from .methods import Method, create_method
from .results import check_metrics, config_differences


def check_checkpoint(ckpt: Any, path: Path, method: str, config: dict[str, Any] | None,
                     keys: tuple[str, ...] = ("method", "config", "state")) -> dict[str, Any]:
    """A loaded Trainer checkpoint, checked before use: a dict with ``keys``, of ``method`` and of ``config``
    (result-neutral settings aside). One line naming the file otherwise."""
    if not isinstance(ckpt, dict):
        raise LReIDError(f"{path} is not a checkpoint of this tool (it holds a {type(ckpt).__name__}, not a dict)")
    if missing := [k for k in keys if k not in ckpt]:
        raise LReIDError(f"{path} is not a checkpoint of this tool (no {', '.join(missing)})")
    if ckpt["method"] != method:
        raise LReIDError(f"checkpoint {path} is of method {ckpt['method']!r}, not {method!r} as its run")
    if config is not None:
        if not isinstance(ckpt["config"], dict):
            raise LReIDError(f"checkpoint {path} has no readable config")
        if diff := config_differences(ckpt["config"], config):
            raise LReIDError(f"checkpoint {path} was written with another config than its run "
                             f"(differs in {', '.join(diff[:5])}{', ...' if len(diff) > 5 else ''})")
    return ckpt


def check_resume_state(ckpt: dict[str, Any], path: Path) -> None:
    """The resume fields of ``last.pt`` have the types ``Trainer.resume`` and a continued step use."""
    def bad(key: str) -> LReIDError:
        return LReIDError(f"checkpoint {path}: field {key!r} is missing or of the wrong type")

    for key in ("step", "iter", "global_iter"):
        if isinstance(ckpt.get(key), bool) or not isinstance(ckpt.get(key), int) or ckpt[key] < 0:
            raise bad(key)
    if not isinstance(ckpt.get("rng"), torch.Tensor) or ckpt["rng"].dtype != torch.uint8:
        raise bad("rng")
    if not isinstance(ckpt.get("state"), dict):
        raise bad("state")
    check_metrics(ckpt.get("result"), path)
    if ckpt["iter"] > 0:
        sampler = ckpt.get("sampler")
        if not isinstance(sampler, dict) or not isinstance(sampler.get("generator"), torch.Tensor):
            raise bad("sampler")
        if not isinstance(ckpt.get("generator"), torch.Tensor):
            raise bad("generator")
        for key in ("optimizer", "scheduler"):
            if not isinstance(ckpt.get(key), dict):
                raise bad(key)


def step_paths(run_dir: str | Path) -> list[Path]:
    """The step checkpoints ``run_dir/checkpoints/step<N>.pt`` of a Trainer run, in step order."""
    files = [f for f in Path(run_dir, "checkpoints").glob("step*.pt") if f.stem[4:].isdigit()]
    return sorted(files, key=lambda f: int(f.stem[4:]))


def load_checkpoint(path: str | Path, cfg: Config | None = None) -> Method:
    """A method restored from a Trainer checkpoint (eval mode, on the CPU); one-line ``LReIDError`` for a file
    that is hostile, damaged, not a checkpoint, or of another method than ``cfg``."""
    ckpt = safe_load(path, "checkpoint")
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("method"), str):
        raise LReIDError(f"{path} is not a checkpoint of this tool")
    check_checkpoint(ckpt, Path(path), cfg.method.name if cfg else ckpt["method"], cfg.to_dict() if cfg else None)
    try:
        cfg = cfg or config_from_dict(ckpt["config"])
        method = create_method(ckpt["method"], cfg, "cpu")
        method.load_state_dict(ckpt["state"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
        raise LReIDError(f"checkpoint {path} does not fit its {ckpt['method']} model ({brief(exc)})") from None
    method.train(False)
    return method
