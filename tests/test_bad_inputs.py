"""A catalogue of bad inputs through the CLI (``lreid_core.cli.main``) and the API: each gives a one-line error
that names the cause and the path or value, a non-zero exit, and leaves no half-written run directory."""
import errno
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import torch

from lreid_core import cli, io as lio
from lreid_core.config import load_config, parse_overrides
from lreid_core.data.benchmark import build_benchmark
from lreid_core.data.synthetic import make_benchmark
from lreid_core.errors import LReIDError
from lreid_core.methods import lwf as lwf_module
from lreid_core.train import Trainer

SMOKE = ["train.epochs=1", "train.iters_per_epoch=2", "train.milestones=[1]"]


def _fresh(synth_root, tmp_path, name="data"):
    copy = tmp_path / name
    shutil.copytree(synth_root, copy)
    return copy


def _run_cli(args, capsys, out):
    return _main(["run", "--profile", "smoke", "--quiet", "--out", str(out), *args], capsys)


def _main(argv, capsys):
    """(exit code, last stderr line) of ``lreid ARGV``; asserts no traceback reached the user."""
    code = cli.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip().replace("\r", "\n")
    assert "Traceback" not in err, err
    return code, (err.splitlines() or [""])[-1]     # progress bars may precede the error line


def _real_root_args(root, order="synth_a,synth_b", extra=()):
    return ["--data-root", str(root), "--order", order, "--set", "data.synthetic=false", "data.unseen=[]", *SMOKE,
            *extra]


CLI_CASES = {
    # name: (args builder taking (data_root, tmp_path), expected fragment)
    "missing data root": (lambda r, t: _real_root_args(t / "nowhere"), "data root not found"),
    "unknown dataset": (lambda r, t: _real_root_args(r, order="synth_a,atlantis"), "unknown dataset name 'atlantis'"),
    "unknown method": (lambda r, t: ["--method", "magic"], "unknown method 'magic'"),
    "unknown config key": (lambda r, t: ["--set", "train.speed=9"], "unknown config key 'train.speed'"),
    "wrong type": (lambda r, t: ["--set", "train.epochs=many"], "train.epochs"),
    "K = 0": (lambda r, t: ["--set", "method.k=0"], "method.k"),
    "negative gamma": (lambda r, t: ["--set", "method.gamma3=-100"], "method.gamma3"),
    "NaN gamma": (lambda r, t: ["--set", "method.gamma1=.nan"], "method.gamma1"),
    "batch not P x K": (lambda r, t: ["--set", "train.batch_size=30", "train.k_imgs=4"], "train.batch_size=30"),
    "weights file missing": (lambda r, t: ["--set", f"model.pretrained={t}/rn50.pth"], "rn50.pth"),
    "missing config file": (lambda r, t: ["--config", str(t / "absent.yaml")], "absent.yaml"),
    "unknown profile": (lambda r, t: ["--profile", "gigantic"], "unknown profile 'gigantic'"),
    "unknown synthetic domain": (lambda r, t: ["--order", "synth_a,synth_zz"], "synth_zz"),
    "CUDA without a GPU": (lambda r, t: ["--set", "train.device=cuda"], "no CUDA device"),
    # values that used to pass validation and mean nothing, or crash in the first iteration
    "negative lr_decay": (lambda r, t: ["--set", "train.lr_decay=-0.1"], "train.lr_decay"),
    "K=1 (no triplet positives)": (lambda r, t: ["--set", "train.k_imgs=1"], "train.k_imgs"),
    "method.k beyond the grid": (lambda r, t: ["--method", "patchkd", "--set", "method.k=9"], "4x2 feature grid"),
    "seen domain also unseen": (lambda r, t: ["--set", "data.unseen=[synth_a]"], "both seen"),
    "duplicate unseen": (lambda r, t: ["--set", "data.unseen=[synth_u1,synth_u1]"], "data.unseen lists synth_u1"),
    "duplicate seen": (lambda r, t: ["--order", "synth_a,synth_a"], "data.order lists synth_a"),
    "negative weight decay": (lambda r, t: ["--set", "train.weight_decay=-1e-4"], "train.weight_decay"),
    "unknown cache device": (lambda r, t: ["--set", "data.cache_device=tpu"], "data.cache_device='tpu'"),
    "unknown train device": (lambda r, t: ["--set", "train.device=gpu0"], "train.device='gpu0'"),
    "zero last stride": (lambda r, t: ["--set", "model.last_stride=0"], "model.last_stride"),
    "zero clr_step_size": (lambda r, t: ["--set", "train.optimizer=sgd_clr", "train.clr_step_size=0"],
                           "train.clr_step_size"),
    "clr max below base": (lambda r, t: ["--set", "train.clr_max_lr=1e-4"], "train.clr_max_lr"),
    "--out under a file": (lambda r, t: ["--out", str(_touch(t / "afile") / "run")], "is a file, not a folder"),
    "--out not writable": (lambda r, t: ["--out", "/proc/lreid-run"], "is not writable"),
}


def _touch(path):
    path.write_text("mine\n")
    return path


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_cli_bad_input(case, synth_root, tmp_path, capsys):
    if case == "CUDA without a GPU" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    build, fragment = CLI_CASES[case]
    out = tmp_path / "run"
    code, err = _run_cli(build(synth_root, tmp_path), capsys, out)
    assert code != 0
    assert err.count("\n") == 0 and err.startswith("lreid: error:"), err
    assert fragment in err, err
    assert not out.exists() and not Path("/proc/lreid-run").exists()
    if (tmp_path / "afile").exists():
        assert (tmp_path / "afile").read_text() == "mine\n"      # the file in the way is untouched


def test_wrong_layout_names_expected_folder(synth_root, tmp_path, capsys):
    root = _fresh(synth_root, tmp_path)
    shutil.rmtree(root / "synth_b" / "bounding_box_train")
    code, err = _run_cli(_real_root_args(root), capsys, tmp_path / "run")
    assert code == 2 and "synth_b" in err and "\n" not in err
    assert not (tmp_path / "run").exists()


def test_empty_split(synth_root, tmp_path, capsys):
    root = _fresh(synth_root, tmp_path)
    for f in (root / "synth_a" / "query").iterdir():
        f.unlink()
    code, err = _run_cli(_real_root_args(root), capsys, tmp_path / "run")
    assert code == 2 and str(root / "synth_a" / "query") in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("damage", ["corrupt", "truncated"])
def test_bad_image_named(synth_root, tmp_path, capsys, damage):
    root = _fresh(synth_root, tmp_path)
    victim = sorted((root / "synth_b" / "bounding_box_test").iterdir())[0]
    data = victim.read_bytes()
    victim.write_bytes(b"garbage" * 10 if damage == "corrupt" else data[: len(data) // 3])
    code, err = _run_cli(_real_root_args(root), capsys, tmp_path / "run")
    assert code == 2 and victim.name in err and "\n" not in err
    assert not (tmp_path / "run").exists()


def test_identity_with_one_image(synth_root, tmp_path, capsys):
    root = _fresh(synth_root, tmp_path)
    train = root / "synth_a" / "bounding_box_train"
    first = sorted(train.iterdir())[0].name[:4]
    for f in sorted(train.glob(f"{first}_*"))[1:]:
        f.unlink()
    code, err = _run_cli(_real_root_args(root), capsys, tmp_path / "run")
    assert code == 2 and "has 1 image" in err and "K=" in err
    assert not (tmp_path / "run").exists()


def test_weights_of_wrong_architecture(tmp_path):
    from torchvision.models import resnet18

    path = tmp_path / "rn18.pth"
    torch.save(resnet18(weights=None).state_dict(), path)
    cfg = load_config(profile_name="smoke", overrides=parse_overrides(["model.backbone=resnet50",
                                                                       f"model.pretrained={path}"]))
    from lreid_core.models.reid import ReIDModel
    with pytest.raises(LReIDError, match="does not fit resnet50") as info:
        ReIDModel(cfg.model)
    assert str(path) in str(info.value)


def test_resume_dir_that_is_not_a_run(tmp_path, capsys):
    code = cli.main(["run", "--resume", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and str(tmp_path) in err and "not a resumable run directory" in err


def test_run_dir_already_holds_a_run(tmp_path, capsys):
    (tmp_path / "config.yaml").write_text("x: 1\n")
    code = cli.main(["run", "--profile", "smoke", "--out", str(tmp_path)])
    assert code == 2 and "already holds a run" in capsys.readouterr().err


def test_disk_full_while_checkpointing(tmp_path, monkeypatch):
    cfg = load_config(profile_name="smoke", overrides=parse_overrides(SMOKE))
    bench = build_benchmark(cfg)
    run = tmp_path / "run"
    trainer = Trainer(cfg, "finetune", bench, run, progress=False, tensorboard=False)

    def full(obj, f, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(LReIDError, match="No space left on device") as info:
        trainer.fit()
    assert "step1.pt" in str(info.value) and "\n" not in str(info.value)
    assert not list((run / "checkpoints").glob("*.tmp")) and not list((run / "checkpoints").glob(".*"))
    assert not (run / "checkpoints" / "step1.pt").exists()


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = load_config(profile_name="smoke", overrides=parse_overrides(
        ["train.epochs=2", "train.iters_per_epoch=4", "train.ckpt_every=2", "train.milestones=[1]"]))
    bench = build_benchmark(cfg)
    run = tmp_path / "run"
    original = lwf_module.LwF.loss
    calls = {"n": 0}

    def poisoned(self, x, labels):
        terms = original(self, x, labels)
        calls["n"] += 1
        if self.old is not None and calls["n"] > 8 + 4:        # step 2, iteration 5
            terms["kd"] = terms["kd"] * float("nan")
        return terms

    monkeypatch.setattr(lwf_module.LwF, "loss", poisoned)
    with pytest.raises(LReIDError, match=r"non-finite.*step 2, iteration \d+") as info:
        Trainer(cfg, "lwf", bench, run, progress=False, tensorboard=False).fit()
    assert "\n" not in str(info.value)
    good = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert good["step"] == 1 and good["iter"] == 4              # the mid-step checkpoint before the NaN
    assert all(torch.isfinite(v).all() for v in good["state"]["model"].values() if v.is_floating_point())
    assert (run / "checkpoints" / "step1.pt").is_file()


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "f.json"
    lio.atomic_write_json(target, {"a": 1})

    def boom(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        lio.atomic_write(target, boom)
    assert target.read_text().strip().startswith("{") and len(list(tmp_path.iterdir())) == 1


# ---- hostile and damaged files --------------------------------------------------------------------------
class _Payload:
    """Unpickling this runs ``open(marker, "w")``: it creates the marker file (what an attacker's code would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _interrupted(trained_run, tmp_path):
    """A copy of ``trained_run`` whose metrics say it is still running (so --resume accepts it)."""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    data = json.loads((run / "metrics.json").read_text())
    data["status"] = "running"
    (run / "metrics.json").write_text(json.dumps(data))
    return run


def _edit_last(run, edit):
    last = run / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    torch.save(edit(ckpt), last)


def _snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _resume_fails(run, capsys, fragment, *extra):
    before = _snapshot(run)
    code, err = _main(["run", "--resume", run, "--quiet", *extra], capsys)
    assert code == 2 and err.startswith("lreid: error:") and fragment in err, err
    assert _snapshot(run) == before                     # nothing written, nothing deleted: still resumable
    return err


def test_resume_refuses_pickle_payload(trained_run, tmp_path, capsys):
    run = _interrupted(trained_run, tmp_path)
    marker = tmp_path / "PWNED"
    _edit_last(run, lambda c: {**c, "rng": _Payload(marker)})
    err = _resume_fails(run, capsys, "refusing to load checkpoint")
    assert str(run / "checkpoints" / "last.pt") in err and not marker.exists()


def test_checkpoint_explorer_refuses_pickle_payload(tmp_path):
    from lreid_core.widgets import load_checkpoint

    marker, path = tmp_path / "PWNED", tmp_path / "step1.pt"
    torch.save({"method": "finetune", "state": _Payload(marker)}, path)
    with pytest.raises(LReIDError, match="refusing to load") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value) and not marker.exists()


def test_safe_load_refuses_plain_pickle_payload(tmp_path):
    """The notebooks' loader (io.safe_load) on a plain pickle file, not a torch zip."""
    import pickle

    marker, path = tmp_path / "PWNED", tmp_path / "weights.pkl"
    path.write_bytes(pickle.dumps({"w": _Payload(marker)}))
    with pytest.raises(LReIDError, match="weights.pkl") as info:
        lio.safe_load(path, "weights file")
    assert "\n" not in str(info.value) and not marker.exists()


def test_pretrained_weights_payload_refused(tmp_path, capsys):
    marker, path = tmp_path / "PWNED", tmp_path / "rn18.pth"
    torch.save({"conv1.weight": _Payload(marker)}, path)
    code, err = _run_cli(["--set", "model.backbone=resnet18", f"model.pretrained={path}"], capsys, tmp_path / "run")
    assert code == 2 and "refusing to load" in err and str(path) in err and not marker.exists()
    assert not (tmp_path / "run").exists()


def test_pretrained_weights_not_a_state_dict(tmp_path, capsys):
    path = tmp_path / "rn18.pth"
    torch.save([torch.zeros(3), torch.ones(2)], path)
    code, err = _run_cli(["--set", "model.backbone=resnet18", f"model.pretrained={path}"], capsys, tmp_path / "run")
    assert code == 2 and "not a state dict" in err and str(path) in err
    assert not (tmp_path / "run").exists()


DAMAGED_CHECKPOINTS = {
    "truncated": (lambda b: b[: len(b) // 2], "is damaged"),
    "0-byte": (lambda b: b"", "is empty"),
    "garbage": (lambda b: os.urandom(4096), "is damaged"),
}


@pytest.mark.parametrize("damage", list(DAMAGED_CHECKPOINTS))
def test_resume_damaged_checkpoint(damage, trained_run, tmp_path, capsys):
    run = _interrupted(trained_run, tmp_path)
    last = run / "checkpoints" / "last.pt"
    change, fragment = DAMAGED_CHECKPOINTS[damage]
    last.write_bytes(change(last.read_bytes()))
    assert str(last) in _resume_fails(run, capsys, fragment)


WRONG_CHECKPOINTS = {
    "another method": (lambda c: {**c, "method": "lwf"}, "of method 'lwf', not 'finetune'"),
    "another config": (lambda c: {**c, "config": {**c["config"], "train": {**c["config"]["train"], "lr": 0.5}}},
                       "differs in train.lr"),
    "not a dict": (lambda c: [c["state"]], "not a checkpoint of this tool"),
    "no state": (lambda c: {k: v for k, v in c.items() if k != "state"}, "(no state)"),
    "weights do not fit": (lambda c: {**c, "state": {**c["state"], "model": {}}}, "does not fit this finetune model"),
    "iteration not an int": (lambda c: {**c, "iter": "7"}, "field 'iter'"),
    "result in percent": (lambda c: {**c, "result": {**c["result"], "steps": [{"synth_a": {"mAP": 55.0, "R1": 0.5}}]}},
                          "percent scale"),
}


@pytest.mark.parametrize("case", list(WRONG_CHECKPOINTS))
def test_resume_checkpoint_does_not_fit_run(case, trained_run, tmp_path, capsys):
    run = _interrupted(trained_run, tmp_path)
    edit, fragment = WRONG_CHECKPOINTS[case]
    _edit_last(run, edit)
    assert "last.pt" in _resume_fails(run, capsys, fragment)


# ---- --resume: stored config and other flags -------------------------------------------------------------
def test_resume_stored_config_no_longer_validates(trained_run, tmp_path, capsys):
    run = _interrupted(trained_run, tmp_path)
    cfg = run / "config.yaml"
    cfg.write_text(cfg.read_text().replace("lr_decay: 0.1", "lr_decay: -0.1"))
    _resume_fails(run, capsys, f"stored config {cfg} no longer validates: train.lr_decay")


def test_resume_stored_config_unreadable(trained_run, tmp_path, capsys):
    run = _interrupted(trained_run, tmp_path)
    (run / "config.yaml").write_text("train: [unclosed\n")
    _resume_fails(run, capsys, "unreadable")


RESUME_FLAGS = {
    "result-changing --set": (["--set", "train.lr=0.5"], "--set train.lr would change the run"),
    "unknown --set key": (["--set", "train.speed=9"], "unknown config key 'train.speed'"),
    "--method": (["--method", "lwf"], "--method would change the run"),
    "--profile and --order": (["--profile", "demo", "--order", "order1"], "--profile, --order would change"),
    "another --out": (["--out", "/tmp/elsewhere"], "--out would change"),
}


@pytest.mark.parametrize("case", list(RESUME_FLAGS))
def test_resume_refuses_flags_that_change_the_run(case, trained_run, tmp_path, capsys):
    run = _interrupted(trained_run, tmp_path)
    flags, fragment = RESUME_FLAGS[case]
    _resume_fails(run, capsys, fragment, *flags)


def test_resume_applies_result_neutral_flags(trained_run, tmp_path, capsys):
    run = _interrupted(trained_run, tmp_path)
    code = cli.main(["run", "--resume", str(run), "--quiet", "--set", "train.eval_batch=64"])
    out = capsys.readouterr().out
    assert code == 0 and "applying train.eval_batch=64" in out
    assert json.loads((run / "metrics.json").read_text())["status"] == "done"


def test_run_killed_before_first_checkpoint_resumes_from_scratch(trained_run, tmp_path, capsys):
    """config.yaml and tb/ but no checkpoint (killed in step 1) plus a .tmp an interrupted write left behind:
    a fresh run refuses the folder, --resume starts it over with the stored config and cleans the .tmp."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(trained_run / "config.yaml", run / "config.yaml")
    (run / "tb").mkdir()
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / ".last.pt.x1y2.tmp").write_bytes(b"half")
    code, err = _run_cli([], capsys, run)
    assert code == 2 and "already holds a run" in err and "--resume" in err
    code = cli.main(["run", "--resume", str(run), "--quiet"])
    assert code == 0 and "no checkpoint yet" in capsys.readouterr().out
    assert json.loads((run / "metrics.json").read_text())["status"] == "done"
    assert (run / "checkpoints" / "last.pt").is_file() and not list(run.rglob("*.tmp"))


def test_nan_before_first_checkpoint_says_no_checkpoint_yet(tmp_path, monkeypatch):
    cfg = load_config(profile_name="smoke", overrides=parse_overrides(SMOKE + ["train.ckpt_every=0"]))
    run = tmp_path / "run"
    original = lwf_module.LwF.loss
    monkeypatch.setattr(lwf_module.LwF, "loss", lambda self, x, y: {k: v * float("nan")
                                                                    for k, v in original(self, x, y).items()})
    with pytest.raises(LReIDError, match="non-finite.*step 1.*no checkpoint yet") as info:
        Trainer(cfg, "lwf", build_benchmark(cfg), run, progress=False, tensorboard=False).fit()
    assert "last.pt" not in str(info.value) and not (run / "checkpoints" / "last.pt").exists()
    assert (run / "config.yaml").is_file()                 # ... and --resume can start it over


# ---- test splits and images, checked in the pre-training decode ------------------------------------------
def test_no_cross_camera_match_names_domain(synth_root, tmp_path, capsys):
    root = _fresh(synth_root, tmp_path)
    for split in ("query", "bounding_box_test"):           # every image on camera 1: nothing left to match
        for f in (root / "synth_b" / split).iterdir():
            f.rename(f.with_name(f.name[:4] + "_c1" + f.name[7:]))
    code, err = _run_cli(_real_root_args(root), capsys, tmp_path / "run")
    assert code == 2 and "synth_b: no query has a gallery match" in err
    assert not (tmp_path / "run").exists()


def test_id_beyond_int64_names_domain(synth_root, tmp_path, capsys):
    root = _fresh(synth_root, tmp_path)
    victim = sorted((root / "synth_a" / "bounding_box_test").iterdir())[0]
    victim.rename(victim.with_name("99999999999999999999" + victim.name[4:]))
    code, err = _run_cli(_real_root_args(root), capsys, tmp_path / "run")
    assert code == 2 and "synth_a gallery" in err and "does not fit an int64" in err
    assert not (tmp_path / "run").exists()


def _png_bomb() -> bytes:
    """A PNG header claiming 100000 x 100000 pixels: PIL refuses it (DecompressionBombError, not an OSError)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_image_pil_refuses_for_another_reason(synth_root, tmp_path, capsys):
    root = _fresh(synth_root, tmp_path)
    victim = sorted((root / "synth_a" / "query").iterdir())[0]
    victim.write_bytes(_png_bomb())
    code, err = _run_cli(_real_root_args(root), capsys, tmp_path / "run")
    assert code == 2 and victim.name in err and "DecompressionBombError" in err
    assert not (tmp_path / "run").exists()


# ---- lreid report: metrics.json that means nothing ------------------------------------------------------
def _report_run(trained_run, tmp_path, edit):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    data = json.loads((run / "metrics.json").read_text())
    edit(data)
    (run / "metrics.json").write_text(json.dumps(data))      # NaN is written as the bare token NaN
    return run


REPORT_CASES = {
    "percent-scale mAP": (lambda d: d["steps"][0]["synth_a"].update(mAP=87.5), "percent scale"),
    "NaN R1": (lambda d: d["steps"][-1]["synth_b"].update(R1=float("nan")), "steps[1].synth_b.R1 must be a finite"),
    "steps not a list": (lambda d: d.update(steps={"a": 1}), "steps must be a list"),
    "missing order": (lambda d: d.pop("order"), "order is missing"),
    "metric of an unknown domain": (lambda d: d["steps"][0].update(atlantis={"mAP": 0.1, "R1": 0.1}),
                                    "steps[0].atlantis is not a domain"),
    "unknown field": (lambda d: d.update(score=1), "score is not a metrics.json field"),
}


@pytest.mark.parametrize("case", list(REPORT_CASES))
def test_report_rejects_bad_metrics(case, trained_run, tmp_path, capsys):
    edit, fragment = REPORT_CASES[case]
    run = _report_run(trained_run, tmp_path, edit)
    code, err = _main(["report", run, "--out", tmp_path / "report", "--no-figures"], capsys)
    assert code == 2 and fragment in err and str(run / "metrics.json") in err, err
    assert not (tmp_path / "report").exists()


def test_report_out_is_a_file(trained_run, tmp_path, capsys):
    out = _touch(tmp_path / "report")
    code, err = _main(["report", trained_run, "--out", out], capsys)
    assert code == 2 and "is a file, not a folder" in err and out.read_text() == "mine\n"


# ---- lreid demo: validate everything first, never delete a run without --overwrite -------------------------
DEMO_CASES = {
    "unknown method": (["--methods", "finetune,magic"], "unknown method 'magic'"),
    "repeated method": (["--methods", "lwf,lwf"], "lists a method twice"),
    "method config invalid": (["--methods", "finetune,patchkd", "--set", "method.k=9"], "method.k=9"),
    "--out is a file": (["--methods", "finetune", "--out", "{file}"], "is a file, not a folder"),
}


@pytest.mark.parametrize("case", list(DEMO_CASES))
def test_demo_validates_before_work(case, tmp_path, capsys):
    args, fragment = DEMO_CASES[case]
    file = _touch(tmp_path / "file")
    out = tmp_path / "demo"
    args = [a.replace("{file}", str(file)) for a in args]
    code, err = _main(["demo", "--profile", "smoke", "--out", out, *args], capsys)
    assert code == 2 and fragment in err, err
    assert not out.exists() and file.read_text() == "mine\n"


def test_demo_keeps_existing_run_without_overwrite(trained_run, tmp_path, capsys):
    out = tmp_path / "demo"
    shutil.copytree(trained_run, out / "finetune")
    before = _snapshot(out)
    code, err = _main(["demo", "--profile", "smoke", "--methods", "finetune", "--out", out], capsys)
    assert code == 2 and str(out / "finetune") in err and "--overwrite" in err
    assert _snapshot(out) == before


def test_demo_never_replaces_a_folder_that_is_not_a_run(tmp_path, capsys):
    out = tmp_path / "demo"
    (out / "lwf").mkdir(parents=True)
    (out / "lwf" / "notes.txt").write_text("mine\n")
    code, err = _main(["demo", "--profile", "smoke", "--methods", "lwf", "--out", out, "--overwrite"], capsys)
    assert code == 2 and "in the way" in err and str(out / "lwf") in err
    assert (out / "lwf" / "notes.txt").read_text() == "mine\n"


def test_finished_run_detection(trained_run):
    from lreid_core.results import finished_run, holds_run

    cfg = load_config(profile_name="smoke", overrides=parse_overrides(SMOKE + ["method.name=finetune"]))
    assert finished_run(trained_run, cfg).status == "done" and holds_run(trained_run)
    cfg.train.eval_batch = 7                               # result-neutral: still the same run
    assert finished_run(trained_run, cfg) is not None
    cfg.train.lr = 0.5
    assert finished_run(trained_run, cfg) is None


# ---- file modes and the synthetic cache ---------------------------------------------------------------------
@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_honours_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        lio.atomic_write_text(tmp_path / "f.txt", "x")
        lio.atomic_torch_save(tmp_path / "f.pt", {"a": torch.zeros(1)})
    finally:
        os.umask(old)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == mode
    assert (tmp_path / "f.pt").stat().st_mode & 0o777 == mode


_WRITER = """
import os, sys, time
from lreid_core.data import synthetic
render = synthetic._render_chunk
def slow(*args, **kwargs):
    with open(sys.argv[2], "a") as log:
        log.write(f"{os.getpid()}\\n")
    time.sleep(0.5)                      # widen the window in which the other process could interfere
    return render(*args, **kwargs)
synthetic._render_chunk = slow
synthetic.make_benchmark(sys.argv[1], domains=["synth_a", "synth_b"], ids_per_domain=4, test_ids_per_domain=3,
                         images_per_id=3, progress=False, workers=1)
"""


def test_synthetic_cache_two_writers(tmp_path):
    from lreid_core.data.synthetic import domain_complete

    root, log = tmp_path / "cache", tmp_path / "renders.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(root), str(log)], env=env,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    assert len(set(log.read_text().split())) == 1               # one process generated, the other reused it
    assert sorted(p.name for p in root.iterdir()) == [".lock", "synth_a", "synth_b"]   # no temp folders left
    for name in ("synth_a", "synth_b"):
        params = json.loads((root / name / "synthetic.json").read_text())["params"]
        assert domain_complete(root / name, params)


def test_half_written_cache_is_regenerated(tmp_path):
    kw = dict(domains=["synth_a"], ids_per_domain=4, test_ids_per_domain=3, images_per_id=3, progress=False)
    make_benchmark(tmp_path, **kw)
    query = tmp_path / "synth_a" / "query"
    names = sorted(p.name for p in query.iterdir())
    (query / names[0]).unlink()                                  # a lost file
    make_benchmark(tmp_path, **kw)
    assert sorted(p.name for p in query.iterdir()) == names
    (tmp_path / "synth_a" / "synthetic.json").unlink()           # no manifest: not ours, never replaced
    (query / names[1]).write_bytes(b"")
    with pytest.raises(LReIDError, match="is in the way"):
        make_benchmark(tmp_path, **kw)
    assert (query / names[1]).stat().st_size == 0
    make_benchmark(tmp_path, overwrite=True, **kw)
    assert (query / names[1]).stat().st_size > 0 and (tmp_path / "synth_a" / "synthetic.json").is_file()
