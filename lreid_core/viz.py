"""Figures: forgetting curves, summary bars, step x domain heatmaps, image grids (matplotlib/seaborn)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

from .results import RunResult


def evolution_curves(results: list[RunResult], domain: str | None = None, metric: str = "mAP", ax=None):
    """Fig. 4 style: ``metric`` on one seen domain (default: the first) after every training step, per method."""
    ax = ax or plt.subplots(figsize=(5, 3.5))[1]
    for r in results:
        d = domain or r.order[0]
        ys = [100 * s[d][metric] if d in s else np.nan for s in r.steps]
        xs = np.arange(1, len(ys) + 1) if len(ys) > 1 else [len(r.order)]
        ax.plot(xs, ys, marker="o", label=r.method)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"{metric} (%) on {domain or results[0].order[0]}")
    ax.set_title(f"Evolution on {domain or results[0].order[0]}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax


def summary_bars(results: list[RunResult], ax=None):
    """Seen-Avg and Unseen-Avg mAP per method, side by side."""
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    names = [r.method for r in results]
    x = np.arange(len(names))
    ax.bar(x - 0.2, [100 * r.seen_avg() for r in results], 0.4, label="Seen-Avg mAP")
    ax.bar(x + 0.2, [100 * r.unseen_avg() for r in results], 0.4, label="Unseen-Avg mAP")
    ax.set_xticks(x, names)
    ax.set_ylabel("mAP (%)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return ax


def step_matrix(result: RunResult, metric: str = "mAP", ax=None):
    """Step x domain heatmap of ``metric`` (%) for one run; blank cells are domains not yet seen."""
    ax = ax or plt.subplots(figsize=(1.2 * len(result.order) + 2, 0.6 * len(result.steps) + 1.5))[1]
    sns.heatmap(100 * result.matrix(metric), annot=True, fmt=".1f", cmap="viridis", ax=ax, cbar=False,
                xticklabels=result.order, yticklabels=[f"after {t}" for t in result.trained])
    ax.set_title(f"{result.method}: {metric} (%)")
    return ax


def save_demo_figures(results: list[RunResult], out: Path) -> list[Path]:
    """The demo's PNGs: evolution of the first domain, summary bars, and one heatmap per method."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    evolution_curves([r for r in results if len(r.steps) > 1], ax=axes[0])
    summary_bars(results, ax=axes[1])
    fig.tight_layout()
    paths.append(out / "demo_summary.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    for r in results:
        fig, ax = plt.subplots(figsize=(1.3 * len(r.order) + 2, 0.6 * len(r.steps) + 1.6))
        step_matrix(r, ax=ax)
        fig.tight_layout()
        paths.append(out / f"matrix_{r.method}.png")
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths


def image_grid(images: torch.Tensor, titles: list[str] | None = None, ncols: int = 8, scale: float = 1.0):
    """Show a (N, 3, H, W) uint8 tensor as a grid of images; returns the figure."""
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    h, w = images.shape[2:]
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * scale * w / h * 2, nrows * scale * 2), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i].permute(1, 2, 0).cpu().numpy())
            if titles:
                ax.set_title(titles[i], fontsize=7)
    fig.tight_layout()
    return fig
