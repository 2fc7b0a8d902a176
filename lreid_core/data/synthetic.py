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

The generator is split by what it holds; this module re-exports the public names of the others:

* :mod:`.synth_styles` -- attribute vocabularies, colour palettes and weights, :class:`DomainStyle`, the
  built-in styles (:data:`STYLE_VARIANTS`, ``CAMERA_ISP``, ``POOR_WHITE_BALANCE``), :func:`get_style`,
  :func:`stable_seed`;
* :mod:`.synth_people` -- identity and appearance sampling (:func:`sample_identity`, :func:`sample_appearance`);
* :mod:`.synth_render` -- cameras and backgrounds (:func:`make_camera`) and rendering (:func:`render_person`,
  :func:`camera_isp`);
* this module -- :data:`GENERATOR_VERSION` and the writer: each domain's plan, the render chunks, the
  manifest check (:func:`domain_complete`), the cache lock, :func:`benchmark_key`, :func:`make_benchmark`.

Only numpy and PIL are used.  Everything is deterministic given the seed: each image's random
generator is derived from ``(seed, domain name, split, pid, image index, camera, frame)`` with a
stable hash (SHA-256, never Python's ``hash()``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from lreid_core.catalog import DEFAULT_DOMAINS, DEFAULT_UNSEEN, DEMO_ORDER  # noqa: F401 (this module's names too)
from lreid_core.errors import LReIDError
from lreid_core.io import lock_file, umask

# The generator's parts live in sibling modules; their public names stay this module's names too.
from .synth_people import palette, sample_appearance, sample_identity  # noqa: F401  (public names of this module)
from .synth_render import (camera_isp, make_camera, render_person,  # noqa: F401  (public names of this module)
                           render_person_with_mask)
from .synth_styles import (  # noqa: F401  (public names of this module)
    ATTRIBUTES,
    BAGS,
    BOTTOM_TYPES,
    BUILDS,
    CAMERA_ISP,
    COLOR_ATTRS,
    CONFLICT_STYLES,
    DOMAIN_STYLES,
    HAIR_COLORS,
    HAIR_STYLES,
    HATS,
    HEIGHTS,
    PATTERNS,
    POOR_WHITE_BALANCE,
    PREMISE_STYLES,
    PRETRAIN_STYLES,
    SHARED_COLORS,
    SHARED_PALETTE,
    SKIN_TONES,
    SLEEVES,
    STYLE_VARIANTS,
    DomainStyle,
    color_weights,
    get_style,
    stable_seed,
    with_camera,
)

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
    "render_person_with_mask",
    "sample_appearance",
    "sample_identity",
    "stable_seed",
]

GENERATOR_VERSION = 6
"""Bumped whenever the files written change (5 -> 6: the person masks were added; the images are the same); part of
the cache key (:func:`benchmark_key`, ``synthetic.json``)."""

SPLITS = ("bounding_box_train", "query", "bounding_box_test")
MASKS = "person_mask"
"""``root/<domain>/person_mask/<split>/<image stem>.png``: each image's person mask (1-bit PNG, white = person;
:func:`.synth_render.render_person_with_mask`), the ground truth of where the person is (``data.person``)."""

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
        arr, person = render_person_with_mask(attrs, style, cameras[cam], rng, params["height"], params["width"])
        stem = f"{pid:04d}_c{cam + 1}s1_{frame:06d}_00"
        Image.fromarray(arr).save(root / split / f"{stem}.jpg", quality=90)
        Image.fromarray(person).save(root / MASKS / split / f"{stem}.png")
        if bar is not None:
            bar.update(1)
    return stop - start


def _inventory(folder: Path) -> dict[str, list[int]] | None:
    """``{split: [file count, total bytes]}`` of a domain folder (images and person masks), or None when a split
    folder is missing."""
    out = {}
    for split in (*SPLITS, *(f"{MASKS}/{s}" for s in SPLITS)):
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
                (tmps[-1] / MASKS / split).mkdir(parents=True)
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
