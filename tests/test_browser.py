"""Notebooks as researchers use them: JupyterLab in headless Chromium, widgets driven like a person would.

nbval proves that every cell runs; this proves that the widgets work in JupyterLab. One JupyterLab server
(localhost, random token, free port, the python3 kernel of this interpreter, ``LREID_PROFILE=smoke`` (or
``$LREID_BROWSER_PROFILE``: ``demo`` reuses ``runs/demo``; its ``02_patch_sampler.png`` is ``docs/``'s) and a
temporary ``LREID_CACHE`` inherited by the kernels) serves a temporary copy of the notebooks; Playwright drives
the system Chromium (``/usr/bin/chromium``). For each notebook the test opens it, runs all cells from the Run
menu, waits until every code cell has an execution count and the kernel is idle, then acts as a person:

* ``02_patch_sampler``: the person-share table and its computed verdict are shown once; focuses the explorer's
  "image" slider handle and presses ArrowRight, then clicks the
  last "branch K" toggle; after each, the explorer's figure (the <img> in its output widget) must change.
* ``05_full_order_runs``: after Run All the report's rows must be the methods the picker shows; then it clicks
  one method in the "methods" list, picks the reversed order in the "order" dropdown, clicks Run: the status
  must show step / epoch / iteration progress with an ETA, and the page one "Table 2 report" for exactly that
  selection with three figures; saved, the file's PNG outputs must all name only that row; with the kernel shut
  down and the page reloaded (a notebook reopened another day), the report must still be shown as plain output.

No cell may show a traceback. Screenshots after the interaction go to ``tests/_artifacts/browser/``
(``$LREID_BROWSER_ARTIFACTS`` overrides; the paths are printed), with the JupyterLab log beside them. Every
wait is bounded by one budget (``$LREID_BROWSER_TIMEOUT`` seconds, default 600), and the server, its kernels
and the browser are shut down on every path. Where Chromium or Playwright is missing the test fails (it never
skips): ``.ci/run`` installs them.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

from browser_util import Browser, Deadline, JupyterLab, error_texts, open_notebook, prompts, run_all_cells, \
    save_notebook, settled_img, shutdown_kernel, wait_all_executed, wait_until

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PATCH_NB, RUNS_NB = "02_patch_sampler.ipynb", "05_full_order_runs.ipynb"
DEFAULT_ARTIFACTS = ROOT / "tests" / "_artifacts" / "browser"
ARTIFACTS = Path(os.environ.get("LREID_BROWSER_ARTIFACTS", DEFAULT_ARTIFACTS))
BUDGET_S = float(os.environ.get("LREID_BROWSER_TIMEOUT", "600"))   # the whole module, server start to shutdown
PROFILE = os.environ.get("LREID_BROWSER_PROFILE", "smoke")            # demo: the README's screenshot of notebook 02
WIDGET_S = 90                                                        # one widget change -> new figure


def n_cells(name: str) -> int:
    return len(json.loads((NOTEBOOKS / name).read_text())["cells"])


def shot(target, name: str) -> Path:
    """Screenshot of a page or an element into the artifacts folder; the path is printed for the reviewer."""
    path = ARTIFACTS / name
    target.screenshot(path=str(path))
    print(f"screenshot: {path}")
    return path


# ---- fixtures: one budget, one server, one browser for the module --------------------------------------
@pytest.fixture(scope="module")
def deadline() -> Deadline:
    return Deadline(BUDGET_S)


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    if ARTIFACTS == DEFAULT_ARTIFACTS:          # keep run outputs out of git without touching the repo's files
        ignore = DEFAULT_ARTIFACTS.parent / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# written by tests/test_browser.py: screenshots and logs of the last run\n*\n")
    for old in ARTIFACTS.glob("*.png"):         # only this run's screenshots
        old.unlink()
    return ARTIFACTS


@pytest.fixture(scope="module")
def lab(tmp_path_factory, deadline, artifacts):
    work = tmp_path_factory.mktemp("jupyterlab")
    cache = work / "lreid-cache"
    cache.mkdir()
    env = dict(os.environ, LREID_PROFILE=PROFILE, LREID_CACHE=str(cache))
    server = JupyterLab([NOTEBOOKS / PATCH_NB, NOTEBOOKS / RUNS_NB], work / "lab", env,
                        log_path=artifacts / "jupyterlab.log")
    try:
        server.start(timeout=deadline.cap(120))
        print(f"JupyterLab {server.base} serving a copy of the notebooks in {server.root}")
        spec = server.api("/api/kernelspecs")["kernelspecs"]["python3"]["spec"]
        assert spec["argv"][0] in ("python", "python3", sys.executable), \
            f"the python3 kernel would not run this interpreter ({sys.executable}): {spec['argv']}"
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory, deadline):
    chromium = Browser(tmp_path_factory.mktemp("chromium-profile"))
    try:
        problem = None
        try:
            context = chromium.start(timeout=deadline.cap(90))
        except RuntimeError as exc:
            problem = str(exc)
        if problem:                              # a failure, never a skip: CI must have a browser
            pytest.fail(f"headless Chromium could not be started for the browser test: {problem}", pytrace=False)
        context.set_default_timeout(30_000)
        yield context
    finally:
        chromium.stop()


@pytest.fixture
def page(browser, request):
    page = browser.new_page()
    failures = request.session.testsfailed
    try:
        yield page
    finally:
        if request.session.testsfailed > failures:      # the call failed: keep a picture of what went wrong
            try:
                shot(page, f"{request.node.name}-FAILED.png")
            except Exception:                           # noqa: BLE001 - the browser may be gone
                pass
        page.close()


def open_and_run_all(page, lab, name: str, deadline: Deadline) -> None:
    if deadline.left() <= 1:
        pytest.fail(f"{name}: the browser test's {BUDGET_S:.0f} s budget ($LREID_BROWSER_TIMEOUT) is spent",
                    pytrace=False)
    t0 = time.monotonic()
    open_notebook(page, lab, name, n_cells(name), deadline)
    page.keyboard.press("Control+b")             # hide the file browser: more room for the notebook
    run_all_cells(page)
    done = wait_all_executed(page, lab, name, timeout=deadline.cap(deadline.left()))
    print(f"{name}: ran all {len(done)} code cells in {time.monotonic() - t0:.0f} s")


def scroll_to_top(locator) -> None:
    """Scroll the notebook so that ``locator`` starts at the top of the visible area (for screenshots)."""
    locator.evaluate("e => e.scrollIntoView({block: 'start'})")
    time.sleep(0.3)


def assert_no_errors(page, name: str) -> None:
    errors = error_texts(page)
    assert not errors, f"{name}: an output shows an error:\n{errors[0][-3000:]}"


# ---- the tests -------------------------------------------------------------------------------------------
def test_patch_sampler_widgets_respond(browser, lab, page, deadline, artifacts):
    open_and_run_all(page, lab, PATCH_NB, deadline)
    assert_no_errors(page, PATCH_NB)
    cache = Path(lab.env["LREID_CACHE"])
    assert any(cache.iterdir()), f"the kernel did not use LREID_CACHE={cache} (the benchmark is not there)"
    share = page.locator(".jp-OutputArea-output", has_text=re.compile(r"picks a cell on the person in [\d.]+ %"))
    assert share.count() == 1, "02: the person-share table and its computed verdict are not shown once"
    assert "random cell" in share.first.inner_text() and "lift" in share.first.inner_text()

    label = lambda text: page.locator(".widget-label", has_text=re.compile(rf"^{re.escape(text)}$"))  # noqa: E731
    slider = page.locator(".widget-hslider", has=label("image"))
    assert slider.count() == 1, "02: the explorer's 'image' slider is not rendered (widgets did not load?)"
    cell = page.locator(".jp-CodeCell", has=slider)
    figure = cell.locator(".widget-output")
    handle = slider.locator('[role="slider"]')
    readout = slider.locator(".widget-readout")
    before = settled_img(figure, lab, PATCH_NB, deadline.cap(WIDGET_S))   # outputs of "Run All" all rendered
    assert before.startswith("data:image/png"), "02: the explorer shows no figure after running all cells"
    scroll_to_top(cell.locator(".jp-OutputArea").first)
    shot(cell.locator(".jp-OutputArea").first, "02_patch_sampler_explorer_before.png")

    # 1. the image slider, from the keyboard: focus the handle, ArrowRight -> the next identity
    before_value = readout.inner_text().strip()
    handle.focus()
    handle.press("ArrowRight")
    wait_until(lambda: readout.inner_text().strip() == str(int(before_value) + 1), deadline.cap(10),
               f"02: slider readout {before_value} -> {int(before_value) + 1}", interval=0.2)
    after_slider = settled_img(figure, lab, PATCH_NB, deadline.cap(WIDGET_S), differs_from=before)

    # 2. a branch toggle, with the mouse: hide the last branch -> its rectangle leaves the overlay. The last one,
    #    because rectangles are drawn in branch order: an earlier branch that picked the same cell as a later
    #    one is hidden under it, and switching it off changes no pixel (it happens in the smoke run).
    toggle = cell.locator("button.widget-toggle-button", has_text=re.compile(r"^branch \d+$")).last
    name = toggle.inner_text().strip()
    assert "mod-active" in (toggle.get_attribute("class") or ""), f"02: {name} should start shown"
    toggle.click()
    wait_until(lambda: "mod-active" not in (toggle.get_attribute("class") or ""), deadline.cap(10),
               f"02: the {name} toggle to switch off", interval=0.2)
    settled_img(figure, lab, PATCH_NB, deadline.cap(WIDGET_S), differs_from=after_slider)

    assert_no_errors(page, PATCH_NB)
    assert all(re.fullmatch(r"\[\d+\]:", p) for p in prompts(page))
    scroll_to_top(cell)
    shot(page, "02_patch_sampler.png")
    shot(cell.locator(".jp-OutputArea").first, "02_patch_sampler_explorer.png")


def report_rows(table) -> list[str]:
    """Table 2's method rows on the page (the chance row left out)."""
    return [r.strip() for r in table.locator("tbody tr td:first-child").all_inner_texts()
            if not r.strip().startswith("chance")]


def selected_methods(methods) -> list[str]:
    return methods.evaluate("s => [...s.selectedOptions].map(o => o.value)")


def saved_report(nb: dict) -> tuple[list[int], list[dict]]:
    """From a saved notebook: the cells whose outputs hold a Table 2, and every PNG output's ``lreid`` metadata."""
    tables, pngs = [], []
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "lreid-table2" in "".join(data.get("text/html", "")):
                tables.append(i)
            if "image/png" in data:
                pngs.append(out.get("metadata", {}).get("lreid", {}))
    return tables, pngs


def test_full_order_runs_report_follows_selection(browser, lab, page, deadline, artifacts):
    """05: after Run All the picker shows the report's methods; Run with another selection shows a report of
    exactly that selection (one Table 2 on the page, three figures, progress with an ETA while it trains); saved,
    closed and reopened without the kernel, the last report is still there as plain output."""
    open_and_run_all(page, lab, RUNS_NB, deadline)
    assert_no_errors(page, RUNS_NB)

    run_button = page.locator("button.lreid-run")
    assert run_button.count() == 1, "05: the Run button (class lreid-run) is not rendered (widgets did not load?)"
    explorer = page.locator(".jp-CodeCell", has=run_button)
    status = explorer.locator(".lreid-status")
    tables = page.locator("table.lreid-table2")                  # page-wide: each table exactly once
    images = page.locator(".jp-OutputArea-output img")          # page-wide: the report's three figures only
    methods = explorer.locator(".widget-select-multiple select")
    order = explorer.locator(".widget-dropdown", has=page.locator(".widget-label", has_text=re.compile("^order$")))

    # 1. after Run All: one Table 2, its rows = the methods the picker shows as selected, three figures
    assert tables.count() == 1, f"05: {tables.count()} Table 2s on the page after Run All"
    assert explorer.locator("table.lreid-table2").count() == 1, "05: the report is not under the controls"
    assert sorted(report_rows(tables.first)) == sorted(selected_methods(methods)), \
        (report_rows(tables.first), selected_methods(methods))
    assert images.count() == 3 and explorer.locator("img").count() == 3, f"05: {images.count()} figures"
    assert not any("<span" in t for t in page.locator(".jp-OutputArea-output").all_inner_texts()), \
        "05: raw HTML printed as text"
    before_order = tables.first.get_attribute("data-order")

    # 2. one method with a plain click (deselects the others), the reversed order, Run
    methods.scroll_into_view_if_needed()
    methods.locator("option", has_text=re.compile(r"^\s*finetune\s*$")).click()
    wait_until(lambda: selected_methods(methods) == ["finetune"], deadline.cap(10), "05: only finetune selected",
               interval=0.2)
    reversed_label = order.locator("option", has_text=re.compile(r"^reversed")).first.inner_text()
    order.locator("select").select_option(label=reversed_label)
    expected_order = "-".join(d.strip() for d in reversed_label.split(":", 1)[1].split("→"))  # its folder label
    status_before = status.inner_text()
    # every text the status takes, recorded in the page: a smoke run can train a step faster than a poll
    status.evaluate("el => { window.lreidStatus = []; new MutationObserver(() => window.lreidStatus.push("
                    "el.innerText)).observe(el, {subtree: true, childList: true, characterData: true}); }")
    run_button.click()
    seen: list[str] = []
    idle_polls = 0

    def run_finished():                          # "trained ..." or "error: ..."; a handler that died leaves
        nonlocal idle_polls                      # a progress line with an idle kernel (traceback in the log)
        text = status.inner_text()
        if text != status_before and (not seen or seen[-1] != text):
            seen.append(text)
        if text.startswith(("trained", "error")):
            return text
        idle_polls = idle_polls + 1 if lab.kernel_state(RUNS_NB) == "idle" else 0
        assert idle_polls < 10, f"05: the kernel is idle but Run never finished; status: {text!r}"
        return None

    wait_until(run_finished, deadline.cap(300), "05: the run started by the Run button to finish", interval=0.2)
    assert status.inner_text().startswith("trained finetune"), f"05: Run reported: {status.inner_text()}"
    seen += [t for t in page.evaluate("window.lreidStatus") if t not in seen]
    progress = [t for t in seen if "ETA" in t and "iteration" in t]
    assert progress, f"05: no step/epoch progress with an ETA while training; status lines seen: {seen}"
    print(f"05: {len(seen)} status lines while training, e.g. {progress[len(progress) // 2]!r}")
    wait_until(lambda: tables.count() == 1 and tables.first.get_attribute("data-order") != before_order,
               deadline.cap(30), "05: a new Table 2 in the report", interval=0.5)

    # 3. the report is exactly the selection: rows, order, figures, and the picker agrees
    table = tables.first
    if len(expected_order) <= 60:               # longer labels are shortened by the report
        assert table.get_attribute("data-order") == expected_order, (table.get_attribute("data-order"),
                                                                     reversed_label)
    assert report_rows(table) == ["finetune"], f"05: Table 2 rows after Run: {report_rows(table)}"
    assert selected_methods(methods) == ["finetune"]
    assert tables.count() == 1 and images.count() == 3, (tables.count(), images.count())
    assert_no_errors(page, RUNS_NB)
    report = explorer.locator(".lreid-report")
    scroll_to_top(explorer.locator(".jp-OutputArea").first)
    shot(page, "05_full_order_runs.png")                    # the controls as clicked, the status, Table 2
    scroll_to_top(report)
    shot(page, "05_full_order_runs_report.png")             # the report: Table 2 and its figures

    # 4. saved: the file holds one Table 2 and three figures, every one of the selected row only
    saved = save_notebook(page, lab, RUNS_NB, deadline.cap(30))
    table_cells, pngs = saved_report(saved)
    assert len(table_cells) == 1, f"05: the saved notebook holds Table 2 in cells {table_cells}"
    assert sorted(p.get("figure", "?") for p in pngs) == ["evolution", "forgetting", "matrices"], pngs
    assert all(p["rows"] == ["finetune"] for p in pngs), f"05: a figure of an unselected method: {pngs}"

    # 5. reopened another day: no kernel, the page loaded afresh; the last report is there as plain output
    shutdown_kernel(lab, RUNS_NB)
    page.reload()
    page.locator(".jp-NotebookPanel .jp-Notebook").first.wait_for(state="visible", timeout=deadline.cap(120) * 1000)
    wait_until(lambda: tables.count() == 1 and images.count() == 3, deadline.cap(60),
               "05: the saved report (one Table 2, three figures) after reopening", interval=0.5)
    assert report_rows(tables.first) == ["finetune"], report_rows(tables.first)
    cell = page.locator(".jp-CodeCell", has=page.locator("table.lreid-table2"))
    text = cell.locator(".jp-OutputArea").first.inner_text()
    assert "Table 2 report" in text and "What the numbers say" in text, text[:500]
    scroll_to_top(cell.locator(".jp-OutputArea").first)
    shot(page, "05_full_order_runs_reopened.png")
