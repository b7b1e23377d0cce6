"""Where a multi-objective preference becomes a loss: the offline preference-optimization family. Pure functions.

Every loss takes implicit-reward *log-ratios* `log pi(y|x) - log pi_ref(y|x)` (one per sequence, summed over the
completion tokens: the trainer computes them, TRL-style) and returns one loss per training unit (pair, list or
group) so the trainer can average, weight or log them (LiPO's default reduction is RAX's batch mean over pairs).
`s(y) = beta * logratio(y)` is DPO's implicit reward.

- `dpo_loss`            DPO (Rafailov et al. 2023, eq. 7) with an optional per-pair offset and weight.
- `cardinal_dpo_loss`   the score gap of a pair weights or offsets its loss ("Beyond Ordinal Preferences", 2025;
                        the offset form is ODPO, Amini et al. 2024, eq. 5).
- `modpo_loss`          MODPO (Zhou et al. 2024, "Beyond One-Preference-Fits-All", eq. 9): DPO on one objective's
                        pairs, the other objectives entering as frozen margin rewards under weights w.
- `mah_dpo_loss`        multi-head DPO: DPO per language-model head on its objective's pairs, mean over the heads
                        present in the batch.
- `per_objective_dpo_losses`, `scalarized_dpo_loss`  per-objective DPO (Panacea, Zhong et al. 2024, eq. 5-6 with
                        DPO's loss per objective): pairs labelled per objective give one DPO loss per objective,
                        combined under preference weights lambda, linearly or by Tchebycheff
                        (`alignment.objectives.scalarize`).
- `ipo_loss`            IPO (Azar et al. 2023, eq. 17): the log-ratio margin regressed onto 1/(2 beta).
- `mdpo_loss`, `mipo_loss`  group-wise DPO / IPO: k chosen vs k rejected samples compared through their means.
- `lipo_lambda_loss`    LiPO-lambda (Liu et al. 2024, "LiPO: Listwise Preference Optimization", eq. 10-11), at
                        RAX's scale by default.
- `weighted_mean`       how per-unit losses become the batch's loss under per-row weights (a dataset's
                        `pair_weight` column): sum_i p_i l_i / sum_i p_i.

The list labels these losses train on come from `alignment.objectives.scalarize` (`labels_from_reward_vector`,
`labels_from_ranks`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from alignment.objectives.scalarize import scalarize


def dpo_loss(chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, beta: float,
             offset: torch.Tensor | None = None, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Per-pair DPO loss: `weight * -log sigmoid(beta * (logratio_w - logratio_l) - offset)`.

    Rafailov et al. 2023, eq. 7. `offset` [N] asks the chosen response to win by at least that much (ODPO);
    `weight` [N] scales each pair's loss. Both default to the plain DPO loss.
    """
    logits = beta * (chosen_logratios - rejected_logratios)
    if offset is not None:
        logits = logits - offset
    losses = -F.logsigmoid(logits)
    return losses if weight is None else losses * weight


def ipo_loss(chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-pair IPO loss: `(logratio_w - logratio_l - 1 / (2 beta))^2`.

    Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human Preferences", eq. 17 (their
    tau is beta): the log-ratio margin h is regressed onto 1/(2 beta) instead of pushed to infinity, so preferences
    that always agree do not drive the policy arbitrarily far from its reference. Like TRL's `loss_type="ipo"`, the
    trainer passes log-ratios averaged over each completion's tokens, so the target does not depend on length.
    """
    return (chosen_logratios - rejected_logratios - 1.0 / (2.0 * beta)) ** 2


CARDINAL_MODES = ("weight", "offset")


def cardinal_dpo_loss(chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, score_gap: torch.Tensor,
                      beta: float, mode: str = "weight", scale: float = 1.0) -> torch.Tensor:
    """DPO where the size of a pair's score gap (score_chosen - score_rejected >= 0) matters, not only its sign.

    "Beyond Ordinal Preferences: Why Alignment Needs Cardinal Human Feedback" (2025): a pair rated 9 vs 2 says more
    than one rated 6 vs 5.5. Two ways to use it:
    - `mode="weight"`: loss_i = (scale * gap_i) * -log sigmoid(beta * Delta_i). A tie (gap 0) contributes nothing.
    - `mode="offset"` (ODPO, Amini et al. 2024, eq. 5): loss_i = -log sigmoid(beta * Delta_i - scale * gap_i): the
      chosen response must win by a margin that grows with the gap.
    """
    if mode not in CARDINAL_MODES:
        raise ValueError(f"cardinal_dpo_loss: unknown mode '{mode}'; expected one of {CARDINAL_MODES}")
    if (score_gap < 0).any():
        raise ValueError("cardinal_dpo_loss: a score gap is negative; chosen must score at least as high as rejected")
    score_gap = score_gap.to(chosen_logratios)
    if mode == "weight":
        return dpo_loss(chosen_logratios, rejected_logratios, beta, weight=scale * score_gap)
    return dpo_loss(chosen_logratios, rejected_logratios, beta, offset=scale * score_gap)


def modpo_objective_margin(chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor,
                           chosen_margins: torch.Tensor, rejected_margins: torch.Tensor, weights: torch.Tensor,
                           beta: float) -> torch.Tensor:
    """MODPO's implied reward gap of the trained objective: `(1/w_0) (s(y_w) - s(y_l) - w_{1:} . (m(y_w) - m(y_l)))`.

    Zhou et al. 2024, eq. 8-9: a MODPO policy's implicit reward beta * log pi/pi_ref estimates the weighted sum
    w . r, so objective 0's own reward is recovered by removing the margin objectives and dividing by w_0. This is
    the logit of the MODPO loss, and the margin to watch on held-out pairs of the trained objective.
    `weights` is one point [K] for every pair, or one per pair [N, K] (prompt-aware weights).
    """
    if weights.dim() not in (1, 2) or weights.shape[-1] != chosen_margins.shape[-1] + 1 or (
            weights.dim() == 2 and weights.shape[0] != chosen_logratios.shape[0]):
        raise ValueError(
            f"modpo_loss: weights of shape {tuple(weights.shape)} for {chosen_logratios.shape[0]} pairs of 1 trained "
            f"objective + {chosen_margins.shape[-1]} margin objectives; give one weight per objective, the trained "
            "one first ([K], or [N, K] with one row per pair)"
        )
    if (weights[..., 0] <= 0).any():
        raise ValueError("modpo_loss: the trained objective's weight w_0 must be > 0 (the loss divides by it)")
    weights = weights.to(chosen_logratios)
    margin_gaps = chosen_margins.to(chosen_logratios) - rejected_margins.to(chosen_logratios)
    margin_gap = (margin_gaps * weights[..., 1:]).sum(-1)
    return (beta * (chosen_logratios - rejected_logratios) - margin_gap) / weights[..., 0]


def modpo_loss(chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, chosen_margins: torch.Tensor,
               rejected_margins: torch.Tensor, weights: torch.Tensor, beta: float) -> torch.Tensor:
    """MODPO, Zhou et al. 2024, eq. 9: `-log sigmoid((1/w_0) (s(y_w) - s(y_l) - w_{1:} . (m(y_w) - m(y_l))))`.

    The pairs are labelled for objective 0 (weight `weights[0]`); objectives 1.. enter through frozen margin rewards
    `chosen_margins`, `rejected_margins` [N, K-1] (reward-model heads or reward functions scored once, before
    training). `weights` [K] is a point on the simplex with w_0 > 0, or [N, K] one per pair. With K = 1 this is DPO.
    """
    return -F.logsigmoid(modpo_objective_margin(chosen_logratios, rejected_logratios, chosen_margins,
                                                rejected_margins, weights, beta))


def weighted_mean(values: torch.Tensor, row_weights: torch.Tensor | None = None) -> torch.Tensor:
    """The weighted mean over dim 0 of [N] or [N, K] values, NaN entries left out: sum_i p_i v_i / sum_i p_i over
    the rows present (with no weights, p_i = 1: `nanmean`). Where no row is present or every present row weighs 0
    the result is NaN (nothing to average), as `nanmean` gives for an empty column; no NaN reaches the gradient of
    the rows that are averaged. Normalizing by sum_i p_i makes a batch's loss independent of the weights' scale and
    makes rows of weight 0 exactly absent."""
    present = ~torch.isnan(values)
    weights = torch.ones(values.shape[0], device=values.device) if row_weights is None else row_weights
    weights = weights.to(values).reshape(-1, *([1] * (values.dim() - 1))) * present
    total = weights.sum(dim=0)
    mean = (values.masked_fill(~present, 0.0) * weights).sum(dim=0) / total.clamp(min=torch.finfo(values.dtype).tiny)
    return mean.masked_fill(total <= 0, math.nan)


def mah_dpo_loss(chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, head_ids: torch.Tensor,
                 beta: float, pair_weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Multi-head DPO: the logratios of row n come from head `head_ids[n]` (trained on its objective's pairs).

    Loss = mean over the heads present in the batch of (mean DPO loss over that head's pairs), so a head with few
    pairs in a batch counts as much as a head with many. With `pair_weights` [N] each head's mean is weighted
    (`weighted_mean`) and a head whose pairs all weigh 0 is not present. Returns (loss, {head: its mean loss}).
    """
    per_pair = dpo_loss(chosen_logratios, rejected_logratios, beta)
    weights = torch.ones_like(per_pair) if pair_weights is None else pair_weights.to(per_pair)
    per_head = {int(h): weighted_mean(per_pair[head_ids == h], weights[head_ids == h]) for h in torch.unique(head_ids)}
    per_head = {h: loss for h, loss in per_head.items() if not torch.isnan(loss)}
    if not per_head:  # every pair of the batch weighs 0: no loss, a zero that keeps the graph
        return (per_pair * 0).sum(), {}
    return torch.stack(list(per_head.values())).mean(), per_head


def per_objective_dpo_losses(chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor,
                             objective_labels: torch.Tensor, beta: float) -> torch.Tensor:
    """[N, K] DPO losses of N pairs, one per objective; NaN where the pair has no label for that objective.

    `objective_labels` [N, K]: +1 when `chosen` is the better response under objective k, -1 when `rejected` is
    (pairs labelled per objective can disagree: the shorter reply wins on conciseness, the warmer one on
    sentiment), 0 when the pair says nothing about objective k. Loss_nk = -log sigmoid(label_nk * beta * Delta_n).
    """
    labels = objective_labels.to(chosen_logratios)
    logits = beta * (chosen_logratios - rejected_logratios).unsqueeze(-1) * labels
    return (-F.logsigmoid(logits)).masked_fill(labels == 0, math.nan)


OBJECTIVE_SCALARIZATIONS = ("linear", "tchebycheff")


def scalarized_dpo_loss(per_objective_losses: torch.Tensor, weights: torch.Tensor,
                        method: str = "linear") -> torch.Tensor:
    """Per-objective losses [N, K] (NaN: no label) under weights [N, K] or [K] -> [N] losses, by
    `alignment.objectives.scalarize`.

    A loss is a negated reward whose ideal is 0, so with L = -r: `linear` gives sum_k lambda_k L_k, `tchebycheff`
    max_k lambda_k L_k (the objective furthest from its ideal, in units of its weight, carries the gradient).
    Objectives a pair has no label for take no part.
    """
    if method not in OBJECTIVE_SCALARIZATIONS:
        raise ValueError(f"per-objective DPO: scalarization '{method}' does not apply to losses; "
                         f"expected one of {OBJECTIVE_SCALARIZATIONS}")
    ideal = torch.zeros(per_objective_losses.shape[-1]) if method == "tchebycheff" else None
    return -scalarize(-per_objective_losses, weights, method, ideal=ideal)


def _group_means(logratios: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return logratios.mean(dim=-1)
    mask = mask.to(logratios)
    if (mask.sum(dim=-1) == 0).any():
        raise ValueError("group loss: a group has no valid sample (its mask is all zero)")
    return (logratios * mask).sum(dim=-1) / mask.sum(dim=-1)


def mdpo_loss(chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, beta: float,
              chosen_mask: torch.Tensor | None = None, rejected_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Group-wise DPO (mDPO): `-log sigmoid(beta * (mean_i logratio(y_w^i) - mean_j logratio(y_l^j)))`.

    Inputs are [N, k]: k chosen and k rejected samples per prompt (masks [N, k] allow groups of unequal size).
    Comparing group means cancels per-sample noise in the labels that a single pair would carry.
    """
    delta = _group_means(chosen_logratios, chosen_mask) - _group_means(rejected_logratios, rejected_mask)
    return -F.logsigmoid(beta * delta)


def mipo_loss(chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, beta: float,
              chosen_mask: torch.Tensor | None = None, rejected_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Group-wise IPO (mIPO): `(mean_i logratio(y_w^i) - mean_j logratio(y_l^j) - 1 / (2 beta))^2`.

    IPO (Azar et al. 2024, eq. 17) regresses the log-ratio gap onto 1/(2 beta) instead of pushing it to infinity;
    here on group means. The trainer passes length-normalized logratios, like TRL's IPO.
    """
    delta = _group_means(chosen_logratios, chosen_mask) - _group_means(rejected_logratios, rejected_mask)
    return (delta - 1.0 / (2.0 * beta)) ** 2


LIPO_REDUCTIONS = ("rax", "sum")


def lipo_lambda_loss(logratios: torch.Tensor, labels: torch.Tensor, beta: float,
                     mask: torch.Tensor | None = None, reduction: str = "rax",
                     list_weights: torch.Tensor | None = None) -> torch.Tensor:
    """LiPO-lambda (Liu et al. 2024, eq. 10-11 and Algorithm 1).

    With s_i = beta * logratio_i and labels psi_i (higher is better), over the pairs psi_i > psi_j:
        l_ij = Delta_ij * log(1 + exp(-(s_i - s_j)))
        Delta_ij = |G_i - G_j| * |1/D(tau_i) - 1/D(tau_j)|,  G = 2^psi - 1,  D(tau) = log2(1 + tau)
    where tau is the 1-based rank of each response under the model's scores s (descending). The lambda weights
    Delta_ij are constants (no gradient): they say how much swapping i and j would change the list's DCG. The
    log2 discount is the one of the paper's Algorithm 1 (RAX's `dcg_lambdaweight`).
    `logratios`, `labels`, `mask` are [N, K]; masked-out entries (mask 0) take part in no pair.

    reduction:
    - `"rax"` (default): the scalar RAX's `pairwise_logistic_loss(..., lambdaweight_fn=dcg_lambdaweight,
      reduce_fn=jnp.mean)` returns, the call in LiPO's Algorithm 1: Delta_ij times the list size, averaged over
      every valid pair of the batch. One deliberate difference: the list size is each list's own number of
      responses, where RAX multiplies by the padded width, so padding a list does not change its loss (without
      padding the two agree).
    - `"sum"`: [N], each list's sum of l_ij (eq. 11 as written, no normalization).
    `list_weights` [N]: with "rax", list n's pairs count p_n times, in the numerator and in the count of pairs, so a
    list of weight 0 takes no part (a batch where all weigh 0 gives 0); "sum" returns every list's own sum and
    leaves weighing the lists to the caller.
    """
    if reduction not in LIPO_REDUCTIONS:
        raise ValueError(f"lipo_lambda_loss: unknown reduction {reduction!r}; expected one of {LIPO_REDUCTIONS}")
    scores = beta * logratios
    valid = torch.ones_like(scores, dtype=torch.bool) if mask is None else mask.bool()
    with torch.no_grad():
        # Rank valid responses by score; padding sorts last so it never takes a rank from a real response.
        ranking_scores = scores.detach().masked_fill(~valid, -math.inf)
        order = ranking_scores.argsort(dim=-1, descending=True, stable=True)  # ties: index order
        ranks = torch.empty_like(order)
        ranks.scatter_(-1, order, torch.arange(1, scores.shape[-1] + 1, device=scores.device).expand_as(order))
        gains = torch.pow(2.0, labels.to(scores)) - 1.0
        inverse_discounts = 1.0 / torch.log2(1.0 + ranks.to(scores))
        delta = (gains.unsqueeze(-1) - gains.unsqueeze(-2)).abs() * (
            inverse_discounts.unsqueeze(-1) - inverse_discounts.unsqueeze(-2)
        ).abs()
        labels = labels.to(scores)
        pair_mask = (labels.unsqueeze(-1) > labels.unsqueeze(-2)) & valid.unsqueeze(-1) & valid.unsqueeze(-2)
    score_diff = scores.unsqueeze(-1) - scores.unsqueeze(-2)  # [N, K, K]: s_i - s_j
    pair_losses = delta * F.softplus(-score_diff) * pair_mask  # softplus(-x) = log(1 + exp(-x)), stable
    if reduction == "sum":
        return pair_losses.sum(dim=(-1, -2))
    list_sizes = valid.sum(dim=-1).to(scores)[:, None, None]
    if list_weights is None:
        return (pair_losses * list_sizes).sum() / pair_mask.sum().clamp(min=1)
    weights = list_weights.to(scores)[:, None, None]
    pairs = (pair_mask * weights).sum()
    return (pair_losses * list_sizes * weights).sum() / pairs.clamp(min=torch.finfo(scores.dtype).tiny)
