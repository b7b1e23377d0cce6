"""Training losses of the multi-head reward model: Bradley-Terry on pairwise heads, regression on rated heads.

Every row of a data mixture feeds some heads and not others. A mask of shape [B, K] says which (row, head) cells
carry a label; the losses below average over those cells only, so a batch that mixes HH helpful pairs, HH
harmless pairs and per-aspect ratings trains each head on its own data and leaves the others untouched.

Notation: s_k(x) is head k's scalar score of text x; for a pair, y_w is the chosen and y_l the rejected text.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MARGIN_MODES = ("none", "weight", "offset")
BALANCE_MODES = ("cells", "heads")


def masked_bradley_terry_loss(
    chosen_scores: torch.Tensor,
    rejected_scores: torch.Tensor,
    pair_mask: torch.Tensor,
    margins: torch.Tensor | None = None,
    margin_mode: str = "none",
) -> torch.Tensor:
    """Bradley-Terry negative log-likelihood per head, averaged over the labelled (pair, head) cells.

    Bradley & Terry (1952), as used for reward models by Ouyang et al. (2022, InstructGPT, eq. 1):

        l_pk = -log sigmoid( s_k(y_w^p) - s_k(y_l^p) - o_p )
        L    = sum_{p,k} a_pk l_pk / sum_{p,k} a_pk

    with mask m_pk in {0, 1} and margin g_p >= 0 (e.g. UltraFeedback's score gap):
    - margin_mode "none":   o_p = 0,   a_pk = m_pk                        (ordinal pairs)
    - margin_mode "offset": o_p = g_p, a_pk = m_pk                        (Touvron et al. 2023, Llama 2, eq. 2)
    - margin_mode "weight": o_p = 0,   a_pk = m_pk g_p                    (cardinal weighting: a pair counts in
                                                                           proportion to how clearly it was preferred)
    Shapes: scores and mask [B, K], margins [B]. Returns a scalar; 0 (still attached to the graph) with no labels.
    """
    per_cell, weights = _bradley_terry_cells(chosen_scores, rejected_scores, pair_mask, margins, margin_mode)
    return (per_cell * weights).sum() / weights.sum().clamp(min=torch.finfo(weights.dtype).tiny)


def _bradley_terry_cells(chosen_scores, rejected_scores, pair_mask, margins, margin_mode):
    """(per-cell loss, per-cell weight) [B, K] under the margin mode; unlabelled cells have loss 0 and weight 0."""
    if margin_mode not in MARGIN_MODES:
        raise ValueError(f"margin_mode must be one of {MARGIN_MODES}, got {margin_mode!r}")
    if margin_mode != "none" and margins is None:
        raise ValueError(f"margin_mode={margin_mode!r} needs the margins of the pairs")
    score_gap = chosen_scores - rejected_scores
    weights = pair_mask.to(score_gap.dtype)
    if margin_mode == "offset":
        score_gap = score_gap - margins.to(score_gap.dtype).unsqueeze(1)
    elif margin_mode == "weight":
        weights = weights * margins.to(score_gap.dtype).unsqueeze(1)
    # Masked cells may hold anything (even inf from padding rows): select instead of multiplying to keep NaN out.
    per_cell = torch.where(weights > 0, -F.logsigmoid(score_gap), torch.zeros_like(score_gap))
    return per_cell, weights


def masked_regression_loss(scores: torch.Tensor, ratings: torch.Tensor, rating_mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error per head, averaged over the rated (row, head) cells.

        L = sum_{i,k} m_ik (s_k(x_i) - r_ik)^2 / sum_{i,k} m_ik

    Shapes [B, K]. Unrated cells may hold any value (NaN included): they are selected out, not multiplied by 0.
    Returns a scalar; 0 (still attached to the graph) when no cell is rated.
    """
    mask = rating_mask.to(scores.dtype) > 0
    # Unrated cells target the (detached) score itself: zero error, and no NaN can leak into the gradient.
    targets = torch.where(mask, ratings.to(scores.dtype), scores.detach())
    return ((scores - targets) ** 2).sum() / mask.sum().clamp(min=1)


def per_head_bradley_terry_loss(chosen_scores, rejected_scores, pair_mask, margins=None, margin_mode="none"):
    """(loss [K], labelled [K]): head k's Bradley-Terry loss averaged over ITS OWN pairs, and whether it has any.

    Same per-cell loss and margin handling as `masked_bradley_terry_loss`; a head without pairs gets 0.
    """
    per_cell, weights = _bradley_terry_cells(chosen_scores, rejected_scores, pair_mask, margins, margin_mode)
    total = weights.sum(dim=0)
    return (per_cell * weights).sum(dim=0) / total.clamp(min=torch.finfo(weights.dtype).tiny), total > 0


def per_head_regression_loss(scores, ratings, rating_mask):
    """(loss [K], labelled [K]): head k's mean squared error over its rated rows, and whether it has any."""
    mask = rating_mask.to(scores.dtype) > 0
    targets = torch.where(mask, ratings.to(scores.dtype), scores.detach())
    count = mask.sum(dim=0)
    return ((scores - targets) ** 2).sum(dim=0) / count.clamp(min=1), count > 0


def multi_head_reward_loss(
    chosen_scores: torch.Tensor,
    rejected_scores: torch.Tensor,
    pair_mask: torch.Tensor,
    rated_scores: torch.Tensor,
    ratings: torch.Tensor,
    rating_mask: torch.Tensor,
    margins: torch.Tensor | None = None,
    margin_mode: str = "none",
    rating_loss_weight: float = 1.0,
    balance: str = "cells",
    rating_variance: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The training loss of all heads, and its parts for logging.

    balance "cells":  L = L_BT + w * L_MSE, each averaged over all labelled cells of the batch, so a head's weight
                      is its share of the batch's labels (HH heads with 1.6k pairs each drown 340-row rated heads).
    balance "heads":  L = mean over the heads labelled in the batch of L_k, with
                      L_k = BT loss of head k over its own pairs                      (pairwise heads)
                      L_k = w * MSE_k / Var_k, Var_k the variance of its training ratings (rated heads)
                      so every head weighs the same whatever its data count, and a rated head's loss is in units
                      of its ratings' variance (1 = predicting the mean), comparable to BT's ln 2 at chance.
    """
    if balance not in BALANCE_MODES:
        raise ValueError(f"balance must be one of {BALANCE_MODES}, got {balance!r}")
    if balance == "cells":
        pairwise = masked_bradley_terry_loss(chosen_scores, rejected_scores, pair_mask, margins, margin_mode)
        regression = masked_regression_loss(rated_scores, ratings, rating_mask)
        return {"loss": pairwise + rating_loss_weight * regression, "pairwise_loss": pairwise,
                "regression_loss": regression}
    pair_losses, has_pairs = per_head_bradley_terry_loss(chosen_scores, rejected_scores, pair_mask, margins,
                                                         margin_mode)
    rated_losses, has_ratings = per_head_regression_loss(rated_scores, ratings, rating_mask)
    if rating_variance is not None:
        rated_losses = rated_losses / rating_variance.to(rated_losses).clamp(min=1e-6)
    head_losses = torch.where(has_pairs, pair_losses, torch.zeros_like(pair_losses)) \
        + rating_loss_weight * torch.where(has_ratings, rated_losses, torch.zeros_like(rated_losses))
    labelled = (has_pairs | has_ratings).to(head_losses.dtype)
    loss = (head_losses * labelled).sum() / labelled.sum().clamp(min=1)
    mean_of = lambda values, present: (values * present).sum() / present.sum().clamp(min=1)  # noqa: E731
    return {"loss": loss, "pairwise_loss": mean_of(pair_losses, has_pairs.to(pair_losses.dtype)),
            "regression_loss": mean_of(rated_losses, has_ratings.to(rated_losses.dtype))}
