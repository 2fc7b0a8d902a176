"""Notebook 05's widgets: choose methods and a domain order, run them, see the Table-2 report; reload run dirs.

Everything the buttons do is a method that code can call (nbval cannot click)::

    explorer = RunExplorer(profile="smoke", out=Path("/tmp/runs"))
    explorer.methods.value = ("finetune", "lwf")
    explorer.order.value = "default"              # or "reversed", "synth_order2", "order1", "order2", "custom"
    report = explorer.run()                       # = clicking Run: trains what is missing, writes the report
    again = explorer.load(explorer.run_dirs)      # = Load: rebuilds the report from the run dirs, no training
    explorer.export("tex")                        # = Export: Table 2 as LaTeX (best in bold, a chance row)

Run reuses every finished run of exactly the selected config (in ``out/<order>/<method>`` or, for the profile's
default order, in a ``reuse`` folder such as ``runs/demo``, what ``lreid demo`` writes) and trains only the missing
ones, with a progress bar, the step / epoch / iteration and an ETA in the widget. A folder that holds another run
is replaced only when ``overwrite`` is ticked; otherwise Run stops with one line naming it.

The report is a function of the selection: every selection writes to its own folder
(``out/<order>/report-<methods>``; Load: ``out/loaded/report-<methods>``) and the explorer shows exactly that
report's files, never a folder's other PNGs. After Run or Load the method picker (and the order, where it is one
of the choices) shows what the report holds. The report is not inside a widget: displaying the explorer shows the
controls and, below them, four plain outputs (Table 2 with forgetting and the computed conclusions as HTML, then
the forgetting, evolution and step x domain figures as PNG) that Run and Load update in place (IPython display
ids). A saved notebook keeps them, so the last report stays readable after reopening without a kernel; each PNG
output's metadata names its figure and rows (``{"lreid": {"figure": ..., "rows": [...]}}``).

CSS classes for a headless browser: ``lreid-run``, ``lreid-load``, ``lreid-export``, ``lreid-status``, the report's
``lreid-report`` and Table 2's ``lreid-table2`` (``data-order`` = the order's folder label).
"""
from __future__ import annotations

import base64
import copy
import html
import io
import math
import shutil
import time
from pathlib import Path
from typing import Any

from .config import ORDERS, Config, load_config
from .errors import LReIDError
from .export import FORMATS, export_table, to_html
from .io import atomic_write_text
from .methods import list_methods
from .report import OrderGroup, Report, _order_label, _slug, build_report
from .report_write import report_files, write_report
from .results import points

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


def _than(diff: float, ref: str, more: str = "more than", less: str = "less than", same: str = "as much as") -> str:
    """``diff`` against ``ref`` as "<|diff|> points more than / less than ref" (or "as much as ref"), so a sentence
    holds whichever way the results go."""
    if round(diff, 2) == 0:
        return f"{same} {ref} (within 0.01 points)"
    return f"{points(abs(diff))} points {more if diff > 0 else less} {ref}"


def conclusions(group: OrderGroup, baseline: str = "finetune") -> list[str]:
    """What one order's Table 2 says, computed from its rows (mAP, points): which lifelong method forgets least
    and by how much, each method against ``baseline``, the Seen-Avg vs Unseen-Avg gap per row, the best lifelong
    method on each average, and how far JointTrain (the upper bound) is from it."""
    lifelong = [r for r in group.rows if not r.joint]
    forget = {r.label: r.forgetting("mAP").mean for r in lifelong if not math.isnan(r.forgetting("mAP").mean)}
    lines = []
    if len(forget) > 1:
        lo, hi = min(forget, key=forget.get), max(forget, key=forget.get)
        head = "Forgetting (mAP points lost on earlier domains by the end of the order; negative: they improved): "
        if round(forget[hi] - forget[lo], 2) == 0:
            lines.append(head + f"all {len(forget)} lifelong methods forget the same ({points(forget[lo])}).")
        else:
            lines.append(head + f"{lo} forgets least ({points(forget[lo])}), {hi} most ({points(forget[hi])}), "
                         f"{points(forget[hi] - forget[lo])} points apart.")
        if baseline in forget:
            lines += [f"{label} forgets {_than(f - forget[baseline], baseline)}."
                      for label, f in forget.items() if label != baseline]
    elif forget:
        [(label, f)] = forget.items()
        lines.append(f"Forgetting (mAP points lost on earlier domains by the end of the order; negative: they "
                     f"improved): {label} {points(f)}.")
    seen = {r.label: r.value("Seen-Avg", "mAP").mean for r in group.rows}
    if group.unseen:
        unseen = {r.label: r.value("Unseen-Avg", "mAP").mean for r in group.rows}
        gaps = {label: seen[label] - unseen[label] for label in seen}
        above = sum(g > 0 for g in gaps.values())
        lines.append("Seen-Avg minus Unseen-Avg mAP: " + ", ".join(f"{k} {'+' if g >= 0 else '-'}{points(abs(g))}"
                                                                      for k, g in gaps.items())
                     + f" (the seen domains score higher for {above} of {len(gaps)} rows).")
    if lifelong:
        best_seen = max((r.label for r in lifelong), key=seen.get)
        text = f"Highest Seen-Avg mAP among the lifelong methods: {best_seen} ({points(seen[best_seen])})"
        if group.unseen:
            best_unseen = max((r.label for r in lifelong), key=unseen.get)
            text += f"; highest Unseen-Avg mAP: {best_unseen} ({points(unseen[best_unseen])})"
        lines.append(text + ".")
        for r in group.rows:
            if r.joint:
                gap = _than(seen[r.label] - seen[best_seen], best_seen, "above", "below", "level with")
                lines.append(f"{r.label} (all domains at once, the upper bound) reaches Seen-Avg mAP "
                             f"{points(seen[r.label])}, {gap}.")
    return lines


def _forgetting_html(group: OrderGroup) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("Method", "Forgetting mAP", "Forgetting R1", "BWT mAP", "BWT R1"))
    body = ""
    for r in group.rows:
        f = [r.forgetting(m) for m in ("mAP", "R1")]
        cells = [s.cell() for s in f] + ["-" if math.isnan(s.mean) else points(-s.mean) for s in f]
        body += f"<tr><td>{html.escape(r.label)}</td>" + "".join(
            f'<td style="text-align:right">{c}</td>' for c in cells) + "</tr>"
    return f'<table class="lreid-forgetting"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _stack_png(files: list[Path]) -> bytes:
    """PNG files one below the other (white background) as one PNG, so a slot holds a variable number of them."""
    from PIL import Image

    images = [Image.open(f).convert("RGB") for f in files]
    if len(images) == 1:
        return files[0].read_bytes()
    out = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), "white")
    y = 0
    for im in images:
        out.paste(im, (0, y))
        y += im.height
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()


SLOTS = ("table", "forgetting", "evolution", "matrices")   # the report's plain outputs under the controls


class RunExplorer:
    """Methods (SelectMultiple) x order (Dropdown) -> Run; run dirs (Textarea) -> Load; format -> Export; the
    report in four plain outputs below the controls."""

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
        self.export_format = w.Dropdown(options=[(name, key) for key, name in FORMATS.items()], value="md",
                                        description="export", layout=w.Layout(width="220px"))
        self.export_button = w.Button(description="Export", icon="download",
                                      tooltip="Table 2 with the best value per column in bold and a chance row")
        self.export_text = w.Textarea(layout=w.Layout(width="900px", height="0px", display="none"))
        self.bar = w.FloatProgress(value=0.0, min=0.0, max=1.0, description="progress",
                                   layout=w.Layout(width="640px", visibility="hidden"))
        self.status = w.HTML("")
        for widget, cls in ((self.run_button, "lreid-run"), (self.load_button, "lreid-load"),
                            (self.export_button, "lreid-export"), (self.status, "lreid-status"),
                            (self.bar, "lreid-progress"), (self.export_text, "lreid-export-text")):
            widget.add_class(cls)
        self.run_button.on_click(lambda _: self._guard(self.run))
        self.load_button.on_click(lambda _: self._guard(self.load))
        self.export_button.on_click(lambda _: self._guard(self.export))
        self.report: Report | None = None
        self.report_dir: Path | None = None         # the folder the shown report was written to
        self.run_dirs: list[Path] = []
        self.status_text = ""                        # the status line as plain text
        self._chance: dict[tuple, dict | None] = {}
        self._slots: dict[str, Any] = {}             # IPython display handles, made when the explorer is shown
        self.defaults = [(x, x.value) for x in (self.methods, self.order, self.custom_order, self.overwrite, self.dirs)]
        self.widget = w.VBox([w.HBox([self.methods, w.VBox([self.order, self.custom_order,
                                                            w.HBox([self.run_button, self.overwrite])])]),
                              w.HBox([self.dirs, self.load_button]),
                              w.HBox([self.export_format, self.export_button]), self.bar, self.status,
                              self.export_text])

    def _ipython_display_(self) -> None:
        """The controls (a widget, with a one-line text fallback for a notebook reopened without its kernel),
        then the report's four plain outputs."""
        from IPython.display import display

        bundle = self.widget._repr_mimebundle_()
        bundle["text/plain"] = ("RunExplorer controls (live with a running kernel; the last report is below as "
                                "plain output)")
        display(bundle, raw=True)
        self._slots = {}
        for kind in SLOTS:
            data, meta = self._slot(kind)
            self._slots[kind] = display(data, metadata=meta, raw=True, display_id=True)

    def reset(self) -> None:
        """Every control back to its default; the selection then shows the methods and order of the report on
        screen, if there is one (the output keeps the last report)."""
        for widget, value in self.defaults:
            widget.value = value
        if self.report is not None:
            self._select(self.report)

    def _guard(self, action) -> None:
        """Button handlers: a bad input shows as one red line instead of a traceback."""
        try:
            action()
        except LReIDError as exc:
            self.bar.layout.visibility = "hidden"
            self._say(f"error: {exc}", error=True)

    def _say(self, text: str, error: bool = False) -> None:
        color = "#b00020" if error else "#333"
        self.status_text = text
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

    def _select(self, report: Report) -> None:
        """The picker shows the report: its registered methods and (one order among the choices) its order."""
        shown = [r.method for g in report.groups for r in g.rows]
        self.methods.value = tuple(m for m in self.methods.options if m in shown)
        if len(report.groups) == 1:
            key = next((k for k, (_, o) in self.choices.items() if o == report.groups[0].order), None)
            if key is not None:
                self.order.value = key

    # ---- actions -------------------------------------------------------------------------------------
    def finished_dir(self, method: str, order: list[str], cfg) -> Path | None:
        """The first folder holding a finished run of ``cfg`` for ``method`` on ``order``: ``out/<order>/<method>``,
        then (for the default order) ``<reuse folder>/<method>``; None when there is none."""
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
        trained into ``out/<order>/<method>``; then the report, written to this selection's own folder and shown.
        A folder holding another run is replaced only with ``overwrite`` ticked."""
        from .data.benchmark import build_benchmark
        from .results import holds_run

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
        if todo:
            dirs.update(self._train(todo, cfgs, build_benchmark(cfgs[methods[0]]), order))
        self.run_dirs = [dirs[m] for m in methods]
        self.dirs.value = "\n".join(str(d) for d in self.run_dirs)
        report = build_report(self.run_dirs)
        self.show(report, folder / ("report-" + _slug("-".join(r.method for r in report.groups[0].rows))))
        trained, reused = [m for m, _ in todo], [m for m in methods if m not in dict(todo)]
        done = "; ".join(part for part in (f"trained {', '.join(trained)}" if trained else "",
                                           f"reused the finished runs of {', '.join(reused)}" if reused else "") if part)
        self._say(f"{done}; report: {self.report_dir / 'report.md'}")
        return report

    def _train(self, todo: list[tuple[str, Path]], cfgs: dict[str, Config], bench, order: list[str]) -> dict:
        """Train the missing runs one after another; the bar and the status line follow every iteration (step,
        epoch, iteration, share of all runs and an ETA from the time so far), at most twice a second, and always at
        a step's first iteration and its end, so even a run shorter than the interval shows its progress."""
        from .train import Trainer, step_epochs

        t0, shown, dirs = time.perf_counter(), [0.0], {}
        for k, (m, run_dir) in enumerate(todo):
            if run_dir.exists():
                shutil.rmtree(run_dir)                                   # overwrite ticked (checked in run())
            self.bar.layout.visibility = "visible"
            self._say(f"{m} ({k + 1}/{len(todo)}): decoding the images ...")
            trainer = Trainer(cfgs[m], m, bench, run_dir, progress=False)
            steps, joint = trainer.steps(), len(bench.train) if trainer.method.joint else 0

            def progress(step: int, done: int, total: int, m=m, k=k, steps=steps, joint=joint) -> None:
                now = time.perf_counter()
                if now - shown[0] < 0.5 and 1 < done < total:
                    return
                shown[0] = now
                share = (k + (step + done / total) / len(steps)) / len(todo)
                left = (now - t0) * (1 - share) / max(share, 1e-9)
                self.bar.value = share
                epochs = step_epochs(cfgs[m], step, joint)      # the Trainer's epochs (iters_per_epoch may be 0)
                what = "evaluating" if done == total else \
                    f"epoch {(done - 1) * epochs // total + 1}/{epochs}, iteration {done}/{total}"
                self._say(f"{m} ({k + 1}/{len(todo)}): step {step + 1}/{len(steps)} ({steps[step].domain}), {what}; "
                          f"{share:.0%} of the runs, {now - t0:.0f} s so far, ETA {left:.0f} s")

            trainer.on_progress = progress
            trainer.fit()
            dirs[m] = run_dir
        self.bar.value, self.bar.layout.visibility = 1.0, "hidden"
        return dirs

    def load(self, dirs: list[str | Path] | None = None) -> Report:
        """Rebuild the report from existing run directories (default: the text box), without training; it is
        written to ``out/loaded/report-<methods>``."""
        if dirs is None:
            dirs = [line.strip() for line in self.dirs.value.splitlines() if line.strip()]
        else:
            self.dirs.value = "\n".join(str(d) for d in dirs)
        report = build_report(list(dirs))
        methods = dict.fromkeys(r.method for g in report.groups for r in g.rows)
        self.show(report, self.out / "loaded" / ("report-" + _slug("-".join(methods))))
        self._say(f"loaded {len(report.runs)} run directories; report: {self.report_dir / 'report.md'}")
        return report

    def chance(self, group: OrderGroup) -> dict[str, dict[str, float]] | None:
        """Random-ranking mAP / R1 of the group's test sets (this profile's data), or None where they cannot be
        built (e.g. runs of another profile's domains)."""
        from .data.benchmark import build_benchmark
        from .evaluate import chance_levels

        key = (tuple(group.order), tuple(group.unseen))
        if key not in self._chance:
            try:
                levels = chance_levels(build_benchmark(self.config_for(group.rows[0].method, group.order)))
            except LReIDError:
                levels = None
            if levels is not None and not set(group.order + group.unseen) <= set(levels):
                levels = None
            self._chance[key] = levels
        return self._chance[key]

    def export(self, fmt: str | None = None) -> list[Path]:
        """Table 2 of the shown report in ``fmt`` (default: the dropdown's; ``csv``, ``md``, ``tex``), best value
        per column in bold and a chance row, written as ``export_<order>.<fmt>`` beside the report and shown in
        a text box to copy from."""
        fmt = fmt or self.export_format.value
        if self.report is None or self.report_dir is None:
            raise LReIDError("nothing to export yet: press Run or Load first")
        paths, texts = [], []
        for g in self.report.groups:
            texts.append(export_table(g, fmt, self.chance(g)))
            paths.append(self.report_dir / f"export_{g.label}.{fmt}")
            atomic_write_text(paths[-1], texts[-1])
        self.export_text.value = "\n".join(texts)
        self.export_text.layout.height, self.export_text.layout.display = "160px", None
        self._say(f"exported Table 2 as {FORMATS[fmt]}: {', '.join(map(str, paths))}")
        return paths

    # ---- display -------------------------------------------------------------------------------------
    def figures(self, report: Report | None = None) -> dict[str, list[Path]]:
        """The shown report's PNG files by slot: ``forgetting``, ``evolution`` (one per order) and ``matrices``
        (one per row and order), exactly the files ``write_report`` wrote for it."""
        report = report or self.report
        files = [self.report_dir / f for f in report_files(report) if f.suffix == ".png"]
        return {"forgetting": [f for f in files if f.stem.endswith("_forgetting")],
                "evolution": [f for f in files if f.stem.endswith("_evolution")],
                "matrices": [f for f in files if "_matrix_" in f.stem]}

    def html(self, report: Report | None = None) -> str:
        """Table 2 (best in bold, chance row), forgetting and the computed conclusions of every order."""
        report = report or self.report
        parts = ["<h3>Table 2 report</h3>",
                 "<p>mAP / R1 in % after the last step (best lifelong value per column in bold); mean ± sample std "
                 "(ddof=1) over seeds where a row has several runs. Forgetting = mean drop of every earlier domain "
                 "from just after its own step to the end (= -BWT), in points.</p>"]
        for g in report.groups:
            items = "".join(f"<li>{html.escape(line)}</li>" for line in conclusions(g))
            parts.append(f"<h4>{html.escape(g.title())}</h4>{to_html(g, self.chance(g))}"
                         f"<h4>Forgetting / backward transfer</h4>{_forgetting_html(g)}"
                         f'<h4>What the numbers say</h4><ul class="lreid-conclusions">{items}</ul>')
        if self.report_dir is not None:
            parts.append(f"<p>Written to <code>{html.escape(str(self.report_dir))}</code> (report.md, CSVs, PNGs); "
                         f"figures below: forgetting, evolution, step x domain matrices.</p>")
        return '<div class="lreid-report">' + "".join(parts) + "</div>"

    def _slot(self, kind: str) -> tuple[dict, dict]:
        """One plain output of the report (data, metadata); a placeholder before the first report."""
        if self.report is None:
            text = "No report yet: press Run (trains what is missing) or Load." if kind == "table" else ""
            return {"text/plain": text}, {}
        if kind == "table":
            return {"text/html": self.html(), "text/plain": self.report.text()}, {}
        files = self.figures()[kind]
        rows = [r.label for g in self.report.groups for r in g.rows]
        png = base64.b64encode(_stack_png(files)).decode()
        return ({"image/png": png, "text/plain": f"<{kind} figure of {', '.join(rows)}>"},
                {"lreid": {"figure": kind, "rows": rows}})

    def show(self, report: Report, folder: Path) -> None:
        """Write ``report`` to ``folder`` (its own: one per selection) and put it in the four outputs."""
        write_report(report, folder)
        self.report, self.report_dir = report, folder
        self._select(report)
        self.export_text.value, self.export_text.layout.display = "", "none"
        for kind, handle in self._slots.items():
            data, meta = self._slot(kind)
            handle.update(data, metadata=meta, raw=True)
