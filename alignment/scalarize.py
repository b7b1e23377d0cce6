"""Where a reward vector becomes a scalar advantage. Pure functions, shared by every trainer.

Notation: a batch holds N = P * G completions, G consecutive rows per prompt (TRL's layout). `reward_vector` is
[N, K], one column per objective; `weights` is [N, K] (one preference point per row; rows of one group share it)
or [K]. A row with a NaN in any column was dropped upstream: it is left out of every statistic and its
advantage is 0, so it cannot move the policy.

Aggregations (see DESIGN.md):
- `sum_then_normalize` (TRL's default, MO-GRPO seed): R = scalarize(r, w); A = (R - mean_g R) / (std_g R + eps).
- `normalize_then_sum` (GDPO): A_k = (r_k - mean_g r_k) / (std_g r_k + eps); A = scalarize(A_k, w); whiten over the batch.
Scalarizations: `linear` (sum_k w_k r_k), `tchebycheff` (-max_k w_k (z_k - r_k), z an ideal point),
`worst_case` (min over weighted objectives of batch-standardized r_k).
Constraint mode `lagrangian` (Safe-RLHF): A = (A_main + lambda A_c) / (1 + lambda), lambda learned.
"""

from __future__ import annotations

import math

import torch
from trl.trainer.utils import nanstd

AGGREGATIONS = ("sum_then_normalize", "normalize_then_sum")
SCALARIZATIONS = ("linear", "tchebycheff", "worst_case", "lagrangian")
EPS = 1e-4  # TRL's epsilon, so `sum_then_normalize` + `linear` reproduces TRL's advantages exactly


def _valid_rows(reward_vector: torch.Tensor) -> torch.Tensor:
    return ~torch.isnan(reward_vector).any(dim=1)


def _broadcast_weights(weights: torch.Tensor, reward_vector: torch.Tensor) -> torch.Tensor:
    weights = weights.to(reward_vector.device, reward_vector.dtype)
    if weights.dim() == 1:
        weights = weights.unsqueeze(0).expand_as(reward_vector)
    if weights.shape != reward_vector.shape:
        raise ValueError(f"scalarize: weights of shape {tuple(weights.shape)} do not match rewards {tuple(reward_vector.shape)}")
    return weights


def group_normalize(values: torch.Tensor, group_size: int, eps: float = EPS, scale: bool = True) -> torch.Tensor:
    """(x - mean over the group) / (std over the group + eps), column-wise, NaN-aware. values: [N] or [N, K]."""
    if values.shape[0] % group_size:
        raise ValueError(f"group_normalize: {values.shape[0]} rows are not a whole number of groups of {group_size}")
    squeeze = values.dim() == 1
    grouped = values.reshape(-1, group_size, 1 if squeeze else values.shape[1])
    centered = grouped - torch.nanmean(grouped, dim=1, keepdim=True)
    if scale:
        std = nanstd(grouped, dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(centered[:, :1])
        centered = centered / (torch.nan_to_num(std, nan=0.0) + eps)
    centered = centered.reshape(values.shape[0], -1)
    return centered.squeeze(1) if squeeze else centered


def batch_whiten(values: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """(x - mean) / (std + eps) over every non-NaN entry of a [N] tensor."""
    std = nanstd(values) if values.numel() > 1 else torch.zeros((), device=values.device)
    return (values - torch.nanmean(values)) / (torch.nan_to_num(std, nan=0.0) + eps)


def scalarize(reward_vector: torch.Tensor, weights: torch.Tensor, method: str = "linear",
              ideal_point: torch.Tensor | None = None) -> torch.Tensor:
    """[N, K] rewards (or per-objective advantages) and weights -> [N] scalar rewards."""
    weights = _broadcast_weights(weights, reward_vector)
    if method == "linear":
        return (reward_vector * weights).sum(dim=1)
    if method == "tchebycheff":
        if ideal_point is None:  # no running ideal point: the best value seen in this batch
            ideal_point = update_ideal_point(None, reward_vector)
        gap = ideal_point.to(reward_vector).unsqueeze(0) - reward_vector
        return -(weights * gap).max(dim=1).values
    if method == "worst_case":
        standardized = (reward_vector - torch.nanmean(reward_vector, dim=0)) / (
            torch.nan_to_num(nanstd(reward_vector, dim=0), nan=0.0) + EPS
        )
        # Objectives the user gave weight 0 do not take part in the minimum.
        standardized = standardized.masked_fill(weights <= 0, math.inf)
        return standardized.min(dim=1).values
    raise ValueError(f"scalarize: unknown scalarization '{method}'; expected one of {SCALARIZATIONS[:3]}")


def compute_advantages(
    reward_vector: torch.Tensor,
    weights: torch.Tensor,
    group_size: int,
    aggregation: str = "sum_then_normalize",
    scalarization: str = "linear",
    scale_rewards: bool = True,
    ideal_point: torch.Tensor | None = None,
    lagrangian: tuple[int, int, float] | None = None,
) -> torch.Tensor:
    """[N, K] reward vector -> [N] advantages. `lagrangian` = (main column, constraint column, lambda).

    Rows with a NaN get advantage 0 and are left out of the statistics.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"compute_advantages: unknown aggregation '{aggregation}'; expected one of {AGGREGATIONS}")
    valid = _valid_rows(reward_vector)
    rewards = reward_vector.masked_fill(~valid.unsqueeze(1), math.nan)

    if scalarization == "lagrangian":
        if lagrangian is None:
            raise ValueError("compute_advantages: 'lagrangian' needs (main index, constraint index, lambda)")
        main, constraint, lam = lagrangian
        per_objective = group_normalize(rewards, group_size, scale=scale_rewards)
        advantages = lagrangian_advantages(per_objective[:, main], per_objective[:, constraint], lam)
    elif aggregation == "sum_then_normalize":
        scalar = scalarize(rewards, weights, scalarization, ideal_point)
        advantages = group_normalize(scalar, group_size, scale=scale_rewards)
    else:
        per_objective = group_normalize(rewards, group_size, scale=scale_rewards)
        advantages = batch_whiten(scalarize(per_objective, weights, scalarization, ideal_point))
    return torch.nan_to_num(advantages.masked_fill(~valid, 0.0), nan=0.0)


def lagrangian_advantages(main_advantage: torch.Tensor, constraint_advantage: torch.Tensor, lam: float) -> torch.Tensor:
    """Safe-RLHF's combined advantage (A_main + lambda A_c) / (1 + lambda), for lambda >= 0."""
    return (main_advantage + lam * constraint_advantage) / (1.0 + lam)


def update_log_lagrange_multiplier(log_lambda: float, constraint_mean: float, threshold: float,
                                   learning_rate: float, lambda_max: float) -> float:
    """One gradient step on log(lambda) for the constraint E[r_c] >= d.

    The Lagrangian's derivative in log(lambda) is lambda * (d - E[r_c]): lambda grows while the constraint is
    violated and shrinks once it holds. Parameterizing by log keeps lambda > 0; it is clipped at lambda_max.
    """
    log_lambda = log_lambda + learning_rate * math.exp(log_lambda) * (threshold - constraint_mean)
    return min(log_lambda, math.log(lambda_max))


def update_ideal_point(ideal_point: torch.Tensor | None, reward_vector: torch.Tensor) -> torch.Tensor:
    """Running per-objective maximum of the observed rewards: the Tchebycheff ideal point z."""
    batch_max = torch.nan_to_num(reward_vector, nan=-math.inf).max(dim=0).values
    return batch_max if ideal_point is None else torch.maximum(ideal_point.to(batch_max), batch_max)
