"""Masked Bradley-Terry and regression losses against hand-computed values."""


import pytest
import torch

from reward_models.losses import masked_bradley_terry_loss, masked_regression_loss, multi_head_reward_loss
from tests.helpers import neg_log_sigmoid

CHOSEN = torch.tensor([[1.0, 0.0], [0.5, 2.0]])
REJECTED = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
PAIR_MASK = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # row 0 labels head 0, row 1 labels head 1


def test_bradley_terry_averages_only_the_labelled_cells():
    expected = (neg_log_sigmoid(1.0) + neg_log_sigmoid(2.0)) / 2  # gaps 1 (row 0, head 0) and 2 (row 1, head 1)
    assert masked_bradley_terry_loss(CHOSEN, REJECTED, PAIR_MASK).item() == pytest.approx(expected, rel=1e-6)


def test_bradley_terry_margin_offset_moves_the_gap_inside_the_sigmoid():
    margins = torch.tensor([0.5, 1.0])
    expected = (neg_log_sigmoid(1.0 - 0.5) + neg_log_sigmoid(2.0 - 1.0)) / 2
    loss = masked_bradley_terry_loss(CHOSEN, REJECTED, PAIR_MASK, margins, margin_mode="offset")
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_bradley_terry_margin_weight_is_a_weighted_mean_over_pairs():
    margins = torch.tensor([2.0, 1.0])
    expected = (2.0 * neg_log_sigmoid(1.0) + 1.0 * neg_log_sigmoid(2.0)) / 3.0
    loss = masked_bradley_terry_loss(CHOSEN, REJECTED, PAIR_MASK, margins, margin_mode="weight")
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_bradley_terry_gradient_reaches_only_labelled_heads():
    chosen = CHOSEN.clone().requires_grad_(True)
    masked_bradley_terry_loss(chosen, REJECTED, PAIR_MASK).backward()
    assert chosen.grad[0, 1] == 0 and chosen.grad[1, 0] == 0
    assert chosen.grad[0, 0] < 0 or chosen.grad[0, 0] > 0


def test_bradley_terry_without_pairs_is_zero_and_differentiable():
    chosen = CHOSEN.clone().requires_grad_(True)
    loss = masked_bradley_terry_loss(chosen, REJECTED, torch.zeros_like(PAIR_MASK))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(chosen.grad, torch.zeros_like(chosen))


def test_unknown_margin_mode_is_rejected():
    with pytest.raises(ValueError, match="margin_mode"):
        masked_bradley_terry_loss(CHOSEN, REJECTED, PAIR_MASK, margin_mode="ratio")


def test_regression_averages_squared_error_over_rated_cells_and_ignores_nan_elsewhere():
    scores = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    ratings = torch.tensor([[0.0, float("nan")], [float("nan"), 1.0]])
    mask = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss = masked_regression_loss(scores, ratings, mask)
    assert loss.item() == pytest.approx(((1 - 0) ** 2 + (4 - 1) ** 2) / 2)
    loss.backward()
    assert torch.isfinite(scores.grad).all()
    assert torch.allclose(scores.grad, torch.tensor([[1.0, 0.0], [0.0, 3.0]]))  # d/ds (s - r)^2 / 2 = (s - r)


def test_total_loss_adds_weighted_regression_to_bradley_terry():
    scores = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    ratings, mask = torch.tensor([[0.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    losses = multi_head_reward_loss(CHOSEN, REJECTED, PAIR_MASK, scores, ratings, mask, rating_loss_weight=0.5)
    expected = (neg_log_sigmoid(1.0) + neg_log_sigmoid(2.0)) / 2 + 0.5 * (4 - 1) ** 2
    assert losses["loss"].item() == pytest.approx(expected, rel=1e-6)


def test_head_balance_averages_each_heads_own_loss_with_rated_mse_in_units_of_rating_variance():
    # Three pairs for head 0, one for head 1; head 2 rated on two rows with training-rating variance 4.
    chosen = torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    rejected = torch.zeros(4, 3)
    pair_mask = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0]])
    rated = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -2.0]])
    ratings = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
    rating_mask = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    variance = torch.tensor([1.0, 1.0, 4.0])
    head_0 = (neg_log_sigmoid(1.0) + neg_log_sigmoid(2.0) + neg_log_sigmoid(0.0)) / 3
    head_1 = neg_log_sigmoid(-1.0)
    head_2 = ((1 - 0) ** 2 + (-2 + 1) ** 2) / 2 / 4.0
    # chosen/rejected rows and rated rows are separate tensors here: pad each to the other's batch with empty masks
    losses = multi_head_reward_loss(
        chosen, rejected, pair_mask, torch.cat([rated, torch.zeros(2, 3)]), torch.cat([ratings, torch.zeros(2, 3)]),
        torch.cat([rating_mask, torch.zeros(2, 3)]), balance="heads", rating_variance=variance, rating_loss_weight=0.5,
    )
    assert losses["loss"].item() == pytest.approx((head_0 + head_1 + 0.5 * head_2) / 3, rel=1e-6)
    cells = multi_head_reward_loss(chosen, rejected, pair_mask, torch.cat([rated, torch.zeros(2, 3)]),
                                   torch.cat([ratings, torch.zeros(2, 3)]), torch.cat([rating_mask, torch.zeros(2, 3)]),
                                   balance="cells", rating_loss_weight=0.5)
    # cells: the 4 pairs pooled (head 0 weighs 3/4), MSE unscaled
    expected_cells = (3 * head_0 + head_1) / 4 + 0.5 * head_2 * 4.0
    assert cells["loss"].item() == pytest.approx(expected_cells, rel=1e-6)


def test_head_balance_ignores_heads_without_labels_in_the_batch():
    chosen, rejected = torch.tensor([[1.0, 5.0]]), torch.tensor([[0.0, 0.0]])
    losses = multi_head_reward_loss(chosen, rejected, torch.tensor([[1.0, 0.0]]), chosen, torch.zeros(1, 2),
                                    torch.zeros(1, 2), balance="heads")
    assert losses["loss"].item() == pytest.approx(neg_log_sigmoid(1.0), rel=1e-6)  # head 1 is absent, not a zero


def test_unknown_balance_is_rejected():
    with pytest.raises(ValueError, match="balance"):
        multi_head_reward_loss(CHOSEN, REJECTED, PAIR_MASK, CHOSEN, CHOSEN, PAIR_MASK, balance="uncertainty")


def test_rating_variance_is_measured_per_head_on_rated_rows_only():
    from datasets import Dataset

    from reward_models.trainer import rating_variance

    dataset = Dataset.from_dict({"rating": [[0.0, -1.0], [0.0, -3.0], [9.0, 0.0]],
                                 "rating_mask": [[0.0, 1.0], [0.0, 1.0], [0.0, 0.0]]})
    # head 0 has no ratings -> 1; head 1: sample variance of (-1, -3) = 2
    assert rating_variance(dataset, 2).tolist() == pytest.approx([1.0, 2.0])
