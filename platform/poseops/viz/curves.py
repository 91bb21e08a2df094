"""Curves as images (matplotlib, Agg backend: servers have no display)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_curves(
    path: str | Path,
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    xlabel: str,
    ylabel: str,
    title: str,
) -> Path:
    """Write a line plot of several named series over one x axis as a PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    for label, ys in series.items():
        ax.plot(list(x)[: len(ys)], list(ys), marker="o", markersize=3, label=label)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(plt, fig, path)


def plot_panels(
    path: str | Path,
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    xlabel: str,
    title: str,
) -> Path:
    """One panel per named series, side by side over one x axis, each on its own y scale (a loss and
    a metric do not share a useful axis)."""
    plt = _pyplot()
    fig, axes = plt.subplots(
        1, max(1, len(series)), figsize=(4 * max(1, len(series)), 3.5), dpi=100, squeeze=False
    )
    for ax, (label, ys) in zip(axes[0], series.items()):
        ax.plot(list(x)[: len(ys)], list(ys), marker="o", markersize=3)
        ax.set(xlabel=xlabel, title=label)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return _save(plt, fig, path)


def _save(plt, fig, path: str | Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_bars(
    path: str | Path, labels: Sequence[str], values: Sequence[float], ylabel: str, title: str
) -> Path:
    """Write a bar chart (e.g. per-keypoint PCK) as a PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, len(labels) * 0.35), 4), dpi=100)
    ax.bar(range(len(values)), list(values))
    ax.set_xticks(range(len(labels)), list(labels), rotation=70, fontsize=7)
    ax.set(ylabel=ylabel, title=title, ylim=(0, 1))
    return _save(plt, fig, path)


def plot_grouped_bars(
    path: str | Path,
    groups: Sequence[str],
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    ylabel: str,
    title: str,
) -> Path:
    """Bars with +-1 SD whiskers: one cluster per group, one bar per series; series = name -> (means, sds)
    (each as long as `groups`). E.g. PCK per label condition (groups) and loss (series)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5, len(groups) * len(series) * 0.7), 4), dpi=100)
    width = 0.8 / max(1, len(series))
    for i, (name, (means, sds)) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, list(means), width, yerr=list(sds), capsize=3, label=name)
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set(ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    return _save(plt, fig, path)
