"""ipywidgets explorers used by the notebooks.

Every explorer draws its figure as a function of the widget values through observers, so code can drive it
(``explorer.slider.value = 3``, e.g. under nbval) exactly like a person in JupyterLab, and it keeps the last
rendered figure and array (``last_figure``, ``last_array``) so notebooks can assert on what was drawn.
"""
from __future__ import annotations

from pathlib import Path

import ipywidgets as widgets
import matplotlib.colors as mcolors
import numpy as np
import torch
from IPython.display import clear_output, display
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .checkpoints import load_checkpoint, step_paths
from .config import Config
from .data.augment import normalize
from .data.benchmark import Benchmark
from .data.cache import load_images
from .methods import Method
from .results import stored_config
from .viz import branch_colors, overlay_array, score_maps


def step_checkpoints(run_dir: str | Path) -> dict[str, Path]:
    """``{"after step N": path}`` for the step checkpoints of a Trainer run directory, in step order."""
    return {f"after step {int(f.stem[4:])}": f for f in step_paths(run_dir)}


class PatchExplorer:
    """Which grid cells the PatchKD sampler picks, per image, domain, training step and sampling mode.

    Controls: ``slider`` (image / identity), ``domain``, ``step`` (loads that step's checkpoint), ``branches``
    (one toggle per sampler branch), ``mode`` (argmax or Gumbel sampling, Eq. 5), ``tau`` (Gumbel temperature of
    the shown probabilities softmax(s / tau)) and ``seed`` (the Gumbel noise draw). After every change it
    re-renders: ``last_array`` is the overlay image (H, W, 3) uint8, ``last_masks`` the (K, h*w) masks,
    ``last_figure`` the matplotlib figure (overlay + one score map per branch). A control that cannot change
    what is drawn says so: the noise seed and tau are disabled in argmax mode (the maps show softmax(s) there),
    and ``note`` names the branches whose cell coincides with another branch's (their rectangles are nested). The
    maps' colour scale is fixed per domain, checkpoint and tau (the largest probability over the domain's shown
    images), so moving the image slider compares images on one scale. ``reset()`` puts every control back to its
    default.

    Example::

        explorer = PatchExplorer(run_dir, bench)
        explorer            # shows the controls and the figure in JupyterLab
        explorer.slider.value = 3
    """

    def __init__(self, run_dir: str | Path, bench: Benchmark, cfg: Config | None = None, n_images: int = 12,
                 display_size: tuple[int, int] = (256, 128)):
        self.checkpoints = step_checkpoints(run_dir)
        if not self.checkpoints:
            raise FileNotFoundError(f"no step checkpoints under {Path(run_dir) / 'checkpoints'}")
        if cfg is None:
            cfg = stored_config(run_dir)
        self.cfg, self.bench, self.display_size = cfg, bench, display_size
        self.tests = {t.domain: t for t in bench.seen + bench.unseen}
        self._methods: dict[str, Method] = {}
        self._images: dict[str, tuple[torch.Tensor, torch.Tensor, list[int]]] = {}
        self._vmax: dict[tuple[str, str, float], float] = {}
        ids = min(len({r.pid for r in t.query}) for t in self.tests.values())
        self.n_images = max(1, min(n_images, ids))                    # every domain has this many identities
        k = cfg.method.k
        self.slider = widgets.IntSlider(0, 0, self.n_images - 1, description="image")
        self.domain = widgets.Dropdown(options=list(self.tests), value=bench.order[0], description="domain")
        self.step = widgets.Dropdown(options=list(self.checkpoints), value=list(self.checkpoints)[-1],
                                     description="checkpoint")
        colors = [mcolors.to_hex(c) for c in branch_colors(k)]
        self.branches = [widgets.ToggleButton(True, description=f"branch {r + 1}", style={"text_color": colors[r]},
                                              layout=widgets.Layout(width="90px")) for r in range(k)]
        self.mode = widgets.ToggleButtons(options=["argmax", "gumbel"], value="argmax", description="sampling")
        self.tau = widgets.FloatLogSlider(1.0, base=10, min=-1, max=1, step=0.05, description="Gumbel tau",
                                          disabled=True)
        self.seed = widgets.IntSlider(0, 0, 99, description="noise seed", disabled=True,
                                      tooltip="the Gumbel noise draw (gumbel mode only)")
        self.note = widgets.HTML("")
        self.out = widgets.Output()
        self.defaults = [(w, w.value) for w in self.controls()]
        self.last_array: np.ndarray | None = None
        self.last_masks: torch.Tensor | None = None
        self.last_figure: Figure | None = None
        for w in self.controls():
            w.observe(self._changed, names="value")
        self.render()

    # ---- widgets -----------------------------------------------------------------------------------
    def controls(self) -> list[widgets.Widget]:
        return [self.slider, self.domain, self.step, *self.branches, self.mode, self.tau, self.seed]

    @property
    def widget(self) -> widgets.Widget:
        return widgets.VBox([widgets.HBox([self.domain, self.step]), self.slider, widgets.HBox(self.branches),
                             widgets.HBox([self.mode, self.tau, self.seed]), self.note, self.out])

    def _ipython_display_(self) -> None:
        display(self.widget)

    def _changed(self, _change) -> None:
        self.render()

    def reset(self) -> None:
        """Every control back to its default (one render at the end)."""
        for w, value in self.defaults:
            w.unobserve(self._changed, names="value")
            w.value = value
            w.observe(self._changed, names="value")
        self.render()

    def explain(self, masks: torch.Tensor) -> str:
        """Why some controls cannot change the figure now (empty when all can)."""
        notes = []
        if self.mode.value == "argmax":
            notes.append("noise seed and tau: argmax mode draws no noise and shows softmax(s) (switch sampling to "
                         "gumbel)")
        cells = masks.argmax(-1).tolist()
        for r, cell in enumerate(cells):
            first = cells.index(cell)
            if first < r:
                notes.append(f"branch {r + 1} picks the same cell as branch {first + 1} (nested rectangles)")
        return "; ".join(notes)

    # ---- data --------------------------------------------------------------------------------------
    def method(self, step: str) -> Method:
        """The method restored from the checkpoint named ``step`` (cached)."""
        if step not in self._methods:
            self._methods[step] = load_checkpoint(self.checkpoints[step], self.cfg)
        return self._methods[step]

    def images(self, domain: str) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
        """(model-size uint8, display-size uint8, pids): one query image per identity of ``domain``."""
        if domain not in self._images:
            seen: dict[int, str] = {}
            for r in self.tests[domain].query:
                seen.setdefault(r.pid, r.path)
            pids = list(seen)[: self.n_images]
            paths = [seen[p] for p in pids]
            d = self.cfg.data
            self._images[domain] = (load_images(paths, d.height, d.width, desc=f"decode {domain}"),
                                    load_images(paths, *self.display_size, desc=f"decode {domain}"), pids)
        return self._images[domain]

    def shown_tau(self) -> float:
        """The temperature of the shown maps: the tau slider's in gumbel mode, 1 (softmax(s), Eq. 4) in argmax mode."""
        return self.tau.value if self.mode.value == "gumbel" else 1.0

    def scale(self) -> float:
        """The top of the maps' colour scale: the largest shown probability over the domain's shown images under
        the current checkpoint and tau (cached), one scale for every image of the domain."""
        key = (self.domain.value, self.step.value, self.shown_tau())
        if key not in self._vmax:
            small, _, _ = self.images(self.domain.value)
            probs = self.method(self.step.value).inspect(normalize(small), tau=key[2])["probs"]
            self._vmax[key] = 1.0 if probs is None else float(probs.max())
        return self._vmax[key]

    # ---- drawing -----------------------------------------------------------------------------------
    def compute(self) -> dict[str, torch.Tensor]:
        """``inspect`` of the current image under the current widget values."""
        small, _, pids = self.images(self.domain.value)
        i = self.slider.value
        gen = torch.Generator().manual_seed(self.seed.value)
        return self.method(self.step.value).inspect(normalize(small[i:i + 1]), gumbel=self.mode.value == "gumbel",
                                                    tau=self.shown_tau(), generator=gen)

    def render(self) -> None:
        res = self.compute()
        _, big, pids = self.images(self.domain.value)
        i = self.slider.value
        grid = tuple(res["fmap"].shape[2:])
        masks = res["masks"][0]                                              # (K, h*w)
        shown = [r for r, b in enumerate(self.branches) if b.value]
        self.last_masks = masks
        self.seed.disabled = self.tau.disabled = self.mode.value == "argmax"
        self.note.value = f'<span style="color:#666;font-size:90%">{self.explain(masks)}</span>'
        self.last_array = overlay_array(big[i], masks, grid, shown)
        probs = res["probs"]
        n_maps = 0 if probs is None else probs.shape[1]
        fig = Figure(figsize=(1.8 * (1 + n_maps) + 1.0, 4.0), dpi=100)   # the overlay >= 256 x 128 px
        FigureCanvasAgg(fig)
        axes = fig.subplots(1, 1 + n_maps, squeeze=False)[0]
        # cheaper than tight_layout; before score_maps, whose colorbar takes its room from the axes laid out here
        fig.subplots_adjust(left=0.02, right=0.92, bottom=0.02, top=0.8, wspace=0.15)
        axes[0].imshow(self.last_array)
        axes[0].set_axis_off()
        axes[0].set_title(f"{self.domain.value} id {pids[i]}\n{self.step.value}, {self.mode.value}", fontsize=9)
        if n_maps:
            score_maps(probs[0], grid, axes[1:], masks, vmax=self.scale())
        maps = "softmax(s)" if self.mode.value == "argmax" else f"softmax(s / {self.tau.value:.2g})"
        fig.suptitle(f"sampling probabilities {maps} per branch (one colour scale for the domain)", fontsize=9)
        self.last_figure = fig
        with self.out:
            clear_output(wait=True)
            display(fig)
