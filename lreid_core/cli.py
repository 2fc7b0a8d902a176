"""The ``lreid`` console script: demo, run, report, sweep, synth, pretrain, bench."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .errors import LReIDError

# Settings a resumed run may change (they do not change its numbers); every other flag is refused on --resume.
SAFE_ON_RESUME = ("train.device", "train.eval_batch", "train.ckpt_every", "data.cache_device")


def _method_list(text: str) -> list[str]:
    """``--methods`` as a list of registered names (default: the demo's, ``all``: every registered method); one
    line for unknown, empty or repeated ones."""
    from .demo import DEMO_METHODS
    from .methods import list_methods

    if not text:
        return list(DEMO_METHODS)
    if text == "all":
        return list_methods()
    methods = [m.strip() for m in text.split(",")]
    if unknown := [m for m in methods if m not in list_methods()]:
        raise LReIDError(f"--methods: unknown method {unknown[0]!r}; valid methods: {', '.join(list_methods())}")
    if len(set(methods)) != len(methods):
        raise LReIDError(f"--methods lists a method twice: {text}")
    return methods


def check_demo_folders(out: Path, methods: list[str], overwrite: bool) -> list[Path]:
    """The run folders ``out/<method>`` a demo would replace; refuses any in the way (one line naming it).

    A folder holding a run is replaced only with ``overwrite``; a file, or a non-empty folder that holds no
    run, never is.
    """
    from .io import check_output_dir
    from .results import holds_run

    check_output_dir(out)
    replace = []
    for name in methods:
        run_dir = out / name
        if not run_dir.exists():
            continue
        if not run_dir.is_dir():
            raise LReIDError(f"{run_dir} is in the way: a file where the {name} run folder goes (not replacing it)")
        if holds_run(run_dir):
            if not overwrite:
                raise LReIDError(f"{run_dir} already holds a run; pass --overwrite to replace it, or choose another --out")
            if run_dir.is_symlink():
                raise LReIDError(f"{run_dir} is a symbolic link; --overwrite replaces only real run folders (remove "
                                 f"the link, or choose another --out)")
            replace.append(run_dir)
        elif any(run_dir.iterdir()):
            raise LReIDError(f"{run_dir} is in the way: a non-empty folder that holds no run (not replacing it)")
    return replace


FIRST_LOOK = ("the demo profile is a first look: no regime of the regime study met the calibration rule (LwF closing "
              ">= 0.25 of the Finetune-to-Joint gap, as in the paper), so its ranking is not the paper's; see "
              "docs/benchmark.md")
TABLE_HEADER = "method,seed,"      # the first line of every table.csv a demo writes


def check_demo_outputs(out: Path, methods: list[str], overwrite: bool) -> None:
    """Refuse, before work, to replace a ``table.csv`` or figure in ``out`` that no earlier demo wrote (its
    ``table.csv`` starts with :data:`TABLE_HEADER`) unless ``overwrite``; one line naming the file."""
    from .io import refuse_foreign

    if not overwrite:
        refuse_foreign(out, "table.csv", TABLE_HEADER,
                       ["table.csv", "demo_summary.png"] + [f"matrix_{m}.png" for m in methods], "demo")


def write_table(runs: dict[int, list], out: Path) -> None:
    from .io import atomic_write_text
    from .results import TABLE_COLUMNS

    keys = [key for _, key in TABLE_COLUMNS]
    rows = [["method", "seed"] + keys]
    for seed, results in runs.items():
        for r in (row for res in results for row in res.expanded()):
            s = r.summary()
            rows.append([r.method, str(seed)] + [f"{100 * s[k]:.2f}" for k in keys])
    atomic_write_text(out / "table.csv", "\n".join(",".join(row) for row in rows) + "\n")


def cmd_demo(args) -> None:
    from .config import load_config, parse_overrides, validate, with_method
    from .demo import CHECK_METHODS, check, random_init_unseen, run_methods, versus_lwf
    from .results import finished_run, format_table
    from .viz import save_demo_figures

    overrides = parse_overrides(args.set)
    if args.recipe:
        overrides["recipe"] = args.recipe
    cfg = load_config(profile_name=args.profile, overrides=overrides)
    methods = _method_list(args.methods)
    if args.check:
        methods += [m for m in CHECK_METHODS if m not in methods]
    for name in methods:                        # every method's config must validate before anything runs
        validate(with_method(cfg, name))
    if args.seeds < 1:
        raise LReIDError(f"--seeds must be >= 1, got {args.seeds}")
    seeds = [cfg.train.seed + i for i in range(args.seeds)]
    out = Path(args.out)
    plan = {}                                   # seed -> (its folder, run folders to replace); checked before any work
    for seed in seeds:
        cfg.train.seed = seed
        seed_out = out / f"seed{seed}" if len(seeds) > 1 else out
        fresh = [m for m in methods if not (args.reuse and finished_run(seed_out / m, with_method(cfg, m)))]
        plan[seed] = seed_out, check_demo_folders(seed_out, fresh, args.overwrite)
    check_demo_outputs(out, methods, args.overwrite)
    print(f"lreid demo: profile {cfg.profile}, order {' -> '.join(cfg.data.order)}, unseen {', '.join(cfg.data.unseen)}, "
          f"methods {', '.join(methods)}, train.seed {', '.join(map(str, seeds))}", flush=True)
    start = time.perf_counter()
    runs, random = {}, {}
    for seed in seeds:
        cfg.train.seed = seed
        runs[seed] = run_methods(cfg, methods, plan[seed][0], reuse=args.reuse, replace=plan[seed][1])
        if args.check:
            random[seed] = random_init_unseen(cfg)
    wall = time.perf_counter() - start
    write_table(runs, out)
    figures = save_demo_figures(runs[seeds[0]], out)
    print("\n" + format_table([r for rs in runs.values() for r in rs]))
    spread = f" (mean ± sample std over {len(seeds)} seeds)" if len(seeds) > 1 else ""
    print(f"\n(mAP/R1 in %{spread}, averaged over the {len(cfg.data.order)} seen / {len(cfg.data.unseen)} unseen "
          f"domains after the last step; Forget = mean mAP drop of earlier domains)\nwall time {wall:.0f} s; "
          f"table: {out / 'table.csv'}; figures: {', '.join(str(p) for p in figures[:2])}")
    if cfg.profile == "demo":
        print(FIRST_LOOK)
    if args.check:
        criteria = check(runs, random)
        print(f"\nvalidity check (data.synth_seed={cfg.data.synth_seed}, {len(seeds)} seeds):")
        print("\n".join(c.line() for c in criteria))
        if (line := versus_lwf(runs)) is not None:
            print(line + "  (reported, not a criterion)")
        print(f"{sum(c.passed for c in criteria)}/{len(criteria)} criteria met")


def _run_overrides(args) -> dict:
    """``--set`` overrides plus the ``--method``, ``--order`` and ``--data-root`` shortcuts (run, sweep)."""
    from .config import parse_overrides
    from .catalog import resolve_order

    overrides = parse_overrides(args.set)
    if args.method:
        overrides.setdefault("method", {})["name"] = args.method
    if args.order:
        overrides.setdefault("data", {})["order"] = resolve_order(args.order)
    if args.data_root:
        overrides.setdefault("data", {})["root"] = args.data_root
    if args.recipe:
        overrides["recipe"] = args.recipe
    return overrides


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``run`` and ``sweep``."""
    parser.add_argument("--method", default=None)
    parser.add_argument("--config", default=None, help="YAML config file")
    parser.add_argument("--profile", default=None, help="smoke | demo | paper (default: the config's, else paper)")
    parser.add_argument("--recipe", default=None, help="a paper's own training recipe: patchkd | lstkc | dkp")
    parser.add_argument("--order", default=None, help="order1 | order2 | comma list of dataset names")
    parser.add_argument("--data-root", default=None, help="folder holding the datasets")
    parser.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        help="config overrides (repeatable: --set a=1 --set b=2 or --set a=1 b=2)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def cmd_run(args) -> None:
    """Train one run; under ``torchrun`` (``WORLD_SIZE`` > 1) every process joins one data-parallel run."""
    from . import distributed
    from .config import load_config
    from .data.benchmark import build_benchmark
    from .io import check_output_dir
    from .results import format_table, holds_run
    from .train import Trainer, resolve_device

    checkpoint = False
    if args.resume:
        cfg, out = _resumable(args)
        checkpoint = (out / "checkpoints" / "last.pt").is_file()
        if not checkpoint:
            print(f"no checkpoint yet in {out}: starting it from scratch with its stored config", flush=True)
    else:
        cfg = load_config(args.config, profile_name=args.profile, overrides=_run_overrides(args))
        out = Path(args.out) if args.out else Path(cfg.out_dir) / default_run_name(cfg)
        check_output_dir(out)
        if holds_run(out):
            raise LReIDError(f"run directory already holds a run: {out} (choose another --out, or --resume it)")
    with distributed.session(resolve_device(cfg.train.device), cfg.train.dist_timeout):
        out = Path(distributed.broadcast_object(str(out)))     # rank 0's default name (it holds a timestamp)
        with distributed.local_main_first():                   # one writer of the synthetic benchmark per node
            bench = build_benchmark(cfg)
        trainer = Trainer(cfg, cfg.method.name, bench, out, progress=not args.quiet, new_run=not args.resume)
        if checkpoint:
            trainer.resume()
        result = trainer.fit()
        if distributed.is_main():
            print(format_table([result]))
            print(f"run directory: {out}")


def default_run_name(cfg) -> str:
    """``<profile>-<method>-<time>-s<seed>-p<pid>``: runs started in the same second never share a folder."""
    return f"{cfg.profile}-{cfg.method.name}-{time.strftime('%Y%m%d-%H%M%S')}-s{cfg.train.seed}-p{os.getpid()}"


def _resumable(args):
    """(config, run directory) of ``--resume DIR``: an unfinished run folder (with or without a checkpoint) and
    its stored config, changed only by the result-neutral ``--set`` keys; one-line errors for anything else."""
    from .config import config_from_dict, parse_overrides, validate
    from .results import RunResult, flatten, stored_config

    run_dir = Path(args.resume)
    if not (run_dir / "config.yaml").is_file():
        raise LReIDError(f"not a resumable run directory (no config.yaml): {run_dir}")
    given = [f"--{name.replace('_', '-')}" for name in ("config", "profile", "method", "order", "data_root")
             if getattr(args, name)]
    if args.out and Path(args.out).resolve() != run_dir.resolve():
        given.append("--out")
    if given:
        raise LReIDError(f"--resume continues {run_dir} with its stored config; {', '.join(given)} would change "
                         f"the run (drop it, or start a new run)")
    if (run_dir / "metrics.json").is_file():
        try:
            done = RunResult.load(run_dir).status == "done"
        except LReIDError:
            done = False                         # a damaged metrics.json is rewritten by the resumed run
        if done:
            raise LReIDError(f"run already finished: {run_dir}")
    cfg = stored_config(run_dir)
    if args.recipe is not None and args.recipe != cfg.recipe:
        raise LReIDError(f"--resume: --recipe {args.recipe} differs from the run's recipe "
                         f"{cfg.recipe or 'none (shared protocol)'}; drop it, or start a new run")
    overrides = flatten(parse_overrides(args.set))
    if overrides:
        data = cfg.to_dict()
        known = flatten(data)
        if unknown := [k for k in overrides if k not in known]:
            raise LReIDError(f"unknown config key {unknown[0]!r}")
        if unsafe := [k for k in overrides if k not in SAFE_ON_RESUME]:
            raise LReIDError(f"--resume: --set {', '.join(unsafe)} would change the run; only "
                             f"{', '.join(SAFE_ON_RESUME)} may differ from its stored config")
        for key, value in overrides.items():
            section, name = key.split(".")
            data[section][name] = value
        cfg = config_from_dict(data)
        validate(cfg)
        print(f"resume: applying {', '.join(args.set)} (does not change the results)", flush=True)
    return cfg, run_dir


def cmd_synth(args) -> None:
    from .data.synthetic import make_benchmark

    domains = args.domains.split(",") if args.domains else None
    paths = make_benchmark(args.out, domains=domains, seed=args.seed, overwrite=args.overwrite, variant=args.variant)
    for name, path in paths.items():
        print(f"{name}: {path}")


def cmd_pretrain(args) -> None:
    from .models.backbone import SYNTHETIC_WEIGHTS
    from .pretrain import pretrain

    out = Path(args.out) if args.out else SYNTHETIC_WEIGHTS
    if args.out:
        from .io import check_output_dir

        check_output_dir(out.parent)
        if (out.exists() or out.is_symlink()) and not args.overwrite:
            raise LReIDError(f"{out} already exists; pass --overwrite to replace it, or choose another --out")
        if out.is_dir():
            raise LReIDError(f"--out {out} is a folder; give a weights file name")
    meta = pretrain(out, seed=args.seed, iters=args.iters, progress=not args.quiet)
    print(f"pretrained small backbone: {out} ({out.stat().st_size / 1e6:.1f} MB); pool {', '.join(meta['pool'])}, "
          f"seed {meta['seed']}, {meta['iters']} iterations, pool test mAP {100 * meta['pool_mAP']:.1f}, "
          f"{meta['wall_s']:.0f} s")


def cmd_bench(args) -> None:
    if args.what == "eval":
        from .bench import bench_rank_metrics, format_bench

        print(format_bench(bench_rank_metrics()))
    else:
        from .bench import bench_train

        bench_train(args)


def cmd_report(args) -> None:
    from .report import build_report
    from .report_write import check_report_out, write_report

    from .io import check_output_dir

    check_output_dir(Path(args.out))
    report = build_report(args.run_dirs)
    check_report_out(report, Path(args.out), not args.no_figures, args.overwrite)
    md = write_report(report, Path(args.out), figures=not args.no_figures)
    print(report.text())
    print(f"\n(mAP/R1 in %, last step; mean ± sample std over seeds where a row has several runs)\nreport: {md}")


def cmd_sweep(args) -> None:
    from .sweep import run_sweep, write_sweep_outputs

    from .io import check_output_dir

    overrides = _run_overrides(args)
    out = Path(args.out) if args.out else Path("runs") / f"sweep-{args.key}"
    check_output_dir(out)
    cells = run_sweep(args.key, args.values, out, overrides, config=args.config, profile=args.profile,
                      progress=not args.quiet, log=lambda line: print(line, flush=True))
    csv_path, png_path = write_sweep_outputs(args.key, cells, out)
    print(f"sweep of {args.key} over {len(cells)} values: {csv_path}, {png_path}")


def cmd_sampler_study(args) -> None:
    """``lreid study sampler``: PatchKD's sampler against the person masks, per routing x gamma3 and step."""
    from .config import load_config, parse_overrides
    from .io import check_output_dir
    from .sampler_study import format_rows, rows, run_sampler_study, write_outputs
    from .study import parse_numbers

    cfg = load_config(profile_name=args.profile, overrides=parse_overrides(args.set))
    routings = [r for r in args.routing.split(",") if r]
    gamma3s = parse_numbers(args.gamma3, float, "--gamma3")
    out = Path(args.out)
    check_output_dir(out)
    print(f"lreid study sampler: profile {cfg.profile}, routing {', '.join(routings)} x gamma3 "
          f"{', '.join(f'{g:g}' for g in gamma3s)}", flush=True)
    found = run_sampler_study(cfg, routings, gamma3s, out, progress=not args.quiet,
                              log=lambda line: print(line, flush=True))
    csv_path, png = write_outputs(found, out)
    print("\n" + format_rows(rows(found)))
    print(f"\n(argmax choices over every query image of the order's domains; on person = at least half the cell "
          f"on the person mask; lift = on person / random cell; ring = on the grid's outer ring, where a random cell "
          f"lands 2(h + w - 2) / hw of the time)\ntable: {csv_path}; figure: {png}")


def cmd_study(args) -> None:
    """``lreid study regime``: the regime grid on the validation generator seeds, its table, figure and choice."""
    from .config import load_config, parse_overrides
    from .io import check_output_dir
    from .study import choose, format_rows, parse_numbers, parse_regimes, rows, run_study, write_outputs

    cfg = load_config(profile_name=args.profile, overrides=parse_overrides(args.set))
    regimes = parse_regimes(args.iters, args.later_lr, args.p_ids)
    for regime in regimes:                      # every regime must validate before anything runs
        regime.apply(cfg)
    seeds = parse_numbers(args.synth_seeds, int, "--synth-seeds")
    if cfg.data.synth_seed in seeds:
        raise LReIDError(f"--synth-seeds: {cfg.data.synth_seed} is the reported generator seed (data.synth_seed); "
                         "the regime is chosen on validation seeds only")
    methods = _method_list(args.methods)
    out = Path(args.out)
    check_output_dir(out)
    print(f"lreid study regime: profile {cfg.profile}, {len(regimes)} regimes x synth seeds "
          f"{', '.join(map(str, seeds))}, methods {', '.join(methods)}", flush=True)
    cells = run_study(cfg, regimes, seeds, methods, out, train=not args.table_only, progress=not args.quiet,
                      log=lambda line: print(line, flush=True))
    csv_path, png = write_outputs(cells, regimes, out)
    print("\n" + format_rows(rows(cells)))
    chosen = choose(cells, regimes, seeds)
    print(f"\n(Seen-Avg mAP %, gap = share of the Finetune-to-Joint gap closed, fgt = forgetting in mAP points, "
          f"ring = PatchKD's share of choices on the grid's outer ring per branch)\ntable: {csv_path}; figure: {png}")
    print(f"chosen (cheapest regime whose baselines pass on every seed): {chosen.name if chosen else 'none yet'}")
    for cell in (c for c in cells if chosen and c.regime == chosen):
        print(f"synth{cell.synth_seed}:\n" + "\n".join(v.line() for v in cell.verdict))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lreid", description="Lifelong person re-identification workbench")
    sub = p.add_subparsers(dest="cmd", required=True)

    d = sub.add_parser("demo", help="synthetic 5-domain order, Table-2 style table, benchmark validity check")
    d.add_argument("--profile", default="demo", help="smoke | demo (default) | paper")
    d.add_argument("--methods", default="", help="comma list or 'all' (default: finetune,lwf,patchkd,joint)")
    d.add_argument("--recipe", default=None, help="a paper's own training recipe, scaled to the profile")
    d.add_argument("--seeds", type=int, default=1, help="run train.seed, +1, ... (default 1 seed); mean ± std")
    d.add_argument("--check", action="store_true",
                   help="also print the benchmark's validity criteria (adds finetune, lwf, joint; use --seeds 5)")
    d.add_argument("--reuse", action="store_true", help="load finished runs of the same config instead of rerunning")
    d.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    d.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                   help="config overrides, e.g. train.epochs=2 (repeatable)")
    d.add_argument("--overwrite", action="store_true", help="replace run folders OUT/<method> that hold a run")
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("run", help="one method over one domain order (real data or synthetic)")
    _add_run_options(r)
    r.add_argument("--out", default=None, help="run directory (default runs/<profile>-<method>-<time>)")
    r.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue an interrupted run where it stopped")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("synth", help="write the synthetic benchmark in Market-1501 layout")
    s.add_argument("--out", required=True)
    s.add_argument("--domains", default="", help="comma list (default: all built-in domains)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--overwrite", action="store_true")
    s.add_argument("--variant", default="premise", help="premise (default) | conflict | pretrain (the pool)")
    s.set_defaults(func=cmd_synth)

    pt = sub.add_parser("pretrain", help="pretrain the small backbone on a disjoint pool of synthetic domains")
    pt.add_argument("--seed", type=int, default=0, help="pool generator and training seed (shipped weights: 0)")
    pt.add_argument("--iters", type=int, default=2000, help="training iterations")
    pt.add_argument("--out", default="", help="weights file (default: the shipped model.pretrained=synthetic file)")
    pt.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    pt.add_argument("--quiet", action="store_true", help="no progress bars")
    pt.set_defaults(func=cmd_pretrain)

    b = sub.add_parser("bench", help="speed benchmarks: eval (rank metrics) or train (step time)")
    b.add_argument("what", choices=["eval", "train"])
    b.add_argument("--profile", default="auto", help="train: smoke | demo | paper | auto (paper on GPU, demo on CPU)")
    b.add_argument("--iters", type=int, default=0, help="train: timed iterations per method (0 = profile default)")
    b.add_argument("--methods", default="base,lwf,patchkd", help="train: comma list")
    b.add_argument("--compile", action="store_true", help="train: also time the torch.compile'd step (CUDA)")
    b.add_argument("--out", default="", help="train: also write the figures as JSON here")
    b.add_argument("--nproc", type=int, default=0, help="train: images/s data-parallel for 1, 2, 4, ... N processes")
    b.set_defaults(func=cmd_bench)

    rp = sub.add_parser("report", help="Table 2 (Markdown + CSV), heatmaps, evolution curves, forgetting from run dirs")
    rp.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                    help="run directories (or folders of them); several orders -> one section per order; "
                         "same method, different train.seed -> mean ± std")
    rp.add_argument("--out", default="report", help="output folder (default ./report)")
    rp.add_argument("--no-figures", action="store_true", help="tables only (CSV + report.md), no PNGs")
    rp.add_argument("--overwrite", action="store_true", help="replace files in OUT that no earlier report wrote")
    rp.set_defaults(func=cmd_report)

    sw = sub.add_parser("sweep", help="grid over one config key (Fig. 6); resumable, one run dir per value")
    sw.add_argument("--key", required=True, help="config key, e.g. method.gamma3")
    sw.add_argument("--values", required=True, help="comma list, e.g. 0,1,10,100")
    _add_run_options(sw)
    sw.add_argument("--out", default=None, help="sweep folder (default runs/sweep-<key>); cells are OUT/<key>=<value>")
    sw.set_defaults(func=cmd_sweep)

    st = sub.add_parser("study", help="studies on validation seeds: the regime grid; where PatchKD's sampler looks")
    studies = st.add_subparsers(dest="what", required=True, metavar="{regime,sampler}")
    common = argparse.ArgumentParser(add_help=False)           # the options every study takes
    common.add_argument("--profile", default="demo", help="smoke | demo (default)")
    common.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    common.add_argument("--quiet", action="store_true", help="no progress bars")
    sr = studies.add_parser("regime", parents=[common],
                            help="iterations x later-step lr x batch on validation generator seeds")
    sr.add_argument("--synth-seeds", default="1,2", help="validation generator seeds (default 1,2; never the reported)")
    sr.add_argument("--iters", default="120,480", help="iterations per domain step (multiples of train.epochs)")
    sr.add_argument("--later-lr", default="1,0.2,0.05", help="lr factor of steps after the first (train.later_lr)")
    sr.add_argument("--p-ids", default="8,16", help="identities per batch (train.p_ids)")
    sr.add_argument("--methods", default="", help="comma list (default: finetune,lwf,patchkd,joint)")
    sr.add_argument("--out", default="runs/study", help="study folder (default runs/study); resumable")
    sr.add_argument("--table-only", action="store_true", help="train nothing: tabulate the finished runs")
    sr.set_defaults(func=cmd_study)
    ss = studies.add_parser("sampler", parents=[common],
                            help="share of PatchKD's sampled cells on the person, per routing x gamma3")
    ss.add_argument("--routing", default="code,fig2", help="method.routing values (default code,fig2)")
    ss.add_argument("--gamma3", default="100,0", help="method.gamma3 values (default 100,0)")
    ss.add_argument("--out", default="runs/sampler", help="study folder (default runs/sampler); resumable")
    ss.set_defaults(func=cmd_sampler_study)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    before = os.environ.get("LREID_PROGRESS")
    if getattr(args, "quiet", False):
        os.environ["LREID_PROGRESS"] = "0"          # every bar of the command, the image decoding's included
    try:
        args.func(args)
    except LReIDError as exc:
        print(f"lreid: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lreid: interrupted", file=sys.stderr)
        return 130
    finally:
        if before is None:
            os.environ.pop("LREID_PROGRESS", None)
        else:
            os.environ["LREID_PROGRESS"] = before
    return 0


if __name__ == "__main__":
    sys.exit(main())
