"""Synthetic pedestrians, part 3: cameras and backgrounds (:func:`make_camera`) and rendering a person
(:func:`render_person`, :func:`camera_isp`).

Re-exported by :mod:`lreid_core.data.synthetic`; imports :mod:`.synth_styles` and :mod:`.synth_people`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from lreid_core.errors import LReIDError

from .synth_people import palette
from .synth_styles import DomainStyle, get_style, stable_seed

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
        self.person = np.zeros(img.shape[:2], bool)    # every pixel a body part or accessory was painted on
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
        self.person[w.sy, w.sx] |= mask
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
    return render_person_with_mask(attrs, style, camera, rng, height, width)[0]


def render_person_with_mask(
    attrs: Mapping[str, Any], style: str | DomainStyle, camera: dict[str, Any],
    rng: np.random.Generator, height: int = 128, width: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`render_person`'s image and its person mask, ``(height, width)`` bool: the pixels the person (body,
    clothes, hair, hat, bag) covers and no occluder hides, at the output size (the sampler's ground truth). The
    mask draws nothing from ``rng``, so the image is the one :func:`render_person` renders."""
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
            hidden = np.s_[int(rh * rng.uniform(0.6, 0.8)):]
        else:  # a passer-by / pole at one side
            wdt = int(rw * rng.uniform(0.2, 0.35))
            hidden = np.s_[:, :wdt] if rng.random() < 0.5 else np.s_[:, rw - wdt:]
        img[hidden] = oc
        cv.person[hidden] = False
    light = np.asarray(camera["cast"], np.float32) * np.asarray(style.tint, np.float32)
    light *= camera["gain"] * rng.uniform(0.93, 1.07)
    img *= light
    img = camera_isp(img, style.auto_exposure, style.white_balance)
    person = cv.person
    if (rh, rw) != (height, width):
        small = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
        img = np.asarray(small.resize((width, height), Image.BILINEAR), dtype=np.float32)
        cover = Image.fromarray(person.astype(np.uint8) * 255).resize((width, height), Image.BILINEAR)
        person = np.asarray(cover) >= 128
    arr = _blur(img, camera["blur"] * rng.uniform(0.8, 1.2))
    if style.saturation < 1.0:
        grey = 0.299 * arr[..., 0] + 0.587 * arr[..., 1] + 0.114 * arr[..., 2]  # no BLAS (fork-safe)
        arr = grey[..., None] + (arr - grey[..., None]) * style.saturation
    if camera["noise"] > 0:
        arr = arr + _noise(rng, arr.shape) * camera["noise"]
    return np.clip(arr + 0.5, 0, 255).astype(np.uint8), person
