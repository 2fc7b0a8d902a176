"""Procedural multi-domain pedestrian benchmark written to disk in Market-1501 layout.

A pedestrian is a set of coloured, patterned body parts (hair, head, torso, arms, legs, shoes,
optional bag / backpack / handbag / cap / beanie) painted over a background.  Every domain is a
*style* (:class:`DomainStyle`): colour palette, attribute frequencies, background kind, render
resolution and camera set-up (height/viewpoint, illumination and colour cast, blur, noise,
occlusion).  Two variants of the seven built-in domains exist (:data:`STYLE_VARIANTS`):

``premise`` (the default) models PatchKD's premise (Fig. 1): domains differ by IMAGE-LEVEL factors
(scene and background clutter, camera height and viewpoint, illumination and colour cast,
resolution and blur, occlusion) and by a moderate shift of attribute frequencies (a summer street
wears brighter colours and more shorts than a winter CCTV feed), while identity is the person's
whole appearance, drawn from ONE shared colour palette, with the same meaning in every domain:

* ``synth_a`` -- sunny street, warm light, ground-level cameras, summer clothing;
* ``synth_b`` -- indoor mall, cool fluorescent and mixed light, cameras without white balance (strong
  per-camera colour casts), shop-front background, some occlusion;
* ``synth_c`` -- high CCTV cameras looking down, low resolution, washed-out colour, winter clothing;
* ``synth_d`` -- crowded plaza, harsh per-camera lighting, cameras without white balance (strong colour
  casts), frequent occlusion;
* ``synth_e`` -- night street, sodium light, dark and noisy, lower resolution;
* ``synth_u1``, ``synth_u2`` -- unseen test domains (overexposed pastel campus; sepia, very low
  resolution archive seen from above).

``conflict`` (the harder variant) makes each domain's IDENTITY CUES conflict with the others: in
every domain some attributes carry identity and the others are nuisance, redrawn per camera or
per image (``synth_b``: hues rotated at random per image; ``synth_d``: the whole top redrawn per
camera; ...), each domain with its own palette.  That models a shift of what identity means: a
model fine-tuned on a later domain learns invariances that an earlier domain needed.

Public entry points: :func:`make_benchmark` (writes
``root/<domain>/{bounding_box_train,query,bounding_box_test}``), :data:`DOMAIN_STYLES` /
:func:`get_style`, and for notebooks :func:`sample_identity`, :func:`sample_appearance`,
:func:`make_camera`, :func:`render_person`.

Only numpy and PIL are used.  Everything is deterministic given the seed: each image's random
generator is derived from ``(seed, domain name, split, pid, image index, camera, frame)`` with a
stable hash (SHA-256, never Python's ``hash()``).
"""

from __future__ import annotations

import colorsys
import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from lreid_core.catalog import DEFAULT_DOMAINS, DEFAULT_UNSEEN, DEMO_ORDER  # noqa: F401 (this module's names too)
from lreid_core.errors import LReIDError
from lreid_core.io import lock_file, umask

__all__ = [
    "ATTRIBUTES",
    "DEFAULT_DOMAINS",
    "DEMO_ORDER",
    "DEFAULT_UNSEEN",
    "DOMAIN_STYLES",
    "DomainStyle",
    "GENERATOR_VERSION",
    "STYLE_VARIANTS",
    "benchmark_key",
    "get_style",
    "make_benchmark",
    "make_camera",
    "render_person",
    "sample_appearance",
    "sample_identity",
    "stable_seed",
]

GENERATOR_VERSION = 5
"""Bumped whenever the rendered images change; part of the cache key (:func:`benchmark_key`, ``synthetic.json``)."""

SPLITS = ("bounding_box_train", "query", "bounding_box_test")

# --------------------------------------------------------------------------------------------
# Attributes
# --------------------------------------------------------------------------------------------

PATTERNS = ("plain", "hstripes", "vstripes", "checks", "dots", "split")
BAGS = ("none", "shoulder", "backpack", "handbag")
HATS = ("none", "cap", "beanie")
HAIR_STYLES = ("short", "long", "bald")
BOTTOM_TYPES = ("trousers", "shorts", "skirt")
SLEEVES = ("long", "short")
BUILDS = (0.86, 1.0, 1.16)  # width factor
HEIGHTS = (0.88, 0.94, 1.0)  # fraction of the camera's person height

COLOR_ATTRS = (
    "top_color", "top_color2", "bottom_color", "bottom_color2",
    "shoe_color", "hair_color", "bag_color", "hat_color",
)
ATTRIBUTES = (
    "skin", "hair_color", "hair_style",
    "top_color", "top_color2", "top_pattern", "top_freq", "sleeve",
    "bottom_type", "bottom_color", "bottom_color2", "bottom_pattern", "bottom_freq",
    "shoe_color", "bag", "bag_color", "hat", "hat_color", "build", "height",
)
"""Every attribute of a person, in the fixed order used when sampling (determinism)."""

SKIN_TONES = np.array(
    [[242, 206, 180], [224, 172, 140], [198, 140, 100], [160, 105, 70], [110, 72, 50]],
    dtype=np.float32,
)
HAIR_COLORS = np.array(
    [[25, 20, 18], [70, 45, 30], [120, 80, 45], [200, 165, 100], [150, 150, 150], [150, 60, 30]],
    dtype=np.float32,
)
SHARED_COLORS: dict[str, tuple[int, int, int]] = {
    "black": (28, 28, 32), "white": (236, 236, 230), "grey": (128, 128, 132), "navy": (30, 40, 95),
    "blue": (40, 95, 205), "sky": (125, 185, 235), "green": (35, 140, 60), "olive": (115, 120, 45),
    "yellow": (232, 200, 40), "orange": (236, 120, 30), "red": (205, 30, 35), "maroon": (112, 25, 42),
    "pink": (236, 130, 175), "purple": (120, 50, 155), "brown": (112, 70, 38), "beige": (212, 186, 140),
}
"""The ``premise`` variant's palette: one set of clothing colours, the same in every domain."""
SHARED_PALETTE = np.array(list(SHARED_COLORS.values()), dtype=np.float32)


def color_weights(**boost: float) -> tuple[float, ...]:
    """Relative frequencies of the :data:`SHARED_COLORS` swatches: 1 each, times ``boost[name]``."""
    unknown = set(boost) - set(SHARED_COLORS)
    if unknown:
        raise LReIDError(f"unknown shared colour(s) {sorted(unknown)}; valid: {', '.join(SHARED_COLORS)}")
    return tuple(float(boost.get(name, 1.0)) for name in SHARED_COLORS)


@dataclass(frozen=True)
class DomainStyle:
    """Everything that makes one synthetic domain look and behave differently."""

    name: str
    description: str
    # own palette (unless shared_palette): ``n_colors`` fixed swatches spread over these HSV ranges
    hues: tuple[tuple[float, float], ...] = ((0.0, 360.0),)  # degrees
    sat: tuple[float, float] = (0.35, 0.95)
    val: tuple[float, float] = (0.3, 0.95)
    n_colors: int = 10
    # which attributes carry identity; the others are nuisance
    identity: tuple[str, ...] = ATTRIBUTES
    camera_nuisance: tuple[str, ...] = ()  # fixed per (pid, camera); everything else: per image
    patterns: tuple[str, ...] = PATTERNS
    freqs: tuple[float, ...] = (2.0, 3.0, 4.5)  # pattern periods per torso height
    bag_probs: tuple[float, ...] = (0.4, 0.2, 0.25, 0.15)
    hat_probs: tuple[float, ...] = (0.6, 0.2, 0.2)
    hair_from_palette: bool = False
    shared_palette: bool = False  # colours from SHARED_PALETTE (same meaning everywhere) with these weights:
    color_weights: tuple[float, ...] = ()  # relative swatch frequencies (see color_weights()); () = uniform
    pattern_probs: tuple[float, ...] = ()  # relative frequencies of ``patterns``; () = uniform
    bottom_probs: tuple[float, ...] = (0.6, 0.2, 0.2)  # trousers, shorts, skirt
    # rendering
    background: str = "gradient"  # gradient | noise | bricks | stripes | clutter | night
    render_scale: float = 1.0  # <1: render small then upsample (low-resolution camera)
    saturation: float = 1.0  # final image saturation (0 = greyscale)
    noise: float = 3.0  # per-pixel Gaussian noise std (0..255 units)
    blur: tuple[float, float] = (0.0, 0.6)  # per-camera Gaussian blur radius range (output px)
    gain: tuple[float, float] = (0.85, 1.15)  # per-camera brightness
    cast: float = 0.06  # per-camera colour cast strength
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)  # colour of the domain's light (RGB gains)
    color_jitter: float = 0.06  # per-image per-part colour jitter
    hue_jitter: float = 0.0  # per-image rotation of all clothing hues, uniform in +-degrees
    person_scale: tuple[float, float] = (0.8, 0.94)  # person height / image height, per camera
    width_scale: float = 1.0  # body proportions
    head_scale: float = 1.0
    shear: float = 0.08  # per-camera shear range
    elevation: tuple[float, float] = (0.0, 0.0)  # per-camera height, 0 = eye level .. 1 = looking down
    back_view_prob: float = 0.3  # fraction of cameras that see people from behind
    occlusion: float = 0.1  # per-image probability of an occluding rectangle
    cameras: int = 4
    auto_exposure: float = 0.0  # camera auto-exposure: share of the log-luminance offset from mid-grey corrected
    white_balance: float = 0.0  # camera auto white balance: share of the grey-world channel offset corrected


CONFLICT_STYLES: dict[str, DomainStyle] = {
    s.name: s
    for s in [
        DomainStyle(
            name="synth_a",
            description="warm daylight street, narrow warm palette. ID: clothing/shoe/hair COLOURS, "
            "cut, sleeves, skin, build. Nuisance per image: clothing patterns + frequency, bag, hat",
            hues=((0, 70),), sat=(0.35, 0.95), val=(0.3, 0.95), n_colors=10,
            identity=("top_color", "top_color2", "bottom_color", "bottom_color2", "shoe_color",
                      "hair_color", "hair_style", "sleeve", "bottom_type", "skin", "build", "height"),
            background="gradient", cameras=4, noise=3.0, blur=(0.0, 0.6), cast=0.06,
            occlusion=0.08,
        ),
        DomainStyle(
            name="synth_b",
            description="neon mall. ID: clothing PATTERNS + frequency, accessories, cut, colour "
            "LAYOUT. Nuisance per image: a random rotation of every clothing HUE",
            hues=((0, 360),), sat=(0.75, 1.0), val=(0.55, 1.0), n_colors=10,
            identity=ATTRIBUTES, hue_jitter=180.0, hair_from_palette=True,
            background="stripes", cameras=5, noise=4.0, blur=(0.0, 0.5), cast=0.05, occlusion=0.08,
        ),
        DomainStyle(
            name="synth_c",
            description="grey low-resolution CCTV. ID: grey levels, pattern FREQUENCY, silhouette "
            "(build, height, cut, sleeves, hair), bag/hat kind. Nuisance per camera: pattern kind",
            hues=((0, 360),), sat=(0.0, 0.15), val=(0.12, 0.92), n_colors=7,
            identity=tuple(a for a in ATTRIBUTES if a not in ("top_pattern", "bottom_pattern",
                                                               "bag_color", "hat_color")),
            camera_nuisance=("top_pattern", "bottom_pattern"),
            patterns=("hstripes", "vstripes", "checks", "dots"), freqs=(1.5, 2.5, 4.0),
            background="bricks", render_scale=0.5, saturation=0.25, cameras=3, noise=5.0,
            blur=(0.4, 0.9), cast=0.03, width_scale=1.1, occlusion=0.08,
        ),
        DomainStyle(
            name="synth_d",
            description="cool-toned plaza, strong per-camera lighting. ID: BAG and HAT (kind + "
            "colour), trousers, hair, shoes, skin, build. Nuisance per camera: the whole TOP "
            "(colours, pattern, frequency)",
            hues=((160, 290),), sat=(0.3, 0.85), val=(0.3, 0.9), n_colors=8,
            identity=("bag", "bag_color", "hat", "hat_color", "bottom_type", "bottom_color",
                      "bottom_color2", "bottom_pattern", "bottom_freq", "hair_style", "hair_color",
                      "shoe_color", "skin", "height", "sleeve", "build"),
            camera_nuisance=("top_color", "top_color2", "top_pattern", "top_freq"),
            bag_probs=(0.1, 0.35, 0.35, 0.2), hat_probs=(0.25, 0.4, 0.35),
            background="clutter", cameras=6, noise=4.0, blur=(0.0, 0.7), gain=(0.65, 1.25),
            cast=0.1, occlusion=0.08, head_scale=1.1,
        ),
        DomainStyle(
            name="synth_e",
            description="night street, dark and noisy. ID: the TOP (colours, pattern, frequency, "
            "sleeves), hair, skin, shoes, build. Nuisance per camera: trousers; per image: bag, hat",
            hues=((0, 360),), sat=(0.4, 0.9), val=(0.35, 0.85), n_colors=10,
            identity=("top_color", "top_color2", "top_pattern", "top_freq", "hair_color",
                      "hair_style", "sleeve", "skin", "shoe_color", "build", "height"),
            camera_nuisance=("bottom_color", "bottom_color2", "bottom_pattern", "bottom_type",
                             "bottom_freq"),
            background="night", render_scale=0.75, cameras=4, noise=7.0, blur=(0.2, 0.7),
            gain=(0.6, 0.9), cast=0.1, person_scale=(0.74, 0.9), width_scale=0.92, occlusion=0.1,
        ),
        DomainStyle(
            name="synth_u1",
            description="(unseen) pastel campus. ID: clothing colours, bag/hat (kind + colour), "
            "hair, cut, sleeves. Nuisance per image: patterns",
            hues=((0, 360),), sat=(0.2, 0.5), val=(0.75, 1.0), n_colors=9,
            identity=("top_color", "top_color2", "bottom_color", "bottom_color2", "bag",
                      "bag_color", "hat", "hat_color", "hair_style", "hair_color", "bottom_type",
                      "sleeve", "shoe_color", "skin"),
            background="noise", cameras=4, noise=3.0, blur=(0.0, 0.5), gain=(0.9, 1.1),
            cast=0.05, occlusion=0.12,
        ),
        DomainStyle(
            name="synth_u2",
            description="(unseen) sepia very-low-resolution archive. ID: patterns + frequency, "
            "trousers, shoes, silhouette, bag/hat kind. Nuisance per camera: top colours",
            hues=((15, 45),), sat=(0.15, 0.55), val=(0.2, 0.9), n_colors=8,
            identity=tuple(a for a in ATTRIBUTES if a not in ("top_color", "top_color2",
                                                               "bag_color", "hat_color")),
            camera_nuisance=("top_color", "top_color2"),
            patterns=("plain", "hstripes", "vstripes", "checks", "split"), freqs=(1.5, 2.5, 3.5),
            background="gradient", render_scale=0.4, saturation=0.6, cameras=3, noise=4.0,
            blur=(0.3, 0.8), cast=0.04, head_scale=0.9, width_scale=1.08, occlusion=0.08,
        ),
    ]
}

_SUMMER = color_weights(white=2.5, sky=2.0, yellow=2.0, orange=2.0, pink=2.0, red=1.5, beige=1.5, black=0.5,
                        navy=0.5, maroon=0.5, brown=0.5)
_PLAIN = (4.0, 1.0, 1.0, 1.0, 1.0, 1.0)  # most clothes are plain (relative to PATTERNS)
_WINTER = color_weights(black=2.5, navy=2.5, grey=2.0, maroon=2.0, brown=2.0, olive=1.5, yellow=0.5, pink=0.5,
                        sky=0.5, white=0.6)
CAMERA_ISP = {"auto_exposure": 0.75, "white_balance": 0.5}
"""Auto-exposure and white balance of the premise and pretraining cameras (generator version 4): real cameras
pull every image part of the way to mid-grey, so that, as in real ReID datasets, domains keep their lighting and
casts but their global channel statistics stay within a realistic range (version 3 spread the domains' mean
intensity from 0.16 to 0.69, and BN running statistics alone then made most of Finetune's forgetting)."""

POOR_WHITE_BALANCE = {"white_balance": 0.0}
"""Cameras without working auto white balance under mixed light (generator version 5: ``synth_b``'s mall and
``synth_d``'s plaza, each with strong per-camera colour casts, ``cast`` 0.25 / 0.3): the casts stay in the image, so a
model trained there learns to discount colour (the illumination factor of PatchKD's premise), which training on
domains with faithful colour undoes again."""


def with_camera(style: DomainStyle, **override: float) -> DomainStyle:
    """``style`` seen through the premise cameras: :data:`CAMERA_ISP`, with ``override`` (e.g. a weaker ISP) winning."""
    return replace(style, **{**CAMERA_ISP, **override})


PREMISE_STYLES: dict[str, DomainStyle] = {
    s.name: s
    for s in [
        with_camera(DomainStyle(
            name="synth_a",
            description="sunny street: warm light, ground-level cameras, open background, summer clothing "
            "(bright colours, shorts and skirts)",
            shared_palette=True, pattern_probs=_PLAIN, color_weights=_SUMMER, bottom_probs=(0.4, 0.35, 0.25),
            hat_probs=(0.5, 0.4, 0.1), background="gradient", cameras=4, noise=3.0, blur=(0.0, 0.4),
            gain=(1.0, 1.2), tint=(1.08, 1.0, 0.86), cast=0.05, person_scale=(0.84, 0.95),
            elevation=(0.0, 0.15), occlusion=0.05,
        )),
        with_camera(DomainStyle(
            name="synth_b",
            description="indoor mall: cool fluorescent and mixed shop light without white balance (strong "
            "per-camera casts), colourful shop fronts behind, medium-height cameras, some occlusion, many bags",
            shared_palette=True, pattern_probs=_PLAIN, color_weights=color_weights(blue=1.8, green=1.5, purple=1.5, grey=1.5),
            bag_probs=(0.2, 0.3, 0.25, 0.25), background="stripes", cameras=5, noise=4.0, blur=(0.2, 0.6),
            gain=(0.8, 1.05), tint=(0.9, 1.02, 1.12), cast=0.25, render_scale=0.85,
            person_scale=(0.76, 0.9), elevation=(0.15, 0.35), occlusion=0.15,
        ), **POOR_WHITE_BALANCE),
        with_camera(DomainStyle(
            name="synth_c",
            description="high CCTV cameras looking down, low resolution and blur, washed-out colour, brick "
            "walls, winter clothing (dark colours, trousers, beanies)",
            shared_palette=True, pattern_probs=_PLAIN, color_weights=_WINTER, bottom_probs=(0.85, 0.03, 0.12),
            hat_probs=(0.55, 0.1, 0.35), background="bricks", render_scale=0.5, saturation=0.55, cameras=3,
            noise=5.0, blur=(0.5, 1.0), gain=(0.85, 1.1), cast=0.04, person_scale=(0.66, 0.8),
            elevation=(0.45, 0.7), occlusion=0.08,
        )),
        with_camera(DomainStyle(
            name="synth_d",
            description="crowded plaza: cluttered background, harsh per-camera lighting and strong colour "
            "casts, frequent occlusion by passers-by and street furniture",
            shared_palette=True, color_weights=color_weights(green=1.6, olive=1.6, orange=1.4, beige=1.4),
            pattern_probs=(5.0, 1.0, 1.0, 1.0, 0.8, 1.0), background="clutter", cameras=5, noise=4.0,
            blur=(0.0, 0.6), gain=(0.75, 1.25), cast=0.3, person_scale=(0.78, 0.93),
            elevation=(0.1, 0.35), occlusion=0.15,
        ), **POOR_WHITE_BALANCE),
        with_camera(DomainStyle(
            name="synth_e",
            description="night street: orange sodium light, dark and noisy, lower resolution, lamps and shop "
            "windows behind",
            shared_palette=True, pattern_probs=_PLAIN, color_weights=color_weights(black=1.8, red=1.6, white=1.4, grey=1.4),
            background="night", render_scale=0.7, cameras=4, noise=8.0, blur=(0.3, 0.8), gain=(0.6, 0.85),
            tint=(1.12, 0.96, 0.72), cast=0.08, person_scale=(0.74, 0.9), elevation=(0.05, 0.3),
            occlusion=0.1,
        )),
        with_camera(DomainStyle(
            name="synth_u1",
            description="(unseen) campus in overcast light: overexposed, pale textured background, slightly "
            "desaturated, some occlusion",
            shared_palette=True, pattern_probs=_PLAIN, color_weights=color_weights(sky=1.6, pink=1.6, beige=1.6, white=1.4),
            background="noise", saturation=0.8, cameras=4, noise=3.0, blur=(0.0, 0.5), gain=(1.1, 1.3),
            tint=(1.0, 1.0, 1.05), cast=0.05, person_scale=(0.8, 0.94), elevation=(0.0, 0.25),
            occlusion=0.15,
        )),
        with_camera(DomainStyle(
            name="synth_u2",
            description="(unseen) sepia archive: very low resolution, blurred, cameras above the crowd",
            shared_palette=True, pattern_probs=_PLAIN, color_weights=color_weights(brown=1.6, beige=1.6, grey=1.4, navy=1.4),
            background="gradient", render_scale=0.4, saturation=0.5, cameras=3, noise=4.0,
            blur=(0.4, 0.9), gain=(0.9, 1.1), tint=(1.15, 1.0, 0.78), cast=0.04,
            person_scale=(0.7, 0.86), elevation=(0.3, 0.55), occlusion=0.08,
        )),
    ]
}

PRETRAIN_STYLES: dict[str, DomainStyle] = {
    s.name: with_camera(s)
    for s in [
        DomainStyle(
            name="pool_1", description="(pretraining pool) park in daylight, textured greenery, eye level",
            shared_palette=True, pattern_probs=_PLAIN, background="noise", cameras=4, gain=(0.9, 1.15),
            tint=(0.98, 1.04, 0.96), elevation=(0.0, 0.2), occlusion=0.1,
        ),
        DomainStyle(
            name="pool_2", description="(pretraining pool) railway station: brick walls, cool light, raised "
            "cameras, low resolution, crowds",
            shared_palette=True, pattern_probs=_PLAIN, background="bricks", render_scale=0.6, cameras=4,
            noise=4.0, blur=(0.3, 0.8), gain=(0.75, 1.05), tint=(0.92, 1.0, 1.1), elevation=(0.25, 0.55),
            occlusion=0.25,
        ),
        DomainStyle(
            name="pool_3", description="(pretraining pool) evening market: cluttered stalls, warm dim light, "
            "noise",
            shared_palette=True, pattern_probs=_PLAIN, background="clutter", cameras=4, noise=6.0,
            blur=(0.1, 0.6), gain=(0.65, 0.95), tint=(1.1, 0.98, 0.82), cast=0.1, elevation=(0.05, 0.3),
            occlusion=0.15,
        ),
        DomainStyle(
            name="pool_4", description="(pretraining pool) overcast car park: flat light, faded colours, blur",
            shared_palette=True, pattern_probs=_PLAIN, background="gradient", render_scale=0.8,
            saturation=0.7, cameras=4, blur=(0.3, 0.9), gain=(0.85, 1.1), elevation=(0.1, 0.4), occlusion=0.1,
        ),
    ]
}
STYLE_VARIANTS: dict[str, dict[str, DomainStyle]] = {
    "premise": PREMISE_STYLES, "conflict": CONFLICT_STYLES, "pretrain": PRETRAIN_STYLES}
"""The built-in domains by variant (``data.synth_variant``): ``premise`` (the default), ``conflict`` (the harder
variant) and ``pretrain`` (a pool of other domains, disjoint from both, for ``lreid pretrain``)."""
DOMAIN_STYLES: dict[str, DomainStyle] = PREMISE_STYLES
"""The default variant's domains."""



def get_style(style: str | DomainStyle, variant: str = "premise") -> DomainStyle:
    """Return the named :class:`DomainStyle` of ``variant`` (or pass one through); unknown name -> LReIDError."""
    if isinstance(style, DomainStyle):
        return style
    if variant not in STYLE_VARIANTS:
        raise LReIDError(f"unknown synthetic variant {variant!r}; valid: {', '.join(STYLE_VARIANTS)}")
    styles = STYLE_VARIANTS[variant]
    try:
        return styles[style]
    except (KeyError, TypeError):
        raise LReIDError(
            f"unknown synthetic domain {style!r}; valid names: {', '.join(styles)}"
        ) from None


def stable_seed(*parts: Any) -> int:
    """A 63-bit seed from any reprs, stable across processes and Python versions."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


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


# --------------------------------------------------------------------------------------------
# Cameras and backgrounds
# --------------------------------------------------------------------------------------------


def make_camera(style: str | DomainStyle, index: int, seed: int = 0) -> dict[str, Any]:
    """Per-camera viewpoint/illumination parameters (``index`` is 0-based)."""
    style = get_style(style)
    rng = np.random.default_rng(stable_seed("camera", seed, style.name, index))
    # spread the viewpoint so every domain has both facing directions
    back = rng.random() < style.back_view_prob
    return {
        "index": index,
        "seed": int(rng.integers(2**62)),
        "flip_prob": 0.15 if index % 2 == 0 else 0.85,  # which way people tend to face
        "back_prob": 0.8 if back else 0.1,
        "scale": float(rng.uniform(*style.person_scale)),
        "y_offset": float(rng.uniform(-0.03, 0.05)),
        "shear": float(rng.uniform(-style.shear, style.shear)),
        "gain": float(rng.uniform(*style.gain)),
        "cast": (1.0 + rng.uniform(-style.cast, style.cast, 3)).astype(np.float32).tolist(),
        "blur": float(rng.uniform(*style.blur)),
        "noise": float(style.noise * rng.uniform(0.7, 1.3)),
        "bg_seed": int(rng.integers(2**62)),
        "elevation": float(rng.uniform(*style.elevation)),
        "_bg": {},
    }


def _smooth_noise(rng: np.random.Generator, h: int, w: int, gh: int, gw: int, ch: int = 3) -> np.ndarray:
    """Low-frequency noise in [-1, 1], shape (h, w, ch)."""
    grid = rng.uniform(-1, 1, (gh, gw, ch)).astype(np.float32)
    out = np.empty((h, w, ch), np.float32)
    for c in range(ch):
        out[..., c] = np.asarray(
            Image.fromarray(np.ascontiguousarray(grid[..., c])).resize((w, h), Image.BICUBIC)
        )
    return out


def _background_template(style: DomainStyle, camera: Mapping[str, Any], h: int, w: int) -> np.ndarray:
    """A (h, 1.5*w) float32 RGB background for this camera; images crop a random window."""
    rng = np.random.default_rng([int(camera["bg_seed"]), h, w])
    tw = w + w // 2
    pal = palette(style)
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    kind = style.background

    def muted(c: np.ndarray, k: float = 0.55) -> np.ndarray:
        grey = c.mean()
        return grey + (c - grey) * k

    if kind == "gradient":
        top = rng.uniform(140, 230, 3).astype(np.float32)
        mid = top * rng.uniform(0.7, 1.0, 3).astype(np.float32)
        floor = rng.uniform(70, 170) * (1 + rng.uniform(-0.1, 0.1, 3)).astype(np.float32)
        horizon = rng.uniform(0.7, 0.85)
        bg = top + (mid - top) * (yy / horizon)
        bg = np.where(yy > horizon, floor, bg) * np.ones((1, tw, 1), np.float32)
        bg += 12 * _smooth_noise(rng, h, tw, 4, 6)
    elif kind == "noise":
        base = rng.uniform(150, 220, 3).astype(np.float32)
        lum = _smooth_noise(rng, h, tw, 6, 8, 1) * 40 + _smooth_noise(rng, h, tw, 16, 20, 1) * 12
        bg = base + lum + 12 * _smooth_noise(rng, h, tw, 4, 6)
    elif kind == "bricks":
        base = rng.uniform(90, 160) * (1 + rng.uniform(-0.15, 0.15, 3)).astype(np.float32)
        bh = max(3, h // int(rng.integers(10, 16)))
        bw = max(6, int(bh * rng.uniform(2.0, 3.0)))
        ys, xs = np.mgrid[0:h, 0:tw]
        row = ys // bh
        col = (xs + (row % 2) * (bw // 2)) // bw
        brick_rng = np.random.default_rng([int(camera["bg_seed"]), 7])
        shade = brick_rng.uniform(0.8, 1.2, (row.max() + 1, col.max() + 2)).astype(np.float32)
        bg = base[None, None, :] * shade[row, col][..., None]
        mortar = ((ys % bh) == 0) | (((xs + (row % 2) * (bw // 2)) % bw) == 0)
        bg = np.where(mortar[..., None], base * 0.55, bg)
    elif kind == "stripes":
        bg = np.empty((h, tw, 3), np.float32)
        x = 0
        while x < tw:
            bw = int(rng.integers(max(2, w // 8), max(3, w // 2)))
            c = muted(pal[rng.integers(len(pal))], 0.6) * rng.uniform(0.6, 1.0)
            bg[:, x:x + bw] = c
            x += bw
        floor = int(h * rng.uniform(0.78, 0.88))
        bg[floor:] = rng.uniform(60, 120)
        bg += 10 * _smooth_noise(rng, h, tw, 4, 6)
    elif kind == "clutter":
        base = rng.uniform(110, 190, 3).astype(np.float32)
        bg = base + 25 * _smooth_noise(rng, h, tw, 4, 6)
        ys, xs = np.mgrid[0:h, 0:tw].astype(np.float32)
        for _ in range(int(rng.integers(14, 24))):
            cy, cx = rng.uniform(0, h), rng.uniform(0, tw)
            ry, rx = rng.uniform(0.04, 0.15) * h, rng.uniform(0.08, 0.3) * w
            m = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1
            bg[m] = muted(pal[rng.integers(len(pal))], 0.8) * rng.uniform(0.7, 1.1)
    elif kind == "night":
        base = rng.uniform(20, 50, 3).astype(np.float32)
        bg = base + 14 * _smooth_noise(rng, h, tw, 6, 8)
        ys, xs = np.mgrid[0:h, 0:tw].astype(np.float32)
        for _ in range(int(rng.integers(2, 5))):  # street lamps / shop windows
            cy, cx = rng.uniform(0, 0.6 * h), rng.uniform(0, tw)
            r = rng.uniform(0.05, 0.12) * h
            glow = np.exp(-(((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * r * r)))
            bg += glow[..., None] * rng.uniform(80, 200) * np.array([1.0, 0.85, 0.55], np.float32)
    else:  # pragma: no cover - guarded by the style table
        raise LReIDError(f"unknown background kind {kind!r}")
    return np.clip(bg, 0, 255).astype(np.float32)


def _background(style: DomainStyle, camera: dict, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    cache = camera.setdefault("_bg", {})
    if (h, w) not in cache:
        cache[(h, w)] = _background_template(style, camera, h, w)
    tpl = cache[(h, w)]
    x0 = int(rng.integers(0, tpl.shape[1] - w + 1))
    out = tpl[:, x0:x0 + w].copy()
    if rng.random() < 0.5:
        out = out[:, ::-1].copy()
    out *= rng.uniform(0.92, 1.08)
    return out


# --------------------------------------------------------------------------------------------
# Person renderer
# --------------------------------------------------------------------------------------------


def _pattern_mask(kind: str, uu: np.ndarray, vv: np.ndarray, period: float, vmid: float) -> np.ndarray | None:
    """Boolean "secondary colour" mask for a pattern evaluated at body coords (uu, vv)."""
    if kind == "plain":
        return None
    if kind == "hstripes":
        return (vv / period) % 1.0 < 0.5
    if kind == "vstripes":
        return (uu / period + 0.25) % 1.0 < 0.5
    if kind == "checks":
        return ((vv / period) % 1.0 < 0.5) ^ ((uu / period + 0.25) % 1.0 < 0.5)
    if kind == "dots":
        fu = (uu / period + 0.25) % 1.0 - 0.5
        fv = (vv / period) % 1.0 - 0.5
        return fu * fu + fv * fv < 0.09
    if kind == "split":
        return vv > vmid
    raise KeyError(kind)


class _Win:
    """A pixel window of the canvas with its body coordinates; shape tests return bool masks."""

    __slots__ = ("sy", "sx", "U", "V")

    def __init__(self, sy: slice, sx: slice, U: np.ndarray, V: np.ndarray):
        self.sy, self.sx, self.U, self.V = sy, sx, U, V

    def rect(self, u0, u1, v0, v1):
        U, V = self.U, self.V
        return (U >= u0) & (U < u1) & (V >= v0) & (V < v1)

    def ellipse(self, cu, cv, ru, rv):
        return ((self.U - cu) / ru) ** 2 + ((self.V - cv) / rv) ** 2 <= 1.0

    def limb(self, u0, v0, v1, slope, hw0, hw1=None):
        """A (tapered) band from v0 to v1 whose centre starts at u0 and drifts by slope*dv."""
        hw1 = hw0 if hw1 is None else hw1
        t = (self.V - v0) / (v1 - v0)
        centre = u0 + slope * (self.V - v0)
        return (t >= 0) & (t < 1) & (np.abs(self.U - centre) <= hw0 + (hw1 - hw0) * t)

    def line(self, ua, va, ub, vb, hw):
        du, dv = ub - ua, vb - va
        n = (du * du + dv * dv) ** 0.5
        t = ((self.U - ua) * du + (self.V - va) * dv) / (n * n)
        d = np.abs((self.U - ua) * dv - (self.V - va) * du) / n
        return (t >= 0) & (t <= 1) & (d <= hw)


class _Canvas:
    """Body-coordinate painter.  u is horizontal (0 = body axis), v vertical (0 = top of the head,
    1 = soles), both in units of the person's height (u stretched by ``aspect``).  Every part is evaluated only inside the
    pixel bounding box of its body-coordinate box (that keeps rendering ~1 ms per image)."""

    def __init__(self, img, cx, top_y, ph, rot, shear, flip, rng, jitter, aspect=1.0):
        self.img, self.rng, self.jitter = img, rng, jitter
        self.cx, self.top_y, self.ph, self.shear, self.flip = cx, top_y, ph, shear, flip
        self.cos, self.sin = float(np.cos(rot)), float(np.sin(rot))
        h, w = img.shape[:2]
        ys, xs = _grid(h, w)
        dx, dy = xs - cx, ys - top_y - ph / 2
        dxr = dx * self.cos - dy * self.sin
        dyr = dx * self.sin + dy * self.cos + ph / 2
        self.u = (dxr - shear * (dyr - ph)) / (ph * aspect)
        if flip:
            self.u = -self.u
        self.v = dyr / ph
        self.h, self.w = h, w
        # body (u, v) -> pixel (x, y) is affine; coefficients used for window bounding boxes
        su, cs, sn = (-1.0 if flip else 1.0), self.cos, self.sin
        self.affine = (
            su * ph * aspect * cs, shear * ph * cs + ph * sn, cx - 0.5 - shear * ph * cs - ph / 2 * sn,
            -su * ph * aspect * sn, -shear * ph * sn + ph * cs, top_y + ph / 2 - 0.5 + shear * ph * sn - ph / 2 * cs,
        )
        self._jit = rng.normal(0, jitter, (16, 4)).astype(np.float32) if jitter > 0 else None
        self._jit_i = 0

    def win(self, u0: float, u1: float, v0: float, v1: float) -> _Win | None:
        """The pixel window covering the body-coordinate box [u0, u1] x [v0, v1]."""
        ax_u, ax_v, x_c, ay_u, ay_v, y_c = self.affine
        a, b, c, d = ax_u * u0, ax_u * u1, ax_v * v0, ax_v * v1
        x0 = max(0, int(x_c + min(a, b) + min(c, d)) - 1)
        x1 = min(self.w, int(x_c + max(a, b) + max(c, d)) + 3)
        a, b, c, d = ay_u * u0, ay_u * u1, ay_v * v0, ay_v * v1
        y0 = max(0, int(y_c + min(a, b) + min(c, d)) - 1)
        y1 = min(self.h, int(y_c + max(a, b) + max(c, d)) + 3)
        if x1 <= x0 or y1 <= y0:
            return None
        sy, sx = slice(y0, y1), slice(x0, x1)
        return _Win(sy, sx, self.u[sy, sx], self.v[sy, sx])

    def color(self, c: Sequence[float]) -> np.ndarray:
        """``c`` with a small per-image colour/brightness jitter."""
        c = np.asarray(c, np.float32)
        if self._jit is not None:
            j = self._jit[self._jit_i % len(self._jit)]
            self._jit_i += 1
            c = c * (1.0 + j[:3]) * (1.0 + j[3])
        return c

    def fill(self, w: _Win | None, mask: np.ndarray | None, c1, c2=None, pattern: str = "plain",
             period: float = 0.1, v0: float = 0.0, v1: float = 1.0, axis: float = 0.0,
             hw: float = 0.0) -> None:
        if w is None or mask is None:
            return
        sub = self.img[w.sy, w.sx]
        c1 = np.asarray(c1, np.float32)
        textured = pattern != "plain" and c2 is not None
        if not textured and hw <= 0:
            sub[mask] = c1
            return
        uu = w.U[mask]
        if uu.size == 0:
            return
        if textured:
            sec = _pattern_mask(pattern, uu, w.V[mask] - v0, period, (v1 - v0) * 0.5)
            col = np.where(sec[:, None], np.asarray(c2, np.float32), c1)
        else:
            col = c1[None, :]
        if hw > 0:  # cylindrical shading across the limb/torso
            col = col * (1.0 - 0.3 * np.minimum(((uu - axis) / hw) ** 2, 1.0))[:, None]
        sub[mask] = col

    # one-shape helpers: window = the shape's own bounding box
    def rect(self, u0, u1, v0, v1):
        w = self.win(u0, u1, v0, v1)
        return w, (None if w is None else w.rect(u0, u1, v0, v1))

    def ellipse(self, cu, cv, ru, rv):
        w = self.win(cu - ru, cu + ru, cv - rv, cv + rv)
        return w, (None if w is None else w.ellipse(cu, cv, ru, rv))

    def line(self, ua, va, ub, vb, hw):
        w = self.win(min(ua, ub) - hw, max(ua, ub) + hw, min(va, vb) - hw, max(va, vb) + hw)
        return w, (None if w is None else w.line(ua, va, ub, vb, hw))


_GRIDS: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    if (h, w) not in _GRIDS:
        ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
        _GRIDS[(h, w)] = (ys, xs)
    return _GRIDS[(h, w)]


_NOISE_BANK: np.ndarray | None = None


def _noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Unit Gaussian noise of ``shape``: a random window of a fixed bank (much faster than
    drawing fresh normals for every pixel, and just as deterministic)."""
    global _NOISE_BANK
    n = int(np.prod(shape))
    if _NOISE_BANK is None or _NOISE_BANK.size < 2 * n:
        size = max(1 << 19, 2 * n)
        _NOISE_BANK = np.random.default_rng(12345).standard_normal(size, dtype=np.float32)
    start = int(rng.integers(0, _NOISE_BANK.size - n + 1))
    return _NOISE_BANK[start:start + n].reshape(shape)


def _hue_matrix(degrees: float) -> np.ndarray:
    """3x3 RGB matrix rotating hue by ``degrees`` about the grey axis (keeps grey and brightness)."""
    t = np.deg2rad(degrees)
    k = np.array([[0, -1, 1], [1, 0, -1], [-1, 1, 0]], np.float32) / np.sqrt(3.0)
    return (np.cos(t) * np.eye(3) + (1 - np.cos(t)) / 3.0 * np.ones((3, 3)) + np.sin(t) * k).astype(np.float32)


def camera_isp(img: np.ndarray, exposure: float, balance: float, grey: float = 118.0) -> np.ndarray:
    """A camera's auto-exposure and grey-world white balance on an (H, W, 3) float image in 0..255 units.

    Exposure scales the image by (grey / L)^exposure, L its mean luminance; balance scales each channel by
    (m / m_c)^balance, m_c its mean and m their average. 0 leaves the image as lit, 1 corrects fully.
    """
    if exposure == 0.0 and balance == 0.0:
        return img
    means = img.reshape(-1, 3).mean(0) + 1.0                     # (3,), +1: no division by zero in the dark
    lum = 0.299 * means[0] + 0.587 * means[1] + 0.114 * means[2]
    gains = (grey / lum) ** exposure * (means.mean() / means) ** balance
    return img * gains.astype(np.float32)


def _blur(img: np.ndarray, radius: float) -> np.ndarray:
    """Gaussian-like blur of an (H, W, 3) float image with standard deviation ``radius`` px,
    as repeated separable 3-tap passes (each adds variance 2a, a <= 0.25)."""
    var = radius * radius
    if var < 0.01:
        return img
    passes = int(np.ceil(var / 0.5))
    a = var / (2 * passes)
    out = img
    for _ in range(passes):
        for axis in (0, 1):
            src = out
            out = src * (1 - 2 * a)
            lo = [slice(None)] * 2
            hi = [slice(None)] * 2
            lo[axis], hi[axis] = slice(1, None), slice(None, -1)
            out[tuple(lo)] += a * src[tuple(hi)]  # neighbour before
            out[tuple(hi)] += a * src[tuple(lo)]  # neighbour after
            edge = [slice(None)] * 2
            for k in (0, -1):  # replicate the border
                edge[axis] = k
                out[tuple(edge)] += a * src[tuple(edge)]
    return out


def render_person(
    attrs: Mapping[str, Any], style: str | DomainStyle, camera: dict[str, Any],
    rng: np.random.Generator, height: int = 128, width: int = 64,
) -> np.ndarray:
    """Render one pedestrian image, ``(height, width, 3)`` uint8.

    ``attrs`` is a full attribute dict (from :func:`sample_appearance`, or
    :func:`sample_identity` to render the identity's default look); ``camera`` comes from
    :func:`make_camera`; ``rng`` drives the per-image jitter (pose, position, occlusion, noise).
    """
    style = get_style(style)
    rh = max(16, int(round(height * style.render_scale)))
    rw = max(8, int(round(width * style.render_scale)))
    img = _background(style, camera, rh, rw, rng)

    # ---- per-image geometry ---------------------------------------------------------------
    flip = rng.random() < camera["flip_prob"]
    back = rng.random() < camera["back_prob"]
    elev = float(camera.get("elevation", 0.0))  # seen from above: foreshortened body, larger head
    ph = rh * camera["scale"] * float(attrs["height"]) * rng.uniform(0.96, 1.04) * (1 - 0.25 * elev)  # person px
    foot_y = rh * (0.5 + camera["scale"] * 0.5 + camera["y_offset"]) + rng.uniform(-0.03, 0.03) * rh
    foot_y = min(foot_y, rh * 0.995)
    cx = rw * 0.5 + rng.uniform(-0.09, 0.09) * rw
    rot = np.deg2rad(rng.uniform(-3, 3))
    shear = camera["shear"] + rng.uniform(-0.02, 0.02)
    cv = _Canvas(img, cx, foot_y - ph, ph, rot, shear, flip, rng, style.color_jitter, aspect=1 + 0.3 * elev)

    # ---- body layout (body units) -------------------------------------------------------
    wf = float(attrs["build"]) * style.width_scale
    head_h = 0.13 * style.head_scale * (1 + 0.35 * elev)
    head_ru = 0.058 * style.head_scale * (1 + 0.35 * elev)
    torso_v0 = head_h + 0.02
    waist = torso_v0 + (1.0 - torso_v0) * 0.40
    sole, shoe_v0 = 1.0, 0.955
    sh_hw, waist_hw = 0.125 * wf, 0.105 * wf
    arm_hw = 0.032 * wf
    leg_hw = 0.047 * wf
    leg_u = 0.055 * wf
    stride = rng.uniform(-0.09, 0.09)
    swing = rng.uniform(-0.05, 0.05)
    torso_h = waist - torso_v0

    skin = cv.color(attrs["skin"])
    hair = cv.color(attrs["hair_color"])
    top1, top2 = cv.color(attrs["top_color"]), cv.color(attrs["top_color2"])
    bot1, bot2 = cv.color(attrs["bottom_color"]), cv.color(attrs["bottom_color2"])
    shoe = cv.color(attrs["shoe_color"])
    bag_c, hat_c = cv.color(attrs["bag_color"]), cv.color(attrs["hat_color"])
    if style.hue_jitter > 0:  # one random hue rotation for all clothing of this image
        rot_m = _hue_matrix(rng.uniform(-style.hue_jitter, style.hue_jitter))
        top1, top2, bot1, bot2, shoe, bag_c, hat_c = (
            np.clip((rot_m * c).sum(1), 0, 255) for c in (top1, top2, bot1, bot2, shoe, bag_c, hat_c))
        if style.hair_from_palette:
            hair = np.clip((rot_m * hair).sum(1), 0, 255)
    top_period = torso_h / float(attrs["top_freq"])
    bot_period = torso_h / float(attrs["bottom_freq"])
    top_pat, bot_pat = attrs["top_pattern"], attrs["bottom_pattern"]
    bottom_type, bag, hat = attrs["bottom_type"], attrs["bag"], attrs["hat"]
    hair_style = attrs["hair_style"]

    # backpack seen from the front: side pads peek out behind the arms
    if bag == "backpack" and not back:
        cv.fill(*cv.rect(-sh_hw - 0.03, sh_hw + 0.03, torso_v0 + 0.03, waist - 0.04), bag_c)
    # long hair behind the head/shoulders
    if hair_style == "long":
        cv.fill(*cv.rect(-head_ru * 1.15, head_ru * 1.15, head_h * 0.35, head_h + 0.07), hair)

    # legs (+ shoes)
    if bottom_type == "trousers":
        cloth_v1 = shoe_v0
    elif bottom_type == "shorts":
        cloth_v1 = waist + 0.15
    else:  # skirt: skin legs, skirt drawn on top
        cloth_v1 = waist
    for side, s in ((-1, stride), (1, -stride)):
        u0 = side * leg_u
        u_end = u0 + s * (shoe_v0 - waist)
        w = cv.win(min(u0, u_end) - leg_hw * 1.1, max(u0, u_end) + leg_hw * 1.1, waist, shoe_v0)
        if w is not None:
            leg = w.limb(u0, waist, shoe_v0, s, leg_hw * 1.05, leg_hw * 0.85)
            cloth = leg & (w.V < cloth_v1)
            cv.fill(w, cloth, bot1, bot2, bot_pat, bot_period, waist, shoe_v0, axis=u0, hw=leg_hw * 1.5)
            cv.fill(w, leg & ~cloth, skin, axis=u0, hw=leg_hw * 1.5)
        cv.fill(*cv.ellipse(u_end + side * 0.012, (shoe_v0 + sole) / 2, leg_hw * 1.35, (sole - shoe_v0) * 0.75), shoe)
    # hips / skirt
    cv.fill(*cv.rect(-waist_hw, waist_hw, waist - 0.01, waist + 0.05), bot1, bot2, bot_pat, bot_period, waist, shoe_v0)
    if bottom_type == "skirt":
        w = cv.win(-waist_hw * 1.55, waist_hw * 1.55, waist - 0.01, waist + 0.2)
        if w is not None:
            cv.fill(w, w.limb(0.0, waist - 0.01, waist + 0.2, 0.0, waist_hw, waist_hw * 1.55),
                    bot1, bot2, bot_pat, bot_period, waist, waist + 0.2, hw=waist_hw * 1.8)

    # neck, torso
    cv.fill(*cv.rect(-0.022, 0.022, head_h * 0.8, torso_v0 + 0.02), skin)
    w = cv.win(-sh_hw, sh_hw, torso_v0 - 0.005, waist + 0.015)
    if w is not None:
        torso = w.limb(0.0, torso_v0, waist + 0.015, 0.0, sh_hw, waist_hw)
        torso |= w.ellipse(0.0, torso_v0 + 0.025, sh_hw, 0.03)
        cv.fill(w, torso, top1, top2, top_pat, top_period, torso_v0, waist, hw=sh_hw * 1.4)
    if bag == "backpack" and back:
        cv.fill(*cv.rect(-sh_hw * 0.78, sh_hw * 0.78, torso_v0 + 0.03, waist - 0.02), bag_c, hw=sh_hw)
    elif bag == "backpack":
        for side in (-1, 1):
            cv.fill(*cv.rect(side * sh_hw * 0.55 - 0.014, side * sh_hw * 0.55 + 0.014, torso_v0, waist - 0.12), bag_c)

    # arms
    arm_v0, arm_v1 = torso_v0 + 0.01, waist + 0.03
    sleeve_v1 = arm_v1 if attrs["sleeve"] == "long" else arm_v0 + 0.09
    for side, s in ((-1, swing), (1, -swing)):
        u0 = side * (sh_hw + arm_hw * 0.8)
        slope = side * 0.06 + s
        hand_u = u0 + slope * (arm_v1 - arm_v0)
        w = cv.win(min(u0, hand_u) - arm_hw * 1.2, max(u0, hand_u) + arm_hw * 1.2, arm_v0, arm_v1)
        if w is not None:
            arm = w.limb(u0, arm_v0, arm_v1, slope, arm_hw * 1.1, arm_hw * 0.85)
            sleeve = arm & (w.V < sleeve_v1)
            cv.fill(w, sleeve, top1, top2, top_pat, top_period, torso_v0, waist, axis=u0, hw=arm_hw * 1.6)
            cv.fill(w, arm & ~sleeve, skin, axis=u0, hw=arm_hw * 1.6)
        cv.fill(*cv.ellipse(hand_u, arm_v1 + 0.012, arm_hw * 1.05, 0.022), skin)
        if bag == "handbag" and side == -1:
            cv.fill(*cv.rect(hand_u - 0.05, hand_u + 0.05, arm_v1 + 0.02, arm_v1 + 0.12), bag_c, hw=0.06, axis=hand_u)
            cv.fill(*cv.line(hand_u - 0.03, arm_v1 + 0.02, hand_u, arm_v1 - 0.01, 0.008), bag_c)

    # shoulder bag: strap across the torso + bag at the hip
    if bag == "shoulder":
        cv.fill(*cv.line(-sh_hw * 0.7, torso_v0, sh_hw + 0.02, waist - 0.06, 0.011), bag_c * 0.8)
        cv.fill(*cv.rect(sh_hw - 0.01, sh_hw + 0.085, waist - 0.08, waist + 0.06), bag_c, hw=0.06, axis=sh_hw + 0.04)

    # head, hair, hat
    head_cv = head_h * 0.5
    w = cv.win(-head_ru * 1.4, head_ru * 1.4, -0.01, head_h + 0.06)
    if w is not None:
        head = w.ellipse(0.0, head_cv, head_ru, head_h * 0.5)
        if back and hair_style != "bald":
            cv.fill(w, head, hair, hw=head_ru * 1.3)
        else:
            cv.fill(w, head, skin, hw=head_ru * 1.4)
            if hair_style != "bald":
                cap = w.ellipse(0.0, head_cv - 0.004, head_ru * 1.1, head_h * 0.54) & (w.V < head_h * 0.36)
                cv.fill(w, cap, hair)
            if hair_style == "long":
                strands = (np.abs(w.U) <= head_ru * 1.15) & (np.abs(w.U) >= head_ru * 0.8)
                cv.fill(w, strands & (w.V >= head_h * 0.3) & (w.V < head_h + 0.05) & ~head, hair)
        if hat == "cap":
            cv.fill(w, w.ellipse(0.0, head_h * 0.28, head_ru * 1.12, head_h * 0.3) & (w.V < head_h * 0.3), hat_c)
            cv.fill(w, w.rect(-head_ru * 1.2, head_ru * 1.4, head_h * 0.24, head_h * 0.33), hat_c * 0.85)
        elif hat == "beanie":
            cv.fill(w, w.ellipse(0.0, head_h * 0.38, head_ru * 1.1, head_h * 0.45) & (w.V < head_h * 0.42), hat_c)

    # ---- occlusion, illumination, resolution, blur, noise ----------------------------------
    if rng.random() < style.occlusion:
        pal = palette(style)
        oc = pal[rng.integers(len(pal))] * 0.6 + 40
        if rng.random() < 0.6:  # something in front of the legs (car, bench, railing)
            img[int(rh * rng.uniform(0.6, 0.8)):] = oc
        else:  # a passer-by / pole at one side
            wdt = int(rw * rng.uniform(0.2, 0.35))
            if rng.random() < 0.5:
                img[:, :wdt] = oc
            else:
                img[:, rw - wdt:] = oc
    light = np.asarray(camera["cast"], np.float32) * np.asarray(style.tint, np.float32)
    light *= camera["gain"] * rng.uniform(0.93, 1.07)
    img *= light
    img = camera_isp(img, style.auto_exposure, style.white_balance)
    if (rh, rw) != (height, width):
        small = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
        img = np.asarray(small.resize((width, height), Image.BILINEAR), dtype=np.float32)
    arr = _blur(img, camera["blur"] * rng.uniform(0.8, 1.2))
    if style.saturation < 1.0:
        grey = 0.299 * arr[..., 0] + 0.587 * arr[..., 1] + 0.114 * arr[..., 2]  # no BLAS (fork-safe)
        arr = grey[..., None] + (arr - grey[..., None]) * style.saturation
    if camera["noise"] > 0:
        arr = arr + _noise(rng, arr.shape) * camera["noise"]
    return np.clip(arr + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Benchmark writer
# --------------------------------------------------------------------------------------------


def _identities(style: DomainStyle, n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """``n`` identities whose identity-bearing attribute tuples are distinct where possible."""
    out, seen = [], set()
    for _ in range(n):
        for _attempt in range(50):
            ident = sample_identity(style, rng)
            if ident["key"] not in seen:
                break
        seen.add(ident["key"])
        out.append(ident)
    return out


_PLAN_CACHE: dict[str, list] = {}


def _plan_domain(style: DomainStyle, params: Mapping[str, Any], seed: int) -> list[tuple[str, int, int, int, dict]]:
    """Deterministic list of ``(split, pid, cam0, image_index, identity)`` for one domain; the
    frame number of an entry is its position + 1."""
    key = json.dumps([asdict(style), dict(params), seed], sort_keys=True)
    if key in _PLAN_CACHE:
        return _PLAN_CACHE[key]
    n_train, n_test = params["ids_per_domain"], params["test_ids_per_domain"]
    n_img, n_gal, n_cams = params["images_per_id"], params["gallery_per_id"], params["cameras"]
    n_distractors = params["distractors"]
    rng = np.random.default_rng(stable_seed("plan", seed, style.name))
    idents = _identities(style, n_train + n_test + n_distractors, rng)
    plan: list[tuple[str, int, int, int, dict]] = []
    for i in range(n_train):
        pid = i + 1
        k = int(rng.integers(2, n_cams + 1))  # each person is seen by k >= 2 cameras
        cams = rng.permutation(n_cams)[:k]
        for j in range(n_img):
            plan.append(("bounding_box_train", pid, int(cams[j % k]), j, idents[i]))
    for i in range(n_test):
        pid = n_train + i + 1
        perm = rng.permutation(n_cams)
        # one query on each of two cameras; the gallery cycles through the other cameras first and
        # then the query cameras crosswise, so every query has a match from another camera
        order = np.concatenate([perm[2:], perm[:2][::-1]]) if n_cams > 2 else perm[::-1]
        for j, c in enumerate(perm[:2]):
            plan.append(("query", pid, int(c), j, idents[n_train + i]))
        for j in range(n_gal):
            plan.append(("bounding_box_test", pid, int(order[j % n_cams]), j + 2, idents[n_train + i]))
    for i in range(n_distractors):
        plan.append(("bounding_box_test", 0, int(rng.integers(n_cams)), i, idents[n_train + n_test + i]))
    if len(_PLAN_CACHE) > 16:
        _PLAN_CACHE.clear()
    _PLAN_CACHE[key] = plan
    return plan


_CAMERA_CACHE: dict[tuple[str, int, int], dict[str, Any]] = {}


def _render_chunk(tmp: str, style: DomainStyle, params: Mapping[str, Any], seed: int,
                  start: int, stop: int, bar=None) -> int:
    """Render and write plan entries ``[start, stop)`` of one domain into ``tmp``.  Every image
    depends only on its own seeds, so chunks may run in any order or process."""
    plan = _plan_domain(style, params, seed)
    cameras = []
    for c in range(params["cameras"]):
        key = (json.dumps(asdict(style), sort_keys=True), seed, c)
        if key not in _CAMERA_CACHE:
            _CAMERA_CACHE[key] = make_camera(style, c, seed)
        cameras.append(_CAMERA_CACHE[key])
    root = Path(tmp)
    for frame in range(start + 1, stop + 1):
        split, pid, cam, j, ident = plan[frame - 1]
        rng = np.random.default_rng([seed, SPLITS.index(split), pid, j, cam, frame])
        attrs = sample_appearance(ident, style, cameras[cam], rng)
        arr = render_person(attrs, style, cameras[cam], rng, params["height"], params["width"])
        name = f"{pid:04d}_c{cam + 1}s1_{frame:06d}_00.jpg"
        Image.fromarray(arr).save(root / split / name, quality=90)
        if bar is not None:
            bar.update(1)
    return stop - start


def _inventory(folder: Path) -> dict[str, list[int]] | None:
    """``{split: [file count, total bytes]}`` of a domain folder, or None when a split folder is missing."""
    out = {}
    for split in SPLITS:
        if not (folder / split).is_dir():
            return None
        sizes = [f.stat().st_size for f in (folder / split).iterdir()]
        out[split] = [len(sizes), sum(sizes)]
    return out


def domain_complete(folder: Path, params: Mapping[str, Any]) -> bool:
    """Whether ``folder`` holds a whole domain made with ``params``: its manifest ``synthetic.json`` (written
    last) names the same parameters and the files on disk match the manifest's counts and byte totals."""
    try:
        meta = json.loads((folder / "synthetic.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("params") == dict(params) and meta.get("files") == _inventory(folder)


@contextlib.contextmanager
def _cache_lock(root: Path):
    """Exclusive lock on ``root/.lock`` while a process writes into the cache (``io.lock_file``: released when
    its holder exits, never held by forked render workers); a wait for another process says so on stderr."""
    def wait(holder: str) -> None:
        print(f"waiting for {root / '.lock'}: process {holder} is writing the synthetic benchmark there",
              file=sys.stderr, flush=True)

    with lock_file(root / ".lock", wait):
        yield


def _check_not_users(root: Path, names: list[str]) -> None:
    """Refuse to replace ``root/<domain>`` when it is not a synthetic domain this module wrote (a file, or a folder
    without our ``synthetic.json``): it may be the user's own data."""
    for name in names:
        folder = root / name
        if not (folder.exists() or folder.is_symlink()):
            continue
        try:
            meta = json.loads((folder / "synthetic.json").read_text())
            ours = folder.is_dir() and not folder.is_symlink() and isinstance(meta, dict) and "params" in meta
        except (OSError, ValueError):
            ours = False
        if not ours:
            raise LReIDError(f"{folder} is in the way: not a synthetic domain written by lreid (no synthetic.json); "
                             f"not replacing it (move it, or choose another folder)")


def _finalize(root: Path, tmp: Path, style: DomainStyle, params: Mapping[str, Any]) -> None:
    """Write the manifest into the finished ``tmp`` folder (last), then swap it in for ``root/<domain>``."""
    final = root / style.name
    meta = {"params": dict(params), "style": asdict(style), "files": _inventory(tmp)}
    (tmp / "synthetic.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    old = tmp.with_name(tmp.name[: -len(".tmp")] + ".old.tmp")
    if final.exists():
        os.replace(final, old)               # the stale or half-written domain, removed once the new one is in
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def benchmark_key(**params: Any) -> str:
    """A folder name for one generator setting, ``v<GENERATOR_VERSION>-<variant>-<hash>``: the hash covers
    every :func:`make_benchmark` keyword in ``params`` (domains excepted: each domain's own style is checked in
    its ``synthetic.json``), so settings that differ never share, or overwrite, a folder."""
    variant = params.get("variant", "premise")
    digest = hashlib.sha256(json.dumps([GENERATOR_VERSION, params], sort_keys=True, default=str).encode())
    return f"v{GENERATOR_VERSION}-{variant}-{digest.hexdigest()[:10]}"


def _check_int(label: str, val: Any, lo: int) -> None:
    if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < lo:
        raise LReIDError(f"make_benchmark: {label} must be an integer >= {lo}, got {val!r}")


def make_benchmark(
    root: str | os.PathLike,
    domains: Sequence[str | DomainStyle] | None = None,
    ids_per_domain: int = 100,
    test_ids_per_domain: int = 60,
    images_per_id: int = 12,
    cameras: int | None = None,
    height: int = 128,
    width: int = 64,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
    gallery_per_id: int | None = None,
    distractors: int = 0,
    workers: int | None = None,
    variant: str = "premise",
) -> dict[str, Path]:
    """Write (or reuse) the synthetic benchmark under ``root``; returns ``{domain: path}``.

    Per domain: ``ids_per_domain`` train identities x ``images_per_id`` images
    (``bounding_box_train``, each identity seen by >= 2 cameras); ``test_ids_per_domain`` further
    identities (disjoint pids), each with one ``query`` image on each of 2 cameras and
    ``gallery_per_id`` (default ``max(2, images_per_id - 4)``) gallery images spread over the
    cameras (``bounding_box_test``) so that every query has a cross-camera match, plus
    ``distractors`` gallery images of pid 0000.  ``cameras=None`` uses each style's own camera
    count.  ``domains`` holds names of the ``variant``'s built-in domains (:data:`STYLE_VARIANTS`;
    default: all of them, for ``premise``/``conflict`` the 5 seen + 2 unseen) or :class:`DomainStyle`
    objects (e.g. ``dataclasses.replace(get_style("synth_a"), name="synth_a_easy", occlusion=0.0)``).  Files are ``PPPP_cCs1_FFFFFF_00.jpg``.

    Each domain is written to a private temp folder ``root/.<domain>.XXXX.tmp`` and renamed into
    place, under an exclusive lock on ``root/.lock`` (concurrent processes wait, then reuse it), with
    a manifest ``synthetic.json`` of its parameters and file counts written last; a domain is reused
    only when its manifest matches the parameters and the files on disk (else it is regenerated)
    and ``overwrite`` is off.  ``workers`` forked processes render in parallel (default: up to 4 for
    jobs of >= 3000 images, else 1; serial where fork is unavailable); the bytes do not depend on it.
    """
    if domains is None:
        names = list(STYLE_VARIANTS.get(variant, DOMAIN_STYLES))
    elif isinstance(domains, str):
        names = [domains]
    else:
        names = list(domains)
    if not names:
        raise LReIDError("make_benchmark: no domains requested")
    styles = [get_style(n, variant) for n in names]
    if len({st.name for st in styles}) != len(styles):
        raise LReIDError(f"make_benchmark: duplicate domain names in {[st.name for st in styles]}")
    _check_int("ids_per_domain", ids_per_domain, 1)
    _check_int("test_ids_per_domain", test_ids_per_domain, 1)
    _check_int("images_per_id", images_per_id, 2)
    _check_int("distractors", distractors, 0)
    _check_int("height", height, 16)
    _check_int("width", width, 8)
    gallery = max(2, images_per_id - 4) if gallery_per_id is None else gallery_per_id
    _check_int("gallery_per_id", gallery, 2)
    if cameras is not None:
        _check_int("cameras", cameras, 2)
        if cameras > 9:
            raise LReIDError(f"make_benchmark: cameras must be at most 9 (one digit), got {cameras}")
    if ids_per_domain + test_ids_per_domain > 9999:
        raise LReIDError("make_benchmark: ids_per_domain + test_ids_per_domain must be <= 9999")
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LReIDError(f"make_benchmark: cannot create {root}: {exc}") from None

    jobs: list[tuple[DomainStyle, dict[str, Any], int]] = []
    for style in styles:
        params = {
            "generator_version": GENERATOR_VERSION, "spec": style.name, "variant": variant,
            "style_hash": stable_seed(json.dumps(asdict(style), sort_keys=True)), "seed": int(seed),
            "ids_per_domain": int(ids_per_domain), "test_ids_per_domain": int(test_ids_per_domain),
            "images_per_id": int(images_per_id), "gallery_per_id": int(gallery),
            "cameras": int(cameras) if cameras is not None else style.cameras,
            "height": int(height), "width": int(width), "distractors": int(distractors),
        }
        jobs.append((style, params, stable_seed("domain", int(seed), style.name)))
    out = {style.name: root / style.name for style, _, _ in jobs}
    if not overwrite and all(domain_complete(root / s.name, p) for s, p, _ in jobs):
        return out                                         # fast path: no lock needed to reuse a whole cache
    if not overwrite:
        _check_not_users(root, [s.name for s, p, _ in jobs if not domain_complete(root / s.name, p)])
    with _cache_lock(root):
        # another process may have finished some domains while this one waited for the lock
        todo = [job for job in jobs if overwrite or not domain_complete(root / job[0].name, job[1])]
        if todo:
            _render_domains(root, todo, progress, workers)
    return out


def _render_domains(root: Path, todo: list[tuple[DomainStyle, dict[str, Any], int]], progress: bool,
                    workers: int | None) -> None:
    """Render ``todo`` (under the cache lock) into private temp folders and swap each one in when whole."""
    sizes = [len(_plan_domain(s, p, sd)) for s, p, sd in todo]
    total = sum(sizes)
    if workers is None:
        workers = min(4, os.cpu_count() or 1) if total >= 3000 else 1
    _check_int("workers", workers, 1)
    for style, _, _ in todo:                               # left by killed processes (the lock is ours)
        for stale in root.glob(f".{style.name}.*tmp"):
            shutil.rmtree(stale, ignore_errors=True)

    bar = None
    from lreid_core.progress import enabled as progress_enabled

    if progress and progress_enabled():
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc="synthetic benchmark", unit="img")
    tmps: list[Path] = []
    try:
        for style, _, _ in todo:
            tmps.append(Path(tempfile.mkdtemp(prefix=f".{style.name}.", suffix=".tmp", dir=root)))
            os.chmod(tmps[-1], 0o777 & ~umask())            # mkdtemp makes 0700; the cache follows the umask
            for split in SPLITS:
                (tmps[-1] / split).mkdir()
        done = [False] * len(todo)
        if workers > 1:
            _render_parallel(todo, sizes, tmps, workers, bar, root, done)
        for k, (style, params, dseed) in enumerate(todo):
            if done[k]:
                continue
            if bar is not None:
                bar.set_description(f"synthetic {style.name}")
            _render_chunk(str(tmps[k]), style, params, dseed, 0, sizes[k], bar)
            _finalize(root, tmps[k], style, params)
    finally:
        if bar is not None:
            bar.close()
        for tmp in tmps:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def _render_parallel(todo, sizes, tmps, workers, bar, root: Path, done: list[bool]) -> None:
    """Render all domains with a pool of forked processes, in chunks of ~400 images.

    Uses ``fork`` (no re-import of ``__main__``, so scripts without a main guard are safe); where
    fork or process pools are unavailable, or a worker dies, it returns and the caller renders
    what is not done serially.  Errors raised by the rendering itself propagate."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    if "fork" not in multiprocessing.get_all_start_methods() or multiprocessing.current_process().daemon:
        return
    try:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    except (OSError, ValueError, NotImplementedError, ImportError):
        return
    chunk = 400
    left: dict[int, int] = {}
    try:
        with pool:
            futures = {}
            for k, ((style, params, dseed), n) in enumerate(zip(todo, sizes)):
                starts = list(range(0, n, chunk))
                left[k] = len(starts)
                for s in starts:
                    fut = pool.submit(_render_chunk, str(tmps[k]), style, params, dseed, s, min(n, s + chunk))
                    futures[fut] = k
            for fut in as_completed(futures):
                k = futures[fut]
                count = fut.result()
                if bar is not None:
                    bar.update(count)
                left[k] -= 1
                if left[k] == 0:
                    _finalize(root, tmps[k], todo[k][0], todo[k][1])
                    done[k] = True
    except BrokenProcessPool:
        if bar is not None:  # the serial fallback re-renders the unfinished domains from scratch
            bar.n = sum(sizes[k] for k in range(len(todo)) if done[k])
            bar.refresh()
