"""Weight schedules (alignment.objectives.schedules): parsing and its errors, the unit rule, hand-computed
interpolations, the Dirichlet and prompt-aware rules, the configs that refuse a schedule at parse time, and the GRPO
and DPO trainers' weights at given steps."""

import math
import warnings

import pytest
import torch

from alignment import MultiObjectiveDPOConfig, MultiObjectiveGRPOConfig, PreferenceWeightsError
from alignment.objectives.schedules import (
    WeightScheduleError,
    dirichlet_alpha_at,
    parse_weight_schedule,
    resolve_unit,
    tilt_weights,
)
from tests.test_grpo_trainer import make_trainer

NAMES = ["format", "correct"]


def test_the_issue_example_parses_into_fractions_with_normalized_vectors():
    schedule = parse_weight_schedule("0:format=1,correct=0;0.5:format=0.2,correct=0.8", NAMES)
    assert schedule.unit == "fraction" and schedule.positions == (0.0, 0.5)
    assert schedule.weights.tolist() == [[1.0, 0.0], pytest.approx([0.2, 0.8])]
    # unnormalized vectors are normalized like preference_weights
    assert parse_weight_schedule("0:format=3,correct=1", NAMES).start.tolist() == [0.75, 0.25]


def test_lists_and_mappings_are_accepted_as_well():
    as_list = parse_weight_schedule(["0:format=1,correct=0", "10:format=0,correct=1"], NAMES)
    as_mapping = parse_weight_schedule({0: "format=1,correct=0", 10: {"correct": 1.0}}, NAMES)
    assert as_list.unit == as_mapping.unit == "step"
    assert torch.equal(as_list.weights, as_mapping.weights)


@pytest.mark.parametrize(("positions", "unit", "expected"), [
    ([0, 0.5, 1], "auto", "fraction"),
    ([0, 1], "auto", "fraction"),   # '0;1' is start to end
    ([0, 50, 200], "auto", "step"),
    ([0, 1], "step", "step"),       # the first optimizer step only: say so
    ([0.25], "fraction", "fraction"),
])
def test_the_unit_rule(positions, unit, expected):
    assert resolve_unit(positions, unit) == expected


@pytest.mark.parametrize(("positions", "unit", "message"), [
    ([0, 0.5, 200], "auto", "mix fractions of training"),
    ([0, 2], "fraction", "must lie in"),
    ([0, 2.5], "step", "whole numbers"),
    ([0], "epochs", "unknown unit 'epochs'"),
])
def test_ambiguous_or_impossible_units_are_refused(positions, unit, message):
    with pytest.raises(WeightScheduleError, match=message):
        resolve_unit(positions, unit)


@pytest.mark.parametrize(("spec", "message"), [
    ("0:format=1,correct=0;0.5:format=-1,correct=1", r"point at 0.5: .*'format' is -1.0; weights must be >= 0"),
    ("0:format=1,speed=1", r"point at 0: .*unknown objective\(s\) \['speed'\]"),
    ("0:format=nan,correct=1", "must be finite"),
    ("0:format=0,correct=0", "all weights are zero"),
    ("0.5:format=1,correct=0;0.2:format=0,correct=1", "positions must increase"),
    ("0:format=1,correct=0;0:format=0,correct=1", "positions must increase"),
    ("-1:format=1,correct=0", "must be a finite number >= 0"),
    ("x:format=1,correct=0", "position 'x' is not a number"),
    ("format=1,correct=0", "not 'POSITION:WEIGHTS'"),
])
def test_bad_schedules_name_what_is_wrong(spec, message):
    with pytest.raises(WeightScheduleError, match=message):
        parse_weight_schedule(spec, NAMES)


def test_linear_and_cosine_interpolation_by_hand():
    linear = parse_weight_schedule("0:format=1,correct=0;0.5:format=0.2,correct=0.8", NAMES)
    # at a quarter of the run: half way from (1, 0) to (0.2, 0.8) -> (0.6, 0.4)
    assert linear.at(25, 100).tolist() == pytest.approx([0.6, 0.4])
    assert linear.at(0, 100).tolist() == [1.0, 0.0]
    assert linear.at(90, 100).tolist() == pytest.approx([0.2, 0.8])  # after the last point the last vector holds
    cosine = parse_weight_schedule("0:format=1,correct=0;1:format=0,correct=1", NAMES, interpolation="cosine")
    # share of the second point at t = 1/4: (1 - cos(pi / 4)) / 2 = 0.1464466
    share = (1 - math.cos(math.pi / 4)) / 2
    assert cosine.at(1, 4).tolist() == pytest.approx([1 - share, share])
    assert cosine.at(2, 4).tolist() == pytest.approx([0.5, 0.5])
    steps = parse_weight_schedule("10:format=1,correct=0;30:format=0,correct=1", NAMES)
    assert steps.at(0).tolist() == [1.0, 0.0] and steps.at(15).tolist() == pytest.approx([0.75, 0.25])
    assert math.isclose(float(steps.at(23).sum()), 1.0, rel_tol=1e-6)  # on the simplex everywhere


def test_fractions_need_the_run_length_after_the_first_step():
    schedule = parse_weight_schedule("0:format=1,correct=0;1:format=0,correct=1", NAMES)
    assert schedule.at(0, None).tolist() == [1.0, 0.0]
    with pytest.raises(WeightScheduleError, match="max_steps is unknown"):
        schedule.at(3, -1)


def test_the_dirichlet_mean_follows_the_schedule():
    alpha = torch.tensor([1.0, 3.0])  # total concentration 4
    assert dirichlet_alpha_at(alpha, torch.tensor([0.25, 0.75])).tolist() == [1.0, 3.0]
    moved = dirichlet_alpha_at(alpha, torch.tensor([0.5, 0.5]))
    assert moved.tolist() == [2.0, 2.0] and (moved / moved.sum()).tolist() == [0.5, 0.5]


def test_prompt_weights_are_tilted_by_the_schedule_and_renormalized():
    start, now = torch.tensor([0.5, 0.5]), torch.tensor([0.2, 0.8])
    rows = torch.tensor([[0.5, 0.5], [0.9, 0.1], [1.0, 0.0]])
    tilted = tilt_weights(rows, start, now)
    # (0.9 * 0.4, 0.1 * 1.6) = (0.36, 0.16) -> (0.6923, 0.3077); a row equal to the start becomes w_t
    assert tilted[0].tolist() == pytest.approx([0.2, 0.8])
    assert tilted[1].tolist() == pytest.approx([0.36 / 0.52, 0.16 / 0.52])
    assert tilted[2].tolist() == [1.0, 0.0]
    assert torch.equal(tilt_weights(rows, start, start), rows)  # unchanged at the start
    # a row whose weight sits only where the schedule went to 0 takes w_t
    assert tilt_weights(torch.tensor([[1.0, 0.0]]), start, torch.tensor([0.0, 1.0])).tolist() == [[0.0, 1.0]]


def test_the_record_holds_the_spec_the_points_and_the_weights_at_the_step():
    schedule = parse_weight_schedule("0:format=1,correct=0;0.5:format=0.2,correct=0.8", NAMES)
    record = schedule.record(step=10, max_steps=40)
    assert record["spec"] == "0:format=1,correct=0;0.5:format=0.2,correct=0.8" and record["unit"] == "fraction"
    assert record["weights_at_step"] == {"format": 0.6, "correct": 0.4} and record["step"] == 10
    assert record["points"][1] == {"at": 0.5, "weights": {"format": 0.2, "correct": 0.8}}


# ---- configs: errors at parse time ----

def grpo_config(**overrides):
    settings = dict(output_dir="/tmp/unused", objectives=["conciseness", "sentiment"], report_to="none",
                    use_cpu=True)
    return MultiObjectiveGRPOConfig(**{**settings, **overrides})


def test_grpo_config_parses_the_schedule_and_refuses_a_bad_one():
    config = grpo_config(weights_schedule="0:conciseness=1,sentiment=0;1:conciseness=0,sentiment=1",
                         weights_schedule_interpolation="cosine")
    assert config.weight_schedule().at(1, 2).tolist() == pytest.approx([0.5, 0.5])
    with pytest.raises(WeightScheduleError, match="unknown objective"):
        grpo_config(weights_schedule="0:conciseness=1,speed=1")
    with pytest.raises(WeightScheduleError, match="unknown interpolation 'step'"):
        grpo_config(weights_schedule="0:conciseness=1", weights_schedule_interpolation="step")
    with pytest.raises(PreferenceWeightsError, match=r"dirichlet'.*every point's weights must all be > 0"):
        grpo_config(weights_mode="dirichlet",
                    weights_schedule="0:conciseness=1,sentiment=0;1:conciseness=1,sentiment=1")
    with pytest.warns(UserWarning, match="preference_weights are ignored: weights_schedule"):
        grpo_config(preference_weights="conciseness=1,sentiment=1", weights_schedule="0:conciseness=1")


def dpo_config(**overrides):
    settings = dict(output_dir="/tmp/unused", report_to="none", use_cpu=True)
    return MultiObjectiveDPOConfig(**{**settings, **overrides})


def test_dpo_configs_refuse_a_schedule_their_loss_cannot_follow():
    assert dpo_config(weights_schedule="0:helpful=0.9,conciseness=0.1;1:helpful=0.5,conciseness=0.5")
    with pytest.raises(ValueError, match="MODPO divides by it"):
        dpo_config(weights_schedule="0:helpful=1,conciseness=0;1:helpful=0,conciseness=1")
    with pytest.raises(ValueError, match=r"loss 'lipo' does not take its weights at every step.*'modpo', "
                                         "'per_objective'"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dpo_config(loss="lipo", objectives=["a", "b"], weights_schedule="0:a=1,b=0;1:a=0,b=1")


# ---- trainers: the weights of each step ----

def test_grpo_weights_follow_the_schedule_step_by_step(tiny_policy_path, tmp_path):
    trainer = make_trainer(tiny_policy_path, tmp_path, max_steps=4, per_device_train_batch_size=8, num_generations=4,
                           weights_schedule="0:conciseness=1,sentiment=0;1:conciseness=0,sentiment=1")
    expected = {0: [1.0, 0.0], 1: [0.75, 0.25], 2: [0.5, 0.5], 4: [0.0, 1.0]}
    for step, weights in expected.items():
        trainer.state.global_step = step
        assert trainer.mean_weights.tolist() == pytest.approx(weights)
        assert torch.allclose(trainer.weights_for(["a", "b"]), torch.tensor([weights, weights]))
    assert trainer.objectives_record()["weights_schedule"]["weights_at_step"] == {"conciseness": 0.0,
                                                                                   "sentiment": 1.0}


def test_grpo_dirichlet_draws_centre_on_the_scheduled_weights(tiny_policy_path, tmp_path):
    trainer = make_trainer(tiny_policy_path, tmp_path, max_steps=2, per_device_train_batch_size=8, num_generations=4,
                           weights_mode="dirichlet", dirichlet_alpha="2.0",
                           weights_schedule="0:conciseness=0.9,sentiment=0.1;1:conciseness=0.1,sentiment=0.9")
    prompts = [f"prompt {i}" for i in range(2000)]
    for step, centre in ((0, [0.9, 0.1]), (1, [0.5, 0.5]), (2, [0.1, 0.9])):
        trainer.state.global_step = step
        draws = trainer.weights_for(prompts)
        # alpha_t = 4 * w_t: the draws' mean is w_t (standard error of the mean < 0.004 here)
        assert draws.mean(dim=0).tolist() == pytest.approx(centre, abs=0.02)
        assert trainer.mean_weights.tolist() == pytest.approx(centre)
