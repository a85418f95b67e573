"""PNG plots of a run: loss and health curves from ``metrics.jsonl``."""

from __future__ import annotations

import os

from jepa.metrics import read_metrics


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend, imported on first use: plotting is
    the only part of jepa that needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str) -> str:
    """``fig`` laid out and written to ``path`` (its folder created), then closed."""
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path


def plot_training_curves(workdir: str) -> str | None:
    """``workdir/loss.png``: loss (and, when logged, effective rank and feature std) by step."""
    rows = read_metrics(workdir)
    if not any("loss" in r for r in rows):
        return None
    panels = [("loss", "loss", "JEPA energy (train)", {})]
    if any("rankme" in r for r in rows):
        panels.append(("rankme", "RankMe", "effective rank (target enc.)", {"marker": "o"}))
        panels.append(("feature_std", "std", "per-dim std (target enc.)", {"marker": "o"}))
    fig, axes = pyplot().subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (key, ylabel, title, style) in zip(axes[0], panels, strict=True):
        logged = [r for r in rows if key in r]
        ax.plot([r["step"] for r in logged], [r[key] for r in logged], **style)
        ax.set(xlabel="step", ylabel=ylabel, title=title)
        ax.grid(alpha=0.3)
    return save(fig, os.path.join(workdir, "loss.png"))


def plot_probe_vs_step(workdir: str, results: list[dict]) -> str | None:
    """Probe top-1 against pretraining step → ``workdir/eval/probe_vs_step.png``."""
    if not results:
        return None
    fig, ax = pyplot().subplots(figsize=(5, 3.6))
    ax.plot([r["step"] for r in results], [r["top1"] for r in results], marker="o")
    ax.set(xlabel="pretraining step", ylabel="top-1 (%)", title=f"{results[0]['protocol']} probe")
    ax.grid(alpha=0.3)
    return save(fig, os.path.join(workdir, "eval", "probe_vs_step.png"))


def image_grid(path, rows, titles, suptitle, row_labels=None, cell=(1.3, 1.35), **imshow) -> str:
    """``rows`` of grayscale images [H, W] as a grid saved to ``path``: ``titles`` above the
    columns, ``row_labels`` left of the rows, ``imshow`` options (e.g. ``vmin``, ``vmax``) for
    every image; ``cell`` is one image's (width, height) in inches."""
    size = (cell[0] * len(rows[0]), cell[1] * len(rows))
    fig, axes = pyplot().subplots(len(rows), len(rows[0]), figsize=size, squeeze=False)
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            axes[r, c].imshow(image, cmap="gray", **imshow)
            axes[r, c].set_xticks([]), axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(titles[c], fontsize=7)
        if row_labels:
            axes[r, 0].set_ylabel(row_labels[r], fontsize=6)
    fig.suptitle(suptitle, fontsize=8)
    return save(fig, path)
