"""The notebooks as a reader gets them: committed stripped, executed (smoke) with a PNG wherever a figure is drawn
and no widget views but the explorers' (no progress bars), and (``-m slow``) within budget in the default profile."""
import json
import time

import pytest

from lreid_core.notebooks_check import BUDGET_S, execute, figure_cells_without_png, notebook_paths

PATHS = notebook_paths()
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_committed_stripped(path):
    nb = json.loads(path.read_text())
    assert "widgets" not in nb["metadata"]
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c["outputs"] and c["execution_count"] is None for c in code)
    params = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1 and 'PROFILE = os.environ.get("LREID_PROFILE", "demo")' in "".join(params[0]["source"])


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_smoke_figures_are_images(path, tmp_path):
    nb, error = execute(path, "smoke", tmp_path)
    assert error is None, error
    assert figure_cells_without_png(nb) == []
    for cell in nb.cells:
        views = [o for o in cell.get("outputs", []) if WIDGET_VIEW in o.get("data", {})]
        assert not views or cell.source.strip().endswith("explorer"), (cell.source[:80], "widget output (progress bar?)")


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_default_profile_within_budget(path, tmp_path):
    t0 = time.perf_counter()
    nb, error = execute(path, "demo", tmp_path)
    wall = time.perf_counter() - t0
    assert error is None, error
    assert figure_cells_without_png(nb) == []
    assert wall <= BUDGET_S, f"{path.name}: {wall:.0f} s in the demo profile (budget {BUDGET_S} s)"
