"""A method restored from a Trainer checkpoint (``checkpoints/stepN.pt`` or ``last.pt``), safely loaded."""
from __future__ import annotations

from pathlib import Path

from .config import Config, config_from_dict
from .errors import LReIDError
from .io import brief, check_checkpoint, safe_load
from .methods import Method, create_method


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
