"""Every documented ``lreid`` subcommand runs once, in the smoke profile or at the smallest size its flags allow,
so a documented command cannot silently break again (issue 26: ``lreid bench train`` crashed unnoticed)."""
import json
import shutil

import pytest
import torch

from lreid_core import cli

SMOKE = ["train.epochs=1", "train.iters_per_epoch=2", "train.milestones=[1]"]


def _ok(argv, capsys) -> str:
    """stdout of ``lreid ARGV``, asserting exit 0 and no error line."""
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0 and "error" not in err and "Traceback" not in err, err
    return out


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("LREID_PROGRESS", "0")


def test_run_resume_report_sweep_demo(tmp_path, capsys):
    run = tmp_path / "run"
    out = _ok(["run", "--profile", "smoke", "--method", "lwf", "--out", run, "--quiet", "--set", *SMOKE], capsys)
    assert f"run directory: {run}" in out
    assert json.loads((run / "metrics.json").read_text())["status"] == "done"

    killed = tmp_path / "killed"                     # killed before its first checkpoint: --resume starts it over
    killed.mkdir()
    shutil.copy(run / "config.yaml", killed / "config.yaml")
    out = _ok(["run", "--resume", killed, "--quiet"], capsys)
    assert "no checkpoint yet" in out and json.loads((killed / "metrics.json").read_text())["status"] == "done"

    out = _ok(["report", run, "--out", tmp_path / "report"], capsys)
    assert (tmp_path / "report" / "report.md").is_file() and any((tmp_path / "report" / "figures").iterdir())

    out = _ok(["sweep", "--key", "method.tau", "--values", "2", "--profile", "smoke", "--method", "lwf",
               "--out", tmp_path / "sweep", "--quiet", "--set", *SMOKE], capsys)
    assert (tmp_path / "sweep" / "sweep.csv").is_file() and (tmp_path / "sweep" / "method.tau=2").is_dir()

    out = _ok(["demo", "--profile", "smoke", "--methods", "finetune", "--out", tmp_path / "demo", "--set", *SMOKE],
              capsys)
    assert (tmp_path / "demo" / "table.csv").read_text().startswith(cli.TABLE_HEADER)


def test_synth(tmp_path, capsys):
    out = _ok(["synth", "--out", tmp_path, "--domains", "synth_a"], capsys)
    assert f"synth_a: {tmp_path / 'synth_a'}" in out and (tmp_path / "synth_a" / "synthetic.json").is_file()


def test_bench_eval(capsys):
    assert "rank" in _ok(["bench", "eval"], capsys).lower()


def test_bench_train(tmp_path, capsys):
    out = _ok(["bench", "train", "--profile", "smoke", "--iters", "1", "--methods", "base,lwf",
               "--out", tmp_path / "bench.json"], capsys)
    rows = json.loads((tmp_path / "bench.json").read_text())
    assert [r["row"] for r in rows] == ["plain eager (base, no data)", "base (with data)", "lwf (with data)",
                                        "feature extraction"]
    assert "feature extraction" in out


def test_pretrain(tmp_path, capsys):
    out = _ok(["pretrain", "--iters", "1", "--out", tmp_path / "w.pt", "--quiet"], capsys)
    weights = torch.load(tmp_path / "w.pt", weights_only=True)
    assert "pretrained small backbone" in out and weights["iters"] == 10 and weights["state_dict"]


def test_quiet_silences_every_bar_and_restores_the_switch(tmp_path, capsys, monkeypatch):
    import os

    monkeypatch.delenv("LREID_PROGRESS")                # bars on, as in a terminal
    argv = ["run", "--profile", "smoke", "--method", "finetune", "--out", str(tmp_path / "run"), "--quiet",
            "--set", *SMOKE]
    assert cli.main(argv) == 0
    _, err = capsys.readouterr()
    assert "decode" not in err and "it/s" not in err, err   # the image decoding's bars too
    assert "LREID_PROGRESS" not in os.environ                # the switch is the command's, not the process's
