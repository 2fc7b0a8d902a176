"""Decode once: a list of image files -> one uint8 tensor (N, 3, H, W) resized to the model input size.

Decoded tensors are memoised per process (keyed by the file list and size), so the demo's methods share
one decode per domain; the tensor is moved to the model's device by the caller (GPU memory where it fits).
"""
from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from ..distributed import is_main
from ..progress import enabled as progress_enabled
from ..errors import LReIDError
from ..io import brief

_MEMO: dict[tuple, torch.Tensor] = {}
MAX_PIXELS = 4096 * 4096     # a person crop is far smaller; a header claiming more is refused before decoding


def _to_rgb(im: Image.Image) -> Image.Image:
    """RGB of any mode; 16/32-bit greyscale is scaled to 8 bits (``convert`` would clip it to white)."""
    if im.mode.startswith("I;16") or im.mode == "I":
        grey = np.asarray(im, dtype=np.float64) / 257.0          # 65535 -> 255
        im = Image.fromarray(np.clip(np.rint(grey), 0, 255).astype(np.uint8))
    return im.convert("RGB")


def _decode(path: str, size: tuple[int, int]) -> np.ndarray:
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:
                raise LReIDError(f"image {path} claims {im.width}x{im.height} pixels, over the limit of "
                                 f"{MAX_PIXELS:,} (4096x4096): not decoding it")
            im = _to_rgb(im).resize((size[1], size[0]), Image.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except LReIDError:
        raise
    except FileNotFoundError:
        raise LReIDError(f"image file not found: {path}") from None
    except PermissionError:
        raise LReIDError(f"image {path} cannot be read (permission denied)") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise LReIDError(f"corrupt or truncated image {path}: {brief(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - decompression bombs, odd modes, ...: PIL refuses it either way
        raise LReIDError(f"image {path} cannot be decoded ({brief(exc)})") from None


def load_images(paths: list[str], height: int, width: int, desc: str = "decode") -> torch.Tensor:
    """Decode ``paths`` into a (N, 3, height, width) uint8 CPU tensor (memoised)."""
    key = (tuple(paths), height, width)
    if key not in _MEMO:
        if not paths:
            raise LReIDError(f"{desc}: no images to decode")
        out = np.empty((len(paths), height, width, 3), dtype=np.uint8)
        with warnings.catch_warnings(), ThreadPoolExecutor(max_workers=8) as pool:
            # PIL warns of a bomb at 89M pixels; MAX_PIXELS refuses far fewer, with one line naming the file
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            for i, arr in enumerate(tqdm(pool.map(lambda p: _decode(p, (height, width)), paths), total=len(paths),
                                         desc=desc, leave=False, mininterval=1.0, disable=not (is_main() and progress_enabled()))):
                out[i] = arr
        _MEMO[key] = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
    return _MEMO[key]
