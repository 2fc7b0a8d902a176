"""Figures: forgetting curves, summary bars, step x domain heatmaps, image grids (matplotlib/seaborn)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch

from .losses import pairwise_distances, relation_distances
from .results import RunResult


def evolution_curves(results: list[RunResult], domain: str | None = None, metric: str = "mAP", ax=None,
                     chance: dict[str, dict[str, float]] | None = None):
    """Fig. 4 style: ``metric`` on one seen domain (default: the first) after every training step, per method.

    ``chance`` (``evaluate.chance_levels``) draws the domain's random-ranking level as a dashed line.
    """
    ax = ax or plt.subplots(figsize=(5, 3.5))[1]
    d = domain or results[0].order[0]
    for r in results:
        ys = [100 * s[d][metric] if d in s else np.nan for s in r.steps]
        xs = np.arange(1, len(ys) + 1) if len(ys) > 1 else [len(r.order)]
        ax.plot(xs, ys, marker="o", label=r.method)
    if chance is not None:
        ax.axhline(100 * chance[d][metric], color="gray", ls="--", lw=1, label="chance (random ranking)")
    ax.set_xlabel("training step")
    ax.set_xticks(range(1, max(len(r.steps) for r in results) + 1))
    ax.set_ylabel(f"{metric} (%) on {d}")
    ax.set_title(f"Evolution on {d}")
    ax.set_ylim(bottom=0)
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


def step_matrix(result: RunResult, metric: str = "mAP", ax=None, vmin: float | None = None,
                vmax: float | None = None, cbar: bool = False):
    """Step x domain heatmap of ``metric`` (%) for one run; blank cells are domains not yet seen. ``vmin`` /
    ``vmax`` fix the colour scale (e.g. shared by panels that are compared), ``cbar`` adds its colour bar."""
    ax = ax or plt.subplots(figsize=(1.2 * len(result.order) + 2, 0.6 * len(result.steps) + 1.5))[1]
    sns.heatmap(100 * result.matrix(metric), annot=True, fmt=".1f", cmap="viridis", ax=ax, cbar=cbar,
                vmin=vmin, vmax=vmax, annot_kws={"fontsize": 8}, cbar_kws={"label": f"{metric} (%)"},
                xticklabels=result.order, yticklabels=[f"after {t}" for t in result.trained])
    ax.tick_params(axis="y", rotation=0, labelsize=8)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_title(f"{result.method}: {metric} (%)")
    return ax


def save_demo_figures(results: list[RunResult], out: Path) -> list[Path]:
    """The demo's PNGs: evolution of the first domain, summary bars, and one heatmap per method."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    evolution_curves([r for r in results if len(r.steps) > 1] or results, ax=axes[0])   # joint alone: its point
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


def _shared_bar(fig, im, axes, label: str, fraction: float = 0.04, pad: float = 0.02, size: int = 8) -> None:
    """One colour bar for ``axes`` that share ``im``'s scale (``im``: an image or a ScalarMappable), labelled in
    ``size``-point text with 8-point ticks."""
    bar = fig.colorbar(im, ax=list(axes), fraction=fraction, pad=pad)
    bar.set_label(label, fontsize=size)
    bar.ax.tick_params(labelsize=8)


def step_matrices(results: list[RunResult], metric: str = "mAP", width: float = 10.0):
    """``step_matrix`` of several runs side by side on one colour scale (0 to the largest value shown) with one
    colour bar, so the panels compare by colour; returns the figure."""
    top = max(float(np.nanmax(100 * r.matrix(metric))) for r in results)
    n = len(results[0].order)
    fig, axes = plt.subplots(1, len(results), figsize=(width, 0.45 * n + 1.9), squeeze=False, layout="constrained")
    for i, (r, ax) in enumerate(zip(results, axes[0])):
        step_matrix(r, metric, ax=ax, vmin=0, vmax=top)
        ax.set_title(r.method, fontsize=9)
        if i:                                   # the rows are the same steps: label them once
            ax.set_yticklabels([])
    _shared_bar(fig, plt.cm.ScalarMappable(plt.Normalize(0, top), "viridis"), axes[0], f"{metric} (%)",
                fraction=0.03, pad=0.05, size=9)
    return fig


def legend_outside(ax, **kw):
    """The axes' legend to the right of the axes, off the data (fontsize 8, no frame)."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, fontsize=8, frameon=False, **kw)


def domain_camera_grid(rows: list[torch.Tensor], titles: list[list[str]], names: list[str], scale: float = 0.9):
    """One row per domain of (N_i, 3, H, W) uint8 images (distinct ones, e.g. one per camera), titled per image
    and labelled with ``names`` on the left; rows with fewer images leave their last cells blank."""
    ncols = max(len(r) for r in rows)
    h, w = rows[0].shape[2:]
    fig, axes = plt.subplots(len(rows), ncols, figsize=(ncols * scale * w / h * 2 + 0.8, len(rows) * scale * 2.2),
                             squeeze=False, layout="constrained")
    for i, (imgs, tts) in enumerate(zip(rows, titles)):
        for j, ax in enumerate(axes[i]):
            ax.set_xticks([]), ax.set_yticks([])
            if j < len(imgs):
                ax.imshow(imgs[j].permute(1, 2, 0).cpu().numpy())
                ax.set_title(tts[j], fontsize=8)
            else:
                ax.axis("off")
        axes[i, 0].set_ylabel(names[i], fontsize=9)
    return fig


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
                ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig


# ---- PatchKD: sampled patches and patch relations (notebooks 02 and 03) ------------------------------------
def branch_colors(k: int) -> list[tuple[float, float, float]]:
    """K clearly distinct RGB colours in [0, 1], one per sampler branch (tab10, then husl beyond 10)."""
    return sns.color_palette("tab10" if k <= 10 else "husl", k)


def _grid_boxes(masks: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """(K, h*w) one-hot masks -> (K, 4) pixel boxes (x0, y0, cell_w, cell_h) on an image of ``size`` (H, W)."""
    from .models.patch import cell_boxes

    return cell_boxes(masks[None].float().cpu(), grid, size)[0].numpy()


def nesting(masks: torch.Tensor, branches: list[int]) -> list[int]:
    """For each of ``branches`` (in order), how many earlier ones chose the same cell: 0 draws the whole cell,
    d > 0 insets the rectangle d steps so coinciding choices stay visible."""
    cells = masks.argmax(-1).tolist()
    return [sum(cells[b] == cells[r] for b in branches[:i]) for i, r in enumerate(branches)]


def overlay_array(image: torch.Tensor, masks: torch.Tensor, grid: tuple[int, int], branches=None,
                  thickness: int = 2) -> np.ndarray:
    """The image (3, H, W) uint8 with the chosen grid cell of every shown branch drawn as a rectangle in the
    branch's colour; returns an (H, W, 3) uint8 array (pure numpy, so it does not depend on the plotting backend).

    ``masks`` is (K, h*w) one-hot; ``grid`` the feature map's (h, w); a cell covers H/h x W/w pixels.
    ``branches`` lists the branches to draw (default: all). Every rectangle covers its whole cell, except where
    shown branches chose the same cell: those are nested (``nesting``), each inset by ``thickness`` pixels more.
    """
    out = image.permute(1, 2, 0).cpu().numpy().copy()
    big_h, big_w = out.shape[:2]
    k = masks.shape[0]
    colors = (np.asarray(branch_colors(k)) * 255).astype(np.uint8)
    shown = list(range(k) if branches is None else branches)
    for r, depth in zip(shown, nesting(masks, shown)):
        x0, y0, cw, ch = _grid_boxes(masks, grid, (big_h, big_w))[r]
        x0, y0 = int(round(x0)), int(round(y0))
        x1, y1 = min(big_w, int(round(x0 + cw))), min(big_h, int(round(y0 + ch)))
        inset = min(depth * thickness, (x1 - x0) // 2 - 1, (y1 - y0) // 2 - 1)
        x0, y0, x1, y1 = x0 + inset, y0 + inset, x1 - inset, y1 - inset
        t = max(1, min(thickness, (x1 - x0) // 2, (y1 - y0) // 2))
        out[y0:y0 + t, x0:x1] = colors[r]
        out[y1 - t:y1, x0:x1] = colors[r]
        out[y0:y1, x0:x0 + t] = colors[r]
        out[y0:y1, x1 - t:x1] = colors[r]
    return out


def patch_overlay(image: torch.Tensor, masks: torch.Tensor, grid: tuple[int, int], ax=None, branches=None,
                  title: str | None = None, linewidth: float = 2.0):
    """Figs. 3/7 style: the image with each branch's sampled cell as a coloured rectangle (matplotlib patches)
    covering the whole cell; branches that chose the same cell are nested (``nesting``)."""
    from matplotlib.patches import Rectangle

    ax = ax or plt.subplots(figsize=(1.6, 3.0))[1]
    h_img, w_img = image.shape[1:]
    ax.imshow(image.permute(1, 2, 0).cpu().numpy())
    k = masks.shape[0]
    colors = branch_colors(k)
    boxes = _grid_boxes(masks, grid, (h_img, w_img))
    shown = list(range(k) if branches is None else branches)
    for r, depth in zip(shown, nesting(masks, shown)):
        x0, y0, cw, ch = boxes[r]
        inset = depth * min(cw, ch) / (2.5 * k)                # only coinciding cells are nested
        ax.add_patch(Rectangle((x0 - 0.5 + inset, y0 - 0.5 + inset), cw - 2 * inset, ch - 2 * inset, fill=False,
                               edgecolor=colors[r], linewidth=linewidth, label=f"branch {r + 1}"))
    ax.set_xticks([]), ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    return ax


def score_maps(probs: torch.Tensor, grid: tuple[int, int], axes, masks: torch.Tensor | None = None,
               vmax: float | None = None, label: str = "softmax(s_r)"):
    """One heatmap per sampler branch of the sampling probabilities softmax(s_r) (Eq. 4) over the h x w grid,
    the sampled cell outlined in the branch's colour. ``probs`` (R, h*w); ``masks`` (K, h*w) or None.

    All maps share one colour scale from 0 to ``vmax`` (default: the largest probability shown) with one
    colorbar; each title carries the map's max probability and entropy (nats; uniform = log(h*w)).
    """
    from matplotlib.patches import Rectangle

    h, w = grid
    axes = np.atleast_1d(axes)
    r_maps = probs.shape[0]
    k = masks.shape[0] if masks is not None else r_maps
    colors = branch_colors(k)
    p = probs.detach().float().cpu()
    vmax = vmax or float(p.max())
    im = None
    for r, ax in enumerate(axes):
        pr = p[min(r, r_maps - 1)]
        im = ax.imshow(pr.view(h, w).numpy(), cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
        if masks is not None and r < k:
            cell = int(masks[r].argmax())
            ax.add_patch(Rectangle((cell % w - 0.5, cell // w - 0.5), 1, 1, fill=False, edgecolor=colors[r],
                                   linewidth=2.5))
        ax.set_xticks([]), ax.set_yticks([])
        entropy = float(-(pr * pr.clamp_min(1e-12).log()).sum())
        ax.set_title(f"branch {r + 1}\nmax {float(pr.max()):.2f}, H {entropy:.2f}", fontsize=8,
                     color=colors[r] if r < k else "black")
    if im is not None:
        _shared_bar(axes[0].figure, im, axes, label, fraction=0.05)
    return axes


def cell_frequency(masks: torch.Tensor, grid: tuple[int, int]) -> np.ndarray:
    """How often each grid cell is chosen per branch: (N, K, h*w) one-hot -> (K, h, w) fractions summing to 1."""
    counts = masks.detach().float().sum(0).cpu().numpy()                  # (K, h*w)
    return (counts / np.maximum(counts.sum(-1, keepdims=True), 1)).reshape(-1, *grid)


def cell_histograms(freqs: dict[str, np.ndarray], vmax: float | None = None):
    """Rows = checkpoints (e.g. "after step 2"), columns = branches: the chosen-cell frequency on the grid."""
    names = list(freqs)
    k, h, w = next(iter(freqs.values())).shape
    fig, axes = plt.subplots(len(names), k, figsize=(1.5 * k * max(1.0, 2 * w / h) + 1.2, 2.4 * len(names)),
                             squeeze=False, constrained_layout=True)
    vmax = vmax or max(float(f.max()) for f in freqs.values())
    colors = branch_colors(k)
    im = None
    for i, name in enumerate(names):
        for r in range(k):
            ax = axes[i, r]
            im = ax.imshow(freqs[name][r], cmap="Blues", vmin=0, vmax=vmax, interpolation="nearest")
            if h * w <= 32:
                for (y, x), v in np.ndenumerate(freqs[name][r]):
                    ax.text(x, y, f"{v:.2f}", ha="center", va="center", fontsize=8,
                            color="white" if v > 0.6 * vmax else "black")
            ax.set_xticks([]), ax.set_yticks([])
            ax.set_title(f"branch {r + 1}", fontsize=9, color=colors[r])
        axes[i, 0].set_ylabel(name, fontsize=9)
    _shared_bar(fig, im, axes.ravel(), "share of images choosing the cell", size=9)
    return fig


def patch_distance_matrices(patches: torch.Tensor, distance: str = "raw") -> tuple[np.ndarray, np.ndarray]:
    """Patch distances d(.,.) of Eq. 12 for (B, K, C) patches: intra-instance (B, K, K) (patches of one image) and
    inter-instance (K, B, B) (the same branch across images). ``distance``: "raw" (Euclidean) or "rkd" (each set
    divided by its off-diagonal mean, the distances L_PRD compares by default; ``losses.relation_distances``)."""
    p = patches.detach().float().cpu()
    sets = []
    for q in (p, p.transpose(0, 1)):
        d = pairwise_distances(q)
        off = ~torch.eye(d.shape[-1], dtype=torch.bool).expand_as(d)
        sets.append(relation_distances(d, off, distance).numpy())
    return sets[0], sets[1]


def _heatmap(ax, mat: np.ndarray, cmap: str, vmin: float = 0.0, vmax: float | None = None, annotate: bool = False,
             colorbar: bool = True):
    """A seaborn-coloured heatmap drawn with ``imshow`` (sns.heatmap costs ~1 s per panel on a busy 2-core machine);
    annotations are black or white by the cell colour's luminance. Returns the image (for a shared colour bar)."""
    colormap = sns.color_palette(cmap, as_cmap=True)
    vmax = max(float(mat.max()) if vmax is None else vmax, vmin + 1e-6)     # an all-zero matrix stays at vmin's colour
    im = ax.imshow(mat, cmap=colormap, vmin=vmin, vmax=vmax, interpolation="nearest")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=8)
    n, m = mat.shape
    ax.set_xticks(range(m)), ax.set_yticks(range(n))
    ax.tick_params(labelsize=8, length=0)
    if annotate:
        for (y, x), v in np.ndenumerate(mat):
            r, g, b, _ = colormap((v - vmin) / (vmax - vmin))
            ax.text(x, y, f"{v:.2f}", ha="center", va="center", fontsize=8,
                    color="black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white")
    return im


DISTANCE_CMAP = "mako_r"   # sequential, light at 0
GAP_CMAP = "Reds"          # sequential, white at 0: |new - old| = 0 is drawn as no colour


def relation_heatmaps(patches: torch.Tensor, old_patches: torch.Tensor, image: int = 0, branch: int = 0,
                      title: str = "", loss: float | None = None, distance: str = "raw"):
    """Fig. 8 style: intra-instance (K x K, one image) and inter-instance (B x B, one branch) distance heatmaps
    of the old model, the new model and their absolute difference; ``loss`` (L_PRD) goes into the title.
    Old and new share one scale and colour bar per row, the difference has its own; every scale starts at 0.
    ``distance``: see ``patch_distance_matrices``."""
    intra, inter = patch_distance_matrices(patches, distance)
    intra_o, inter_o = patch_distance_matrices(old_patches, distance)
    fig, axes = plt.subplots(2, 3, figsize=(10, 6.4), layout="constrained")
    rows = [(intra_o[image], intra[image], f"intra (K x K), image {image}"),
            (inter_o[branch], inter[branch], f"inter (B x B), branch {branch + 1}")]
    for i, (old, new, name) in enumerate(rows):
        vmax = float(max(old.max(), new.max()))
        annotate = old.shape[0] <= 4
        im = None
        for j, (mat, label) in enumerate([(old, "old model f^o"), (new, "new model f")]):
            im = _heatmap(axes[i, j], mat, DISTANCE_CMAP, vmax=vmax, annotate=annotate, colorbar=False)
            axes[i, j].set_title(f"{name}\n{label}", fontsize=9)
        _shared_bar(fig, im, axes[i, :2], "distance")
        _heatmap(axes[i, 2], np.abs(new - old), GAP_CMAP, annotate=annotate)
        axes[i, 2].set_title(f"{name}\n|new - old|", fontsize=9)
    fig.suptitle(title + (f"  (L_PRD = {loss:.4f})" if loss is not None else ""), fontsize=10)
    return fig


def relation_comparison(runs: dict[str, dict[str, torch.Tensor]], first_map: dict[str, float] | None = None,
                        image: int = 0, branch: int = 0, distance: str = "raw"):
    """Fig. 8 for several runs from the same teacher (e.g. with / without L_PRD) in one figure.

    ``runs`` maps a run name to its ``inspect`` output (``patches``, ``old_patches``, ``loss_prd``; the old
    patches are the shared teacher's). Per relation set (intra-instance of image ``image``, inter-instance of
    branch ``branch``) two rows: the distances of f^o and of each run's f on one scale, then each run's |f - f^o|
    on another, both from 0 with one colour bar per row, so the runs' drift compares by colour. ``first_map``
    (run -> first-domain mAP, fraction) goes into the run's titles; ``distance``: see ``patch_distance_matrices``.
    """
    names = list(runs)
    old = patch_distance_matrices(next(iter(runs.values()))["old_patches"], distance)
    new = {n: patch_distance_matrices(r["patches"], distance) for n, r in runs.items()}
    cols = 1 + len(names)
    fig, axes = plt.subplots(4, cols, figsize=(2.9 * cols + 1.0, 10.5), squeeze=False, layout="constrained")
    for i, (pick, name) in enumerate([(image, f"intra (K x K), image {image}"),
                                      (branch, f"inter (B x B), branch {branch + 1}")]):
        top_row, gap_row = axes[2 * i], axes[2 * i + 1]
        mats = {n: new[n][i][pick] for n in names}
        gaps = {n: np.abs(mats[n] - old[i][pick]) for n in names}
        top = float(max(old[i][pick].max(), *(m.max() for m in mats.values())))
        gap_top = max(float(max(g.max() for g in gaps.values())), 1e-6)
        annotate = old[i][pick].shape[0] <= 4
        im = _heatmap(top_row[0], old[i][pick], DISTANCE_CMAP, vmax=top, annotate=annotate, colorbar=False)
        top_row[0].set_title(f"{name}\nold model f^o", fontsize=9)
        gap_row[0].axis("off")
        gap_row[0].text(0.5, 0.5, f"{name}:\n|f - f^o| per run,\none scale from 0", ha="center", va="center",
                        fontsize=9, transform=gap_row[0].transAxes)
        gap_im = None
        for j, n in enumerate(names):
            score = f"\nfirst-domain mAP {100 * first_map[n]:.1f}" if first_map else ""
            _heatmap(top_row[1 + j], mats[n], DISTANCE_CMAP, vmax=top, annotate=annotate, colorbar=False)
            top_row[1 + j].set_title(f"{n}: new model f{score}", fontsize=9)
            gap_im = _heatmap(gap_row[1 + j], gaps[n], GAP_CMAP, vmax=gap_top, annotate=annotate, colorbar=False)
            gap_row[1 + j].set_title(f"{n}: |f - f^o|\nmean {gaps[n].mean():.3f}, L_PRD "
                                     f"{float(runs[n]['loss_prd']):.4f}", fontsize=9)
        _shared_bar(fig, im, top_row, "distance")
        _shared_bar(fig, gap_im, gap_row[1:], "|f - f^o|")
    return fig


def trade_off_bars(scores: dict[str, dict[str, dict[str, float]]], first: str, new: str,
                   chance: dict[str, dict[str, float]] | None = None, ax=None):
    """Per run, mAP (%) on the first domain beside mAP on the new domain after the same step: what a term keeps
    against what it costs. ``scores[run][domain]`` (fractions); ``chance`` draws each domain's random level."""
    ax = ax or plt.subplots(figsize=(6.5, 3.2), layout="constrained")[1]
    names = list(scores)
    x = np.arange(len(names))
    for k, (d, label, color) in enumerate([(first, f"first domain ({first})", "tab:blue"),
                                           (new, f"new domain ({new})", "tab:orange")]):
        vals = [100 * scores[n][d]["mAP"] for n in names]
        bars = ax.bar(x + (k - 0.5) * 0.38, vals, 0.38, label=label, color=color)
        ax.bar_label(bars, fmt="%.1f", fontsize=8, padding=2)
        if chance is not None:
            ax.hlines(100 * chance[d]["mAP"], x[0] - 0.5, x[-1] + 0.5, colors=color, linestyles="--", lw=1,
                      label=f"chance ({d})")
    ax.set_xticks(x, names, fontsize=9)
    ax.set_ylabel("mAP (%) after step 2", fontsize=9)
    ax.set_ylim(0, 110)
    ax.grid(axis="y", alpha=0.3)
    legend_outside(ax)
    return ax
