"""Advantages against values computed by hand (2 prompts x 2 completions, 2 objectives)."""

import math

import pytest
import torch
from trl.trainer.utils import nanstd

from alignment.scalarize import (
    EPS,
    compute_advantages,
    group_normalize,
    lagrangian_advantages,
    scalarize,
    update_ideal_point,
    update_log_lagrange_multiplier,
)

# rows 0,1 are group 0; rows 2,3 are group 1
REWARDS = torch.tensor([[1.0, 0.0], [3.0, 1.0], [0.0, 0.0], [2.0, 4.0]])
WEIGHTS = torch.tensor([0.75, 0.25])
SQRT2 = math.sqrt(2.0)  # unbiased std of two values a, b is |a - b| / sqrt(2)


def test_linear_scalarization_is_the_weighted_sum():
    assert torch.allclose(scalarize(REWARDS, WEIGHTS), torch.tensor([0.75, 2.5, 0.0, 2.5]))


def test_tchebycheff_uses_the_largest_weighted_gap_to_the_ideal_point():
    ideal = torch.tensor([3.0, 4.0])
    # row 0: max(0.75*2, 0.25*4) = 1.5 ; row 1: max(0, 0.75) = 0.75 ; row 2: max(2.25, 1) ; row 3: max(0.75, 0)
    assert torch.allclose(scalarize(REWARDS, WEIGHTS, "tchebycheff", ideal), torch.tensor([-1.5, -0.75, -2.25, -0.75]))


def test_worst_case_takes_the_minimum_of_standardized_objectives_with_positive_weight():
    column_mean, column_std = REWARDS.mean(0), REWARDS.std(0)
    standardized = (REWARDS - column_mean) / (column_std + EPS)
    assert torch.allclose(scalarize(REWARDS, WEIGHTS, "worst_case"), standardized.min(1).values)
    only_first = scalarize(REWARDS, torch.tensor([1.0, 0.0]), "worst_case")
    assert torch.allclose(only_first, standardized[:, 0])


def test_sum_then_normalize_normalizes_the_weighted_sum_within_each_group():
    # group 0: R = (0.75, 2.5): diff 1.75, std 1.75/sqrt2 -> advantages -/+ sqrt2/2 (up to eps)
    # group 1: R = (0, 2.5)
    advantages = compute_advantages(REWARDS, WEIGHTS, group_size=2)
    expected = torch.tensor([-(0.875) / (1.75 / SQRT2 + EPS), 0.875 / (1.75 / SQRT2 + EPS),
                             -1.25 / (2.5 / SQRT2 + EPS), 1.25 / (2.5 / SQRT2 + EPS)])
    assert torch.allclose(advantages, expected, atol=1e-6)


def test_sum_then_normalize_reproduces_trl_grpo_advantages():
    torch.manual_seed(0)
    rewards, weights = torch.randn(24, 3), torch.tensor([0.2, 0.5, 0.3])
    summed = (rewards * weights).sum(1).view(-1, 4)
    trl_style = ((summed - summed.mean(1, keepdim=True)) / (nanstd(summed, dim=1, keepdim=True) + 1e-4)).flatten()
    assert torch.allclose(compute_advantages(rewards, weights, group_size=4), trl_style, atol=1e-6)


def test_normalize_then_sum_normalizes_each_objective_then_whitens_the_batch():
    # each objective within each group: two distinct values -> -/+ d/(d/sqrt2 + eps) ~ -/+ 0.7071
    a = lambda d: (d / 2) / (d / SQRT2 + EPS)
    per_objective = torch.tensor([[-a(2), -a(1)], [a(2), a(1)], [-a(2), -a(4)], [a(2), a(4)]])
    combined = (per_objective * WEIGHTS).sum(1)
    expected = (combined - combined.mean()) / (combined.std() + EPS)
    assert torch.allclose(compute_advantages(REWARDS, WEIGHTS, 2, "normalize_then_sum"), expected, atol=1e-6)


def test_normalize_then_sum_is_not_dominated_by_the_high_variance_objective():
    # objective 0 varies by 100 and favours row 0; objective 1 varies by 1 and favours row 1, and weighs more
    rewards = torch.tensor([[100.0, 0.0], [0.0, 1.0]])
    weights = torch.tensor([0.4, 0.6])
    summed = compute_advantages(rewards, weights, 2, "sum_then_normalize")
    per_objective = compute_advantages(rewards, weights, 2, "normalize_then_sum")
    assert summed[0] > 0 > summed[1]  # the scale of objective 0 wins despite its smaller weight
    assert per_objective[1] > 0 > per_objective[0]  # the weights decide


def test_lagrangian_combines_main_and_constraint_advantages():
    main, constraint = torch.tensor([1.0, -1.0]), torch.tensor([-1.0, 1.0])
    assert torch.allclose(lagrangian_advantages(main, constraint, 3.0), torch.tensor([-0.5, 0.5]))
    advantages = compute_advantages(REWARDS, WEIGHTS, 2, scalarization="lagrangian", lagrangian=(0, 1, 1.0))
    normalized = group_normalize(REWARDS, 2)
    assert torch.allclose(advantages, (normalized[:, 0] + normalized[:, 1]) / 2)


def test_lagrange_multiplier_grows_while_the_constraint_is_violated_and_shrinks_once_it_holds():
    log_lambda = 0.0
    violated = update_log_lagrange_multiplier(log_lambda, constraint_mean=0.2, threshold=0.5, learning_rate=0.1,
                                              lambda_max=10)
    assert violated == pytest.approx(0.1 * 1.0 * 0.3)
    satisfied = update_log_lagrange_multiplier(log_lambda, constraint_mean=0.9, threshold=0.5, learning_rate=0.1,
                                               lambda_max=10)
    assert satisfied == pytest.approx(-0.04)
    clipped = update_log_lagrange_multiplier(math.log(9.9), 0.0, 100.0, 1.0, lambda_max=10)
    assert clipped == pytest.approx(math.log(10))


def test_dropped_rows_get_zero_advantage_and_stay_out_of_the_statistics():
    rewards = REWARDS.clone()
    rewards[0] = math.nan
    rewards = torch.cat([rewards, torch.tensor([[5.0, 5.0], [1.0, 1.0]])])  # rows 4, 5 : a third group
    advantages = compute_advantages(rewards, WEIGHTS, 2)
    assert advantages[0] == 0 and advantages[1] == 0  # a group with one valid row carries no signal
    assert torch.allclose(advantages[2:], compute_advantages(rewards[2:], WEIGHTS, 2))
    assert not torch.isnan(advantages).any()


def test_ideal_point_is_the_running_maximum():
    first = update_ideal_point(None, REWARDS)
    assert first.tolist() == [3.0, 4.0]
    assert update_ideal_point(first, torch.tensor([[5.0, math.nan]])).tolist() == [5.0, 4.0]


def test_unknown_aggregation_or_scalarization_is_rejected():
    with pytest.raises(ValueError, match="unknown aggregation"):
        compute_advantages(REWARDS, WEIGHTS, 2, aggregation="mean")
    with pytest.raises(ValueError, match="unknown scalarization"):
        compute_advantages(REWARDS, WEIGHTS, 2, scalarization="max")
