"""Box plot of test errors and learning curves, drawn off-screen with matplotlib's Agg canvas."""

import math
from pathlib import Path

import torch

from .store import atomic_open


def _figure(width, height):
    """A matplotlib Figure not attached to any GUI (no pyplot, no display needed)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _save(fig, path):
    """Write FIG as a PNG atomically."""
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", dpi=120)


def boxplot(runs, models, path):
    """Test error (%) of each model over the rounds."""
    fig = _figure(1.4 * len(models) + 2, 4)
    ax = fig.add_subplot()
    errors = [[100 * run["test_error"] for run in runs if run["model"] == name] for name in models]
    ax.boxplot(errors)
    ax.set_xticks(range(1, len(models) + 1), list(models))  # works with matplotlib before 3.9 too
    rounds = max(len(e) for e in errors)
    ax.set_ylabel("test error (%)")
    ax.set_title(f"Digit-pair comparison: test error over {rounds} round(s)")
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)
    return path


def learning_curves(runs, models, path):
    """Mean +- std over rounds of train loss, train error and test error per epoch."""
    from matplotlib.ticker import MaxNLocator

    panels = [("train_loss_curve", "train loss (with aux term)", 1),
              ("train_error_curve", "train error (%)", 100),
              ("test_error_curve", "test error (%)", 100)]
    panels = [p for p in panels if runs and runs[0][p[0]]]  # error curves are optional
    fig = _figure(4.5 * len(panels), 4)
    for i, (key, label, scale) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for name in models:
            curves = torch.tensor([[math.nan if v is None else v for v in run[key]]  # null: not finite
                                   for run in runs if run["model"] == name]) * scale
            mean = curves.mean(0)
            std = curves.std(0) if len(curves) > 1 else torch.zeros_like(mean)
            epochs = torch.arange(1, len(mean) + 1)
            ax.plot(epochs, mean, label=name)
            ax.fill_between(epochs, mean - std, mean + std, alpha=0.2)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(label)
        if key != "train_loss_curve":
            ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    fig.axes[0].legend()
    _save(fig, path)
    return path


def plot_results(runs, models, out_dir):
    """Write test_error_boxplot.png and learning_curves.png into OUT_DIR; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return [boxplot(runs, models, out_dir / "test_error_boxplot.png"),
            learning_curves(runs, models, out_dir / "learning_curves.png")]
