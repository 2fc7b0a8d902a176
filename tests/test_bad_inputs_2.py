"""Bad-input catalogue, round two (issue 26): nothing a user made is touched, no path escapes its folder, every
value that validates runs, every failure is one line ``lreid: error: ...`` with a non-zero exit, before any work.
Each case asserts the message, the exit code and what is left on disk."""
import errno
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
from lreid_core.data import cache
from lreid_core.data.benchmark import build_benchmark
from lreid_core.data.synthetic import make_benchmark
from lreid_core.errors import LReIDError
from lreid_core.train import Trainer

SMOKE = ["train.epochs=1", "train.iters_per_epoch=2", "train.milestones=[1]"]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}


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


def test_run_started_in_a_folder_meanwhile_taken(trained_run, tmp_path):
    """Two runs passed the CLI's check together; the first finished before the second took the folder's lock."""
    cfg = load_config(profile_name="smoke", overrides=parse_overrides(SMOKE + ["method.name=finetune"]))
    out = tmp_path / "run"
    trainer = Trainer(cfg, "finetune", build_benchmark(cfg), out, progress=False, tensorboard=False, new_run=True)
    shutil.copytree(trained_run, out)                   # the other process's finished run
    before = _files(out)
    with pytest.raises(LReIDError, match=f"run directory already holds a run: {out}"):
        trainer.fit()
    assert _files(out) == before


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


# ---- silently wrong --------------------------------------------------------------------------------------
@pytest.mark.parametrize("cmd", ["run", "demo", "sweep"])
def test_repeated_set_accumulates(cmd):
    extra = ["--key", "train.lr", "--values", "1"] if cmd == "sweep" else []
    parser = cli.build_parser()
    repeated = parser.parse_args([cmd, *extra, "--set", "train.lr=0.005", "--set", "train.epochs=1"])
    together = parser.parse_args([cmd, *extra, "--set", "train.lr=0.005", "train.epochs=1"])
    assert repeated.set == together.set == ["train.lr=0.005", "train.epochs=1"]
    assert parse_overrides(repeated.set) == {"train": {"lr": 0.005, "epochs": 1}}


def _config_file(tmp_path, content):
    path = tmp_path / "cfg.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefg", "bcdefgh"))

CONFIG_FILES = {
    "duplicate key": ("train:\n  lr: 0.1\ntrain:\n  epochs: 1\n", "not valid YAML: duplicate key 'train' (line 3)"),
    "duplicate sub-key": ("train:\n  lr: 0.1\n  lr: 0.2\n", "duplicate key 'lr' (line 3)"),
    "alias bomb": (_BOMB, "not valid YAML: alias *a: aliases are not allowed in configs (line 2)"),
    "not UTF-8": (b"train:\n  lr: \xff\xfe\n", "is not UTF-8 text (byte 13)"),
}


@pytest.mark.parametrize("case", list(CONFIG_FILES))
def test_config_file_refused(case, tmp_path, capsys):
    content, fragment = CONFIG_FILES[case]
    path = _config_file(tmp_path, content)
    code, err = _run(["--config", path], capsys, tmp_path / "run")
    assert code == 2 and str(path) in err and fragment in err
    assert not (tmp_path / "run").exists()


def test_unreadable_config_file(tmp_path, capsys, monkeypatch):
    path = _config_file(tmp_path, "train:\n  lr: 0.1\n")
    read = pathlib.Path.read_text

    def denied(self, *args, **kwargs):
        if self == path:
            raise PermissionError(errno.EACCES, "Permission denied")
        return read(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "read_text", denied)
    code, err = _run(["--config", path], capsys, tmp_path / "run")
    assert code == 2 and err == f"lreid: error: config file {path} cannot be read: Permission denied"


SET_CASES = {
    "milestone not an int": (["train.milestones=[1.9]"], "config key 'train.milestones[0]' expects int, got 1.9"),
    "null in a list": (["train.milestones=[null]"], "config key 'train.milestones[0]' expects int, got None"),
    "list of lists": (["data.order=[[synth_a]]"], "config key 'data.order[0]' expects str, got ['synth_a']"),
    "list is null": (["data.unseen=null"], "config key 'data.unseen' expects list, got None"),
    "unknown profile": (["profile=bogus"], "profile='bogus' is not one of smoke, demo, paper"),
    "scalar then sub-key": (["train=1", "train.lr=2"], "override 'train.lr=2': train is already set to a value"),
    "seed beyond 2^53": (["train.seed=1e30"], "train.seed must be in [0, 2^53 = 9007199254740992]"),
    "seed beyond 2^63": (["train.seed=100000000000000000000"], "train.seed must be in [0, 2^53"),
    "model too wide": (["model.width=100000000"], "model.width must be in [4, 256], got 100000000"),
    "input too large": (["data.height=3000000"], "input size 3000000x16 exceeds the limit of 1024 pixels a side"),
    "sampler_lr NaN": (["method.sampler_lr=.nan"], "method.sampler_lr must be a finite non-negative number, got nan"),
    "sampler_lr inf": (["method.sampler_lr=.inf"], "method.sampler_lr must be a finite non-negative number, got inf"),
    "cov_beta NaN": (["method.cov_beta=.nan"], "method.cov_beta must be a finite non-negative number, got nan"),
    "cov_beta -1e30": (["method.cov_beta=-1e30"], "method.cov_beta must be a finite non-negative number, got -1e+30"),
}


@pytest.mark.parametrize("case", list(SET_CASES))
def test_set_refused_before_work(case, tmp_path, capsys):
    sets, fragment = SET_CASES[case]
    code, err = _main(["run", "--profile", "smoke", "--quiet", "--out", tmp_path / "run",
                       *[f"--set={s}" for s in sets]], capsys)
    assert code == 2 and fragment in err, err
    assert list(tmp_path.iterdir()) == []


def test_sweep_value_of_wrong_type(tmp_path, capsys):
    code, err = _main(["sweep", "--key", "train.epochs", "--values", "a,b", "--profile", "smoke",
                       "--out", tmp_path / "sweep"], capsys)
    assert code == 2 and err == "lreid: error: config key 'train.epochs' expects int, got 'a'"
    assert list(tmp_path.iterdir()) == []


def test_16_bit_png_is_not_white(tmp_path):
    grey = (np.arange(32 * 16, dtype=np.uint32).reshape(32, 16) * 120).astype(np.uint16)     # 0 .. 61320
    path = tmp_path / "deep.png"
    Image.fromarray(grey).save(path)
    assert Image.open(path).mode.startswith("I")
    img = cache.load_images([str(path)], 32, 16)[0, 0].float()
    expected = torch.from_numpy(grey.astype(np.float64) / 257).float()
    assert (img - expected).abs().max() <= 1


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` pixels (its data is empty)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_decompression_bomb_refused(synth_root, tmp_path, capsys):
    root = _copy(synth_root, tmp_path, "data")
    victim = sorted((root / "synth_a" / "bounding_box_train").iterdir())[0]
    victim.write_bytes(_png_header(10000, 10000))
    code, err = _run(_real_root_args(root), capsys, tmp_path / "run")
    assert code == 2 and err == (f"lreid: error: image {victim} claims 10000x10000 pixels, over the limit of "
                                 f"16,777,216 (4096x4096): not decoding it")
    assert not (tmp_path / "run").exists()


def test_data_root_that_is_a_file(tmp_path, capsys):
    root = tmp_path / "data"
    root.write_text("not a folder\n")
    code, err = _run(_real_root_args(root), capsys, tmp_path / "run")
    assert code == 2 and err == f"lreid: error: data root {root} is a file, not a folder"
    assert root.read_text() == "not a folder\n" and not (tmp_path / "run").exists()


def test_notebooks_check_name_matching_nothing(capsys):
    from lreid_core import notebooks_check

    assert notebooks_check.main(["zz_nothing"]) == 2
    assert "no notebook name starts with 'zz_nothing'" in capsys.readouterr().err


# ---- one line instead of a traceback ----------------------------------------------------------------------
def test_unreadable_query_folder(synth_root, tmp_path, capsys, monkeypatch):
    root = _copy(synth_root, tmp_path, "data")
    query = root / "synth_b" / "query"
    iterdir = pathlib.Path.iterdir

    def denied(self):
        if self == query:
            raise PermissionError(errno.EACCES, "Permission denied")
        return iterdir(self)

    monkeypatch.setattr(pathlib.Path, "iterdir", denied)
    code, err = _run(_real_root_args(root), capsys, tmp_path / "run")
    assert code == 2 and err == f"lreid: error: folder {query} cannot be read: Permission denied"
    assert not (tmp_path / "run").exists()


def test_unreadable_image_is_not_called_corrupt(synth_root, tmp_path, capsys, monkeypatch):
    root = _copy(synth_root, tmp_path, "data")
    victim = str(sorted((root / "synth_a" / "query").iterdir())[0])
    opener = cache.Image.open

    def denied(path, *args, **kwargs):
        if str(path) == victim:
            raise PermissionError(errno.EACCES, "Permission denied")
        return opener(path, *args, **kwargs)

    monkeypatch.setattr(cache.Image, "open", denied)
    code, err = _run(_real_root_args(root), capsys, tmp_path / "run")
    assert code == 2 and err == f"lreid: error: image {victim} cannot be read (permission denied)"


def test_identity_with_one_image_named_by_pid_and_file(synth_root, tmp_path, capsys):
    root = _copy(synth_root, tmp_path, "data")
    train = root / "synth_a" / "bounding_box_train"
    keep, *others = sorted(train.glob(f"{sorted(train.iterdir())[0].name[:4]}_*"))
    for f in others:
        f.unlink()
    code, err = _run(_real_root_args(root), capsys, tmp_path / "run")
    assert code == 2 and f"identity {int(keep.name[:4])} of synth_a has 1 image ({keep}); PK batches of K=4" in err
    assert not (tmp_path / "run").exists()


def test_small_backbone_weights_holding_a_list(tmp_path, capsys):
    path = tmp_path / "small.pt"
    torch.save([torch.zeros(2)], path)
    code, err = _run(["--set", f"model.pretrained={path}", *SMOKE], capsys, tmp_path / "run")
    assert code == 2 and f"small-backbone weights {path} are not a file written by lreid pretrain" in err
    assert not (tmp_path / "run").exists()


def _edit_checkpoint(run, edit):
    last = run / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    edit(ckpt)
    torch.save(ckpt, last)
    return last


DAMAGED_STATES = {
    "RNG state": (lambda c: c.update(rng=torch.zeros(3, dtype=torch.uint8)), "damaged RNG state"),
    "optimizer groups": (lambda c: c["optimizer"].update(param_groups=[]), "damaged optimizer state"),
    "scheduler state": (lambda c: c["scheduler"].update(lr_lambdas=5, base_lrs=None), "damaged scheduler state"),
}


@pytest.mark.parametrize("case", list(DAMAGED_STATES))
def test_resume_damaged_state(case, mid_step_run, tmp_path, capsys):
    run = _copy(mid_step_run, tmp_path, "run")
    edit, fragment = DAMAGED_STATES[case]
    last = _edit_checkpoint(run, edit)
    before = last.read_bytes()
    code, err = _main(["run", "--resume", run, "--quiet"], capsys)
    assert code == 2 and f"checkpoint {last}: {fragment}" in err
    assert last.read_bytes() == before and not (run / "metrics.json").exists()


REPORT_CONFIGS = {
    "config.yaml not UTF-8": (lambda r: (r / "config.yaml").write_bytes(b"train: \xff\n"), "is not UTF-8 text"),
    "config.yaml a scalar": (lambda r: (r / "config.yaml").write_text("42\n"), "does not hold a mapping"),
    "metrics.json nested deeply": (lambda r: (r / "metrics.json").write_text("[" * 100000 + "]" * 100000),
                                   "nested too deeply"),
}


@pytest.mark.parametrize("case", list(REPORT_CONFIGS))
def test_report_on_damaged_run(case, trained_run, tmp_path, capsys):
    run = _copy(trained_run, tmp_path, "run")
    damage, fragment = REPORT_CONFIGS[case]
    damage(run)
    code, err = _main(["report", run, "--out", tmp_path / "rep", "--no-figures"], capsys)
    assert code == 2 and str(run) in err and fragment in err
    assert not (tmp_path / "rep").exists()
