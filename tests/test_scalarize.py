"""Advantages against values computed by hand (2 prompts x 2 completions, 2 objectives)."""

import math

import pytest
import torch
from trl.trainer.utils import nanstd

from alignment import compute_advantages, group_normalize, scalarize
from alignment.objectives.scalarize import EPS, lagrangian_advantages, update_log_lagrange_multiplier

# rows 0,1 are group 0; rows 2,3 are group 1
REWARDS = torch.tensor([[1.0, 0.0], [3.0, 1.0], [0.0, 0.0], [2.0, 4.0]])
WEIGHTS = torch.tensor([0.75, 0.25])
SQRT2 = math.sqrt(2.0)  # unbiased std of two values a, b is |a - b| / sqrt(2)


def test_linear_scalarization_is_the_weighted_sum():
    assert torch.allclose(scalarize(REWARDS, WEIGHTS), torch.tensor([0.75, 2.5, 0.0, 2.5]))


# one group of three completions; objective 1 in other units: z-scores are (-1, 0, 1) and (1, -1, 0) (up to eps)
THREE = torch.tensor([[0.0, 10.0], [1.0, 0.0], [2.0, 5.0]])


@pytest.mark.parametrize("weights, expected", [
    # ideal point z* = (1, 1); gaps (2, 0), (1, 2), (0, 1); scalar = -max_k w_k gap_k
    ([0.5, 0.5], [-1.0, -1.0, -0.5]),
    ([0.9, 0.1], [-1.8, -0.9, -0.1]),
])
def test_tchebycheff_takes_the_largest_weighted_gap_to_the_group_ideal_on_z_scores(weights, expected):
    assert torch.allclose(scalarize(THREE, torch.tensor(weights), "tchebycheff"), torch.tensor(expected), atol=1e-3)


def test_tchebycheff_and_worst_case_do_not_depend_on_the_objectives_units():
    rescaled = THREE * torch.tensor([1.0, 100.0]) + torch.tensor([0.0, -7.0])
    for method in ("tchebycheff", "worst_case"):
        assert torch.allclose(scalarize(rescaled, torch.tensor([0.9, 0.1]), method),
                              scalarize(THREE, torch.tensor([0.9, 0.1]), method), atol=1e-3)


def test_worst_case_is_the_weighted_minimum_above_the_nadir_and_the_weights_change_the_winner():
    # rows: the nadir (0, 0), A = (1, 3), B = (3, 0.5); column stds sqrt(7/3) and sqrt(31/12)
    rewards = torch.tensor([[0.0, 0.0], [1.0, 3.0], [3.0, 0.5]])
    s0, s1 = math.sqrt(7 / 3), math.sqrt(31 / 12)
    for weights in ([0.5, 0.5], [0.9, 0.1]):
        w0, w1 = weights
        expected = [0.0, min(1 / s0 / w0, 3 / s1 / w1), min(3 / s0 / w0, 0.5 / s1 / w1)]
        assert torch.allclose(scalarize(rewards, torch.tensor(weights), "worst_case"), torch.tensor(expected),
                              atol=1e-3)
    equal, skewed = (scalarize(rewards, torch.tensor(w), "worst_case") for w in ([0.5, 0.5], [0.9, 0.1]))
    assert equal[1] > equal[2] + 0.5 and skewed[2] > skewed[1] + 1.0  # (0.9, 0.1) is not (0.5, 0.5)
    only_first = scalarize(rewards, torch.tensor([1.0, 0.0]), "worst_case")  # weight 0: out of the minimum
    assert torch.allclose(only_first, torch.tensor([0.0, 1 / s0, 3 / s0]), atol=1e-3)


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
    def a(d):
        return (d / 2) / (d / SQRT2 + EPS)

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


def test_scale_rewards_batch_divides_by_the_batch_std_and_none_does_not_divide():
    summed = (REWARDS * WEIGHTS).sum(1)  # (0.75, 2.5, 0, 2.5)
    centered = torch.tensor([-0.875, 0.875, -1.25, 1.25])
    batch_std = summed.std()  # one std over the whole batch, TRL's scale_rewards="batch"
    assert torch.allclose(compute_advantages(REWARDS, WEIGHTS, 2, scale_rewards="batch"), centered / (batch_std + EPS))
    assert torch.allclose(compute_advantages(REWARDS, WEIGHTS, 2, scale_rewards="none"), centered)
    group = compute_advantages(REWARDS, WEIGHTS, 2, scale_rewards="group")
    assert not torch.allclose(group, centered / (batch_std + EPS), atol=0.1)


def test_normalize_then_sum_divides_each_objective_by_its_group_std_whatever_scale_rewards():
    # TRL (and GDPO) always normalize each objective; 'none' must not let the high-variance objective dominate
    rewards = torch.tensor([[100.0, 0.0], [0.0, 1.0]])
    weights = torch.tensor([0.4, 0.6])
    advantages = {scale: compute_advantages(rewards, weights, 2, "normalize_then_sum", scale_rewards=scale)
                  for scale in ("group", "batch", "none")}
    assert advantages["none"][1] > 0 > advantages["none"][0]
    assert (torch.equal(advantages["none"], advantages["group"])
            and torch.equal(advantages["batch"], advantages["group"]))


def test_partial_rewards_drop_the_row_by_default_or_sum_the_objectives_present():
    rewards = torch.tensor([[1.0, math.nan], [3.0, 1.0], [0.0, 0.0], [2.0, 4.0]])
    dropped = compute_advantages(rewards, WEIGHTS, 2)
    assert dropped[:2].tolist() == [0.0, 0.0]  # the group is left with one scored completion
    present = compute_advantages(rewards, WEIGHTS, 2, partial_rewards="sum_present")
    # row 0 scores 0.75 * 1 = 0.75 (the missing objective left out), row 1 scores 2.5: as if the reward were 0
    summed = torch.tensor([0.75, 2.5])
    expected = (summed - summed.mean()) / (summed.std() + EPS)
    assert torch.allclose(present[:2], expected, atol=1e-6)
    assert torch.equal(dropped[2:], present[2:])
    empty = rewards.clone()
    empty[0] = math.nan  # a row with no reward at all gets 0 either way
    assert compute_advantages(empty, WEIGHTS, 2, partial_rewards="sum_present")[0] == 0


def test_unknown_aggregation_or_scalarization_is_rejected():
    with pytest.raises(ValueError, match="unknown aggregation"):
        compute_advantages(REWARDS, WEIGHTS, 2, aggregation="mean")
    with pytest.raises(ValueError, match="unknown scalarization"):
        compute_advantages(REWARDS, WEIGHTS, 2, scalarization="max")
    with pytest.raises(ValueError, match="unknown scale_rewards"):
        compute_advantages(REWARDS, WEIGHTS, 2, scale_rewards=True)
    with pytest.raises(ValueError, match="unknown partial_rewards"):
        compute_advantages(REWARDS, WEIGHTS, 2, partial_rewards="zero")


def test_tchebycheff_with_a_given_ideal_point_compares_raw_values_row_by_row():
    rewards = torch.tensor([[-1.0, -3.0], [-2.0, -0.5]])
    weights = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    got = scalarize(rewards, weights, "tchebycheff", ideal=torch.tensor([0.0, 0.0]))
    # -max_k w_k (0 - r_k): row 0 max(0.5, 1.5) = 1.5; row 1 max(1.8, 0.05) = 1.8 (no z-scoring, rows independent)
    assert torch.allclose(got, torch.tensor([-1.5, -1.8]))
    assert torch.allclose(scalarize(rewards[:1], weights[:1], "tchebycheff", ideal=torch.zeros(2)), got[:1])
    with pytest.raises(ValueError, match="ideal point is used by 'tchebycheff' only"):
        scalarize(rewards, weights, "linear", ideal=torch.zeros(2))
