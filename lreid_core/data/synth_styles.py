"""Synthetic pedestrians, part 1: attribute vocabularies, colour palettes and weights, :class:`DomainStyle`
and the built-in domain styles (:data:`STYLE_VARIANTS`), :func:`get_style` and :func:`stable_seed`.

Re-exported by :mod:`lreid_core.data.synthetic`; imports nothing from the other ``synth_*`` modules.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from lreid_core.errors import LReIDError

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
