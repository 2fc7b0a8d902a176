"""Dataset parsers on tiny fake trees written in each dataset's native layout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, NamedTuple

import pytest
from PIL import Image

from lreid_core.data import datasets as ds
from lreid_core.data.datasets import Record, Split, list_datasets, load, resolve
from lreid_core.errors import LReIDError


def _img(path: Path) -> Path:
    """Write a real 4x8 image (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 8), (120, 30, 200)).save(path)
    return path


class Expect(NamedTuple):
    root: Path  # folder handed to load()
    train: int
    query: int
    gallery: int


# --------------------------------------------------------------------------- fake-tree writers


def _market_like(root: Path, name_fn: Callable[[int, int, int], str]) -> Expect:
    for pid in (1, 2):
        for cam in (1, 2):
            _img(root / "bounding_box_train" / name_fn(pid, cam, 0))
    _img(root / "query" / name_fn(3, 1, 0))
    _img(root / "query" / name_fn(4, 2, 0))
    _img(root / "bounding_box_test" / name_fn(3, 2, 1))
    _img(root / "bounding_box_test" / name_fn(4, 1, 1))
    _img(root / "bounding_box_test" / name_fn(0, 3, 1))  # distractor: kept
    _img(root / "bounding_box_test" / name_fn(-1, 1, 2))  # junk: dropped
    (root / "bounding_box_train" / "Thumbs.db").write_bytes(b"x")  # not an image: skipped
    return Expect(root, train=4, query=2, gallery=3)


def _pid4(pid: int) -> str:
    return "-1" if pid < 0 else f"{pid:04d}"


def write_market1501(tmp: Path) -> Expect:
    return _market_like(
        tmp / "Market-1501-v15.09.15", lambda p, c, i: f"{_pid4(p)}_c{c}s1_00{i}151_0{i}.jpg"
    )


def write_dukemtmc(tmp: Path) -> Expect:
    return _market_like(tmp / "DukeMTMC-reID", lambda p, c, i: f"{_pid4(p)}_c{c}_f00{i}4618.jpg")


def write_msmt17(tmp: Path) -> Expect:
    root = tmp / "MSMT17_V2"

    def put(split_dir: str, pid: int, idx: int, cam: int) -> str:
        rel = f"{pid:04d}/{pid:04d}_{idx:03d}_{cam:02d}_0303morning_0015_0.jpg"
        _img(root / split_dir / rel)
        return f"{rel} {pid}"

    lines = {
        "list_train.txt": [put("mask_train_v2", 0, 0, 1), put("mask_train_v2", 0, 1, 3)],
        "list_val.txt": [put("mask_train_v2", 1, 0, 2)],
        "list_query.txt": [put("mask_test_v2", 0, 0, 5), put("mask_test_v2", 1, 0, 6)],
        "list_gallery.txt": [put("mask_test_v2", 0, 1, 15), put("mask_test_v2", 1, 1, 7),
                             put("mask_test_v2", 2, 0, 1)],
    }
    for fname, rows in lines.items():
        (root / fname).write_text("\n".join(rows) + "\n")
    return Expect(root, train=3, query=2, gallery=3)


def _cuhk03(tmp: Path, variant: str) -> Expect:
    root = tmp / "cuhk03"
    names = {
        "train": ["1_001_1_01.png", "1_001_2_06.png", "2_001_1_01.png", "2_001_2_07.png"],
        "query": ["1_002_1_01.png", "3_005_1_02.png"],
        "gallery": ["1_002_2_06.png", "3_005_2_08.png", "1_003_2_06.png"],
    }
    stale = f"/nonexistent/old/images_{variant}"  # json paths from another machine
    split = {}
    for key, files in names.items():
        split[key] = [[f"{stale}/{f}", i, 0] for i, f in enumerate(files)]
        for f in files:
            _img(root / f"images_{variant}" / f)
    (root / f"splits_new_{variant}.json").write_text(json.dumps([split]))
    return Expect(root, train=4, query=2, gallery=3)


def write_cuhk03(tmp: Path) -> Expect:
    return _cuhk03(tmp, "detected")


def write_cuhk03_labeled(tmp: Path) -> Expect:
    return _cuhk03(tmp, "labeled")


def write_cuhk_sysu(tmp: Path) -> Expect:
    root = tmp / "cuhksysu4reid"
    for i, (pid, scene) in enumerate([(1, 10), (1, 11), (2, 12)]):
        _img(root / "train" / f"{pid:05d}_s{scene}_{i:07d}_0.jpg")
    _img(root / "query" / "00010_s100_0000003_0.jpg")
    _img(root / "query" / "00011_s101_0000004_1.jpg")
    _img(root / "gallery" / "00010_s200_0000005_0.jpg")
    _img(root / "gallery" / "00010_s201_0000006_0.jpg")
    _img(root / "gallery" / "00011_s202_0000007_0.jpg")
    _img(root / "combine" / "00001_s10_0000000_0.jpg")  # ignored
    return Expect(root, train=3, query=2, gallery=3)


def write_viper(tmp: Path) -> Expect:
    root = tmp / "VIPeR"
    for pid in range(4):
        _img(root / "cam_a" / f"{pid:03d}_45.bmp")
        _img(root / "cam_b" / f"{pid:03d}_90.bmp")
    return Expect(root, train=4, query=2, gallery=2)


def write_prid(tmp: Path) -> Expect:
    root = tmp / "prid_2011"
    for pid in (1, 2, 3, 4, 5):  # 5: cam_a only -> unused
        _img(root / "single_shot" / "cam_a" / f"person_{pid:04d}.png")
    for pid in (1, 2, 3, 4, 6, 7):  # 6, 7: cam_b only -> distractors
        _img(root / "single_shot" / "cam_b" / f"person_{pid:04d}.png")
    return Expect(root, train=4, query=2, gallery=4)


def write_grid(tmp: Path) -> Expect:
    root = tmp / "underground_reid"
    for pid in (1, 2, 3, 4):
        _img(root / "probe" / f"{pid:04d}_1_25004_107_32_130.jpeg")
        _img(root / "gallery" / f"{pid:04d}_2_25004_107_32_130.jpeg")
    for i in range(2):
        _img(root / "gallery" / f"0000_3_2500{i}_107_32_130.jpeg")
    return Expect(root, train=4, query=2, gallery=4)


def write_ilids(tmp: Path) -> Expect:
    root = tmp / "i-LIDS_Pedestrian"
    for pid in (1, 2, 3, 4):
        for idx in (1, 2, 3):
            _img(root / "Persons" / f"{pid:04d}{idx:04d}.jpg")
    return Expect(root, train=6, query=2, gallery=2)


def write_cuhk01(tmp: Path) -> Expect:
    root = tmp / "cuhk01"
    for pid in (1, 2, 3, 4):
        for idx in (1, 2, 3, 4):
            _img(root / "campus" / f"{pid:04d}{idx:03d}.png")
    return Expect(root, train=8, query=4, gallery=4)


def write_cuhk02(tmp: Path) -> Expect:
    root = tmp / "cuhk02"
    for pair in ("P1", "P5"):
        for pid in (1, 2):
            _img(root / "Dataset" / pair / "cam1" / f"{pid:03d}_1.png")
            _img(root / "Dataset" / pair / "cam2" / f"{pid:03d}_3.png")
    return Expect(root, train=4, query=2, gallery=2)


def write_sensereid(tmp: Path) -> Expect:
    root = tmp / "sensereid"
    for pid in (1, 2):
        _img(root / "SenseReID" / "test_probe" / f"{pid:07d}_00.jpg")
    for pid in (1, 2, 3):
        _img(root / "SenseReID" / "test_gallery" / f"{pid:07d}_01.jpg")
    return Expect(root, train=0, query=2, gallery=3)


WRITERS: dict[str, Callable[[Path], Expect]] = {
    "market1501": write_market1501,
    "dukemtmc": write_dukemtmc,
    "msmt17": write_msmt17,
    "cuhk03": write_cuhk03,
    "cuhk03_labeled": write_cuhk03_labeled,
    "cuhk_sysu": write_cuhk_sysu,
    "viper": write_viper,
    "prid": write_prid,
    "grid": write_grid,
    "ilids": write_ilids,
    "cuhk01": write_cuhk01,
    "cuhk02": write_cuhk02,
    "sensereid": write_sensereid,
}


def _write(name: str, tmp: Path) -> Expect:
    if name not in WRITERS:
        pytest.fail(f"dataset {name!r} is registered but has no fake-tree writer in WRITERS")
    return WRITERS[name](tmp)


def _cross_camera_match(split: Split) -> bool:
    return any(q.pid == g.pid and q.camid != g.camid for q in split.query for g in split.gallery)


# --------------------------------------------------------------------------- every dataset


def test_registry_has_the_twelve_datasets() -> None:
    expected = {"market1501", "cuhk_sysu", "dukemtmc", "msmt17", "cuhk03", "viper", "prid",
                "grid", "ilids", "cuhk01", "cuhk02", "sensereid"}
    assert expected <= set(list_datasets())
    assert list_datasets() == sorted(list_datasets())


@pytest.mark.parametrize("name", list_datasets())
def test_load_fake_tree(name: str, tmp_path: Path) -> None:
    exp = _write(name, tmp_path)
    split = load(name, exp.root)
    assert split.name == name
    counts = (len(split.train), len(split.query), len(split.gallery))
    assert counts == (exp.train, exp.query, exp.gallery)
    for rec in split.train + split.query + split.gallery:
        assert isinstance(rec, Record)
        assert rec.domain == name
        assert Path(rec.path).is_absolute() and Path(rec.path).is_file(), rec.path
        assert isinstance(rec.pid, int) and isinstance(rec.camid, int) and rec.camid >= 0
    assert _cross_camera_match(split)
    if name != "msmt17":  # MSMT17 numbers its test ids from 0 again, apart from train ids
        assert not {r.pid for r in split.train} & {r.pid for r in split.query}
    assert load(name, exp.root) == split  # deterministic


@pytest.mark.parametrize("name", list_datasets())
def test_resolve_default_folder(name: str, tmp_path: Path) -> None:
    exp = _write(name, tmp_path)
    assert exp.root == tmp_path / ds.default_folder(name)
    assert resolve(name, tmp_path) == load(name, exp.root)


@pytest.mark.parametrize("name", list_datasets())
def test_wrong_root_names_expected_path(name: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(LReIDError) as err:
        load(name, missing)
    msg = str(err.value)
    assert "\n" not in msg and name in msg and str(missing) in msg


@pytest.mark.parametrize("name", list_datasets())
def test_tree_without_images_is_an_error(name: str, tmp_path: Path) -> None:
    exp = _write(name, tmp_path)
    for p in list(exp.root.rglob("*")):
        if p.is_file() and p.suffix.lower() in ds.IMG_EXTS:
            p.unlink()
    with pytest.raises(LReIDError) as err:
        load(name, exp.root)
    assert str(exp.root) in str(err.value) and "\n" not in str(err.value)


# --------------------------------------------------------------------------- specifics


def test_market_pids_camids_and_junk(tmp_path: Path) -> None:
    split = load("market1501", write_market1501(tmp_path).root)
    assert sorted((r.pid, r.camid) for r in split.train) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    assert sorted((r.pid, r.camid) for r in split.query) == [(3, 0), (4, 1)]
    assert sorted((r.pid, r.camid) for r in split.gallery) == [(0, 2), (3, 1), (4, 0)]


def test_market_missing_root_message(tmp_path: Path) -> None:
    root = tmp_path / "Market-1501-v15.09.15"
    with pytest.raises(LReIDError, match="expected folder") as err:
        load("market1501", root)
    assert str(root / "bounding_box_train") in str(err.value)


def test_market_empty_folder(tmp_path: Path) -> None:
    root = tmp_path / "Market-1501-v15.09.15"
    for sub in ("bounding_box_train", "query", "bounding_box_test"):
        (root / sub).mkdir(parents=True)
    with pytest.raises(LReIDError) as err:
        load("market1501", root)
    assert str(root / "bounding_box_train") in str(err.value)


def test_torchreid_style_nesting_and_resolve_fallback(tmp_path: Path) -> None:
    exp = write_market1501(tmp_path / "market1501")  # data/market1501/Market-1501-v15.09.15
    split = resolve("market1501", tmp_path)
    assert split == load("market1501", exp.root)
    assert load("market1501", tmp_path / "market1501") == split


def test_unknown_name_on_market_layout_is_loaded_by_name(tmp_path: Path) -> None:
    exp = write_market1501(tmp_path)
    split = load("synthetic_a", exp.root)
    assert split.name == "synthetic_a"
    assert {r.domain for r in split.train + split.query + split.gallery} == {"synthetic_a"}
    assert (len(split.train), len(split.query), len(split.gallery)) == (4, 2, 3)
    assert ds.default_folder("synthetic_a") == "synthetic_a"
    exp.root.rename(tmp_path / "synthetic_a")
    resolved = resolve("synthetic_a", tmp_path)
    assert [(r.pid, r.camid) for r in resolved.gallery] == [(r.pid, r.camid) for r in split.gallery]
    assert all(r.path.startswith(str(tmp_path / "synthetic_a")) for r in resolved.gallery)


def test_unknown_name_elsewhere_lists_valid_names(tmp_path: Path) -> None:
    with pytest.raises(LReIDError) as err:
        load("nosuchset", tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "unknown dataset name 'nosuchset'" in msg
    assert all(n in msg for n in list_datasets())


def test_cuhk_sysu_query_and_gallery_cameras_differ(tmp_path: Path) -> None:
    split = load("cuhk_sysu", write_cuhk_sysu(tmp_path).root)
    assert {r.camid for r in split.query} == {0}
    assert {r.camid for r in split.gallery} == {1}
    assert sorted(r.pid for r in split.gallery) == [10, 10, 11]


def test_cuhk_sysu_lreid_nesting(tmp_path: Path) -> None:
    write_cuhk_sysu(tmp_path / "cuhk-sysu" / "CUHK-SYSU")
    assert len(load("cuhk_sysu", tmp_path).query) == 2


def test_msmt17_pids_and_cameras(tmp_path: Path) -> None:
    split = load("msmt17", write_msmt17(tmp_path).root)
    assert sorted((r.pid, r.camid) for r in split.train) == [(0, 0), (0, 2), (1, 1)]
    assert sorted((r.pid, r.camid) for r in split.gallery) == [(0, 14), (1, 6), (2, 0)]


def test_msmt17_missing_list_file(tmp_path: Path) -> None:
    root = write_msmt17(tmp_path).root
    (root / "list_query.txt").unlink()
    with pytest.raises(LReIDError, match="list_query.txt"):
        load("msmt17", root)


def test_cuhk03_pids_from_file_names(tmp_path: Path) -> None:
    split = load("cuhk03", write_cuhk03(tmp_path).root)
    assert sorted({r.pid for r in split.train}) == [1001, 2001]
    assert sorted((r.pid, r.camid) for r in split.query) == [(1002, 0), (3005, 0)]
    assert all("images_detected" in r.path for r in split.train)


def test_cuhk03_raw_mat_only(tmp_path: Path) -> None:
    root = tmp_path / "cuhk03"
    (root / "cuhk03_release").mkdir(parents=True)
    (root / "cuhk03_release" / "cuhk-03.mat").write_bytes(b"MATLAB 7.3")
    with pytest.raises(LReIDError) as err:
        load("cuhk03", root)
    msg = str(err.value)
    assert "cuhk-03.mat" in msg and "splits_new_detected.json" in msg and "images_detected" in msg


def test_cuhk03_missing_split_json(tmp_path: Path) -> None:
    root = write_cuhk03(tmp_path).root
    (root / "splits_new_detected.json").unlink()
    with pytest.raises(LReIDError, match="splits_new_detected.json"):
        load("cuhk03", root)


def test_cuhk03_np_market_layout(tmp_path: Path) -> None:
    _market_like(tmp_path / "cuhk03" / "detected", lambda p, c, i: f"{_pid4(p)}_c{c}_{i:02d}.png")
    split = load("cuhk03", tmp_path / "cuhk03")
    assert split.name == "cuhk03" and len(split.gallery) == 3


def test_two_camera_protocols(tmp_path: Path) -> None:
    viper = load("viper", write_viper(tmp_path).root)
    assert {r.camid for r in viper.query} == {0} and {r.camid for r in viper.gallery} == {1}
    assert {r.pid for r in viper.query} == {r.pid for r in viper.gallery}
    prid = load("prid", write_prid(tmp_path).root)
    assert {6, 7} <= {r.pid for r in prid.gallery} and 5 not in {r.pid for r in prid.gallery}
    grid = load("grid", write_grid(tmp_path).root)
    assert sum(r.pid == 0 for r in grid.gallery) == 2
    assert {r.camid for r in grid.query} == {0} and {r.camid for r in grid.gallery} == {1, 2}
    cuhk01 = load("cuhk01", write_cuhk01(tmp_path).root)
    assert {r.camid for r in cuhk01.query} == {0} and {r.camid for r in cuhk01.gallery} == {1}


def test_cuhk02_unique_pids_per_pair(tmp_path: Path) -> None:
    split = load("cuhk02", write_cuhk02(tmp_path).root)
    assert sorted({r.pid for r in split.train}) == [10001, 10002]
    assert sorted(r.pid for r in split.query) == [50001, 50002]
    assert {r.camid for r in split.train} == {0, 1}
    assert {r.camid for r in split.query} == {8} and {r.camid for r in split.gallery} == {9}


def test_ilids_and_sensereid_cameras(tmp_path: Path) -> None:
    ilids = load("ilids", write_ilids(tmp_path).root)
    assert {r.camid for r in ilids.query} == {0} and {r.camid for r in ilids.gallery} == {1}
    assert {r.pid for r in ilids.query} == {r.pid for r in ilids.gallery}
    sense = load("sensereid", write_sensereid(tmp_path).root)
    assert sense.train == [] and {r.pid for r in sense.gallery} == {1, 2, 3}
