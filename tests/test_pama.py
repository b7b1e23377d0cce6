"""PAMA's closed-form min-norm weights (alignment.objectives.scalarize), against hand-computed cases, and inside
GRPO."""

import math

import pytest
import torch

from alignment import compute_advantages
from alignment.objectives.advantages import SCALARIZATION_CHOICES
from alignment.objectives.scalarize import noon_clip, pama_advantages, pama_min_norm, pama_step_weights

EQUAL = torch.tensor([0.5, 0.5])


def test_all_positive_advantages_put_all_weight_on_the_smallest():
    weights, combined = pama_min_norm(torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.5, 2.0]]))
    assert combined.tolist() == [1.0, 0.5]
    assert weights.tolist() == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]


def test_mixed_signs_give_a_zero_combination():
    # [-1, 3] contains 0: alpha_1 * (-1) + alpha_2 * 3 = 0 -> alpha = (3/4, 1/4)
    weights, combined = pama_min_norm(torch.tensor([[-1.0, 3.0]]))
    assert combined.tolist() == [0.0]
    assert weights[0].tolist() == pytest.approx([0.75, 0.25])
    assert (weights[0] * torch.tensor([-1.0, 3.0])).sum().item() == pytest.approx(0.0, abs=1e-7)


def test_all_negative_advantages_put_all_weight_on_the_largest():
    weights, combined = pama_min_norm(torch.tensor([[-2.0, -0.5, -1.0]]))
    assert combined.tolist() == [-0.5]
    assert weights.tolist() == [[0.0, 1.0, 0.0]]


def test_identical_objectives_get_uniform_weights_and_ties_share_the_mass():
    weights, combined = pama_min_norm(torch.tensor([[2.0, 2.0, 2.0], [1.0, 1.0, 3.0], [0.0, 0.0, 0.0]]))
    assert combined.tolist() == [2.0, 1.0, 0.0]
    assert weights[0].tolist() == pytest.approx([1 / 3] * 3)
    assert weights[1].tolist() == pytest.approx([0.5, 0.5, 0.0])
    assert weights[2].tolist() == pytest.approx([1 / 3] * 3)


def test_noon_clipping_zeroes_negative_advantages():
    assert noon_clip(torch.tensor([-1.0, 0.0, 2.0])).tolist() == [0.0, 0.0, 2.0]


def test_pama_reinforces_a_completion_only_as_far_as_it_beats_its_group_on_every_objective():
    per_objective = torch.tensor([[1.0, 2.0],    # better on both: s* = min = 1
                                  [-1.0, 3.0],   # trades objective 0 away: Noon-clipped to 0 -> s* = 0
                                  [0.5, 0.2],
                                  [-0.5, -0.5]])  # worse on both: clipped, s* = 0
    advantages, weights = pama_advantages(per_objective, EQUAL)
    assert advantages.tolist() == pytest.approx([1.0, 0.0, 0.2, 0.0])
    assert weights.flatten().tolist() == pytest.approx([1, 0, 1, 0, 0, 1, 0.5, 0.5])


def test_pama_granularity_is_per_completion_not_per_batch_mean():
    """The choice, shown: each completion gets its own closed-form weights. Batch means would pick ONE weight
    vector (all on objective 1, whose mean clipped advantage 0.5 < 1.0) and reinforce completion 0, which only
    improves objective 0; per completion, completion 0 gets 0 and completion 2 (better on both) gets the most."""
    per_objective = torch.tensor([[2.0, -1.0], [1.0, -1.0], [0.5, 1.5], [-3.5, 0.5]])
    advantages, weights = pama_advantages(per_objective, EQUAL)
    assert advantages.tolist() == pytest.approx([0.0, 0.0, 0.5, 0.0])
    batch_means = noon_clip(per_objective).mean(dim=0)
    batch_weights, _ = pama_min_norm(batch_means.unsqueeze(0))
    batch_mean_advantages = noon_clip(per_objective) @ batch_weights[0]
    assert batch_mean_advantages.tolist() == pytest.approx([0.0, 0.0, 1.5, 0.5])
    assert not torch.allclose(advantages, batch_mean_advantages)
    assert weights[0].tolist() == [0.0, 1.0] and weights[2].tolist() == [1.0, 0.0]


def test_preference_weights_measure_each_objective_in_units_of_its_weight():
    per_objective = torch.tensor([[2.0, 0.4]])
    # equal weights: exact PAMA, min(2, 0.4)
    assert pama_advantages(per_objective, EQUAL)[0].tolist() == pytest.approx([0.4])
    # w = (0.8, 0.2): min(2 / 1.6, 0.4 / 0.4) = 1.0 -- the low-weight objective binds less
    assert pama_advantages(per_objective, torch.tensor([0.8, 0.2]))[0].tolist() == pytest.approx([1.0])
    # weight 0 leaves an objective out: only objective 0 counts, 2 / (2 * 1)
    advantages, weights = pama_advantages(torch.tensor([[2.0, -5.0]]), torch.tensor([1.0, 0.0]))
    assert advantages.tolist() == pytest.approx([1.0]) and weights.tolist() == [[1.0, 0.0]]


def test_pama_is_a_scalarization_of_compute_advantages_on_group_normalized_objectives():
    assert "pama" in SCALARIZATION_CHOICES  # a `scalarization` setting, served by the PAMA advantage estimator
    rewards = torch.tensor([[1.0, 1.0], [0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])  # two groups of 2
    advantages = compute_advantages(rewards, EQUAL, group_size=2, scalarization="pama")
    # group 1: row 0 beats row 1 on both (A = +0.707 each); group 2: each row wins one objective
    a = 0.5 / (math.sqrt(0.5) + 1e-4)  # (x - mean) / (std + eps); the unbiased std of {1, 0} is sqrt(0.5)
    assert advantages.tolist() == pytest.approx([a, 0.0, 0.0, 0.0], rel=1e-6)
    step = pama_step_weights(rewards, EQUAL, group_size=2)
    assert step.sum().item() == pytest.approx(1.0) and step.tolist() == pytest.approx([0.5, 0.5])


def test_pama_gives_dropped_rows_zero_advantage():
    rewards = torch.tensor([[1.0, 1.0], [0.0, 0.0], [math.nan, 1.0], [0.0, 2.0]])
    advantages = compute_advantages(rewards, EQUAL, group_size=2, scalarization="pama")
    assert advantages[2].item() == 0.0 and torch.isfinite(advantages).all()
    assert torch.isfinite(pama_step_weights(rewards, EQUAL, group_size=2)).all()


def test_step_weights_are_the_mean_of_hand_solved_per_completion_weights():
    # group 0: z-scores (+a, -a) and (-a, +a), clipped (a, 0) and (0, a): all weight on the objective at 0 -> (0, 1),
    # (1, 0). Group 1: objective 1 is constant (z = 0); clipped (a, 0) -> (0, 1), and (0, 0): a tie -> (0.5, 0.5).
    rewards = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 0.0]])
    weights = pama_step_weights(rewards, EQUAL, group_size=2)
    assert weights.tolist() == pytest.approx([(0 + 1 + 0 + 0.5) / 4, (1 + 0 + 1 + 0.5) / 4])


def test_bad_pama_input_is_rejected():
    with pytest.raises(ValueError, match="expected \\[N, K\\]"):
        pama_min_norm(torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="no active objective"):
        pama_min_norm(torch.tensor([[1.0, 2.0]]), active=torch.tensor([[False, False]]))
    with pytest.raises(ValueError, match="do not match"):
        pama_advantages(torch.tensor([[1.0, 2.0]]), torch.tensor([1.0, 0.0, 0.0]))


@pytest.mark.slow
def test_pama_trains_grpo_and_logs_its_weights_every_step(tiny_policy_path, tmp_path):
    # lazy: the trainer loads TRL, which the pure-maths tests above do not need
    from alignment.trainers.grpo import WEIGHTS_COLUMN
    from tests.test_grpo_trainer import make_trainer

    trainer = make_trainer(tiny_policy_path, tmp_path, max_steps=2, scalarization="pama",
                           per_device_train_batch_size=16, max_completion_length=16)
    batches = []  # every batch's reward vector and weights, to check what was logged against
    calculate = trainer._calculate_rewards

    def recording(inputs, *args, **kwargs):
        reward_vector = calculate(inputs, *args, **kwargs)
        batches.append((reward_vector.clone(), torch.stack([x[WEIGHTS_COLUMN] for x in inputs])))
        return reward_vector

    trainer._calculate_rewards = recording
    trainer.train()
    steps = [entry for entry in trainer.state.log_history if "pama/weight/conciseness" in entry]
    assert len(steps) == 2 and len(batches) == 2
    for entry, (reward_vector, weights) in zip(steps, batches):
        expected = pama_step_weights(reward_vector, weights, group_size=8)
        assert [entry["pama/weight/conciseness"], entry["pama/weight/sentiment"]] == pytest.approx(expected.tolist())
        assert "rewards/conciseness/mean" in entry and "rewards/sentiment/mean" in entry
    trainer.save_model(str(tmp_path / "final"))
    assert '"scalarization": "pama"' in (tmp_path / "final" / "objectives.json").read_text()
