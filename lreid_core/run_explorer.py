"""Notebook 05's widgets: choose methods and a domain order, run them, see the Table-2 report; reload run dirs.

Everything the buttons do is a method that code can call (nbval cannot click)::

    explorer = RunExplorer(profile="smoke", out=Path("/tmp/runs"))
    explorer.methods.value = ("finetune", "lwf")
    explorer.order.value = "default"              # or "reversed", "synth_order2", "order1", "order2", "custom"
    report = explorer.run()                       # = clicking Run: trains what is missing, writes the report
    again = explorer.load(explorer.run_dirs)      # = Load: rebuilds the report from the run dirs, no training

Run reuses every finished run of exactly the selected config (in ``out/<order>/<method>`` or, for the profile's
default order, in a ``reuse`` folder such as ``runs/demo``, what ``lreid demo`` writes) and trains only the missing
ones. A folder that holds another run is replaced only when ``overwrite`` is ticked; otherwise Run stops with one
line naming it. ``existing_runs()`` lists the finished runs a notebook can show before anything is trained.

The output area carries the CSS class ``lreid-output`` and the report starts with a "Table 2 report" heading
(table class ``lreid-table2``), so a headless browser can check for it after clicking Run.
"""
from __future__ import annotations

import copy
import html
import shutil
import time
from pathlib import Path
from typing import Any

from .config import ORDERS, Config, load_config
from .errors import LReIDError
from .methods import list_methods
from .report import Report, build_report, evolution_figure, forgetting_figure, matrix_figure, write_report

DEFAULT_METHODS = ("finetune", "lwf")


def order_choices(cfg: Config) -> dict[str, tuple[str, list[str]]]:
    """Dropdown entries ``key -> (label, domain list)``: the profile's order, variants of it, order-1/2."""
    default = list(cfg.data.order)
    choices = {"default": (f"profile default: {' → '.join(default)}", default),
               "reversed": (f"reversed: {' → '.join(default[::-1])}", default[::-1])}
    o1, o2 = ORDERS["order1"], ORDERS["order2"]
    if len(default) == len(o1) and default != o1:        # order-2's permutation of order-1, on these domains
        perm = [default[o1.index(d)] for d in o2]
        choices["synth_order2"] = (f"order-2 pattern: {' → '.join(perm)}", perm)
    data = "" if not cfg.data.synthetic else " (real datasets: data.synthetic=false + data.root)"
    choices["order1"] = (f"order1{data}: {' → '.join(o1)}", list(o1))
    choices["order2"] = (f"order2{data}: {' → '.join(o2)}", list(o2))
    choices["custom"] = ("custom (comma list below)", [])
    return choices


class RunExplorer:
    """Methods (SelectMultiple) x order (Dropdown) -> Run; run dirs (Textarea) -> Load; report in ``output``."""

    def __init__(self, profile: str = "demo", out: str | Path = "runs/05_full_order",
                 overrides: dict[str, Any] | None = None, methods: tuple[str, ...] = DEFAULT_METHODS,
                 reuse: list[str | Path] = ()):
        import ipywidgets as w

        self.profile, self.out = profile, Path(out)
        self.reuse = [Path(p) for p in reuse]       # folders of <method> runs on the profile's default order
        self.overrides = copy.deepcopy(overrides or {})
        self.base = load_config(profile_name=profile, overrides=self.overrides)     # validate up front
        self.choices = order_choices(self.base)
        available = list_methods()
        self.methods = w.SelectMultiple(options=available, value=tuple(m for m in methods if m in available),
                                        description="methods", rows=min(8, len(available)))
        self.order = w.Dropdown(options=[(label, key) for key, (label, _) in self.choices.items()], value="default",
                                description="order", layout=w.Layout(width="640px"))
        self.custom_order = w.Text(placeholder="domain_a,domain_b,...", description="custom")
        self.overwrite = w.Checkbox(False, description="overwrite", indent=False,
                                    tooltip="replace run folders that hold a different or unfinished run")
        self.run_button = w.Button(description="Run", button_style="primary", icon="play")
        self.dirs = w.Textarea(placeholder="one run directory per line (or a folder of them)", description="run dirs",
                               layout=w.Layout(width="640px", height="90px"))
        self.load_button = w.Button(description="Load", icon="folder-open")
        self.status = w.HTML("")
        self.output = w.Output()
        for widget, cls in ((self.run_button, "lreid-run"), (self.load_button, "lreid-load"),
                            (self.output, "lreid-output"), (self.status, "lreid-status")):
            widget.add_class(cls)
        self.run_button.on_click(lambda _: self._guard(self.run))
        self.load_button.on_click(lambda _: self._guard(self.load))
        self.report: Report | None = None
        self.run_dirs: list[Path] = []
        self.defaults = [(x, x.value) for x in (self.methods, self.order, self.custom_order, self.overwrite, self.dirs)]
        self.widget = w.VBox([w.HBox([self.methods, w.VBox([self.order, self.custom_order,
                                                            w.HBox([self.run_button, self.overwrite])])]),
                              w.HBox([self.dirs, self.load_button]), self.status, self.output])

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def reset(self) -> None:
        """Every control back to its default (the output area keeps the last report)."""
        for widget, value in self.defaults:
            widget.value = value

    def _guard(self, action) -> None:
        """Button handlers: a bad input shows as one red line instead of a traceback."""
        try:
            action()
        except LReIDError as exc:
            self._say(f"error: {exc}", error=True)

    def _say(self, text: str, error: bool = False) -> None:
        color = "#b00020" if error else "#333"
        self.status.value = f'<span style="color:{color}">{html.escape(text)}</span>'

    # ---- what the widgets select ---------------------------------------------------------------------
    def selected_order(self) -> list[str]:
        if self.order.value == "custom":
            order = [d.strip() for d in self.custom_order.value.split(",") if d.strip()]
            if not order:
                raise LReIDError("custom order: give a comma list of domain names")
            return order
        return list(self.choices[self.order.value][1])

    def config_for(self, method: str, order: list[str]) -> Config:
        over = copy.deepcopy(self.overrides)
        over.setdefault("method", {})["name"] = method
        over.setdefault("data", {})["order"] = order
        return load_config(profile_name=self.profile, overrides=over)

    # ---- actions -------------------------------------------------------------------------------------
    def finished_dir(self, method: str, order: list[str], cfg) -> Path | None:
        """The first folder holding a finished run of ``cfg`` for ``method`` on ``order``: ``out/<order>/<method>``,
        then (for the default order) ``<reuse folder>/<method>``; None when there is none."""
        from .report import _order_label
        from .results import finished_run

        found = [self.out / _order_label(order) / method]
        if order == self.choices["default"][1]:
            found += [folder / method for folder in self.reuse]
        return next((d for d in found if finished_run(d, cfg) is not None), None)

    def existing_runs(self, order: list[str] | None = None) -> dict[str, Path]:
        """``{method: run dir}`` of every registered method with a finished run of this config on ``order``
        (default: the profile's), nothing trained."""
        order = list(order or self.choices["default"][1])
        found = {}
        for m in self.methods.options:
            hit = self.finished_dir(m, order, self.config_for(m, order))
            if hit is not None:
                found[m] = hit
        return found

    def run(self) -> Report:
        """Every selected method on the selected order: its finished run of this config when there is one, else
        trained into ``out/<order>/<method>``; then the report, written next to them and shown. A folder holding
        another run is replaced only with ``overwrite`` ticked."""
        from .data.benchmark import build_benchmark
        from .report import _order_label
        from .results import holds_run
        from .train import Trainer

        methods, order = list(self.methods.value), self.selected_order()
        if not methods:
            raise LReIDError("select at least one method")
        cfgs = {m: self.config_for(m, order) for m in methods}          # validate everything before training
        folder = self.out / _order_label(order)
        dirs, todo = {}, []
        for m in methods:
            hit = self.finished_dir(m, order, cfgs[m])
            if hit is not None and not self.overwrite.value:
                dirs[m] = hit
                continue
            run_dir = folder / m
            if run_dir.exists():
                if not holds_run(run_dir):
                    raise LReIDError(f"{run_dir} exists and is not a run directory; not replacing it")
                if not self.overwrite.value:
                    raise LReIDError(f"{run_dir} holds another (or an unfinished) run of {m}; tick overwrite to "
                                     f"replace it")
            todo.append((m, run_dir))
        bench = build_benchmark(cfgs[methods[0]]) if todo else None
        for m, run_dir in todo:
            if run_dir.exists():
                shutil.rmtree(run_dir)                                   # overwrite ticked (checked above)
            self._say(f"training {m} on {' → '.join(order)} ({self.profile}) ...")
            t0 = time.perf_counter()
            Trainer(cfgs[m], m, bench, run_dir, progress=False).fit()
            self._say(f"{m}: done in {time.perf_counter() - t0:.0f} s")
            dirs[m] = run_dir
        self.run_dirs = [dirs[m] for m in methods]
        self.dirs.value = "\n".join(str(d) for d in self.run_dirs)
        report = build_report(self.run_dirs)
        md = write_report(report, folder / "report")
        self.show(report, figures_dir=md.parent)
        trained, reused = [m for m, _ in todo], [m for m in methods if m not in dict(todo)]
        done = "; ".join(part for part in (f"trained {', '.join(trained)}" if trained else "",
                                           f"reused the finished runs of {', '.join(reused)}" if reused else "") if part)
        self._say(f"{done}; report: {md}")
        return report

    def load(self, dirs: list[str | Path] | None = None) -> Report:
        """Rebuild the report from existing run directories (default: the text box), without training."""
        if dirs is None:
            dirs = [line.strip() for line in self.dirs.value.splitlines() if line.strip()]
        else:
            self.dirs.value = "\n".join(str(d) for d in dirs)
        report = build_report(list(dirs))
        self.show(report)
        self._say(f"loaded {len(report.runs)} run directories")
        return report

    # ---- display -------------------------------------------------------------------------------------
    def figures(self, report: Report | None = None) -> dict[str, Any]:
        """The report's figures as matplotlib Figures: ``{group}/evolution``, ``/forgetting``, ``/matrix <row>``."""
        report = report or self.report
        figs: dict[str, Any] = {}
        for g in report.groups:
            figs[f"{g.label}/evolution"] = evolution_figure(g)
            figs[f"{g.label}/forgetting"] = forgetting_figure(g)
            for r in g.rows:
                figs[f"{g.label}/matrix {r.label}"] = matrix_figure(r, g)
        return figs

    def show(self, report: Report, figures_dir: Path | None = None) -> None:
        """Table 2 (HTML) and the figures in the output area: the written PNGs when given, else drawn anew."""
        from IPython.display import HTML, Image, display

        self.report = report
        self.output.clear_output()
        with self.output:
            display(HTML(report.html()))
            if figures_dir is not None:
                for png in sorted((figures_dir / "figures").glob("*.png")):
                    display(Image(filename=str(png)))
            else:
                for fig in self.figures(report).values():
                    display(fig)
