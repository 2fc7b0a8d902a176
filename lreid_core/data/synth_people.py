"""Synthetic pedestrians, part 2: identity and appearance sampling (:func:`sample_identity`,
:func:`sample_appearance`) over a domain's colour :func:`palette`.

Re-exported by :mod:`lreid_core.data.synthetic`; imports only :mod:`.synth_styles`.
"""

from __future__ import annotations

import colorsys
import json
from typing import Any, Mapping, Sequence

import numpy as np

from .synth_styles import (
    ATTRIBUTES,
    BAGS,
    BOTTOM_TYPES,
    BUILDS,
    COLOR_ATTRS,
    HAIR_COLORS,
    HAIR_STYLES,
    HATS,
    HEIGHTS,
    SHARED_PALETTE,
    SKIN_TONES,
    SLEEVES,
    DomainStyle,
    get_style,
    stable_seed,
)

# --------------------------------------------------------------------------------------------
# Palettes and attribute sampling
# --------------------------------------------------------------------------------------------

_PALETTE_CACHE: dict[DomainStyle, np.ndarray] = {}


def palette(style: str | DomainStyle) -> np.ndarray:
    """The style's ``(n, 3)`` float32 RGB swatches: :data:`SHARED_PALETTE`, or its own ``n_colors`` (fixed per
    style, not per seed)."""
    style = get_style(style)
    if style.shared_palette:
        return SHARED_PALETTE
    if style not in _PALETTE_CACHE:
        rng = np.random.default_rng(stable_seed("palette", style.name))
        spans = np.array([h1 - h0 for h0, h1 in style.hues], dtype=np.float64)
        n = style.n_colors
        # evenly spread hues over the union of ranges, plus a little jitter -> distinct swatches
        pos = (np.arange(n) + rng.uniform(0.25, 0.75, n)) / n * spans.sum()
        cols = []
        order = rng.permutation(n)  # decorrelate hue from saturation/value ordering
        sats = np.linspace(*style.sat, n)[order]
        vals = np.linspace(*style.val, n)[rng.permutation(n)]
        for i in range(n):
            p, k = pos[i], 0
            while k < len(spans) - 1 and p > spans[k]:
                p -= spans[k]
                k += 1
            hue = ((style.hues[k][0] + p) % 360) / 360.0
            cols.append(colorsys.hsv_to_rgb(hue, sats[i], vals[i]))
        _PALETTE_CACHE[style] = (np.array(cols, dtype=np.float32) * 255.0)
    return _PALETTE_CACHE[style]


def _pick(rng: np.random.Generator, options: Sequence[Any], probs: Sequence[float] | None = None) -> Any:
    if probs is None:
        return options[int(rng.integers(len(options)))]
    r = rng.random() * float(sum(probs))
    acc = 0.0
    for opt, p in zip(options, probs):
        acc += p
        if r < acc:
            return opt
    return options[-1]


def _sample_attr(name: str, style: DomainStyle, pal: np.ndarray, rng: np.random.Generator, attrs: dict) -> Any:
    if name == "skin":
        return SKIN_TONES[rng.integers(len(SKIN_TONES))].tolist()
    if name == "hair_color":
        src = pal if style.hair_from_palette else HAIR_COLORS
        return src[rng.integers(len(src))].tolist()
    if name in COLOR_ATTRS:
        weights = style.color_weights if style.shared_palette else ()

        def draw() -> int:
            return _pick(rng, range(len(pal)), weights) if weights else int(rng.integers(len(pal)))

        idx = draw()
        partner = _PARTNER.get(name)
        if partner is not None and partner in attrs and len(pal) > 1:
            # the secondary pattern colour must differ from the main one, or the pattern vanishes
            main = np.asarray(attrs[partner], dtype=np.float32)
            while np.abs(pal[idx] - main).sum() < 1e-3:
                idx = draw()
        return pal[idx].tolist()
    if name in ("top_pattern", "bottom_pattern"):
        return _pick(rng, style.patterns, style.pattern_probs or None)
    if name in ("top_freq", "bottom_freq"):
        return float(_pick(rng, style.freqs))
    if name == "sleeve":
        return _pick(rng, SLEEVES)
    if name == "hair_style":
        return _pick(rng, HAIR_STYLES, (0.5, 0.35, 0.15))
    if name == "bottom_type":
        return _pick(rng, BOTTOM_TYPES, (0.6, 0.2, 0.2))
    if name == "bag":
        return _pick(rng, BAGS, style.bag_probs)
    if name == "hat":
        return _pick(rng, HATS, style.hat_probs)
    if name == "build":
        return float(_pick(rng, BUILDS))
    if name == "height":
        return float(_pick(rng, HEIGHTS))
    raise KeyError(name)


_PARTNER = {"top_color2": "top_color", "bottom_color2": "bottom_color"}


def sample_identity(style: str | DomainStyle, rng: np.random.Generator) -> dict[str, Any]:
    """Sample one person's full attribute dict (identity-bearing + default nuisance values).

    The dict also holds ``"seed"`` (drives the per-camera nuisance) and ``"key"`` (the tuple of
    identity-bearing values, used to keep identities within a domain distinct).
    """
    style = get_style(style)
    attrs: dict[str, Any] = {}
    pal = palette(style)
    for name in ATTRIBUTES:
        attrs[name] = _sample_attr(name, style, pal, rng, attrs)
    attrs["seed"] = int(rng.integers(2**62))
    attrs["key"] = json.dumps([attrs[n] for n in style.identity])
    return attrs


def sample_appearance(
    identity: Mapping[str, Any], style: str | DomainStyle, camera: Mapping[str, Any] | int,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """What the person wears in ONE image: identity attributes kept, camera-level nuisance fixed
    per (person, camera), everything else resampled from ``rng``."""
    style = get_style(style)
    cam_index = camera if isinstance(camera, int) else int(camera["index"])
    cam_rng = np.random.default_rng([int(identity["seed"]), cam_index])
    attrs = dict(identity)
    pal = palette(style)
    for name in ATTRIBUTES:
        if name in style.identity:
            continue
        src = cam_rng if name in style.camera_nuisance else rng
        attrs[name] = _sample_attr(name, style, pal, src, attrs)
    return attrs
