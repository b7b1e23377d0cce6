"""Gated objectives ('format=format_ok@correct>=1'): parsing and its refusals, the gate applied to the reward vector
(hand-computed, NaN, chains), the record round trip, and the DPO family's margins built through the same gates."""

import math

import pytest
import torch

from alignment import MultiObjectiveDPOConfig, MultiObjectiveGRPOConfig
from alignment.data.preferences import add_margin_rewards
from alignment.hub.model_card import render_model_card
from alignment.hub.record import objective_specs_from_record
from alignment.objectives.reward_vector import RewardVectorBuilder
from alignment.objectives.sources import (
    Gate,
    ObjectiveSpecError,
    objectives_to_dict,
    parse_gates,
    parse_objective_specs,
    register_reward,
    split_objective_spec,
)


class Table:
    """A reward source returning fixed columns: the rewards a test wants, row by row."""

    def __init__(self, columns: dict[str, list[float]]):
        self.objective_names = list(columns)
        self.columns = columns

    def __call__(self, prompts, completions, **kwargs):
        return torch.tensor([self.columns[name] for name in self.objective_names]).T


def test_the_issue_example_parses_with_a_default_floor_of_zero():
    assert parse_gates(["correct", "format=format_ok@correct>=1"]) == {"format": Gate("correct", ">=", 1.0, 0.0)}
    assert split_objective_spec("format=format_ok@correct>=1") == ("format", "format_ok")
    assert split_objective_spec("sentiment@conciseness>=-0.4:floor=-1") == ("sentiment", "sentiment")
    gates = parse_gates(["a", "b@a>0.5", "c@a<=-2:floor=-1", "d@a<3"])
    assert [(g.op, g.threshold, g.floor) for g in gates.values()] == [(">", 0.5, 0.0), ("<=", -2.0, -1.0),
                                                                        ("<", 3.0, 0.0)]
    assert str(gates["c"]) == "a<=-2:floor=-1"


@pytest.mark.parametrize(("specs", "message"), [
    (["a@a>1"], "'a' is gated on itself"),
    (["a", "b@c>=1"], r"its gate reads 'c', which is not one of the objectives \['a', 'b'\]"),
    (["a@b>=1", "b@c>=1", "c@a>=1"], "gates form a cycle: a -> b -> c -> a"),
    (["a", "b@a=>1"], "must look like OBJECTIVE OP THRESHOLD"),
    (["a", "b@a>=one"], "threshold 'one' is not a finite number"),
    (["a", "b@a>=1:floor=inf"], "floor 'inf' is not a finite number"),
])
def test_bad_gates_are_refused_with_a_clear_message(specs, message):
    with pytest.raises(ObjectiveSpecError, match=message):
        parse_gates(specs)


def test_configs_refuse_bad_gates_when_parsed():
    with pytest.raises(ObjectiveSpecError, match="gated on itself"):
        MultiObjectiveGRPOConfig(output_dir="/tmp/unused", objectives=["conciseness@conciseness>0"], report_to="none",
                                 use_cpu=True)
    with pytest.raises(ObjectiveSpecError, match="not one of the objectives"):
        MultiObjectiveDPOConfig(output_dir="/tmp/unused", objectives=["helpful", "conciseness@sentiment>0"],
                                report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match="the trained objective 'helpful' is learned from its pairs"):
        MultiObjectiveDPOConfig(output_dir="/tmp/unused", objectives=["helpful", "conciseness@helpful>0"],
                                report_to="none", use_cpu=True)


def test_a_failed_gate_replaces_the_reward_by_its_floor():
    source = Table({"correct": [1.0, 0.0, 1.0, math.nan], "format": [0.7, 0.9, math.nan, 0.5]})
    builder = RewardVectorBuilder(["correct", "format"], [source], on_invalid="drop",
                                  gates={"format": Gate("correct", ">=", 1.0)})
    rewards, incomplete = builder(["p"] * 4, ["c"] * 4)
    # row 0: gate holds -> 0.7 kept; row 1: fails -> floor 0; row 2: its own reward missing stays missing;
    # row 3: the gate objective is missing -> whether the gate holds is unknown -> missing
    assert rewards[:, 0].tolist()[:3] == [1.0, 0.0, 1.0]
    assert rewards[:3, 1].tolist() == [pytest.approx(0.7), 0.0, pytest.approx(math.nan, nan_ok=True)]
    assert math.isnan(rewards[3, 1]) and incomplete.tolist() == [False, False, True, True]


def test_floors_operators_and_chains_of_gates():
    source = Table({"a": [0.25, 0.75, 1.0], "b": [5.0, 6.0, 7.0], "c": [-1.0, -2.0, -3.0]})
    # b counts where a > 0.5 (else -10); c counts where the GATED b is < 7 (else its floor 0)
    builder = RewardVectorBuilder(["c", "b", "a"], [source], gates={"b": Gate("a", ">", 0.5, -10.0),
                                                                    "c": Gate("b", "<", 7.0)})
    rewards, _ = builder(["p"] * 3, ["c"] * 3)
    assert rewards.tolist() == [[-1.0, -10.0, 0.25], [-2.0, 6.0, 0.75], [0.0, 7.0, 1.0]]


def test_a_builder_refuses_a_gate_on_an_objective_it_does_not_score():
    with pytest.raises(ValueError, match="needs the gate objective 'correct' in the reward vector"):
        RewardVectorBuilder(["format"], [Table({"format": [1.0]})], gates={"format": Gate("correct", ">=", 1.0)})


def _length(prompts, completions, **kwargs):
    return [float(len(c)) for c in completions]


def _has_please(prompts, completions, **kwargs):
    return [float("please" in c) for c in completions]


def test_parsed_specs_build_a_gated_vector_and_round_trip_through_the_record():
    specs = ["long=python:tests.test_gates:_length", "polite=python:tests.test_gates:_has_please@long<=10:floor=-1"]
    objectives, sources, _ = parse_objective_specs(specs)
    builder = RewardVectorBuilder.from_objectives(objectives, sources)
    rewards, _ = builder(["p"] * 3, ["please", "please tell me more", "no"])
    assert rewards.tolist() == [[6.0, 1.0], [19.0, -1.0], [2.0, 0.0]]
    record = {"objectives": objectives_to_dict(objectives), "objective_names": ["long", "polite"]}
    assert record["objectives"][1]["gate"] == "long<=10:floor=-1" and "gate" not in record["objectives"][0]
    assert objective_specs_from_record(record) == specs
    assert "| polite | `python:tests.test_gates:_has_please` |  | `long<=10:floor=-1` |" in render_model_card(record)


def test_modpo_margins_come_from_the_same_gated_reward_vector():
    register_reward("test_length", _length)
    register_reward("test_please", _has_please)
    objectives, sources, _ = parse_objective_specs(["long=test_length", "polite=test_please@long<=10"])
    rows = [{"prompt": "p", "chosen": "please", "rejected": "please say it again"}]
    rows = add_margin_rewards(rows, RewardVectorBuilder.from_objectives(objectives, sources))
    # the long rejected reply says please but fails the gate: its politeness margin is the floor, 0
    assert rows[0]["chosen_margins"] == [6.0, 1.0] and rows[0]["rejected_margins"] == [19.0, 0.0]
