"""Scalarizations and the advantage maths: where a reward vector becomes one number per row. Pure functions, shared
by every trainer.

Notation: a batch holds N = P * G completions, G consecutive rows per prompt (TRL's layout). `reward_vector` is
[N, K], one column per objective; `weights` is [N, K] (one preference point per row; rows of one group share it)
or [K]. A NaN is a missing reward. `partial_rewards` says what a row with some (not all) rewards missing means:
`drop_row` (default) drops the whole row; `sum_present` (TRL's behaviour) scalarizes the objectives present. A
row with no reward left is out of every statistic and gets advantage 0, so it cannot move the policy.

Aggregations (`AGGREGATIONS`, the one table GRPO's `multi_objective_aggregation` is looked up in). The first two
are TRL 1.16's GRPOTrainer's (`linear` reproduces TRL's advantages exactly, tested against TRL's own trainer in
tests/test_peer_equivalence.py; `alignment.objectives.advantages` applies them):
- `sum_then_normalize` (TRL's default): R = scalarize(r, w); A = R - mean_g R, divided by std_g R + eps
  (`scale_rewards: group`), by the batch std of R + eps (`batch`), or not at all (`none`).
- `normalize_then_sum` (GDPO): A_k = (r_k - mean_g r_k) / (std_g r_k + eps) ALWAYS (TRL ignores `scale_rewards`
  here too: without the per-objective sigma the high-variance objective dominates again); A = scalarize(A_k, w),
  whitened over the batch.
- `rdpo` (RDPO, arXiv 2605.13641; TRL issue #5886): per-objective quantile normalization within the group, then
  whitening of the objectives against each other, then `normalize_then_sum`'s weighted sum and batch whitening
  (`rdpo_advantages`).
- `variance_weighted` (MO-GRPO, arXiv 2509.22047): each objective's group-centred reward divided by its own group
  std before weighting, A = scalarize(K w_k (r_k - mean_g r_k) / (std_g r_k + eps)), no batch whitening
  (`variance_weighted_advantages`).
Scalarizations (every one but `linear` works on each objective z-scored within its group, so a weight means the same
whatever the objective's units):
- `linear`: sum_k w_k r_k;
- `tchebycheff`: `-max_k w_k (z*_k - z_k)`, `z*_k` the best z-score of objective k in the group (the ideal point);
- `worst_case`: min_{k: w_k > 0} (z_k - z^nad_k) / w_k, z^nad_k the worst z-score of objective k in the group (the
  nadir point): the weighted max-min, where an objective with twice the weight must sit twice as far above its
  group's worst to stop being the bottleneck.
The maths of two advantage estimators that are not scalarizations also live here, as pure functions:
Safe-RLHF's Lagrangian combination, A = (A_main + lambda A_c) / (1 + lambda), and the step on its multiplier
(`lagrangian_advantages`, `update_log_lagrange_multiplier`); PAMA (He & Maghsudi 2025), the per-sample min-norm
combination of the Noon-clipped per-objective advantages, closed form, O(K) per completion (`pama_advantages`).
The estimators themselves, and `compute_advantages`, are in `alignment.objectives.advantages`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

SCALARIZATIONS = ("linear", "tchebycheff", "worst_case")
SCALE_REWARDS = ("group", "batch", "none")  # TRL's GRPOConfig.scale_rewards
PARTIAL_REWARDS = ("drop_row", "sum_present")
EPS = 1e-4  # TRL's epsilon, so `linear` reproduces TRL's advantages exactly


def broadcast_weights(weights: torch.Tensor, reward_vector: torch.Tensor) -> torch.Tensor:
    """[K] (every row) or [N, K] weights -> [N, K], on the rewards' device and dtype; a shape mismatch is refused."""
    weights = weights.to(reward_vector.device, reward_vector.dtype)
    if weights.dim() == 1:
        weights = weights.unsqueeze(0).expand_as(reward_vector)
    if weights.shape != reward_vector.shape:
        raise ValueError(f"scalarize: weights of shape {tuple(weights.shape)} do not match rewards "
                         f"{tuple(reward_vector.shape)}")
    return weights


def _grouped(values: torch.Tensor, group_size: int) -> torch.Tensor:
    """[N] or [N, K] -> [N / G, G, K]."""
    if values.shape[0] % group_size:
        raise ValueError(f"{values.shape[0]} rows are not a whole number of groups of {group_size}")
    return values.reshape(-1, group_size, 1 if values.dim() == 1 else values.shape[1])


def _nanstd(values: torch.Tensor, dim=None, keepdim: bool = False) -> torch.Tensor:
    """The unbiased std ignoring NaNs, as TRL's `nanstd` computes it, and 0 where fewer than two values are present
    (TRL's single-completion case). Written with torch alone so that this core module does not load TRL."""
    mean = torch.nanmean(values, dim=dim, keepdim=True) if dim is not None else torch.nanmean(values)
    squares = (values - mean) ** 2
    count = (~torch.isnan(values)).sum(dim=dim, keepdim=keepdim) if dim is not None else (~torch.isnan(values)).sum()
    total = torch.nansum(squares, dim=dim, keepdim=keepdim) if dim is not None else torch.nansum(squares)
    return torch.nan_to_num(torch.sqrt(total / (count - 1)), nan=0.0, posinf=0.0)


def group_normalize(values: torch.Tensor, group_size: int, eps: float = EPS,
                    scale: str | bool = "group") -> torch.Tensor:
    """x - mean over the group, column-wise and NaN-aware, divided by: the group's std + eps (`scale="group"`), the
    batch's std + eps (`"batch"`, one std per column over every row), or nothing (`"none"`). values: [N] or [N, K]."""
    scale = {True: "group", False: "none"}.get(scale, scale)
    if scale not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards: unknown mode {scale!r}; expected one of {SCALE_REWARDS}")
    grouped = _grouped(values, group_size)
    centered = grouped - torch.nanmean(grouped, dim=1, keepdim=True)
    if scale == "group":
        std = _nanstd(grouped, dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(centered[:, :1])
        centered = centered / (std + eps)
    elif scale == "batch":
        flat = grouped.reshape(-1, grouped.shape[-1])
        std = _nanstd(flat, dim=0) if flat.shape[0] > 1 else torch.zeros(flat.shape[-1], dtype=flat.dtype)
        centered = centered / (std + eps)
    centered = centered.reshape(values.shape[0], -1)
    return centered.squeeze(1) if values.dim() == 1 else centered


def batch_whiten(values: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """(x - mean) / (std + eps) over every non-NaN entry of a [N] tensor."""
    std = _nanstd(values) if values.numel() > 1 else torch.zeros((), device=values.device)
    return (values - torch.nanmean(values)) / (std + eps)


def quantile_normalize(values: torch.Tensor, group_size: int) -> torch.Tensor:
    """Each column's mid-rank quantile within its group, centred: q = (#below + #equal / 2) / n - 1/2, n the group's
    present (non-NaN) values. In (-1/2, 1/2), zero mean within the group, ties share their mean rank (a constant
    group gives 0), NaN stays NaN. values: [N] or [N, K].

    A rare binary success (k of n) gets (1 - k/n) / 2 instead of the z-score's (1 - k/n) / sigma, which grows without
    bound as k/n -> 0: no single prompt's group can dominate the batch's advantages.
    """
    grouped = _grouped(values, group_size)  # [P, G, K]
    mine, others = grouped.unsqueeze(2), grouped.unsqueeze(1)  # compare every row of a group with every other
    below = (others < mine).sum(dim=2).to(values.dtype)
    equal = (others == mine).sum(dim=2).to(values.dtype)
    present = (~torch.isnan(grouped)).sum(dim=1, keepdim=True).to(values.dtype)
    quantiles = ((below + equal / 2) / present.clamp(min=1) - 0.5).masked_fill(torch.isnan(grouped), math.nan)
    quantiles = quantiles.reshape(values.shape[0], -1)
    return quantiles.squeeze(1) if values.dim() == 1 else quantiles


def mahalanobis_whiten(values: torch.Tensor, tolerance: float = 1e-6) -> torch.Tensor:
    """ZCA (Mahalanobis) whitening of the columns of [N, K] values against each other, within each active subspace.

    The rows are split by which objectives they carry (their non-NaN columns: a row's active reward subspace). In
    each part, M = U^T U / n is the second moment of its rows U about 0 (the inputs are centred within every group
    already, so M is their covariance) and the rows become U M^{-1/2}, M^{-1/2} = V diag(lambda^{-1/2}) V^T over the
    eigenvalues above `tolerance` * the largest (directions without variance stay 0). ZCA keeps each whitened column
    as close as possible to its own objective (so the weights still mean what they say) while removing what the
    columns share: two objectives that measure the same thing count once, not twice. A part with fewer than 2 rows
    is left as it is; NaN stays NaN.
    """
    if values.dim() != 2:
        raise ValueError(f"mahalanobis_whiten: expected [N, K] values, got shape {tuple(values.shape)}")
    whitened = values.clone()
    present = ~torch.isnan(values)
    for pattern in torch.unique(present, dim=0):
        rows = (present == pattern).all(dim=1)
        columns = pattern.nonzero().squeeze(1)
        if rows.sum() < 2 or len(columns) == 0:
            continue
        block = values[rows][:, columns].double()
        eigenvalues, eigenvectors = torch.linalg.eigh(block.T @ block / block.shape[0])
        keep = eigenvalues > tolerance * eigenvalues.max().clamp(min=torch.finfo(torch.float64).tiny)
        inverse_root = torch.where(keep, eigenvalues.clamp(min=torch.finfo(torch.float64).tiny).rsqrt(),
                                   torch.zeros_like(eigenvalues))
        block = block @ (eigenvectors * inverse_root) @ eigenvectors.T
        whitened[rows.nonzero().squeeze(1).unsqueeze(1), columns.unsqueeze(0)] = block.to(values.dtype)
    return whitened


def scalarize(reward_vector: torch.Tensor, weights: torch.Tensor, method: str = "linear",
              group_size: int | None = None, ideal: torch.Tensor | None = None) -> torch.Tensor:
    """[N, K] rewards (or per-objective advantages) and weights -> [N] scalar rewards.

    NaN entries are left out (a row with every entry NaN gives NaN). `tchebycheff` and `worst_case` z-score each
    objective within groups of `group_size` rows (default: all rows are one group) before comparing objectives.
    `ideal` [K] (tchebycheff only): a known ideal point in the rewards' own units, e.g. 0 for negated losses that
    share one unit (the DPO family); then the rewards are compared as they are, -max_k w_k (ideal_k - r_k), with no
    z-scoring, so every row stands alone and gradients flow to the rewards unchanged.
    """
    weights = broadcast_weights(weights, reward_vector)
    missing = torch.isnan(reward_vector)
    empty = missing.all(dim=1)
    if ideal is not None and method != "tchebycheff":
        raise ValueError(f"scalarize: an ideal point is used by 'tchebycheff' only, not '{method}'")
    if method == "linear":
        scalar = (reward_vector * weights).nansum(dim=1)
    elif method == "tchebycheff" and ideal is not None:
        scalar = _tchebycheff(reward_vector, weights, ideal.to(reward_vector).expand_as(reward_vector), missing)
    elif method in ("tchebycheff", "worst_case"):
        group_size = group_size or reward_vector.shape[0]
        z = group_normalize(reward_vector, group_size)
        grouped = _grouped(z, group_size)
        if method == "tchebycheff":
            best = torch.nan_to_num(grouped, nan=-math.inf).max(dim=1, keepdim=True).values
            scalar = _tchebycheff(z, weights, best.expand_as(grouped).reshape_as(z), missing)
        else:
            nadir = torch.nan_to_num(grouped, nan=math.inf).min(dim=1, keepdim=True).values
            above = (grouped - nadir).reshape_as(z) / weights
            # objectives the user gave weight 0, and missing rewards, do not take part in the minimum
            scalar = above.masked_fill(missing | (weights <= 0), math.inf).min(dim=1).values
    else:
        raise ValueError(f"scalarize: unknown scalarization '{method}'; expected one of {SCALARIZATIONS}")
    return scalar.masked_fill(empty | torch.isinf(scalar), math.nan)


def _tchebycheff(values: torch.Tensor, weights: torch.Tensor, ideal: torch.Tensor,
                 missing: torch.Tensor) -> torch.Tensor:
    """-max_k w_k (ideal_k - v_k) over the present objectives of each row (all [N, K])."""
    gap = (weights * (ideal - values)).masked_fill(missing, -math.inf)
    return -gap.max(dim=1).values


# ---- aggregations: [N, K] rewards (partial rows already dropped) and weights -> [N] advantages ----
def sum_then_normalize(rewards: torch.Tensor, weights: torch.Tensor, scalarization: str, group_size: int,
                       scale_rewards: str) -> torch.Tensor:
    """TRL's default: scalarize the rewards, then normalize within each group as `scale_rewards` says."""
    return group_normalize(scalarize(rewards, weights, scalarization, group_size), group_size, scale=scale_rewards)


def normalize_then_sum(rewards: torch.Tensor, weights: torch.Tensor, scalarization: str, group_size: int,
                       scale_rewards: str) -> torch.Tensor:
    """GDPO (TRL's `normalize_then_sum`): z-score each objective within its group (always, as TRL does), scalarize,
    whiten over the batch."""
    per_objective = group_normalize(rewards, group_size, scale="group")
    return batch_whiten(scalarize(per_objective, weights, scalarization, group_size))


def rdpo_advantages(rewards: torch.Tensor, weights: torch.Tensor, scalarization: str, group_size: int,
                    scale_rewards: str = "group") -> torch.Tensor:
    """RDPO (Reward-Decorrelated Policy Optimization, arXiv 2605.13641, proposed for TRL in issue #5886): GDPO with
    its per-objective z-score replaced by a quantile normalization and a whitening of the objectives against each
    other added before the aggregation:

        u_k = quantile_normalize(r_k) within the group;  z = mahalanobis_whiten(u) within each active subspace;
        A = batch_whiten(scalarize(z, w)).

    Source: the paper's abstract and the issue (both stored copies we could read) describe the method as
    "Magnitude-Aware Quantile normalization" per reward, then "Mahalanobis whitening within each active reward
    subspace" before aggregation; we could not read the paper's equations, so the quantile map (mid-rank, centred),
    the whitening (ZCA of the second moment, per pattern of present objectives) and the final batch whitening
    (kept from GDPO, of which RDPO is the successor) are our definitions, and the paper's magnitude-aware correction
    of the quantiles is not reproduced. `scale_rewards` is not used (quantiles have no scale to choose).

    When it helps: binary or skewed rewards, where one success in a group gets a z-score that dominates the batch
    (quantiles are bounded); objectives that largely measure the same thing (two reward-model heads for helpfulness),
    which a weighted sum would count twice. It needs batches with clearly more rows than objectives (the covariance
    is estimated on each batch), and ranks forget how far apart two replies are.
    """
    whitened = mahalanobis_whiten(quantile_normalize(rewards, group_size))
    return batch_whiten(scalarize(whitened, weights, scalarization, group_size))


def variance_weighted_advantages(rewards: torch.Tensor, weights: torch.Tensor, scalarization: str, group_size: int,
                                 scale_rewards: str = "group") -> torch.Tensor:
    """MO-GRPO (Ichihara et al., arXiv 2509.22047): every reward divided by its own standard deviation before the
    weighting, so each objective contributes to the advantage in proportion to its weight, whatever its variance:

        A_i = sum_k (K w_k) (r_ik - mean_g r_k) / (std_g r_k + eps)

    with mean and std over the G completions of the prompt's group (`scale_rewards: group`, the default and the
    paper's setting; 'batch' takes each objective's std over the batch, 'none' leaves the rewards unscaled). The
    weights are scaled by K so that equal weights give the paper's unweighted sum over reward functions. Other
    scalarizations (tchebycheff, worst_case) combine the same standardized rewards under K w; their result is
    centred within the group. No batch whitening: unlike `normalize_then_sum` (GDPO) each prompt's advantages stand
    on their own. Source: the paper's abstract ("reweight the reward functions automatically according to the
    variances of their values") and public readings of its method (per-reward advantages normalized within the
    group, then summed); we could not read its equation in the stored copies, so the docstring gives ours.

    When it helps: objectives on very different scales or noise levels (a reward-model score with a wide spread
    beside a 0/1 check), where GRPO's sum is driven by the high-variance objective and the policy games it while
    the other objectives are ignored (MO-GRPO's reward hacking).
    """
    per_objective = group_normalize(rewards, group_size, scale=scale_rewards)
    scaled = broadcast_weights(weights, rewards) * rewards.shape[1]
    return group_normalize(scalarize(per_objective, scaled, scalarization, group_size), group_size, scale="none")


# The aggregations by name: GRPO's `multi_objective_aggregation` picks one of these.
AGGREGATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "sum_then_normalize": sum_then_normalize,
    "normalize_then_sum": normalize_then_sum,
    "rdpo": rdpo_advantages,
    "variance_weighted": variance_weighted_advantages,
}


def drop_partial_rows(reward_vector: torch.Tensor) -> torch.Tensor:
    """Every row with a missing (NaN) reward becomes entirely NaN: `partial_rewards="drop_row"`."""
    return reward_vector.masked_fill(torch.isnan(reward_vector).any(dim=1, keepdim=True), math.nan)


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


# ---- PAMA: the min-norm weights in closed form ----
def noon_clip(per_objective_advantages: torch.Tensor) -> torch.Tensor:
    """Noon PPO's advantage, A = max(A', 0) (PAMA, arXiv:2508.07768): negative advantages carry no gradient,
    so a noisy low-scoring completion cannot push the policy around; NaN stays NaN."""
    return per_objective_advantages.clamp(min=0.0)


def pama_min_norm(values: torch.Tensor, active: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise min over alpha in the simplex of (sum_k alpha_k v_k)^2, in closed form. values: [N, K].

    PAMA (He & Maghsudi 2025, arXiv:2508.07768, MGDA's min-norm problem made convex with a closed form): with
    the per-sample gradient of objective k equal to v_k * grad log pi, the problem is over the scalar
    s = sum_k alpha_k v_k, which sweeps exactly [min_k v_k, max_k v_k] as alpha moves on the simplex. The
    minimizer of s^2 on that
    interval is the projection of 0 onto it: s* = clamp(0, min_k v_k, max_k v_k). O(K) per row.

    The weights that reach s*: all mass on the argmin when min > 0, on the argmax when max < 0, otherwise the
    mix of argmin j and argmax l with alpha_j v_j + alpha_l v_l = 0. Tied objectives share their mass; a row whose
    values are all equal gets uniform weights (every point is optimal). `active` [N, K] leaves objectives out
    of a row (they get weight 0). Rows with a NaN give NaN. Returns (weights [N, K], s* [N]).
    """
    if values.dim() != 2:
        raise ValueError(f"pama_min_norm: expected [N, K] values, got shape {tuple(values.shape)}")
    if active is None:
        active = torch.ones_like(values, dtype=torch.bool)
    if active.shape != values.shape:
        raise ValueError(f"pama_min_norm: active mask {tuple(active.shape)} does not match values "
                         f"{tuple(values.shape)}")
    if not active.any(dim=1).all():
        raise ValueError("pama_min_norm: a row has no active objective")
    low = values.masked_fill(~active, math.inf).min(dim=1, keepdim=True).values
    high = values.masked_fill(~active, -math.inf).max(dim=1, keepdim=True).values
    combined = torch.maximum(torch.minimum(torch.zeros_like(low), high), low)

    at_low = (active & (values == low)).to(values.dtype)
    at_high = (active & (values == high)).to(values.dtype)
    at_low = at_low / at_low.sum(1, keepdim=True).clamp(min=1)
    at_high = at_high / at_high.sum(1, keepdim=True).clamp(min=1)
    span = (high - low).clamp(min=torch.finfo(values.dtype).tiny)
    mixed = (high / span) * at_low + (-low / span) * at_high
    weights = torch.where(low > 0, at_low, torch.where(high < 0, at_high, mixed))
    uniform = active.to(values.dtype) / active.sum(1, keepdim=True)
    weights = torch.where(low == high, uniform, weights)
    nan_rows = torch.isnan(values).any(dim=1, keepdim=True)
    weights = weights.masked_fill(nan_rows, math.nan)
    return weights, combined.squeeze(1).masked_fill(nan_rows.squeeze(1), math.nan)


def pama_advantages(per_objective_advantages: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """PAMA's advantage for every completion: the min-norm combination of its Noon-clipped advantages.

    Granularity: per sample (per completion). Each completion's own advantages A_ik give its own weights and
    s*_i = min_k max(A_ik, 0) (with Noon clipping the interval lies in [0, inf), so the projection of 0 is its
    lower end): a completion is reinforced only as far as it beats its group on EVERY objective. Collapsing to
    batch means first (mean_i A_ik, as the verl port does) yields one weight vector per step that puts all mass on
    the currently worst objective, and a completion that trades that objective away still gets reinforced.

    Preference weights (our extension, exact PAMA at equal weights): objective k's advantage is measured in units
    of its weight, A_ik^+ / (K w_ik), so a completion must do well on the objectives the user cares about most;
    an objective with weight 0 is left out of the minimum. Returns (advantages [N], pama weights [N, K]).
    """
    if weights.shape[-1] != per_objective_advantages.shape[-1]:
        raise ValueError(f"pama_advantages: {weights.shape[-1]} weights do not match "
                         f"{per_objective_advantages.shape[-1]} objectives")
    weights = broadcast_weights(weights, per_objective_advantages)
    active = weights > 0
    scaled = noon_clip(per_objective_advantages) / (weights * weights.shape[1]).masked_fill(~active, 1.0)
    pama_weights, combined = pama_min_norm(scaled, active)
    return combined, pama_weights


def pama_step_weights(reward_vector: torch.Tensor, weights: torch.Tensor, group_size: int,
                      scale_rewards: str = "group") -> torch.Tensor:
    """[K] mean over the batch's scored completions of PAMA's per-completion weights: what the step optimized."""
    per_objective = group_normalize(drop_partial_rows(reward_vector), group_size, scale=scale_rewards)
    _, pama_weights = pama_advantages(per_objective, weights)
    return torch.nan_to_num(torch.nanmean(pama_weights, dim=0), nan=0.0)


# ------------------------------------------------------------------------------------------------ list labels

def labels_from_reward_vector(reward_vector: torch.Tensor, weights: torch.Tensor,
                              method: str = "linear") -> torch.Tensor:
    """List labels psi from reward vectors [K_list, K_obj] under weights, min-max scaled to [0, 1] within the list.

    Any scalarization above works. Scaling to [0, 1] keeps the gains 2^psi - 1 of LiPO in the
    range the paper used (win-rates), whatever the reward scale.
    """
    scalar = scalarize(reward_vector.float(), weights, method)
    spread = scalar.max() - scalar.min()
    return (scalar - scalar.min()) / spread if spread > 0 else torch.zeros_like(scalar)


def labels_from_ranks(ranks: torch.Tensor) -> torch.Tensor:
    """List labels psi from given ranks (1 = best): psi = (K - rank) / (K - 1), so the best gets 1, the worst 0."""
    num = ranks.shape[-1]
    return (num - ranks.float()) / max(num - 1, 1)
