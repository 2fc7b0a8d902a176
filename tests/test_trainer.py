"""End-to-end smoke runs through the Trainer and the CLI: run directory contents, checkpoints, determinism."""
import json
import subprocess
import sys

import pytest
import torch

from lreid_core.config import load_config
from lreid_core.data.benchmark import build_benchmark
from lreid_core.methods import create_method, list_methods
from lreid_core.results import RunResult
from lreid_core.train import Trainer


@pytest.fixture(scope="module")
def smoke():
    cfg = load_config(profile_name="smoke")
    return cfg, build_benchmark(cfg)


def test_registry_lists_and_rejects(smoke):
    cfg, _ = smoke
    assert {"finetune", "lwf", "joint"} <= set(list_methods())
    with pytest.raises(Exception, match="valid methods"):
        create_method("nope", cfg)


def test_lwf_run_directory(smoke, tmp_path):
    cfg, bench = smoke
    run = tmp_path / "run"
    result = Trainer(cfg, "lwf", bench, run, progress=False).fit()
    assert result.status == "done" and len(result.steps) == len(bench.order)
    for name in ("config.yaml", "metrics.json", "matrix_mAP.csv", "matrix_R1.csv", "checkpoints/step1.pt",
                 "checkpoints/step2.pt"):
        assert (run / name).is_file(), name
    assert list((run / "tb").iterdir()), "no TensorBoard events"
    assert not list(run.rglob("*.tmp"))
    loaded = RunResult.load(run)
    assert loaded.summary() == pytest.approx(result.summary(), nan_ok=True)
    data = json.loads((run / "metrics.json").read_text())
    assert 0 <= data["summary"]["seen_mAP"] <= 1
    # step 1 evaluates only the first seen domain (+ unseen); step 2 both
    assert set(result.steps[0]) == {bench.order[0]} | {u.domain for u in bench.unseen}
    # checkpoint round trip: same embeddings
    ckpt = torch.load(run / "checkpoints" / "step2.pt", weights_only=True)
    fresh = create_method("lwf", cfg)
    fresh.load_state_dict(ckpt["state"])
    trained = Trainer(cfg, "lwf", bench, progress=False).method
    trained.load_state_dict(ckpt["state"])
    x = torch.randn(4, 3, cfg.data.height, cfg.data.width)
    fresh.train(False), trained.train(False)
    assert torch.allclose(fresh.embed(x), trained.embed(x), atol=1e-5)   # the Trainer's is channels_last
    assert fresh.old is not None


def test_joint_single_step(smoke):
    cfg, bench = smoke
    result = Trainer(cfg, "joint", bench, progress=False, tensorboard=False).fit()
    assert len(result.steps) == 1 and set(bench.order) <= set(result.steps[0])


def test_same_seed_same_metrics(smoke):
    cfg, bench = smoke
    cfg.train.deterministic = True
    a = Trainer(cfg, "finetune", bench, progress=False, tensorboard=False).fit()
    b = Trainer(cfg, "finetune", bench, progress=False, tensorboard=False).fit()
    assert a.steps == b.steps


def test_cli_bad_input_one_line(tmp_path):
    cmd = [sys.executable, "-m", "lreid_core.cli", "run", "--profile", "smoke", "--method", "nope",
           "--out", str(tmp_path / "r")]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "unknown method 'nope'" in proc.stderr
    assert not (tmp_path / "r").exists()
