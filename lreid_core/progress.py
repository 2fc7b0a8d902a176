"""One process-wide switch for progress bars: ``$LREID_PROGRESS=0`` turns every bar of the package off.

Notebooks switch it off (``lreid_core.notebook.setup``): a tqdm bar in a notebook is an ipywidget, and a saved
notebook reopened without its widget state shows "Error displaying widget: model not found" for each of them.
"""
from __future__ import annotations

import os


def enabled() -> bool:
    """Whether progress bars are shown (read at every call, so a notebook can switch them off at any time)."""
    return os.environ.get("LREID_PROGRESS", "1") != "0"
