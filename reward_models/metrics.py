"""Per-head evaluation of a multi-head reward model: pairwise accuracy, Spearman correlation and MSE.

Inputs follow the trainer's evaluation layout, one row per example:
    predictions [N, 2, K]  head scores of (first text, second text); rated rows repeat the first text
    labels      [N, 3, K]  (pair_mask, rating, rating_mask)
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr


def spearman_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """scipy's Spearman rank correlation (ties share their mean rank); NaN, without scipy's warning, when either
    side is constant or has fewer than two values."""
    x, y = np.asarray(x), np.asarray(y)
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(spearmanr(x, y).statistic)


def per_head_metrics(predictions: np.ndarray, labels: np.ndarray, head_names: list[str]) -> dict[str, float]:
    """`accuracy_<head>` for heads with pairs (ties count half), `spearman_<head>` and `mse_<head>` for rated heads."""
    predictions, labels = np.asarray(predictions, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    first, second = predictions[:, 0], predictions[:, 1]
    pair_mask, ratings, rating_mask = labels[:, 0] > 0, labels[:, 1], labels[:, 2] > 0
    metrics = {}
    for k, head in enumerate(head_names):
        pairs = pair_mask[:, k]
        if pairs.any():
            gap = first[pairs, k] - second[pairs, k]
            metrics[f"accuracy_{head}"] = float(np.mean((gap > 0) + 0.5 * (gap == 0)))
            metrics[f"pairs_{head}"] = int(pairs.sum())
        rated = rating_mask[:, k]
        if rated.any():
            metrics[f"spearman_{head}"] = spearman_correlation(first[rated, k], ratings[rated, k])
            metrics[f"mse_{head}"] = float(np.mean((first[rated, k] - ratings[rated, k]) ** 2))
            metrics[f"rated_{head}"] = int(rated.sum())
    return metrics
