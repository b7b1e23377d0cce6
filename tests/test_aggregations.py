"""The aggregations table (alignment.objectives.scalarize.AGGREGATIONS): RDPO's quantile normalization and whitening,
MO-GRPO's variance weighting, hand-computed; the properties each is for; and GRPO accepting both names although
TRL's own GRPOTrainer knows only its two."""

import math

import pytest
import torch

from alignment import MultiObjectiveGRPOConfig
from alignment.objectives.advantages import compute_advantages
from alignment.objectives.scalarize import (
    AGGREGATIONS,
    EPS,
    batch_whiten,
    mahalanobis_whiten,
    quantile_normalize,
    rdpo_advantages,
    variance_weighted_advantages,
)
from tests.test_grpo_trainer import make_trainer


def test_the_table_holds_trls_two_and_the_two_new_ones():
    assert list(AGGREGATIONS) == ["sum_then_normalize", "normalize_then_sum", "rdpo", "variance_weighted"]


# ---- RDPO ----

def test_quantiles_by_hand():
    # mid-rank quantile, centred: (#below + #equal / 2) / n - 1/2
    values = torch.tensor([3.0, 1.0, 2.0, 2.0, 0.0, 0.0, 0.0, 1.0])
    assert quantile_normalize(values, 4).tolist() == [0.375, -0.375, 0.0, 0.0, -0.125, -0.125, -0.125, 0.375]
    constant = quantile_normalize(torch.tensor([[5.0, 1.0], [5.0, 2.0]]), 2)
    assert constant[:, 0].tolist() == [0.0, 0.0] and constant[:, 1].tolist() == [-0.25, 0.25]
    # a missing reward stays missing and the others rank among the n = 3 present
    with_nan = quantile_normalize(torch.tensor([1.0, math.nan, 3.0, 2.0]), 4)
    assert with_nan[[0, 2, 3]].tolist() == pytest.approx([-1 / 3, 1 / 3, 0.0]) and math.isnan(with_nan[1])


def test_a_rare_success_is_bounded_where_its_z_score_is_not():
    # one success in a group of 8: the z-score gives it (1 - 1/8) / sigma = 2.47, the quantile (1 - 1/8) / 2
    rare = torch.tensor([1.0] + [0.0] * 7)
    assert quantile_normalize(rare, 8)[0].item() == pytest.approx(0.4375)
    sigma = math.sqrt(1 / 8 * 7 / 8 * 8 / 7)
    assert (rare - rare.mean())[0].item() / sigma == pytest.approx(2.4749, abs=1e-4)
    # and no quantile ever leaves (-1/2, 1/2), whatever the reward's scale
    wild = torch.tensor([1e6, -3.0, 0.0, 7.0])
    assert quantile_normalize(wild, 4).abs().max() < 0.5


def test_whitening_by_hand():
    # orthogonal columns: M = diag(1, 4), so column 0 is divided by 1 and column 1 by 2
    orthogonal = torch.tensor([[1.0, 2.0], [-1.0, -2.0], [1.0, -2.0], [-1.0, 2.0]])
    assert mahalanobis_whiten(orthogonal).tolist() == [[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]]
    # a duplicated objective: M = 2.5 [[1, 1], [1, 1]] has one direction, [1, 1] / sqrt(2), eigenvalue 5;
    # each column becomes x / sqrt(5), so the pair sums to sqrt(2) x / sqrt(2.5): it counts sqrt(2) times, not twice
    x = torch.tensor([1.0, -1.0, 2.0, -2.0])
    duplicated = mahalanobis_whiten(torch.stack([x, x], dim=1))
    assert duplicated[:, 0].tolist() == pytest.approx((x / math.sqrt(5)).tolist())
    single = mahalanobis_whiten(x.unsqueeze(1))[:, 0]
    assert duplicated.sum(dim=1).tolist() == pytest.approx((math.sqrt(2) * single).tolist())


def test_whitening_happens_within_each_active_subspace():
    # rows 0-1 carry both objectives, rows 2-3 only the first: each part is whitened on its own
    values = torch.tensor([[1.0, 2.0], [-1.0, -2.0], [3.0, math.nan], [-3.0, math.nan]])
    whitened = mahalanobis_whiten(values)
    assert whitened[2:, 0].tolist() == [1.0, -1.0] and whitened[2:, 1].isnan().all()
    # rows 0-1: M = [[1, 2], [2, 4]], rank one along (1, 2) / sqrt(5), eigenvalue 5 -> x M^+1/2 = (1, 2) / sqrt(5)
    assert whitened[0].tolist() == pytest.approx([1 / math.sqrt(5), 2 / math.sqrt(5)])


def test_rdpo_advantages_by_hand():
    # two groups of two; quantiles +-1/4; the columns are orthogonal with M = diag(1/16, 1/16), so whitening
    # multiplies by 4; under weights (0.75, 0.25) the scalar is (0.5, -0.5, 1, -1), then whitened over the batch
    rewards = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    advantages = rdpo_advantages(rewards, torch.tensor([0.75, 0.25]), "linear", 2)
    std = math.sqrt((0.25 + 0.25 + 1 + 1) / 3)
    assert advantages.tolist() == pytest.approx([x / (std + EPS) for x in (0.5, -0.5, 1.0, -1.0)], abs=1e-6)
    assert torch.equal(compute_advantages(rewards, torch.tensor([0.75, 0.25]), 2, aggregation="rdpo"), advantages)


def test_rdpo_counts_redundant_objectives_once_where_gdpo_counts_them_twice():
    # objectives 0 and 1 measure the same thing, objective 2 disagrees with them on every group
    generator = torch.Generator().manual_seed(0)
    shared = torch.randn(64, generator=generator)
    other = -shared + 0.1 * torch.randn(64, generator=generator)
    rewards = torch.stack([shared, shared, other], dim=1)
    equal = torch.full((3,), 1 / 3)
    gdpo = compute_advantages(rewards, equal, 8, aggregation="normalize_then_sum")
    rdpo = compute_advantages(rewards, equal, 8, aggregation="rdpo")
    # GDPO: two votes for `shared` against one for `other`, so its advantages follow `shared`
    assert torch.corrcoef(torch.stack([gdpo, shared]))[0, 1] > 0.8
    # RDPO: after whitening the duplicated pair weighs as one objective, so neither side dominates this much
    assert torch.corrcoef(torch.stack([rdpo, shared]))[0, 1] < 0.5


# ---- MO-GRPO ----

def test_variance_weighted_by_hand():
    # one group of 4: objective 0 (0, 0, 0, 4): mean 1, unbiased std 2 -> (-0.5, -0.5, -0.5, 1.5);
    # objective 1 (1, 2, 3, 4): mean 2.5, std sqrt(5/3) -> (-1.5, -0.5, 0.5, 1.5) / 1.29099
    rewards = torch.tensor([[0.0, 1.0], [0.0, 2.0], [0.0, 3.0], [4.0, 4.0]])
    std1 = math.sqrt(5 / 3)
    z0 = [d / (2 + EPS) for d in (-1.0, -1.0, -1.0, 3.0)]
    z1 = [d / (std1 + EPS) for d in (-1.5, -0.5, 0.5, 1.5)]
    # equal weights are the paper's unweighted sum over reward functions (K w_k = 1)
    equal = variance_weighted_advantages(rewards, torch.tensor([0.5, 0.5]), "linear", 4)
    assert equal.tolist() == pytest.approx([a + b for a, b in zip(z0, z1)], abs=1e-6)
    skewed = compute_advantages(rewards, torch.tensor([0.75, 0.25]), 4, aggregation="variance_weighted")
    assert skewed.tolist() == pytest.approx([1.5 * a + 0.5 * b for a, b in zip(z0, z1)], abs=1e-6)


def test_variance_weighting_ignores_each_objectives_scale_where_grpo_does_not():
    generator = torch.Generator().manual_seed(1)
    rewards = torch.randn(32, 2, generator=generator)
    loud = rewards * torch.tensor([100.0, 1.0])  # one objective on a scale 100 times larger
    weights = torch.tensor([0.5, 0.5])
    grpo = [compute_advantages(r, weights, 8, aggregation="sum_then_normalize") for r in (rewards, loud)]
    mo_grpo = [compute_advantages(r, weights, 8, aggregation="variance_weighted") for r in (rewards, loud)]
    assert torch.allclose(mo_grpo[0], mo_grpo[1], atol=1e-3)
    # GRPO's sum now follows the loud objective alone (its advantage on objective 0 only)
    loud_alone = compute_advantages(loud[:, :1], torch.ones(1), 8, aggregation="sum_then_normalize")
    assert torch.corrcoef(torch.stack([grpo[1], loud_alone]))[0, 1] > 0.99
    assert torch.corrcoef(torch.stack([grpo[0], grpo[1]]))[0, 1] < 0.9


def test_no_batch_whitening_each_group_stands_alone():
    # a second group whose rewards are 10 times larger changes nothing in the first group's advantages
    first = torch.tensor([[0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [3.0, 1.0]])
    alone = variance_weighted_advantages(first, torch.tensor([0.5, 0.5]), "linear", 4)
    together = variance_weighted_advantages(torch.cat([first, 10 * first.flip(0)]), torch.tensor([0.5, 0.5]),
                                            "linear", 4)
    assert torch.allclose(together[:4], alone) and not torch.allclose(batch_whiten(alone), alone)


@pytest.mark.parametrize("aggregation", ["rdpo", "variance_weighted"])
def test_rows_without_rewards_get_advantage_zero(aggregation):
    rewards = torch.tensor([[1.0, 0.0], [math.nan, 1.0], [0.0, 1.0], [2.0, 3.0]])
    advantages = compute_advantages(rewards, torch.tensor([0.5, 0.5]), 4, aggregation=aggregation)
    assert advantages[1] == 0.0 and torch.isfinite(advantages).all()


# ---- GRPO: the config and TRL's trainer ----

def test_the_grpo_config_accepts_the_table_and_refuses_other_names():
    for name in AGGREGATIONS:
        assert MultiObjectiveGRPOConfig(output_dir="/tmp/unused", multi_objective_aggregation=name, report_to="none",
                                        use_cpu=True).multi_objective_aggregation == name
    with pytest.raises(ValueError, match="multi_objective_aggregation must be one of"):
        MultiObjectiveGRPOConfig(output_dir="/tmp/unused", multi_objective_aggregation="gdpo", report_to="none",
                                 use_cpu=True)


@pytest.mark.parametrize("aggregation", ["rdpo", "variance_weighted"])
def test_grpo_trains_with_an_aggregation_trl_does_not_know(tiny_policy_path, tmp_path, aggregation):
    # TRL 1.16's GRPOConfig does not check the name, but its trainer raises on any name but its two when it computes
    # its own (replaced) advantages: the trainer hands it GDPO's, and the record keeps ours
    trainer = make_trainer(tiny_policy_path, tmp_path, max_steps=1, per_device_train_batch_size=8, num_generations=4,
                           max_completion_length=8, multi_objective_aggregation=aggregation)
    assert trainer.multi_objective_aggregation == "normalize_then_sum"
    trainer.train()
    assert trainer.args.multi_objective_aggregation == aggregation
    assert trainer.objectives_record()["aggregation"] == aggregation
