"""Bad-input catalogue, round two (issue 26): nothing a user made is touched, no path escapes its folder, every
value that validates runs, every failure is one line ``lreid: error: ...`` with a non-zero exit, before any work.
Each case asserts the message, the exit code and what is left on disk."""
import errno
import json
import os
import pathlib
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from lreid_core import cli, io as lio
from lreid_core.config import load_config, parse_overrides
from lreid_core.data import cache, synthetic
from lreid_core.data.benchmark import build_benchmark
from lreid_core.data.synthetic import make_benchmark
from lreid_core.errors import LReIDError
from lreid_core.train import Trainer

SMOKE = ["train.epochs=1", "train.iters_per_epoch=2", "train.milestones=[1]"]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    """Two tiny synthetic domains in Market layout, copied by the tests that damage them."""
    root = tmp_path_factory.mktemp("bad-data-2")
    make_benchmark(root, domains=["synth_a", "synth_b"], ids_per_domain=6, test_ids_per_domain=4, images_per_id=4,
                   progress=False)
    return root


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A finished tiny finetune run (2 steps)."""
    cfg = load_config(profile_name="smoke", overrides=parse_overrides(SMOKE + ["method.name=finetune"]))
    run = tmp_path_factory.mktemp("trained-2") / "run"
    Trainer(cfg, "finetune", build_benchmark(cfg), run, progress=False, tensorboard=False).fit()
    return run


@pytest.fixture(scope="module")
def mid_step_run(tmp_path_factory):
    """A finetune run stopped just after its first mid-step checkpoint (``iter`` > 0), as a kill leaves it."""
    class Stop(Exception):
        pass

    cfg = load_config(profile_name="smoke", overrides=parse_overrides(SMOKE + ["method.name=finetune",
                                                                               "train.ckpt_every=1"]))
    run = tmp_path_factory.mktemp("mid-step") / "run"
    trainer = Trainer(cfg, "finetune", build_benchmark(cfg), run, progress=False, tensorboard=False)
    write = trainer.checkpoint

    def stop_after(extra):
        write(extra)
        raise Stop

    trainer.checkpoint = stop_after
    with pytest.raises(Stop):
        trainer.fit()
    return run


def _main(argv, capsys):
    """(exit code, last stderr line) of ``lreid ARGV``; asserts no traceback and a one-line error on failure."""
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().replace("\r", "\n")
    assert "Traceback" not in err, err
    line = (err.splitlines() or [""])[-1]
    if code:
        assert line.startswith("lreid: error:") and len(line) < 400, line
    return code, line


def _copy(src, tmp_path, name):
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


def _real_root_args(root):
    return ["--data-root", root, "--order", "synth_a,synth_b", "--set", "data.synthetic=false", "data.unseen=[]",
            *SMOKE]


def _run(args, capsys, out):
    return _main(["run", "--profile", "smoke", "--quiet", "--out", out, *args], capsys)


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(pathlib.Path(folder).rglob("*")) if p.is_file()}


# ---- data loss and path escape ---------------------------------------------------------------------------
def test_report_domain_name_cannot_escape_out(trained_run, tmp_path, capsys):
    run = _copy(trained_run, tmp_path, "run")
    metrics = run / "metrics.json"
    metrics.write_text(metrics.read_text().replace('"synth_a"', '"a/../../../victim"'))
    victim = tmp_path / "trav" / "victim.csv"
    victim.parent.mkdir()
    victim.write_text("mine\n")
    code, _ = _main(["report", run, "--out", tmp_path / "trav" / "sub" / "rep", "--no-figures"], capsys)
    assert code == 0 and victim.read_text() == "mine\n"
    assert sorted(p.name for p in (tmp_path / "trav").rglob("*.csv")) == sorted(
        p.name for p in (tmp_path / "trav" / "sub" / "rep").iterdir() if p.suffix == ".csv") + ["victim.csv"]


def test_report_keeps_users_report_md(trained_run, tmp_path, capsys):
    out = tmp_path / "rep"
    out.mkdir()
    (out / "report.md").write_text("my notes\n")
    code, err = _main(["report", trained_run, "--out", out, "--no-figures"], capsys)
    assert code == 2 and f"{out / 'report.md'} already exists and no earlier report wrote it" in err
    assert _files(out) == {pathlib.Path("report.md"): b"my notes\n"}
    assert _main(["report", trained_run, "--out", out, "--no-figures", "--overwrite"], capsys)[0] == 0
    assert _main(["report", trained_run, "--out", out, "--no-figures"], capsys)[0] == 0      # ours: refreshed


def test_run_keeps_users_tmp_files(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".notes.tmp").write_text("mine\n")
    assert _run(["--set", *SMOKE], capsys, out)[0] == 0
    assert (out / ".notes.tmp").read_text() == "mine\n"


def test_demo_keeps_users_table(tmp_path, capsys):
    (tmp_path / "table.csv").write_text("my,table\n")
    code, err = _main(["demo", "--profile", "smoke", "--methods", "finetune", "--out", tmp_path, "--set", *SMOKE],
                      capsys)
    assert code == 2 and f"{tmp_path / 'table.csv'} already exists and no earlier demo wrote it" in err
    assert _files(tmp_path) == {pathlib.Path("table.csv"): b"my,table\n"}


def test_demo_overwrite_refuses_symlinked_run_folder(trained_run, tmp_path, capsys):
    target = _copy(trained_run, tmp_path, "elsewhere")
    out = tmp_path / "demo"
    out.mkdir()
    (out / "finetune").symlink_to(target)
    before = _files(target)
    code, err = _main(["demo", "--profile", "smoke", "--methods", "finetune", "--out", out, "--overwrite",
                       "--set", *SMOKE], capsys)
    assert code == 2 and f"{out / 'finetune'} is a symbolic link" in err
    assert (out / "finetune").is_symlink() and _files(target) == before


def test_pretrain_keeps_existing_file(tmp_path, capsys):
    out = tmp_path / "weights.pt"
    out.write_text("mine\n")
    code, err = _main(["pretrain", "--out", out, "--iters", "1", "--quiet"], capsys)
    assert code == 2 and f"{out} already exists; pass --overwrite" in err and out.read_text() == "mine\n"


def test_synth_keeps_users_domain_folder(tmp_path, capsys):
    (tmp_path / "synth_a").mkdir()
    (tmp_path / "synth_a" / "photo.jpg").write_text("mine\n")
    code, err = _main(["synth", "--out", tmp_path, "--domains", "synth_a"], capsys)
    assert code == 2 and f"{tmp_path / 'synth_a'} is in the way: not a synthetic domain written by lreid" in err
    assert _files(tmp_path) == {pathlib.Path("synth_a/photo.jpg"): b"mine\n"}


def test_run_with_synthetic_data_root_keeps_users_domain(tmp_path, capsys):
    root = tmp_path / "data"
    (root / "synth_a").mkdir(parents=True)
    (root / "synth_a" / "photo.jpg").write_text("mine\n")
    code, err = _run(["--data-root", root, "--set", *SMOKE], capsys, tmp_path / "run")
    assert code == 2 and "is in the way" in err
    assert _files(root) == {pathlib.Path("synth_a/photo.jpg"): b"mine\n"} and not (tmp_path / "run").exists()


_HOLD_LOCK = """
import sys, time
from pathlib import Path
from lreid_core.io import lock_file
f = lock_file(Path(sys.argv[1]), lambda holder: None)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _hold(lock, seconds):
    """A process holding ``lock`` for ``seconds`` (returns once it holds it)."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(lock), str(seconds)], env=ENV,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_run_folder_owned_by_one_process(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    holder = _hold(out / ".lock", 60)
    try:
        code, err = _run(["--set", *SMOKE], capsys, out)
    finally:
        holder.kill()
        holder.wait()
    assert code == 2 and f"run directory {out} is in use by another process (pid {holder.pid})" in err
    assert sorted(p.name for p in out.iterdir()) == [".lock"]


def test_default_run_names_never_collide():
    cfgs = [load_config(profile_name="smoke", overrides=parse_overrides([f"train.seed={s}"])) for s in (1, 2)]
    names = [cli.default_run_name(c) for c in cfgs]
    assert names[0] != names[1] and all(n.endswith(f"-p{os.getpid()}") for n in names)


_KILLED_SYNTH = """
import os, signal, sys, time
from pathlib import Path
from lreid_core.data import synthetic
with synthetic._cache_lock(Path(sys.argv[1])):
    pid = os.fork()
    if pid == 0:                      # a render worker that outlives its parent
        time.sleep(60)
        os._exit(0)
    Path(sys.argv[2]).write_text(str(pid))
    os.kill(os.getpid(), signal.SIGTERM)
"""


def test_stale_synth_lock_is_taken_over(tmp_path):
    root, child = tmp_path / "cache", tmp_path / "child.pid"
    root.mkdir()
    proc = subprocess.run([sys.executable, "-c", _KILLED_SYNTH, str(root), str(child)], env=ENV, timeout=60)
    assert proc.returncode == -signal.SIGTERM
    try:
        start = time.perf_counter()
        make_benchmark(root, domains=["synth_a"], ids_per_domain=3, test_ids_per_domain=2, images_per_id=2,
                       progress=False)
        assert time.perf_counter() - start < 30 and (root / "synth_a" / "synthetic.json").is_file()
    finally:
        os.kill(int(child.read_text()), signal.SIGKILL)


def test_synth_lock_wait_says_what_it_waits_for(tmp_path, capsys):
    root = tmp_path / "cache"
    root.mkdir()
    holder = _hold(root / ".lock", 2)
    make_benchmark(root, domains=["synth_a"], ids_per_domain=3, test_ids_per_domain=2, images_per_id=2,
                   progress=False)
    holder.wait()
    err = capsys.readouterr().err
    assert f"waiting for {root / '.lock'}: process {holder.pid} is writing the synthetic benchmark there" in err


def test_disk_full_while_checkpointing_keeps_previous(tmp_path, monkeypatch):
    cfg = load_config(profile_name="smoke", overrides=parse_overrides(SMOKE + ["train.ckpt_every=1"]))
    run = tmp_path / "run"
    trainer = Trainer(cfg, "finetune", build_benchmark(cfg), run, progress=False, tensorboard=False)
    writes = []

    def full_after_first(path, mode="r", *args, **kwargs):
        if mode == "wb":
            writes.append(path)
            if len(writes) > 1:                          # the first last.pt is written, then the disk is full
                return open("/dev/full", mode, *args, **kwargs)
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(lio, "open", full_after_first, raising=False)
    with pytest.raises(LReIDError) as info:
        trainer.fit()
    last = run / "checkpoints" / "last.pt"
    assert str(info.value) == (f"could not write {run / 'checkpoints' / 'step1.pt'}: No space left on device; "
                               f"training stopped, previous checkpoint kept: {last}")
    assert torch.load(last, weights_only=True)["iter"] == 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt"]
