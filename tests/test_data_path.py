"""PK sampler, batched augmentation, the LReID protocol (sampling + relabelling) and the decode cache."""
import torch
import pytest

from lreid_core.config import load_config
from lreid_core.data.augment import augment, normalize, random_crop, random_erasing, random_flip
from lreid_core.data.benchmark import build_benchmark, resolve_order, sample_identities
from lreid_core.data.cache import load_images
from lreid_core.data.datasets import Record, Split
from lreid_core.data.sampler import PKSampler
from lreid_core.errors import LReIDError


def test_pk_sampler_groups_and_replacement():
    labels = [0] * 6 + [1] * 2 + [2] * 5 + [3] * 4
    s = PKSampler(labels, p=3, k=4, seed=1)
    for _ in range(20):
        idx = next(s)
        got = torch.tensor(labels)[idx].view(3, 4)
        assert (got == got[:, :1]).all()                     # K images of one identity per row
        assert len(set(got[:, 0].tolist())) == 3             # P distinct identities
        for row, lab in zip(idx.view(3, 4), got[:, 0]):
            if lab != 1:                                     # ids with >= K images: no repeats
                assert len(set(row.tolist())) == 4


def test_pk_sampler_deterministic_and_resumable():
    labels = list(range(10)) * 3
    a, b = PKSampler(labels, 4, 2, seed=5), PKSampler(labels, 4, 2, seed=5)
    next(a)
    state = a.state_dict()
    after = [next(a) for _ in range(3)]
    b.load_state_dict(state)
    assert all(torch.equal(x, y) for x, y in zip(after, [next(b) for _ in range(3)]))


def test_pk_sampler_too_few_ids():
    with pytest.raises(LReIDError, match="P=4"):
        PKSampler([0, 0, 1, 1], p=4, k=2)


def test_augment_shapes_and_ops():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 3, 32, 16), dtype=torch.uint8)
    out = augment(x, g)
    assert out.shape == (6, 3, 32, 16) and out.dtype == torch.float32
    assert torch.equal(random_flip(x, g, p=1.0), x.flip(3))
    assert torch.equal(random_crop(x, g, pad=0), x)
    cropped = random_crop(x.float(), g, pad=3)
    assert cropped.shape == x.shape
    erased = random_erasing(torch.ones(4, 3, 32, 16), g, p=1.0)
    assert ((erased == 0).flatten(1).any(dim=1)).all()        # every image got a rectangle
    assert normalize(torch.zeros(1, 3, 2, 2, dtype=torch.uint8)).mean() < 0


def test_protocol_sampling_and_relabelling(tmp_path):
    recs = [Record(f"/x/{p}_{i}.jpg", p, i % 2, "d") for p in range(10) for i in range(3)]
    split = Split("d", recs, recs[:2], recs[2:])
    a, b = sample_identities(split, 4, seed=0), sample_identities(split, 4, seed=0)
    assert a.num_classes == 4 and a.labels == b.labels and len(a.records) == 12
    assert sorted(set(a.labels)) == [0, 1, 2, 3]
    assert sample_identities(split, 100, seed=0).num_classes == 10
    assert resolve_order("order1")[0] == "market1501" and resolve_order("a,b") == ["a", "b"]


def test_benchmark_growing_label_space_and_cache():
    cfg = load_config(profile_name="smoke")
    bench = build_benchmark(cfg)
    offset = 0
    for t in bench.train:
        assert t.offset == offset and min(t.labels) == offset and max(t.labels) == offset + t.num_classes - 1
        offset += t.num_classes
    paths = [r.path for r in bench.train[0].records[:5]]
    imgs = load_images(paths, cfg.data.height, cfg.data.width)
    assert imgs.shape == (5, 3, cfg.data.height, cfg.data.width) and imgs.dtype == torch.uint8
    assert load_images(paths, cfg.data.height, cfg.data.width) is imgs       # decoded once


def test_corrupt_image_named(tmp_path):
    bad = tmp_path / "0001_c1s1_000001_00.jpg"
    bad.write_bytes(b"\xff\xd8\xff not a jpeg")
    with pytest.raises(LReIDError, match="0001_c1s1_000001_00.jpg"):
        load_images([str(bad)], 16, 8)


def test_profiles_get_their_own_synthetic_cache_folder(monkeypatch, tmp_path):
    from lreid_core.config import parse_overrides
    from lreid_core.data.synthetic import benchmark_key

    monkeypatch.setenv("LREID_CACHE", str(tmp_path))
    small = ["data.synth_train_ids=4", "data.synth_test_ids=2", "data.synth_images_per_id=4", "data.order=synth_a",
             "data.unseen=", "data.ids_per_domain=4", "train.p_ids=2"]
    a = build_benchmark(load_config(profile_name="smoke", overrides=parse_overrides(small)))
    b = build_benchmark(load_config(profile_name="smoke", overrides=parse_overrides(small + ["data.synth_test_ids=3"])))
    folders = sorted(p.name for p in (tmp_path / "synthetic").iterdir())
    assert len(folders) == 2 and all(f.startswith("v") for f in folders)
    assert len(a.seen[0].query) == 4 and len(b.seen[0].query) == 6          # neither overwrote the other
    assert benchmark_key(ids_per_domain=4, test_ids_per_domain=2, images_per_id=4, seed=0,
                         variant="premise") in folders
