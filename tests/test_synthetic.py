"""Tests for the procedural multi-domain benchmark (lreid_core.data.synthetic)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from lreid_core.data import synthetic as S
from lreid_core.errors import LReIDError

NAME = re.compile(r"^(\d{4})_c(\d)s1_(\d{6})_00\.jpg$")
SMALL = dict(ids_per_domain=6, test_ids_per_domain=5, images_per_id=6, progress=False)
DOMS = ["synth_a", "synth_c"]


def _parse(folder: Path) -> list[tuple[int, int, int]]:
    out = []
    for f in sorted(folder.iterdir()):
        m = NAME.match(f.name)
        assert m, f"bad file name {f.name}"
        out.append((int(m[1]), int(m[2]), int(m[3])))
    return out


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("synth")
    return root, S.make_benchmark(root, domains=DOMS, seed=3, **SMALL)


def test_layout_and_names(bench):
    root, paths = bench
    assert set(paths) == set(DOMS)
    assert sorted(p.name for p in root.iterdir() if p.name != ".lock") == sorted(DOMS)  # no .tmp left behind
    for dom, path in paths.items():
        assert path == root / dom
        meta = json.loads((path / "synthetic.json").read_text())
        assert meta["params"]["spec"] == dom and meta["params"]["seed"] == 3
        train = _parse(path / "bounding_box_train")
        query = _parse(path / "query")
        gallery = _parse(path / "bounding_box_test")
        assert len(train) == 6 * 6 and len(query) == 5 * 2 and len(gallery) == 5 * 2
        n_cams = S.get_style(dom).cameras
        frames = [f for _, _, f in train + query + gallery]
        assert len(set(frames)) == len(frames) and min(frames) >= 1
        for pid, cam, _ in train + query + gallery:
            assert 1 <= cam <= n_cams and pid >= 1
        from PIL import Image

        with Image.open(next((path / "query").iterdir())) as im:
            assert im.size == (64, 128) and im.mode == "RGB"


def test_train_test_disjoint_and_cross_camera_matches(bench):
    _, paths = bench
    for path in paths.values():
        train_ids = {p for p, _, _ in _parse(path / "bounding_box_train")}
        query = _parse(path / "query")
        gallery = _parse(path / "bounding_box_test")
        assert train_ids == set(range(1, 7))
        assert not train_ids & {p for p, _, _ in query + gallery}
        assert {p for p, _, _ in query} == {p for p, _, _ in gallery}
        for pid, cam, _ in query:
            assert any(gp == pid and gc != cam for gp, gc, _ in gallery), (pid, cam)
        # each train identity is seen by at least two cameras
        for pid in train_ids:
            assert len({c for p, c, _ in _parse(path / "bounding_box_train") if p == pid}) >= 2


def test_determinism(bench, tmp_path):
    root, _ = bench
    again = S.make_benchmark(tmp_path / "same", domains=DOMS, seed=3, **SMALL)
    other = S.make_benchmark(tmp_path / "other", domains=DOMS, seed=4, **SMALL)
    for dom in DOMS:
        names = sorted(p.name for p in (root / dom / "query").iterdir())
        assert names == sorted(p.name for p in (again[dom] / "query").iterdir())
        for name in names[:3]:
            assert (root / dom / "query" / name).read_bytes() == (again[dom] / "query" / name).read_bytes()
        ours = {p.read_bytes() for p in sorted((root / dom / "query").iterdir())}
        theirs = {p.read_bytes() for p in sorted((other[dom] / "query").iterdir())}
        assert not ours & theirs  # a different seed gives different images


def test_cache_skips_and_overwrite_rewrites(bench):
    root, _ = bench
    probe = next((root / "synth_a" / "bounding_box_train").iterdir())
    before = probe.stat().st_mtime_ns
    meta_before = (root / "synth_a" / "synthetic.json").stat().st_mtime_ns
    S.make_benchmark(root, domains=["synth_a"], seed=3, **SMALL)
    assert probe.stat().st_mtime_ns == before
    assert (root / "synth_a" / "synthetic.json").stat().st_mtime_ns == meta_before


def test_changed_parameters_regenerate(tmp_path):
    S.make_benchmark(tmp_path, domains=["synth_b"], seed=0, **SMALL)
    S.make_benchmark(tmp_path, domains=["synth_b"], seed=0, **{**SMALL, "ids_per_domain": 4})
    assert len({p for p, _, _ in _parse(tmp_path / "synth_b" / "bounding_box_train")}) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "synth_b"]      # no .tmp or .old.tmp left


def test_custom_style_objects(tmp_path):
    import dataclasses

    custom = dataclasses.replace(S.get_style("synth_a"), name="synth_a_clean", occlusion=0.0, noise=0.0)
    paths = S.make_benchmark(tmp_path, domains=[custom], **{**SMALL, "ids_per_domain": 3, "test_ids_per_domain": 2})
    assert list(paths) == ["synth_a_clean"] and (tmp_path / "synth_a_clean" / "query").is_dir()
    probe = next((tmp_path / "synth_a_clean" / "query").iterdir())
    before = probe.stat().st_mtime_ns
    changed = dataclasses.replace(custom, noise=5.0)  # same name, different style -> regenerated
    S.make_benchmark(tmp_path, domains=[changed], **{**SMALL, "ids_per_domain": 3, "test_ids_per_domain": 2})
    assert not probe.exists() or probe.stat().st_mtime_ns != before


def test_unknown_domain_and_bad_arguments(tmp_path):
    with pytest.raises(LReIDError, match="synth_a"):
        S.make_benchmark(tmp_path, domains=["market_synthetic"], progress=False)
    with pytest.raises(LReIDError):
        S.get_style("nope")
    with pytest.raises(LReIDError):
        S.make_benchmark(tmp_path, domains=["synth_a"], images_per_id=1, progress=False)
    assert not any(tmp_path.iterdir())


def test_defaults_and_renderer():
    assert len(S.DEFAULT_DOMAINS) == 5 and len(S.DEFAULT_UNSEEN) == 2
    assert set(S.DEFAULT_DOMAINS + S.DEFAULT_UNSEEN) <= set(S.DOMAIN_STYLES)
    for name in S.DEFAULT_DOMAINS + S.DEFAULT_UNSEEN:
        style = S.get_style(name)
        assert set(style.identity) <= set(S.ATTRIBUTES)
        assert set(style.camera_nuisance) <= set(S.ATTRIBUTES) - set(style.identity)
        rng = np.random.default_rng(0)
        ident = S.sample_identity(name, rng)
        cam = S.make_camera(name, 0, seed=0)
        img = S.render_person(S.sample_appearance(ident, name, cam, rng), name, cam, rng, 64, 32)
        assert img.shape == (64, 32, 3) and img.dtype == np.uint8 and img.std() > 5
        # identity attributes survive; camera-level nuisance is stable per (person, camera)
        a1 = S.sample_appearance(ident, style, cam, np.random.default_rng(1))
        a2 = S.sample_appearance(ident, style, cam, np.random.default_rng(2))
        for attr in style.identity + style.camera_nuisance:
            assert a1[attr] == a2[attr] == (ident[attr] if attr in style.identity else a1[attr])
    assert S.stable_seed("x", 1) == S.stable_seed("x", 1) != S.stable_seed("x", 2)


def test_variants_premise_shares_identity_meaning_conflict_does_not():
    assert set(S.STYLE_VARIANTS) == {"premise", "conflict", "pretrain"} and S.DOMAIN_STYLES is S.STYLE_VARIANTS["premise"]
    premise = [S.get_style(n) for n in S.DEFAULT_DOMAINS + S.DEFAULT_UNSEEN]
    conflict = [S.get_style(n, "conflict") for n in S.DEFAULT_DOMAINS + S.DEFAULT_UNSEEN]
    for st in premise:   # the whole appearance is identity, colours from one palette, in every domain
        assert st.identity == S.ATTRIBUTES and not st.camera_nuisance and st.shared_palette
        assert np.array_equal(S.palette(st), S.SHARED_PALETTE)
    assert len({st.background for st in premise}) >= 4 and len({st.render_scale for st in premise}) >= 3
    assert any(st.identity != S.ATTRIBUTES for st in conflict) and not any(st.shared_palette for st in conflict)
    assert not set(S.PRETRAIN_STYLES) & set(S.PREMISE_STYLES)     # the pretraining pool is disjoint
    with pytest.raises(LReIDError, match="variant"):
        S.get_style("synth_a", "nope")
    with pytest.raises(LReIDError, match="shared colour"):
        S.color_weights(mauve=2.0)


def test_variant_is_part_of_the_parameters(tmp_path):
    S.make_benchmark(tmp_path / "p", domains=["synth_a"], **SMALL)
    S.make_benchmark(tmp_path / "c", domains=["synth_a"], variant="conflict", **SMALL)
    meta = [json.loads((tmp_path / v / "synth_a" / "synthetic.json").read_text())["params"] for v in "pc"]
    assert [m["variant"] for m in meta] == ["premise", "conflict"] and meta[0]["style_hash"] != meta[1]["style_hash"]
    a = {p.read_bytes() for p in (tmp_path / "p" / "synth_a" / "query").iterdir()}
    assert not a & {p.read_bytes() for p in (tmp_path / "c" / "synth_a" / "query").iterdir()}


def test_benchmark_key_covers_every_parameter():
    base = dict(ids_per_domain=100, test_ids_per_domain=100, images_per_id=12, seed=0, variant="premise")
    key = S.benchmark_key(**base)
    assert key == S.benchmark_key(**dict(base)) and key.startswith(f"v{S.GENERATOR_VERSION}-premise-")
    for k, v in [("ids_per_domain", 12), ("test_ids_per_domain", 8), ("images_per_id", 6), ("seed", 1),
                 ("variant", "conflict")]:
        assert S.benchmark_key(**{**base, k: v}) != key, k


def test_camera_isp_pulls_exposure_and_white_balance_toward_grey():
    rng = np.random.default_rng(0)
    dark_cast = rng.uniform(0, 1, (16, 8, 3)).astype(np.float32) * np.array([60.0, 40.0, 20.0], np.float32)
    assert S.camera_isp(dark_cast, 0.0, 0.0) is dark_cast                # off: the image as lit
    exposed = S.camera_isp(dark_cast, 1.0, 0.0).reshape(-1, 3).mean(0)
    assert abs(exposed @ np.array([0.299, 0.587, 0.114]) - 118.0) < 6.0  # full exposure: mid-grey (the +1 offset)
    full = S.camera_isp(dark_cast, 1.0, 1.0).reshape(-1, 3).mean(0)
    assert np.allclose(full, full.mean(), rtol=0.05)                      # grey world: equal channel means
    part = S.camera_isp(dark_cast, 0.75, 0.5).reshape(-1, 3).mean(0)
    before = dark_cast.reshape(-1, 3).mean(0)
    assert before.mean() < part.mean() < full.mean()                      # partly corrected, never overshooting
    assert np.ptp(part / part.mean()) < np.ptp(before / before.mean())   # a weaker, still visible cast


def test_premise_domains_keep_global_statistics_in_a_realistic_range(tmp_path):
    """Generator version 4 on: the cameras' auto-exposure keeps every premise domain's mean intensity within
    0.3..0.6 (version 3 spread it from 0.16 to 0.69, so BN statistics alone made most forgetting)."""
    S.make_benchmark(tmp_path, domains=S.DEFAULT_DOMAINS, **SMALL)
    from PIL import Image
    for d in S.DEFAULT_DOMAINS:
        files = sorted((tmp_path / d / "bounding_box_train").glob("*.jpg"))
        mean = np.mean([np.asarray(Image.open(f), np.float32).mean() / 255 for f in files])
        assert 0.3 < mean < 0.6, (d, mean)


def test_domains_without_white_balance_keep_their_per_camera_casts(tmp_path):
    """Generator version 5: synth_b and synth_d have no auto white balance (POOR_WHITE_BALANCE), so their cameras
    differ in colour cast far more than the other seen domains' cameras do."""
    from PIL import Image
    S.make_benchmark(tmp_path, domains=S.DEFAULT_DOMAINS, **SMALL)

    def cast_spread(domain: str) -> float:
        by_cam: dict[str, list] = {}
        for f in (tmp_path / domain / "bounding_box_train").glob("*.jpg"):
            pixels = np.asarray(Image.open(f), np.float32).reshape(-1, 3)
            by_cam.setdefault(f.name.split("_")[1][:2], []).append(pixels.mean(0))
        chroma = np.array([np.mean(v, 0) / np.mean(v) for v in by_cam.values()])   # per camera: channel / grey
        return float(chroma.std(0).mean())

    spread = {d: cast_spread(d) for d in S.DEFAULT_DOMAINS}
    assert S.get_style("synth_b").white_balance == S.get_style("synth_d").white_balance == 0.0
    assert min(spread["synth_b"], spread["synth_d"]) > 2 * np.mean([spread[d] for d in ("synth_a", "synth_c", "synth_e")]), spread
