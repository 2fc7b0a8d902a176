"""A catalogue of bad inputs through the CLI (``lreid_core.cli.main``) and the API: each gives a one-line error
that names the cause and the path or value, a non-zero exit, and leaves no half-written run directory."""
import errno
import shutil

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


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory):
    """A private copy of two tiny synthetic domains that tests may damage."""
    root = tmp_path_factory.mktemp("bad-data")
    make_benchmark(root, domains=["synth_a", "synth_b"], ids_per_domain=6, test_ids_per_domain=4, images_per_id=4,
                   progress=False)
    return root


def _fresh(synth_root, tmp_path, name="data"):
    copy = tmp_path / name
    shutil.copytree(synth_root, copy)
    return copy


def _run_cli(args, capsys, out):
    code = cli.main(["run", "--profile", "smoke", "--quiet", "--out", str(out), *args])
    err = capsys.readouterr().err.strip().replace("\r", "\n")
    return code, err.splitlines()[-1]     # progress bars may precede the error line


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
}


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
    assert not out.exists()


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
    good = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
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
