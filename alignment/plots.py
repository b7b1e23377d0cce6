"""Pictures of a measured Pareto front (`scripts/pareto_sweep.py` writes them beside front.json).

The figures are drawn on `matplotlib.figure.Figure` objects, not through pyplot: no backend is chosen, no global
figure state is touched, and it works on machines without a display.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure


def plot_front(front: dict, path: Path) -> None:
    """2 objectives: scatter, non-dominated points joined in order. More: one panel per pair of objectives.
    A fixed-weight baseline front (`front["baseline"]`) is drawn on the same axes in another colour.

    `front`: the dict of the sweep's front.json (objective_names, points with values / non_dominated / label,
    hypervolume, reference_point, optionally baseline and hypervolume_ratio).
    """
    names = front["objective_names"]
    fronts = [("steered", front, "tab:red")] + ([("fixed weights", front["baseline"], "tab:blue")]
                                                if front.get("baseline") else [])
    pairs = list(itertools.combinations(range(len(names)), 2)) or [(0, 0)]
    columns = min(3, len(pairs))
    rows = -(-len(pairs) // columns)
    figure = Figure(figsize=(5.5 * columns, 4.5 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for kind, points_front, colour in fronts:
        values = np.array([[p["values"][n] for n in names] for p in points_front["points"]])
        on_front = np.array([p["non_dominated"] for p in points_front["points"]])
        labels = [p["label"] for p in points_front["points"]]
        name = kind if len(fronts) > 1 else "non-dominated"
        for axis, (i, j) in zip(axes.flat, pairs):
            axis.scatter(values[~on_front, i], values[~on_front, j], c=colour, alpha=0.35, marker="x")
            axis.scatter(values[on_front, i], values[on_front, j], c=colour,
                         label=f"{name} (HV {points_front['hypervolume']:.3g})")
            if len(names) == 2:
                order = np.argsort(values[on_front, i])
                axis.plot(values[on_front, i][order], values[on_front, j][order], c=colour, lw=1)
                for label, (x, y) in zip(labels, values[:, [i, j]]):
                    axis.annotate(label, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points", color=colour)
            axis.set_xlabel(names[i])
            axis.set_ylabel(names[j])
            axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(pairs):]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=8)
    reference = ", ".join(f"{v:.3g}" for v in front["reference_point"].values())
    ratio = f", ratio {front['hypervolume_ratio']:.3f}" if "hypervolume_ratio" in front else ""
    figure.suptitle(f"Pareto front: hypervolume {front['hypervolume']:.4g}{ratio} (reference point {reference})",
                    fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def plot_controllability(front: dict, path: Path) -> None:
    """Per objective: the weight requested on it against the value achieved, titled with Spearman's rho.

    `front`: the dict of the sweep's front.json (objective_names, points with requested_weights / values,
    controllability).
    """
    names = front["objective_names"]
    figure = Figure(figsize=(4.5 * len(names), 4))
    axes = figure.subplots(1, len(names), squeeze=False)
    for axis, name in zip(axes.flat, names):
        weights = [p["requested_weights"][name] for p in front["points"]]
        values = [p["values"][name] for p in front["points"]]
        axis.plot(weights, values, "o-")
        rho = (front["controllability"] or {}).get(name, {}).get("spearman")
        axis.set_title(f"{name}: Spearman rho = {'n/a' if rho is None else f'{rho:.2f}'}")
        axis.set_xlabel(f"requested weight on {name}")
        axis.set_ylabel(f"achieved {name}")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
