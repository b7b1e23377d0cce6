"""Held-out quality of an orchestrator's weights: rank correlation and KL against the targets, with standard
errors."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from alignment.orchestrator.targets import kl_to_target


def evaluate_weights(predicted: torch.Tensor, targets: torch.Tensor, constant: torch.Tensor,
                     objective_names: Sequence[str], *, bootstrap: int = 500, seed: int = 0) -> dict[str, float]:
    """Held-out quality of predicted weights against targets, with standard errors.

    - `spearman_<objective>` (+ `_se`, bootstrap over prompts): rank correlation of predicted and target weight;
    - `kl` (+ `_se`): mean KL(target || predicted); `kl_constant`: the same for the constant `constant` weights
      (the mean training target); `kl_gain` (+ `_se`, paired over prompts) = kl_constant - kl, > 0 when better.
    """
    # Lazy: it loads scipy.stats (most of a second), which only this report needs.
    from reward_models.metrics import spearman_correlation

    predicted, targets = predicted.double().numpy(), targets.double().numpy()
    n = len(targets)
    rng = np.random.default_rng(seed)
    resamples = [rng.integers(0, n, n) for _ in range(bootstrap)]
    metrics = {"prompts": n}
    for k, name in enumerate(objective_names):
        metrics[f"spearman_{name}"] = spearman_correlation(predicted[:, k], targets[:, k])
        draws = [spearman_correlation(predicted[i, k], targets[i, k]) for i in resamples]
        metrics[f"spearman_{name}_se"] = float(np.nanstd(draws))
    kl = kl_to_target(torch.from_numpy(targets), torch.from_numpy(predicted)).numpy()
    kl_constant = kl_to_target(torch.from_numpy(targets), constant.double().expand(n, -1)).numpy()
    gain = kl_constant - kl
    metrics.update(kl=float(kl.mean()), kl_se=float(kl.std(ddof=1) / np.sqrt(n)), kl_constant=float(kl_constant.mean()),
                   kl_constant_se=float(kl_constant.std(ddof=1) / np.sqrt(n)), kl_gain=float(gain.mean()),
                   kl_gain_se=float(gain.std(ddof=1) / np.sqrt(n)))
    return metrics
