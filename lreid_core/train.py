"""One Trainer for every method: domain steps, the iteration loop, AMP, evaluation, checkpoints, logging."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from . import distributed
from .config import Config, save_config
from .data.augment import augment
from .data.benchmark import Benchmark, TrainSet, check_test_split, check_train_split
from .data.cache import load_images
from .data.sampler import DistributedPKSampler
from .errors import LReIDError
from .evaluate import evaluate_testset
from .checkpoints import check_checkpoint, check_resume_state
from .io import atomic_torch_save, brief, lock_file, remove_stale_tmp, safe_load
from .methods import Method, create_method
from .progress import enabled as progress_enabled
from .results import RunResult

LOG_EVERY = 20   # iterations between loss read-outs (the only host syncs in the loop)
# what a Trainer writes (per folder): an interrupted atomic write of one of these leaves a temp file to clear
RUN_FILES = {"": ("config.yaml", "metrics.json", "matrix_mAP.csv", "matrix_R1.csv"),
             "checkpoints": ("last.pt", "step*.pt")}
LOGGED = "logged/"   # prefix of ``Method.logged`` values in the running sums: written, never summed into the loss
AMP_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}   # train.amp -> CUDA autocast dtype


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LReIDError(f"train.device={name!r} but no CUDA device is available")
    return torch.device(name)


def seed_everything(seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    elif torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True


def merge_domains(train: list[TrainSet]) -> TrainSet:
    """JointTrain's single step: every domain's records in one set (labels are already global)."""
    return TrainSet("all", [r for t in train for r in t.records], [lab for t in train for lab in t.labels], 0,
                    sum(t.num_classes for t in train))


def lr_factor(cfg: Config, milestones: list[int], step: int, it: int, total_iters: int, later: float = 1.0,
              decay: float | None = None) -> float:
    """Step-decay factor at iteration ``it`` of domain step ``step`` (``total_iters`` in the step).

    ``train.lr_schedule="global"`` (the official code): one clock over the whole order, the epochs trained so far
    (first + (step - 1) * epochs + epoch after the first step, whose ``train.first_epochs`` default to
    ``train.epochs``), so every step after the first trains at lr_decay^2 in the paper profile; a joint step,
    which trains the whole order's epochs at once, reads the same clock (its own epoch), so all methods see the
    same rate at the same epoch. ``"per_step"``: the epoch within the step, a joint step's milestones at the same
    fraction of its longer step. A milestone m decays the learning rate from epoch m + ``train.milestone_lag`` on,
    by ``decay`` (a parameter group's own factor, e.g. AKA's graph: 0.5) or ``train.lr_decay``. ``later``
    (``train.later_lr`` for the groups on the model's clock) multiplies it from the second domain step on (global
    clock: from epoch ``first`` on, where the second step starts, a joint step included; per-step: steps after the
    first). The factor ``warmup`` of the same epoch multiplies it all.
    """
    t = cfg.train
    first = t.first_epochs or t.epochs
    if t.lr_schedule == "global":
        epoch = it // t.iters_per_epoch + (first + (step - 1) * t.epochs if step else 0)
        after_first = epoch >= first
    else:
        epoch = it * (t.epochs if step else first) // total_iters
        after_first = step > 0
    rate = t.lr_decay if decay is None else decay
    factor = rate ** sum(epoch >= m + t.milestone_lag for m in milestones) * (later if after_first else 1.0)
    return factor * warmup(cfg, epoch) if t.warmup_epochs else factor


def warmup(cfg: Config, epoch: int) -> float:
    """Linear warm-up factor of ``epoch`` on the schedule's clock: ``train.warmup_factor`` at epoch 0 rising to 1 at
    ``train.warmup_epochs`` (``WarmupMultiStepLR`` "linear" of LSTKC/DKP's reid/utils/lr_scheduler.py, stepped
    once per epoch: f (1 - a) + a, a = epoch / warmup_epochs); 1 from then on."""
    t = cfg.train
    if epoch >= t.warmup_epochs:
        return 1.0
    alpha = epoch / t.warmup_epochs
    return t.warmup_factor * (1 - alpha) + alpha


def step_epochs(cfg: Config, step: int, joint_steps: int = 0) -> int:
    """Epochs of domain step ``step``: ``train.first_epochs`` (0: ``train.epochs``) for the first, ``train.epochs``
    after it; a joint step (``joint_steps`` domains at once) trains the whole order's epochs x
    ``train.joint_epochs_factor``."""
    t = cfg.train
    first = t.first_epochs or t.epochs
    if joint_steps:
        return max(1, round((first + (joint_steps - 1) * t.epochs) * t.joint_epochs_factor))
    return first if step == 0 else t.epochs


def epoch_iters(cfg: Config, ts: TrainSet) -> int:
    """Iterations of one epoch of ``ts``: ``train.iters_per_epoch``, or when 0 the step's training images //
    (P x K), at least 1 (LSTKC/DKP get_data_loaders.py: ``iters = int(len(train_set) / batch_size)``)."""
    t = cfg.train
    return t.iters_per_epoch or max(1, len(ts.records) // (t.p_ids * t.k_imgs))


def build_optimizer(cfg: Config, groups: list, device: torch.device, total_iters: int, step: int = 0):
    """Adam (paper) or SGD with momentum (LSTKC/DKP), both with step decay and optional warm-up (``lr_factor``), or
    SGD + triangular cyclical LR (seed 2).

    ``groups``: parameters, or parameter groups with their own ``lr``, ``milestones``, optional ``decay`` and
    ``later_lr`` (absent: 1) (``Method.optim_groups``: PatchKD's sampler and AKA's graph have their own, as the
    official codes' second optimisers; Adam is per-parameter, so one Adam over two groups equals two Adams).
    """
    t = cfg.train
    if groups and not isinstance(groups[0], dict):
        groups = [{"params": list(groups), "lr": t.lr, "milestones": list(t.milestones), "later_lr": t.later_lr}]
    if t.optimizer == "sgd_clr":
        params = [p for g in groups for p in g["params"]]
        opt = torch.optim.SGD(params, lr=t.clr_base_lr, momentum=0.9, weight_decay=t.weight_decay)
        sched = torch.optim.lr_scheduler.CyclicLR(opt, t.clr_base_lr, t.clr_max_lr, step_size_up=t.clr_step_size,
                                                  mode="triangular")
        return opt, sched
    param_groups = [{"params": g["params"], "lr": g["lr"]} for g in groups]
    if t.optimizer == "sgd":
        opt = torch.optim.SGD(param_groups, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, nesterov=False)
    else:
        opt = torch.optim.Adam(param_groups, lr=t.lr, weight_decay=t.weight_decay, fused=device.type == "cuda")
    lambdas = [lambda it, ms=g["milestones"], later=g.get("later_lr", 1.0), d=g.get("decay"):
               lr_factor(cfg, ms, step, it, total_iters, later, d)
               for g in groups]
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambdas)


def carry_optimizer_state(opt: torch.optim.Optimizer, named: dict[str, torch.nn.Parameter]) -> dict[str, dict]:
    """The optimiser's per-parameter state keyed by parameter name (to continue it in the next step)."""
    return {name: opt.state[p] for name, p in named.items() if p in opt.state}


class Trainer:
    """Runs one method over a benchmark's domain order.

    ``fit()`` trains step by step; after every step it evaluates all seen-so-far domains and the unseen
    sets, saves the metrics and a checkpoint into ``run_dir`` (when given) and returns the ``RunResult``.
    ``run_dir`` is owned by one process while it trains (a lock, ``run_dir/.lock``); ``new_run`` also refuses
    a ``run_dir`` that holds a run once the lock is taken (another process may have started one there since).
    ``on_progress(step, done, total)``, when given, is called after every iteration with the step index and the
    step's iterations done and in all (notebook 05 draws its progress bar and ETA from it).
    """

    def __init__(self, cfg: Config, method: str | Method, bench: Benchmark, run_dir: Path | None = None,
                 progress: bool = True, tensorboard: bool = True, new_run: bool = False,
                 on_progress: Callable[[int, int, int], None] | None = None):
        self.cfg, self.bench = cfg, bench
        self.on_progress = on_progress
        self.device = distributed.rank_device(resolve_device(cfg.train.device))
        seed_everything(cfg.train.seed, cfg.train.deterministic)
        self.method = create_method(method, cfg, self.device) if isinstance(method, str) else method
        distributed.seed_rank(cfg.train.seed)
        self.main = distributed.is_main()      # under torchrun only rank 0 writes files, bars and TensorBoard
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.new_run = new_run
        self.lock = None                      # the open run_dir/.lock while this process owns the folder
        self.progress = progress and self.main and progress_enabled()
        self.result = RunResult(self.method.name, bench.order, [u.domain for u in bench.unseen])
        self.tensorboard = tensorboard and self.main
        self.writer = None
        self.amp = self.device.type == "cuda" and cfg.train.amp != "off"
        # fp16 (the official code's mixed precision) needs loss scaling; disabled it passes everything through
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and cfg.train.amp == "fp16")
        self.global_iter = 0
        self.pending: dict | None = None      # a mid-step checkpoint to continue from (see resume())
        self.carry: dict[str, dict] = {}      # train.lr_schedule=global: optimiser state from the previous step
        self.method.label_space = sum(ts.num_classes for ts in bench.train)
        if cfg.train.channels_last:              # also on CPU: 1.1x per step, 1.7x in extraction (README)
            self.method.model.to(memory_format=torch.channels_last)
        if self.device.type == "cuda" and cfg.train.compile:
            self.method.model.compile()

    # ---- data --------------------------------------------------------------------------------------
    def preload(self) -> None:
        """Decode every training and test image and check every step's PK batches before anything is written,
        so a corrupt image or an unusable split fails with nothing on disk."""
        d, t = self.cfg.data, self.cfg.train
        rank, world = distributed.share()
        for ts in self.steps():
            check_train_split(ts, t.k_imgs)
            load_images([r.path for r in ts.records], d.height, d.width, desc=f"decode {ts.domain}")
            DistributedPKSampler(ts.labels, t.p_ids, t.k_imgs, where=ts.domain, rank=rank, world_size=world)
        for ts in self.bench.seen + self.bench.unseen:
            check_test_split(ts)
            for part, records in (("query", ts.query), ("gallery", ts.gallery)):
                load_images([r.path for r in records], d.height, d.width, desc=f"decode {ts.domain} {part}")

    def open_run_dir(self) -> None:
        """Create the run directory with its resolved config and TensorBoard writer (after preload)."""
        if self.run_dir is None or not self.main:
            return
        from .results import holds_run

        self.run_dir.mkdir(parents=True, exist_ok=True)

        def busy(holder: str) -> None:
            raise LReIDError(f"run directory {self.run_dir} is in use by another process (pid {holder}); wait for "
                             f"it to finish, or choose another --out")

        if self.lock is None:
            self.lock = lock_file(self.run_dir / ".lock", busy)
            if self.new_run and holds_run(self.run_dir):       # another process ran there since the CLI's check
                self.lock.close()
                self.lock = None
                raise LReIDError(f"run directory already holds a run: {self.run_dir} (choose another --out, or "
                                 f"--resume it)")
        for sub, names in RUN_FILES.items():
            remove_stale_tmp(self.run_dir / sub, names)     # left by an interrupted atomic write
        save_config(self.cfg, self.run_dir / "config.yaml")
        if self.tensorboard and self.writer is None:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(self.run_dir / "tb"))

    def images(self, records, desc: str) -> torch.Tensor:
        d = self.cfg.data
        cpu = load_images([r.path for r in records], d.height, d.width, desc=desc)
        target = self.device if d.cache_device == "auto" else torch.device(d.cache_device)
        return cpu.to(target)

    def autocast(self):
        return torch.autocast("cuda", dtype=AMP_DTYPES[self.cfg.train.amp]) if self.amp else contextlib.nullcontext()

    # ---- training ----------------------------------------------------------------------------------
    def steps(self) -> list[TrainSet]:
        return [merge_domains(self.bench.train)] if self.method.joint else list(self.bench.train)

    def fit(self) -> RunResult:
        """Train every (remaining) step; a resumed Trainer skips the steps its checkpoint already finished."""
        start = time.perf_counter() - self.result.wall_s
        self.preload()
        self.open_run_dir()
        for step, ts in enumerate(self.steps()):
            if step < len(self.result.steps):
                continue
            self.train_step(step, ts)
            self.result.steps.append(self.evaluate(step))
            self.result.trained.append(ts.domain)
            self.result.wall_s = time.perf_counter() - start
            self.save(step)
        self.result.status = "done"
        if self.run_dir is not None and self.main:
            self.result.save(self.run_dir)
        if self.writer is not None:
            self.writer.close()
        if self.lock is not None:
            self.lock.close()
            self.lock = None
        return self.result

    def train_step(self, step: int, ts: TrainSet) -> None:
        """One domain step: ``step_epochs x iters_per_epoch`` iterations of PK batches augmented on the device."""
        cfg, t = self.cfg, self.cfg.train
        total = step_epochs(cfg, step, len(self.bench.train) if self.method.joint else 0) * epoch_iters(cfg, ts)
        images = self.images(ts.records, f"decode {ts.domain}")
        labels = torch.as_tensor(ts.labels, device=self.device)
        share = distributed.share()
        sampler = DistributedPKSampler(ts.labels, t.p_ids, t.k_imgs, t.seed * 1000 + step, ts.domain, *share)
        resume, self.pending = self.pending, None
        if resume is None:
            self.method.before_step(step, ts.num_classes)
            self.method.start_domain(step, images, labels)
        modules, params = list(self.method.modules().values()), self.method.parameters()
        if t.sync_bn and share[1] > 1:
            for m in modules:
                distributed.convert_sync_bn(m)
        distributed.broadcast_modules(modules)
        opt, sched = build_optimizer(cfg, self.method.optim_groups(), self.device, total, step)
        named = self.method.named_parameters()
        if t.lr_schedule == "global" and resume is None:     # one optimiser for the whole order (official code)
            for name, p in named.items():
                if name in self.carry:
                    opt.state[p] = self.carry[name]
        gen = torch.Generator(device=images.device).manual_seed(t.seed * 1000 + step + 1)
        first = 0
        if resume is not None:
            self.restore_step(resume, opt, sched, sampler, gen)
            first = resume["iter"]
        self.method.train(True)
        running: dict[str, torch.Tensor] = {}
        bad_at = torch.full((), -1, dtype=torch.long, device=self.device)   # first non-finite iteration, no sync
        bar = tqdm(range(first, total), desc=f"{self.method.name} step {step + 1}/{len(self.steps())} {ts.domain}",
                   disable=not self.progress, leave=False, mininterval=0.5, initial=first, total=total)
        for it in bar:
            idx = next(sampler).to(images.device, non_blocking=True)
            x = augment(images[idx], gen, share).to(self.device, non_blocking=True)
            if t.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with self.autocast():
                terms = self.method.loss(x, labels[idx.to(self.device)])
            loss = sum(terms.values())
            bad_at = torch.where((bad_at < 0) & ~torch.isfinite(loss.detach()), it + 1, bad_at)
            opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            distributed.average_gradients(params)
            self.scaler.step(opt)
            self.scaler.update()
            sched.step()
            self.global_iter += 1
            if self.on_progress is not None:
                self.on_progress(step, it + 1, total)
            shown = {LOGGED + k: v for k, v in self.method.logged.items()}   # logged only, e.g. the code's KD value
            for k, v in {**terms, **shown}.items():
                running[k] = running.get(k, 0) + v.detach()
            if (it + 1) % LOG_EVERY == 0 or it + 1 == total:
                first_bad, mean = distributed.reduce_terms(bad_at, running)
                self.check_finite(step, first_bad, mean)
                self.log(step, it, mean, (it % LOG_EVERY) + 1, sched.get_last_lr()[0], bar)
                running = {}
            if t.ckpt_every and (it + 1) % t.ckpt_every == 0 and it + 1 < total:
                self.check_finite(step, *distributed.reduce_terms(bad_at, running))
                distributed.average_buffers(modules)
                self.checkpoint({"step": step, "iter": it + 1, "optimizer": opt.state_dict(),
                                 "scheduler": sched.state_dict(), "sampler": sampler.state_dict(),
                                 "generator": gen.get_state()})
        self.carry = carry_optimizer_state(opt, named) if t.lr_schedule == "global" else {}
        distributed.average_buffers(modules)
        self.method.consolidate(step, images, labels)
        self.method.after_step(step)

    def restore_step(self, ckpt: dict, opt, sched, sampler: DistributedPKSampler, gen: torch.Generator) -> None:
        """Load a mid-step checkpoint's optimiser, scheduler, sampler and augmentation states; one line naming
        the damaged one (checked first, as ``load_state_dict`` may apply part of a state before it fails)."""
        path = self.run_dir / "checkpoints" / "last.pt" if self.run_dir is not None else "checkpoint"
        groups = ckpt["optimizer"].get("param_groups")
        if not isinstance(groups, list) or len(groups) != len(opt.param_groups) or any(
                not isinstance(g, dict) or not isinstance(g.get("params"), list) or len(g["params"]) != len(o["params"])
                for g, o in zip(groups, opt.param_groups)):
            raise LReIDError(f"checkpoint {path}: damaged optimizer state (its parameter groups do not match "
                             f"this {self.method.name} model)")
        for key, load in (("optimizer", opt.load_state_dict), ("scheduler", sched.load_state_dict),
                          ("sampler", sampler.load_state_dict), ("generator", gen.set_state)):
            try:
                load(ckpt[key])
            except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
                raise LReIDError(f"checkpoint {path}: damaged {key} state ({brief(exc)})") from None

    def check_finite(self, step: int, bad_at: torch.Tensor, running: dict[str, torch.Tensor]) -> None:
        """Stop on the first non-finite loss (one host sync, only at log/checkpoint time); nothing is saved after it."""
        it = int(bad_at)
        if it >= 0:
            terms = ", ".join(k for k, v in running.items() if not torch.isfinite(v)) or "loss"
            last = self.run_dir / "checkpoints" / "last.pt" if self.run_dir is not None else "none (no run directory)"
            last = last if not isinstance(last, Path) or last.is_file() else "no checkpoint yet"
            raise LReIDError(f"loss became non-finite ({terms}) at step {step + 1}, iteration {it}; "
                             f"training stopped, last good checkpoint: {last}")

    def log(self, step: int, it: int, running: dict[str, torch.Tensor], n: int, lr: float, bar) -> None:
        """Write the averaged loss terms (one host sync per LOG_EVERY iterations) to the bar and TensorBoard.

        ``Method.logged`` values go to ``loss/<name>`` beside the terms and stay out of ``loss/total``."""
        values = {k: float(v) / n for k, v in running.items()}
        total = sum(v for k, v in values.items() if not k.startswith(LOGGED))
        bar.set_postfix(loss=f"{total:.3f}", refresh=False)
        if self.writer is not None:
            for k, v in values.items():
                self.writer.add_scalar(f"loss/{k.removeprefix(LOGGED)}", v, self.global_iter)
            self.writer.add_scalar("loss/total", total, self.global_iter)
            self.writer.add_scalar("lr", lr, self.global_iter)

    # ---- evaluation and checkpoints ----------------------------------------------------------------
    def evaluate(self, step: int) -> dict[str, dict[str, float]]:
        """mAP/R1/mINP of every seen-so-far domain (all of them for joint) and every unseen set.

        Methods with extra evaluation ``variants`` (e.g. task-aware heads) get those stored alongside.
        """
        self.method.train(False)
        seen = self.bench.seen if self.method.joint else self.bench.seen[: step + 1]
        tasks = [(ts, i) for i, ts in enumerate(seen)] + [(ts, None) for ts in self.bench.unseen]
        rows: dict[str, dict[str, dict[str, float]]] = {}
        for variant in ("",) + tuple(self.method.variants):
            row = rows[variant] = {}
            for ts, task in tasks:
                embed = functools.partial(self.method.embed, task=task, variant=variant)
                row[ts.domain] = evaluate_testset(self, ts, embed)
                if self.writer is not None:
                    for k in ("mAP", "R1"):
                        self.writer.add_scalar(f"{k}{'/' + variant if variant else ''}/{ts.domain}", row[ts.domain][k],
                                               step + 1)
        for variant in self.method.variants:
            self.result.variants.setdefault(variant, []).append(rows[variant])
        return rows[""]

    def checkpoint(self, extra: dict) -> None:
        """Write ``checkpoints/last.pt`` atomically: method, RNG states and results so far, plus ``extra``.

        Under torchrun every rank's RNG states are gathered (``rank_rng``) and rank 0 writes the file.
        """
        if self.run_dir is None:
            return
        rngs = distributed.all_gather_object(
            (torch.get_rng_state(), torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None))
        if not self.main:
            return
        state = {"method": self.method.name, "config": self.cfg.to_dict(), "state": self.method.state_dict(),
                 "result": dataclasses.asdict(self.result), "global_iter": self.global_iter,
                 "rng": torch.get_rng_state(),
                 "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                 "world_size": len(rngs), "rank_rng": rngs, "scaler": self.scaler.state_dict(), **extra}
        self.write_checkpoint(self.run_dir / "checkpoints" / "last.pt", state)

    def write_checkpoint(self, path: Path, state: dict) -> None:
        """``atomic_torch_save``; a failed write (e.g. a full disk) names what survived: the previous
        ``last.pt`` is untouched, as the write goes to a temp file first."""
        last = self.run_dir / "checkpoints" / "last.pt"
        kept = f"previous checkpoint kept: {last}" if last.is_file() else "no checkpoint written yet"
        try:
            atomic_torch_save(path, state)
        except LReIDError as exc:
            raise LReIDError(f"{exc}; training stopped, {kept}") from None

    def save(self, step: int) -> None:
        """End of a domain step: metrics files, ``stepN.pt`` (weights) and ``last.pt`` (resume point)."""
        if self.run_dir is None:
            return
        if self.main:
            self.result.save(self.run_dir)
            self.write_checkpoint(self.run_dir / "checkpoints" / f"step{step + 1}.pt",
                                  {"step": step + 1, "method": self.method.name, "config": self.cfg.to_dict(),
                                   "state": self.method.state_dict()})
        self.checkpoint({"step": step + 1, "iter": 0, "carry": self.carry})

    def resume(self) -> None:
        """Restore ``checkpoints/last.pt``: finished steps are skipped, a step in progress continues exactly."""
        path = self.run_dir / "checkpoints" / "last.pt" if self.run_dir is not None else None
        if path is None or not path.is_file():
            raise LReIDError(f"nothing to resume: no checkpoint at {path}")
        ckpt = check_checkpoint(safe_load(path, "checkpoint", map_location=self.device), path, self.method.name,
                                self.cfg.to_dict())
        check_resume_state(ckpt, path)
        rank, world = distributed.share()
        if ckpt.get("world_size", 1) != world:
            raise LReIDError(f"{path} was written by a {ckpt.get('world_size', 1)}-process run and this run has "
                             f"{world}: resume with the same number of processes (torchrun --nnodes x "
                             f"--nproc_per_node)")
        try:
            self.method.load_state_dict(ckpt["state"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
            raise LReIDError(f"checkpoint {path} does not fit this {self.method.name} model ({brief(exc)})") from None
        self.result = RunResult(**ckpt["result"])
        self.global_iter = ckpt["global_iter"]
        try:
            if world > 1:
                cpu_rng, cuda_rng = ckpt["rank_rng"][rank]
                torch.set_rng_state(cpu_rng.cpu())
                if cuda_rng is not None and self.device.type == "cuda":
                    torch.cuda.set_rng_state(cuda_rng.cpu(), self.device)
            else:
                torch.set_rng_state(ckpt["rng"].cpu())
                if ckpt.get("cuda_rng") is not None and torch.cuda.is_available():
                    torch.cuda.set_rng_state_all([s.cpu() for s in ckpt["cuda_rng"]])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as exc:
            raise LReIDError(f"checkpoint {path}: damaged RNG state ({brief(exc)})") from None
        self.carry = ckpt.get("carry") or {}
        if ckpt.get("scaler") and self.scaler.is_enabled():       # fp16 loss scale and its growth tracker
            self.scaler.load_state_dict(ckpt["scaler"])
        if ckpt["iter"] > 0:
            self.pending = ckpt
