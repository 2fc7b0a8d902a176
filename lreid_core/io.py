"""File I/O the tool trusts nothing about: atomic writes (temp file in the same folder, then os.replace; whole or
not at all, with the umask's permissions), the one safe loader for checkpoints and weights files, and the one YAML
loader for configs and recipes (``load_yaml``)."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

import yaml

from .errors import LReIDError


def brief(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 200 characters) for one-line errors."""
    text = (str(exc).strip() or "-").splitlines()[0][:200]
    return f"{type(exc).__name__}: {text}"


def umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temp file beside ``path`` and rename it into place; clean up on failure.

    The file gets the mode a plain ``open(path, "w")`` would give (0o666 minus the umask), not mkstemp's 0o600.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise LReIDError(f"could not write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LReIDError(f"could not write {path}: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_output_dir(path: Path, what: str = "--out") -> None:
    """Refuse an output folder that is a file, lies under a file, or cannot be written, before any work.

    Writability is probed for real (a temp folder made and removed in the nearest existing ancestor), so it
    holds for root, read-only mounts and ACLs alike; nothing is left on disk.
    """
    path = Path(path)
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise LReIDError(f"{what} {path}: {probe} is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".lreid-probe.", dir=probe))
    except OSError as exc:
        raise LReIDError(f"{what} {path} is not writable ({probe}: {exc.strerror or exc})") from None


def lock_file(path: Path, on_busy: Callable[[str], None]) -> IO[str]:
    """Open ``path`` and take an exclusive POSIX record lock on it, held until the file is closed or this process
    exits (a killed holder's lock is gone with it, and forked children never inherit it); the holder's pid is
    written into the file. When another process holds it, ``on_busy(its pid)`` is called first: raise to refuse,
    return to wait for it."""
    try:
        import fcntl
    except ImportError:                      # not POSIX: no cross-process lock
        fcntl = None
    f = open(path, "a+")
    if fcntl is not None:
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            try:
                on_busy(holder)
                fcntl.lockf(f, fcntl.LOCK_EX)
            except BaseException:
                f.close()
                raise
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def remove_stale_tmp(folder: Path, names: tuple[str, ...]) -> list[Path]:
    """Delete the ``.<name>.XXXX.tmp`` files an interrupted ``atomic_write`` of one of ``names`` left in
    ``folder`` (nothing else: the folder may hold the user's own files); returns them."""
    folder = Path(folder)
    stale = [p for name in names for p in folder.glob(f".{name}.*.tmp") if p.is_file()] if folder.is_dir() else []
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def refuse_foreign(out: Path, marker: str, header: str, names: list, what: str) -> None:
    """Refuse (one line naming the first) to replace any of ``names`` that exists in ``out`` unless ``out/marker``
    starts with ``header``, i.e. an earlier ``what`` wrote the folder (callers skip this under ``--overwrite``)."""
    try:
        ours = (out / marker).is_file() and (out / marker).read_text(encoding="utf-8").startswith(header)
    except (OSError, UnicodeDecodeError):
        ours = False
    if ours:
        return
    for name in names:
        if (out / name).exists() or (out / name).is_symlink():
            raise LReIDError(f"{out / name} already exists and no earlier {what} wrote it; pass --overwrite to "
                             f"replace it, or choose another --out")


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of ``path``; one line naming ``what`` and the file when it cannot be read or decoded."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise LReIDError(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise LReIDError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2) + "\n")


def atomic_torch_save(path: Path, obj: Any) -> None:
    import torch

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:           # a file object: a full disk is an OSError naming ENOSPC, not a
            torch.save(obj, f)               # RuntimeError from torch's own zip writer ("unexpected pos")

    atomic_write(path, save)


def safe_load(path: str | Path, what: str, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, never arbitrary pickled code.

    Every failure is one ``LReIDError`` line naming ``what`` and the file: missing, empty, damaged, or holding
    objects that cannot be loaded safely (e.g. a pickle ``__reduce__`` payload, which is refused, not run).
    """
    import pickle
    import warnings

    import torch

    path = Path(path)
    if not path.is_file():
        raise LReIDError(f"{what} not found: {path}")
    if path.stat().st_size == 0:
        raise LReIDError(f"{what} {path} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")      # e.g. "pickle protocol 4" notes on a plain pickle file
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" in str(exc).lower():
            raise LReIDError(f"refusing to load {what} {path}: it holds objects other than tensors and plain "
                             f"containers (not loadable with weights_only=True)") from None
        raise LReIDError(f"{what} {path} is damaged or not a torch file (unpickling failed)") from None
    except MemoryError:
        raise LReIDError(f"{what} {path} is damaged or not a torch file (implausible sizes)") from None
    except Exception as exc:  # noqa: BLE001 - truncated zip, bad header, ...: all the same user error
        raise LReIDError(f"{what} {path} is damaged or not a torch file ({type(exc).__name__})") from None


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses aliases (a few hundred bytes of them expand to millions of values) and
    duplicate keys in a mapping (where the last would silently win)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, f"alias *{event.anchor}: aliases are not allowed in configs",
                                              event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:                 # unhashable key: SafeLoader names it
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(text: str, where: str) -> Any:
    """Parse config YAML (plain values only: no aliases, no duplicate keys); one line naming ``where`` otherwise."""
    try:
        return yaml.load(text, Loader=_ConfigLoader)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise LReIDError(f"{where} is not valid YAML: {problem[:200]}{line}") from None
