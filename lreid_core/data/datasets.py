"""Dataset parsers: turn a dataset folder in its native layout into a train/query/gallery ``Split``.

No images are opened here and torch is never imported: a parser only lists files and reads
small text/JSON split files. Every user-facing problem (missing folder, empty split, unknown
name) raises ``LReIDError`` with one line naming the path that was expected.

Registered names, the conventional folder under a common data root (``default_folder``) and the
layout expected inside that folder (``root`` below):

=================  =========================  ==================================================
name               default folder             layout under root
=================  =========================  ==================================================
market1501         Market-1501-v15.09.15      bounding_box_train/, query/, bounding_box_test/
dukemtmc           DukeMTMC-reID              bounding_box_train/, query/, bounding_box_test/
msmt17             MSMT17_V2                  mask_train_v2/, mask_test_v2/, list_{train,val,
                                              query,gallery}.txt (V1: train/, test/)
cuhk03             cuhk03                     images_detected/ + splits_new_detected.json
cuhk03_labeled     cuhk03                     images_labeled/ + splits_new_labeled.json
cuhk_sysu          cuhksysu4reid              train/, query/, gallery/ (LReID crops)
viper              VIPeR                      cam_a/, cam_b/
prid               prid_2011                  single_shot/cam_a/, single_shot/cam_b/
grid               underground_reid           probe/, gallery/
ilids              i-LIDS_Pedestrian          Persons/
cuhk01             cuhk01                     campus/
cuhk02             cuhk02                     Dataset/P1..P5/{cam1,cam2}/
sensereid          sensereid                  SenseReID/test_probe/, SenseReID/test_gallery/
=================  =========================  ==================================================

Each parser also accepts the folder one level up (e.g. ``market1501/Market-1501-v15.09.15`` as
Torchreid stores it, given ``market1501/``). Datasets without an official split are split by
identity with ``random.Random(0)`` (half train, half test); see each parser's docstring.

``pid`` is the dataset's own identity number (never relabelled; where a dataset reuses numbers
across sub-sets the parser builds a unique int and says how). ``camid`` is 0-based. Any name
that is not registered can still be loaded from a folder in Market-1501 layout (it has
``bounding_box_train/``); its records then carry ``domain=name``.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

from lreid_core.errors import LReIDError

IMG_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
SEED = 0


class Record(NamedTuple):
    """One image: absolute path, original identity, 0-based camera, dataset name."""

    path: str
    pid: int
    camid: int
    domain: str


@dataclass
class Split:
    """Train/query/gallery records of one dataset."""

    name: str
    train: list[Record]
    query: list[Record]
    gallery: list[Record]


Parser = Callable[[Path], Split]
_REGISTRY: dict[str, Parser] = {}
_FOLDERS: dict[str, str] = {}


def register(name: str, folder: str | None = None) -> Callable[[Parser], Parser]:
    """Decorator: register ``parse_x(root) -> Split`` under ``name`` (default folder ``folder``)."""

    def deco(fn: Parser) -> Parser:
        if name in _REGISTRY:
            raise ValueError(f"dataset {name!r} registered twice")
        _REGISTRY[name] = fn
        _FOLDERS[name] = folder or name
        return fn

    return deco


# --------------------------------------------------------------------------- public API


def list_datasets() -> list[str]:
    """Registered dataset names, sorted."""
    return sorted(_REGISTRY)


def default_folder(name: str) -> str:
    """Conventional folder of ``name`` under a common data root (unregistered names: ``name``)."""
    return _FOLDERS.get(name, name)


def load(name: str, root: str | Path) -> Split:
    """Parse dataset ``name`` from ``root``; an unregistered name needs a Market-layout root."""
    root = _abs(root)
    parser = _REGISTRY.get(name)
    if parser is not None:
        return parser(root)
    if (root / "bounding_box_train").is_dir():
        return parse_market_layout(root, name)
    raise LReIDError(
        f"unknown dataset name {name!r}; valid names: {', '.join(list_datasets())} "
        f"(or point root at a Market-1501-layout folder with bounding_box_train/; {root} has none)"
    )


def resolve(name: str, data_root: str | Path) -> Split:
    """Load ``name`` from ``data_root/default_folder(name)``, else from ``data_root/name``."""
    data_root = _abs(data_root)
    primary = data_root / default_folder(name)
    fallback = data_root / name
    root = fallback if not primary.exists() and fallback.exists() else primary
    return load(name, root)


# --------------------------------------------------------------------------- helpers


def _abs(root: str | Path) -> Path:
    return Path(root).expanduser().absolute()


def _locate(name: str, root: Path, marker: str, subdirs: Iterable[str] = ("",)) -> Path:
    """First of ``root/<sub>`` (in order) that holds ``marker``; error names the first candidate."""
    bases = [root / sub if sub else root for sub in subdirs]
    for base in bases:
        if (base / marker).exists():
            return base
    raise LReIDError(f"{name}: expected folder {bases[0] / marker} (not found)")


def _need(name: str, path: Path, kind: str = "folder") -> Path:
    if not path.exists():
        raise LReIDError(f"{name}: expected {kind} {path} (not found)")
    return path


def _images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    if not folder.is_dir():
        return []
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise LReIDError(f"folder {folder} cannot be read: {exc.strerror or exc}") from None
    return sorted(p for p in entries if p.suffix.lower() in IMG_EXTS and p.is_file())


def _matches(folder: Path, pattern: re.Pattern[str]) -> list[tuple[Path, re.Match[str]]]:
    """(path, match) for the images in ``folder`` whose stem matches ``pattern``; others skipped."""
    out = []
    for p in _images(folder):
        m = pattern.match(p.stem)
        if m:
            out.append((p, m))
    return out


def _nonempty(name: str, records: list[Record], where: Path, what: str) -> list[Record]:
    if not records:
        raise LReIDError(f"{name}: no {what} images found in {where}")
    return records


def _split_ids(ids: Iterable[int], seed: int = SEED) -> tuple[set[int], set[int]]:
    """Shuffle the sorted ids with ``seed``; first half (rounded down) train, rest test."""
    order = sorted(set(ids))
    random.Random(seed).shuffle(order)
    cut = len(order) // 2
    return set(order[:cut]), set(order[cut:])


# --------------------------------------------------------------------------- Market layout

_MARKET_RE = re.compile(r"^(-?\d+)_c(\d+)")


def _market_dir(name: str, folder: Path, domain: str, keep_distractors: bool) -> list[Record]:
    """``PPPP_cC...`` images; pid -1 (junk) dropped, pid 0 kept only when ``keep_distractors``."""
    _need(name, folder)
    recs = []
    for p, m in _matches(folder, _MARKET_RE):
        pid, cam = int(m[1]), int(m[2])
        if pid < 0 or (pid == 0 and not keep_distractors):
            continue
        recs.append(Record(str(p), pid, cam - 1, domain))
    return _nonempty(name, recs, folder, "PPPP_cC*")


def parse_market_layout(root: Path, domain: str) -> Split:
    """Market-1501 layout: ``bounding_box_train/``, ``query/``, ``bounding_box_test/``.

    Names ``PPPP_cCsS_FFFFFF_NN.jpg`` (Market) or ``PPPP_cC_fFFFFFFF.jpg`` (Duke); camid = C-1.
    Junk pid -1 is dropped everywhere; distractor pid 0 is kept in the gallery only.
    """
    root = _abs(root)
    return Split(
        name=domain,
        train=_market_dir(domain, root / "bounding_box_train", domain, keep_distractors=False),
        query=_market_dir(domain, root / "query", domain, keep_distractors=False),
        gallery=_market_dir(domain, root / "bounding_box_test", domain, keep_distractors=True),
    )


@register("market1501", folder="Market-1501-v15.09.15")
def parse_market1501(root: Path) -> Split:
    """Market-1501: ``<root>/{bounding_box_train,query,bounding_box_test}/PPPP_cCsS_*.jpg``."""
    base = _locate("market1501", root, "bounding_box_train", ("", "Market-1501-v15.09.15"))
    return parse_market_layout(base, "market1501")


@register("dukemtmc", folder="DukeMTMC-reID")
def parse_dukemtmc(root: Path) -> Split:
    """DukeMTMC-reID: ``<root>/{bounding_box_train,query,bounding_box_test}/PPPP_cC_f*.jpg``."""
    base = _locate("dukemtmc", root, "bounding_box_train", ("", "DukeMTMC-reID"))
    return parse_market_layout(base, "dukemtmc")


# --------------------------------------------------------------------------- MSMT17

# e.g. 0000_000_01_0303morning_0015_0.jpg -> pid 0000, index 000, camera 01 (1..15)
_MSMT_RE = re.compile(r"^(\d+)_(\d+)_(\d+)_")


def _msmt_list(name: str, list_path: Path, img_dir: Path) -> list[Record]:
    """Lines ``relpath pid``; camid = third ``_`` field of the file name minus 1."""
    _need(name, list_path, "file")
    recs = []
    for line in list_path.read_text().splitlines():
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            continue
        m = _MSMT_RE.match(Path(parts[0]).name)
        if m:
            recs.append(Record(str(img_dir / parts[0]), int(parts[1]), int(m[3]) - 1, name))
    _nonempty(name, recs, list_path, "listed")
    if not Path(recs[0].path).is_file():
        raise LReIDError(f"{name}: image {recs[0].path} listed in {list_path} not found")
    return recs


@register("msmt17", folder="MSMT17_V2")
def parse_msmt17(root: Path) -> Split:
    """MSMT17 V2: ``mask_train_v2/``, ``mask_test_v2/``, ``list_{train,val,query,gallery}.txt``.

    V1 (``train/``, ``test/``) is accepted too. train = list_train + list_val (the full
    training set), query/gallery from their lists; pids are the list labels as given.
    """
    try:
        base = _locate("msmt17", root, "mask_train_v2", ("", "MSMT17_V2"))
        train_dir, test_dir = base / "mask_train_v2", base / "mask_test_v2"
    except LReIDError:
        try:
            base = _locate("msmt17", root, "list_train.txt", ("", "MSMT17_V1"))
        except LReIDError:
            missing = root / "mask_train_v2"
            raise LReIDError(f"msmt17: expected folder {missing} (not found)") from None
        train_dir, test_dir = base / "train", base / "test"
    _need("msmt17", train_dir)
    _need("msmt17", test_dir)
    train = _msmt_list("msmt17", base / "list_train.txt", train_dir)
    if (base / "list_val.txt").exists():
        train = train + _msmt_list("msmt17", base / "list_val.txt", train_dir)
    query = _msmt_list("msmt17", base / "list_query.txt", test_dir)
    gallery = _msmt_list("msmt17", base / "list_gallery.txt", test_dir)
    return Split("msmt17", train, query, gallery)


# --------------------------------------------------------------------------- CUHK03

# {campair}_{pid:03d}_{view}_{idx:02d}.png, as written by the common .mat extraction
_CUHK03_RE = re.compile(r"^(\d+)_(\d+)_(\d+)_(\d+)$")
_CUHK03_MATS = ("cuhk-03.mat", "cuhk03_release/cuhk-03.mat")


def _cuhk03_record(item: list, img_dir: Path, domain: str) -> Record:
    """``[path, pid, camid]`` -> Record under ``img_dir``; pid/camid from the name if it parses."""
    fname = Path(str(item[0])).name
    m = _CUHK03_RE.match(Path(fname).stem)
    if m:
        pid, camid = int(m[1]) * 1000 + int(m[2]), int(m[3]) - 1
    else:
        pid, camid = int(item[1]), int(item[2])
    return Record(str(img_dir / fname), pid, camid, domain)


def _cuhk03_split_file(name: str, path: Path) -> dict:
    _need(name, path, "file")
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise LReIDError(f"{name}: cannot read split file {path}: {e}") from None
    if isinstance(data, list):
        data = data[0] if data else {}
    if not isinstance(data, dict) or not all(k in data for k in ("train", "query", "gallery")):
        raise LReIDError(f"{name}: split file {path} has no train/query/gallery lists")
    return data


def _cuhk03_np(root: Path, variant: str, name: str) -> Split | None:
    """CUHK03-NP release (Market layout under ``detected/`` or ``labeled/``), if present."""
    for base in (root / variant, root / "cuhk03-np" / variant):
        if (base / "bounding_box_train").is_dir():
            return parse_market_layout(base, name)
    return None


def _parse_cuhk03(root: Path, variant: str, name: str) -> Split:
    """Shared body of ``cuhk03`` (detected) and ``cuhk03_labeled``."""
    img_folder, split_file = f"images_{variant}", f"splits_new_{variant}.json"
    try:
        base = _locate(name, root, img_folder, ("", "cuhk03"))
    except LReIDError:
        np_split = _cuhk03_np(root, variant, name)
        if np_split is not None:
            return np_split
        for mat in _CUHK03_MATS:
            if (root / mat).exists():
                raise LReIDError(
                    f"{name}: found raw {root / mat} but expected pre-extracted images "
                    f"{root / img_folder}/ and split file {root / split_file} "
                    "(reading the .mat needs h5py, which is not supported)"
                ) from None
        raise
    img_dir = base / img_folder
    if not _images(img_dir):
        raise LReIDError(f"{name}: no images found in {img_dir}")
    data = _cuhk03_split_file(name, base / split_file)
    parts = {}
    for key in ("train", "query", "gallery"):
        try:
            recs = [_cuhk03_record(item, img_dir, name) for item in data[key]]
        except (IndexError, TypeError, ValueError):
            raise LReIDError(
                f"{name}: malformed {key} entry in {base / split_file} (want [path, pid, camid])"
            ) from None
        _nonempty(name, recs, base / split_file, key)
        if not Path(recs[0].path).is_file():
            raise LReIDError(
                f"{name}: image {recs[0].path} listed in {base / split_file} not found"
            )
        parts[key] = recs
    return Split(name, parts["train"], parts["query"], parts["gallery"])


@register("cuhk03", folder="cuhk03")
def parse_cuhk03(root: Path) -> Split:
    """CUHK03 new protocol (767/700 ids), detected boxes.

    Layout: ``images_detected/{campair}_{pid}_{view}_{idx}.png`` + ``splits_new_detected.json``
    (a list whose first element, or a dict, holds ``train``/``query``/``gallery`` lists of
    ``[path, pid, camid]``; only the file name of each path is used, under ``images_detected/``).
    pid = campair*1000 + pid from the file name (unique across camera pairs); camid = view-1.
    The CUHK03-NP release (``detected/bounding_box_train`` etc.) is read as Market layout.
    Only the raw ``cuhk-03.mat`` is not enough: it needs h5py to extract.
    """
    return _parse_cuhk03(root, "detected", "cuhk03")


@register("cuhk03_labeled", folder="cuhk03")
def parse_cuhk03_labeled(root: Path) -> Split:
    """CUHK03 new protocol, labeled boxes: ``images_labeled/`` + ``splits_new_labeled.json``."""
    return _parse_cuhk03(root, "labeled", "cuhk03_labeled")


# --------------------------------------------------------------------------- CUHK-SYSU

# LReID crops: {pid:05d}_s{scene}_{instance:07d}_{is_hard}.jpg
_SYSU_RE = re.compile(r"^(-?\d+)_s(\d+)")
_SYSU_DIRS = ("", "cuhksysu4reid", "CUHK-SYSU/cuhksysu4reid", "cuhk-sysu/CUHK-SYSU/cuhksysu4reid")


def _sysu_dir(folder: Path, camid: int) -> list[Record]:
    _need("cuhk_sysu", folder)
    recs = [
        Record(str(p), int(m[1]), camid, "cuhk_sysu")
        for p, m in _matches(folder, _SYSU_RE)
        if int(m[1]) >= 0
    ]
    return _nonempty("cuhk_sysu", recs, folder, "PPPPP_sSCENE_*")


@register("cuhk_sysu", folder="cuhksysu4reid")
def parse_cuhk_sysu(root: Path) -> Split:
    """CUHK-SYSU person-search crops as prepared by the LReID benchmark (``cuhksysu4reid``).

    Layout: ``train/``, ``query/``, ``gallery/`` with ``PPPPP_sSCENE_IIIIIII_H.jpg`` crops
    (pid, scene image, instance index, is-hard flag); ``combine/`` is ignored.
    CUHK-SYSU has no camera labels (one "camera"): train and query get camid 0 and gallery
    camid 1, so that evaluation, which drops same-pid same-camid gallery entries, keeps
    every true match.
    """
    base = _locate("cuhk_sysu", root, "query", _SYSU_DIRS)
    return Split(
        "cuhk_sysu",
        train=_sysu_dir(base / "train", 0),
        query=_sysu_dir(base / "query", 0),
        gallery=_sysu_dir(base / "gallery", 1),
    )


# --------------------------------------------------------------------------- VIPeR

_VIPER_RE = re.compile(r"^(\d+)_")


@register("viper", folder="VIPeR")
def parse_viper(root: Path) -> Split:
    """VIPeR: ``cam_a/NNN_AA.bmp`` and ``cam_b/NNN_AA.bmp`` (pid NNN, AA = view angle).

    Split: the ids seen by both cameras are halved with seed 0 (half train, half test).
    query = cam_a (camid 0) images of test ids, gallery = cam_b (camid 1) images of test ids;
    train = both cameras of the train ids.
    """
    base = _locate("viper", root, "cam_a", ("", "VIPeR"))
    _need("viper", base / "cam_b")
    cams = [
        [Record(str(p), int(m[1]), c, "viper") for p, m in _matches(base / d, _VIPER_RE)]
        for c, d in enumerate(("cam_a", "cam_b"))
    ]
    for c, d in enumerate(("cam_a", "cam_b")):
        _nonempty("viper", cams[c], base / d, "NNN_AA")
    train_ids, test_ids = _split_ids({r.pid for r in cams[0]} & {r.pid for r in cams[1]})
    query = [r for r in cams[0] if r.pid in test_ids]
    gallery = [r for r in cams[1] if r.pid in test_ids]
    return Split(
        "viper",
        train=[r for cam in cams for r in cam if r.pid in train_ids],
        query=_nonempty("viper", query, base / "cam_a", "test (ids seen by both cameras)"),
        gallery=_nonempty("viper", gallery, base / "cam_b", "test (ids seen by both cameras)"),
    )


# --------------------------------------------------------------------------- PRID2011

_PRID_RE = re.compile(r"^person_(\d+)$")


@register("prid", folder="prid_2011")
def parse_prid(root: Path) -> Split:
    """PRID2011 single-shot: ``single_shot/cam_a/person_NNNN.png`` (385 ids), ``cam_b/`` (749).

    Ids in both cameras (1..200) are halved with seed 0. query = cam_a (camid 0) images of
    the 100 test ids; gallery = cam_b (camid 1) images of those ids plus every cam_b-only id
    (201..749) as distractors; train = both cameras of the train ids. cam_a-only ids are unused.
    """
    base = _locate("prid", root, "single_shot/cam_a", ("", "prid_2011"))
    _need("prid", base / "single_shot" / "cam_b")
    cams = []
    for c, d in enumerate(("cam_a", "cam_b")):
        folder = base / "single_shot" / d
        recs = [Record(str(p), int(m[1]), c, "prid") for p, m in _matches(folder, _PRID_RE)]
        cams.append(_nonempty("prid", recs, folder, "person_NNNN"))
    shared = {r.pid for r in cams[0]} & {r.pid for r in cams[1]}
    train_ids, test_ids = _split_ids(shared)
    folder_a, folder_b = base / "single_shot" / "cam_a", base / "single_shot" / "cam_b"
    return Split(
        "prid",
        train=[r for cam in cams for r in cam if r.pid in train_ids],
        query=_nonempty("prid", [r for r in cams[0] if r.pid in test_ids], folder_a, "test"),
        gallery=_nonempty("prid", [r for r in cams[1] if r.pid not in train_ids], folder_b, "test"),
    )


# --------------------------------------------------------------------------- GRID

_GRID_RE = re.compile(r"^(\d+)_(\d+)_")


def _grid_dir(folder: Path) -> list[Record]:
    """``PPPP_C_*.jpeg``: pid PPPP (0000 = distractor), camid C-1."""
    _need("grid", folder)
    recs = [
        Record(str(p), int(m[1]), int(m[2]) - 1, "grid") for p, m in _matches(folder, _GRID_RE)
    ]
    return _nonempty("grid", recs, folder, "PPPP_C_*")


@register("grid", folder="underground_reid")
def parse_grid(root: Path) -> Split:
    """QMUL GRID: ``probe/`` (250 ids) and ``gallery/`` (250 ids + 775 distractors, pid 0000).

    The probe ids are halved with seed 0 (the ``features_and_partitions.mat`` trials are not
    read). query = probe images of test ids; gallery = gallery images of test ids plus all
    distractors; train = probe + gallery images of train ids.
    """
    base = _locate("grid", root, "probe", ("", "underground_reid"))
    probe = _grid_dir(base / "probe")
    gallery = _grid_dir(base / "gallery")
    train_ids, test_ids = _split_ids(r.pid for r in probe if r.pid > 0)
    return Split(
        "grid",
        train=[r for r in probe + gallery if r.pid in train_ids],
        query=_nonempty("grid", [r for r in probe if r.pid in test_ids], base / "probe", "test"),
        gallery=[r for r in gallery if r.pid not in train_ids],
    )


# --------------------------------------------------------------------------- QMUL iLIDS

_ILIDS_RE = re.compile(r"^(\d{4})(\d+)$")


@register("ilids", folder="i-LIDS_Pedestrian")
def parse_ilids(root: Path) -> Split:
    """QMUL i-LIDS (119 ids, 476 images): ``Persons/PPPPNNNN.jpg`` (pid PPPP, image NNNN).

    No camera labels. Ids are halved with seed 0; for each test id two images are drawn
    (seed 0): one query (camid 0) and one gallery (camid 1). Test ids with a single image go
    to the gallery only. Train images (all images of train ids) get camid 0.
    """
    base = _locate("ilids", root, "Persons", ("", "i-LIDS_Pedestrian"))
    folder = base / "Persons"
    by_pid: dict[int, list[Path]] = {}
    for p, m in _matches(folder, _ILIDS_RE):
        by_pid.setdefault(int(m[1]), []).append(p)
    if not by_pid:
        raise LReIDError(f"ilids: no PPPPNNNN images found in {folder}")
    train_ids, test_ids = _split_ids(by_pid)
    rng = random.Random(SEED)
    train, query, gallery = [], [], []
    for pid in sorted(by_pid):
        paths = by_pid[pid]
        if pid in train_ids:
            train += [Record(str(p), pid, 0, "ilids") for p in paths]
        elif len(paths) == 1:
            gallery.append(Record(str(paths[0]), pid, 1, "ilids"))
        else:
            q, g = rng.sample(paths, 2)
            query.append(Record(str(q), pid, 0, "ilids"))
            gallery.append(Record(str(g), pid, 1, "ilids"))
    return Split("ilids", train, _nonempty("ilids", query, folder, "test (2+ per id)"), gallery)


# --------------------------------------------------------------------------- CUHK01

_CUHK01_RE = re.compile(r"^(\d{4})(\d{3})$")


@register("cuhk01", folder="cuhk01")
def parse_cuhk01(root: Path) -> Split:
    """CUHK01 (971 ids): ``campus/PPPPNNN.png``; NNN 001-002 = camera A, 003-004 = camera B.

    camid 0 (A) / 1 (B). Ids are halved with seed 0; query = camera A images of test ids,
    gallery = camera B images of test ids, train = all images of train ids.
    """
    base = _locate("cuhk01", root, "campus", ("", "cuhk01"))
    folder = base / "campus"
    recs = [
        Record(str(p), int(m[1]), (int(m[2]) - 1) // 2, "cuhk01")
        for p, m in _matches(folder, _CUHK01_RE)
    ]
    _nonempty("cuhk01", recs, folder, "PPPPNNN")
    train_ids, test_ids = _split_ids(r.pid for r in recs)
    test = [r for r in recs if r.pid in test_ids]
    return Split(
        "cuhk01",
        train=[r for r in recs if r.pid in train_ids],
        query=_nonempty("cuhk01", [r for r in test if r.camid == 0], folder, "camera-A test"),
        gallery=_nonempty("cuhk01", [r for r in test if r.camid == 1], folder, "camera-B test"),
    )


# --------------------------------------------------------------------------- CUHK02

_CUHK02_RE = re.compile(r"^(\d+)_")
_CUHK02_PAIRS = ("P1", "P2", "P3", "P4", "P5")
_CUHK02_TEST = "P5"


def _cuhk02_cam(folder: Path, pair_no: int, cam_no: int) -> list[Record]:
    """``Pk/camj/PPP_NN.png`` -> pid k*10000 + PPP, camid 2*(k-1) + (j-1)."""
    return [
        Record(str(p), pair_no * 10000 + int(m[1]), 2 * (pair_no - 1) + cam_no - 1, "cuhk02")
        for p, m in _matches(folder, _CUHK02_RE)
    ]


@register("cuhk02", folder="cuhk02")
def parse_cuhk02(root: Path) -> Split:
    """CUHK02: ``Dataset/P1..P5/{cam1,cam2}/PPP_NN.png`` (5 camera pairs, 1816 ids).

    Ids restart in every pair, so pid = pair*10000 + PPP; each pair has its own two cameras
    (camid = 2*(pair-1) + cam-1). Protocol: P1-P4 train, P5 test with cam1 as query and
    cam2 as gallery. Missing training pairs are tolerated; P5 is required.
    """
    base = _locate("cuhk02", root, "Dataset", ("", "cuhk02")) / "Dataset"
    test_dir = base / _CUHK02_TEST
    for cam in ("cam1", "cam2"):
        _need("cuhk02", test_dir / cam)
    train = []
    for k, pair in enumerate(_CUHK02_PAIRS, start=1):
        if pair != _CUHK02_TEST:
            train += [r for j in (1, 2) for r in _cuhk02_cam(base / pair / f"cam{j}", k, j)]
    k = _CUHK02_PAIRS.index(_CUHK02_TEST) + 1
    query = _cuhk02_cam(test_dir / "cam1", k, 1)
    gallery = _cuhk02_cam(test_dir / "cam2", k, 2)
    return Split(
        "cuhk02",
        train=train,
        query=_nonempty("cuhk02", query, test_dir / "cam1", "PPP_NN"),
        gallery=_nonempty("cuhk02", gallery, test_dir / "cam2", "PPP_NN"),
    )


# --------------------------------------------------------------------------- SenseReID

_SENSE_RE = re.compile(r"^(\d+)_(\d+)$")


def _sense_dir(folder: Path, camid: int) -> list[Record]:
    _need("sensereid", folder)
    recs = [
        Record(str(p), int(m[1]), camid, "sensereid") for p, m in _matches(folder, _SENSE_RE)
    ]
    return _nonempty("sensereid", recs, folder, "PPPPPPP_NN")


@register("sensereid", folder="sensereid")
def parse_sensereid(root: Path) -> Split:
    """SenseReID (test only): ``SenseReID/test_probe/`` and ``SenseReID/test_gallery/``.

    Names ``PPPPPPP_NN.jpg`` (pid, suffix). The suffix is not a documented camera index, so
    query gets camid 0 and gallery camid 1 (probe and gallery are disjoint views); every
    gallery image of the query's pid counts as a match. train is empty.
    """
    base = _locate("sensereid", root, "test_probe", ("SenseReID", ""))
    return Split(
        "sensereid",
        train=[],
        query=_sense_dir(base / "test_probe", 0),
        gallery=_sense_dir(base / "test_gallery", 1),
    )
