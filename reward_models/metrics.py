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
    """Per head k with pairs: `accuracy_<head>` (ties count half), its binomial standard error
    `accuracy_se_<head>` = sqrt(acc (1 - acc) / n), and the Bradley-Terry loss `bt_loss_<head>` = mean of
    -log sigmoid(s_k(chosen) - s_k(rejected)) (ln 2 = 0.693 is a head that cannot tell the two apart).
    Per rated head: `spearman_<head>` and `mse_<head>`. Every head: `score_std_<head>`, the spread of its scores over
    all texts scored (a head whose scores barely move has not learned, whatever its accuracy)."""
    predictions, labels = np.asarray(predictions, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    first, second = predictions[:, 0], predictions[:, 1]
    pair_mask, ratings, rating_mask = labels[:, 0] > 0, labels[:, 1], labels[:, 2] > 0
    metrics = {}
    for k, head in enumerate(head_names):
        pairs = pair_mask[:, k]
        if pairs.any():
            gap = first[pairs, k] - second[pairs, k]
            accuracy = float(np.mean((gap > 0) + 0.5 * (gap == 0)))
            metrics[f"accuracy_{head}"] = accuracy
            metrics[f"accuracy_se_{head}"] = float(np.sqrt(accuracy * (1 - accuracy) / len(gap)))
            metrics[f"bt_loss_{head}"] = float(np.mean(np.logaddexp(0.0, -gap)))  # -log sigmoid(gap), overflow-safe
            metrics[f"pairs_{head}"] = int(pairs.sum())
        rated = rating_mask[:, k]
        if rated.any():
            metrics[f"spearman_{head}"] = spearman_correlation(first[rated, k], ratings[rated, k])
            metrics[f"mse_{head}"] = float(np.mean((first[rated, k] - ratings[rated, k]) ** 2))
            metrics[f"rated_{head}"] = int(rated.sum())
        texts = np.concatenate([first[:, k], second[pair_mask.any(axis=1), k]])  # rated rows repeat their one text
        metrics[f"score_std_{head}"] = float(np.std(texts, ddof=1)) if len(texts) > 1 else 0.0
    return metrics
