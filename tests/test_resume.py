"""Exact resume after SIGKILL: the resumed run's metrics equal an uninterrupted run's (CPU, deterministic)."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import torch

from lreid_core.config import load_config, parse_overrides
from lreid_core.data.benchmark import build_benchmark
from lreid_core.train import Trainer

OVERRIDES = ["train.deterministic=true", "train.ckpt_every=2", "train.epochs=3", "train.iters_per_epoch=6",
             "train.milestones=[2]"]


def _position(last):
    """(step index, iteration) of the newest resume checkpoint, or None while there is none."""
    try:
        ckpt = torch.load(last, weights_only=True, map_location="cpu")
    except (FileNotFoundError, EOFError, RuntimeError):
        return None
    return ckpt["step"], ckpt["iter"]


def _cli(*args):
    return [sys.executable, "-m", "lreid_core.cli", "run", *args]


def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    """Kill inside the second domain step (teacher present, fewer teacher classes) at a random iteration."""
    run = tmp_path / "run"
    env = dict(os.environ)
    proc = subprocess.Popen(_cli("--profile", "smoke", "--method", "lwf", "--out", str(run), "--quiet",
                                 "--set", *OVERRIDES), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = run / "checkpoints" / "last.pt"
    target = (1, random.Random().choice([2, 4, 6, 8]))
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:
        pos = _position(last)
        if pos is not None and pos[1] > 0 and pos >= target:
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"the run ended before the kill at {target}: {proc.stderr.read().decode()[-500:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = _position(last)
    assert killed_at[0] == 1 and killed_at[1] > 0, killed_at       # mid-way through step 2
    assert last.exists(), proc.stderr.read().decode()
    done = subprocess.run(_cli("--resume", str(run), "--quiet"), env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    resumed = json.loads((run / "metrics.json").read_text())

    cfg = load_config(profile_name="smoke", overrides=parse_overrides(OVERRIDES + ["method.name=lwf"]))
    reference = Trainer(cfg, "lwf", build_benchmark(cfg), progress=False, tensorboard=False).fit()
    assert resumed["status"] == "done"
    assert resumed["steps"] == reference.steps


def test_resume_rejects_non_run(tmp_path):
    proc = subprocess.run(_cli("--resume", str(tmp_path)), capture_output=True, text=True)
    assert proc.returncode == 2 and "not a resumable run directory" in proc.stderr
