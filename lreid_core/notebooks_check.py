"""Execute the notebooks as a researcher opens them and print each one's wall time.

    python -m lreid_core.notebooks_check                    # all five, default (demo) profile
    python -m lreid_core.notebooks_check --profile smoke 02 05

Each notebook runs in a fresh kernel with its folder as working directory and ``LREID_PROFILE`` set; the
executed copies go to ``--out`` (default: a temporary folder) so the committed notebooks stay stripped. A cell that
fails stops that notebook; the exit status is 1 if any failed. The kernels' temporary files (the smoke profile's
run folders, 05's reports) go to one scratch folder removed at the end. ``figure_cells_without_png`` is what the
tests use to check that every cell that draws a figure left a PNG.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
BUDGET_S = 300                    # per notebook, default profile, 2 cores, warm cache and demo runs
DRAWS = ("plt.show()", "display(fig", "last_figure", "cell_histograms(")   # source markers of a drawn figure


def notebook_paths(names: list[str] | None = None) -> list[Path]:
    """The notebooks whose file name starts with one of ``names`` (all of them by default), in order."""
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    return [p for p in paths if not names or any(p.name.startswith(n) for n in names)]


def execute(path: Path, profile: str, out: Path, timeout: int = 1800):
    """Run one notebook in a fresh kernel (``profile`` via ``LREID_PROFILE``); returns (executed notebook, error or
    None). The executed copy is written to ``out / path.name``."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    nb = nbformat.read(path, as_version=4)
    before = os.environ.get("LREID_PROFILE")
    os.environ["LREID_PROFILE"] = profile                # the kernel inherits the environment
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    error = None
    try:
        client.execute()
    except CellExecutionError as exc:
        error = str(exc).strip().splitlines()[-1]
    except DeadKernelError:
        error = "the kernel died"
    finally:
        if before is None:
            os.environ.pop("LREID_PROFILE")
        else:
            os.environ["LREID_PROFILE"] = before
    out.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out / path.name)
    return nb, error


def figure_cells_without_png(nb) -> list[int]:
    """Indices of executed code cells whose source draws a figure but whose outputs hold no ``image/png``."""
    missing = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or not any(m in cell.source for m in DRAWS):
            continue
        if not any("image/png" in o.get("data", {}) for o in cell.get("outputs", [])):
            missing.append(i)
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook name prefixes (default: all), e.g. 01 05")
    parser.add_argument("--profile", default="demo", help="smoke | demo (default) | paper")
    parser.add_argument("--out", default=None, help="folder for the executed copies (default: a temporary one)")
    args = parser.parse_args(argv)
    if unmatched := [n for n in args.names if not notebook_paths([n])]:
        valid = ", ".join(p.name for p in notebook_paths())
        print(f"notebooks_check: error: no notebook name starts with {unmatched[0]!r}; notebooks: {valid}",
              file=sys.stderr)
        return 2
    if args.profile not in ("smoke", "demo", "paper"):
        print(f"notebooks_check: error: unknown profile {args.profile!r}; valid profiles: smoke, demo, paper",
              file=sys.stderr)
        return 2
    out = Path(args.out or tempfile.mkdtemp(prefix="lreid-notebooks-"))
    failed = False
    before = os.environ.get("TMPDIR")
    with tempfile.TemporaryDirectory(prefix="lreid-kernels-") as scratch:
        os.environ["TMPDIR"] = scratch       # the kernels' temporary files (smoke runs, reports) go with it
        try:
            for path in notebook_paths(args.names):
                t0 = time.perf_counter()
                nb, error = execute(path, args.profile, out)
                wall = time.perf_counter() - t0
                no_png = figure_cells_without_png(nb)
                verdict = "FAILED: " + error if error else (f"figures without PNG in cells {no_png}" if no_png else "ok")
                over = " (over the budget)" if args.profile == "demo" and wall > BUDGET_S else ""
                print(f"{path.name:34s} {wall:7.0f} s{over}  {verdict}", flush=True)
                failed |= bool(error or no_png)
        finally:
            if before is None:
                os.environ.pop("TMPDIR")
            else:
                os.environ["TMPDIR"] = before
    print(f"executed copies: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
