"""Config profiles, YAML loading, overrides and one-line validation errors."""
import math

import pytest

from lreid_core.config import load_config, parse_overrides, profile
from lreid_core.errors import LReIDError


def test_profiles_resolve():
    for name in ("smoke", "demo", "paper"):
        cfg = profile(name)
        assert cfg.profile == name and cfg.data.order
    paper = profile("paper")
    assert (paper.train.lr, paper.train.epochs, paper.train.iters_per_epoch) == (3.5e-4, 50, 150)
    assert (paper.train.p_ids, paper.train.k_imgs, paper.data.height, paper.data.width) == (32, 4, 256, 128)
    m = paper.method
    assert (m.tau, m.gamma0, m.gamma1, m.gamma2, m.gamma3, m.k) == (2.0, 1.0, 0.5, 0.1, 100.0, 3)
    demo = profile("demo")   # >= 200 queries per domain (2 per test identity), the paper's 16x8 patch grid
    assert demo.data.synth_test_ids >= 100 and demo.data.synth_variant == "premise"
    assert (demo.data.height, demo.data.width, demo.model.small_stride) == (64, 32, 4)
    assert demo.train.lr_schedule == "global" and demo.method.gamma3 == paper.method.gamma3


def test_yaml_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("profile: smoke\ntrain:\n  lr: 0.01\nmethod:\n  name: patchkd\n  k: 2\n")
    cfg = load_config(f, overrides=parse_overrides(["method.gamma3=5", "data.order=a,b"]))
    assert cfg.profile == "smoke" and cfg.train.lr == 0.01 and cfg.method.k == 2 and cfg.method.gamma3 == 5.0
    assert cfg.data.order == ["a", "b"]


@pytest.mark.parametrize("override, message", [
    ("train.nope=1", "unknown config key 'train.nope'"),
    ("method.k=0", "method.k"),
    ("method.gamma2=-1", "method.gamma2"),
    ("method.gamma3=.nan", "method.gamma3"),
    ("train.lr=fast", "train.lr"),
    ("train.p_ids=1", "train.p_ids"),
    ("model.backbone=vgg", "model.backbone"),
    ("model.pretrained=/no/such/weights.pth", "/no/such/weights.pth"),
    ("model.small_stride=2", "model.small_stride"),
    ("data.synth_variant=easy", "data.synth_variant"),
])
def test_bad_values_one_line(override, message):
    with pytest.raises(LReIDError, match=message) as info:
        load_config(profile_name="smoke", overrides=parse_overrides([override]))
    assert "\n" not in str(info.value)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(LReIDError, match="config file not found"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(LReIDError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(LReIDError, match="unknown profile"):
        load_config(profile_name="huge")
    assert math.isfinite(load_config(profile_name="smoke").train.lr)
