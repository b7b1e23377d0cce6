"""Front measurement (alignment.pareto, scripts/pareto_sweep.py): non-dominated filtering, hypervolume on known
fronts, controllability, and the sweep's outputs."""

import json
import math

import numpy as np
import pytest

from alignment import controllability, hypervolume, non_dominated
from alignment.hub.record import objective_specs_from_record
from alignment.pareto import default_reference_point, parse_reference_point, weight_grid
from scripts.pareto_sweep import summarize, write_outputs

STAIRCASE = [[1.0, 3.0], [2.0, 2.0], [3.0, 1.0]]


def test_non_dominated_keeps_the_staircase_and_drops_what_it_beats():
    points = STAIRCASE + [[1.0, 1.0], [2.0, 1.5], [2.0, 2.0]]
    assert non_dominated(points).tolist() == [True, True, True, False, False, True]


def test_hypervolume_of_a_2d_staircase_is_the_union_of_its_boxes():
    # boxes to (0, 0): 1x3 + 2x2 + 3x1 minus overlaps = 3 + (2-1)x2 + (3-2)x1 = 6
    assert hypervolume(STAIRCASE, [0.0, 0.0]) == pytest.approx(6.0)
    assert hypervolume(STAIRCASE, [0.5, -1.0]) == pytest.approx(0.5 * 4 + 1 * 3 + 1 * 2)


def test_dominated_points_add_no_hypervolume():
    assert hypervolume(STAIRCASE + [[1.5, 1.5]], [0.0, 0.0]) == pytest.approx(6.0)


def test_hypervolume_in_3d_by_inclusion_exclusion():
    # boxes (2,1,1) and (1,2,1) from the origin overlap in (1,1,1): 2 + 2 - 1 = 3
    assert hypervolume([[2.0, 1.0, 1.0], [1.0, 2.0, 1.0]], [0.0, 0.0, 0.0]) == pytest.approx(3.0)
    assert hypervolume([[1.0, 2.0, 3.0]], [0.0, 0.0, 0.0]) == pytest.approx(6.0)


def test_a_reference_point_that_a_point_does_not_beat_is_rejected():
    with pytest.raises(ValueError, match="does not lie strictly below point 2"):
        hypervolume(STAIRCASE, [0.0, 1.0])
    with pytest.raises(ValueError, match="2 values for 3 objectives"):
        hypervolume([[1.0, 2.0, 3.0]], [0.0, 0.0])


def test_points_with_nan_or_the_wrong_shape_are_rejected():
    with pytest.raises(ValueError, match="point 1 is \\[nan, 1.0\\]"):
        hypervolume([[1.0, 1.0], [math.nan, 1.0]], [0.0, 0.0])
    with pytest.raises(ValueError, match="num_objectives"):
        non_dominated([1.0, 2.0])


def test_default_reference_point_sits_below_the_nadir():
    reference = default_reference_point(STAIRCASE)
    assert reference.tolist() == pytest.approx([0.8, 0.8])
    # strips from x = 0.8: [0.8, 1] x 2.2 + [1, 2] x 1.2 + [2, 3] x 0.2
    assert hypervolume(STAIRCASE, reference) == pytest.approx(0.44 + 1.2 + 0.2)


def test_controllability_is_spearman_between_requested_weight_and_achieved_value():
    weights = [[0.0, 1.0], [0.25, 0.75], [0.5, 0.5], [0.75, 0.25], [1.0, 0.0]]
    values = [[1.0, 5.0], [2.0, 4.0], [3.0, 3.0], [5.0, 2.0], [4.0, 1.0]]
    result = controllability(weights, values, ["a", "b"])
    assert result["a"]["spearman"] == pytest.approx(0.9)  # one swapped pair: 1 - 6*2 / (5*24)
    assert result["b"]["spearman"] == pytest.approx(1.0)
    flat = controllability(weights, [[1.0, 1.0]] * 5, ["a", "b"])
    assert flat["a"]["spearman"] is None
    with pytest.raises(ValueError, match="at least 3"):
        controllability(weights[:2], values[:2], ["a", "b"])


def test_weight_grid_covers_the_simplex_with_its_corners():
    assert weight_grid(5, 2) == [[1.0, 0.0], [0.75, 0.25], [0.5, 0.5], [0.25, 0.75], [0.0, 1.0]]
    grid = weight_grid(3, 3)
    assert len(grid) == 6 and all(sum(w) == pytest.approx(1.0) for w in grid) and [1.0, 0.0, 0.0] in grid


def test_recorded_sources_become_objective_specs_again():
    record = {"objectives": [{"name": "brevity", "source": "builtin:conciseness"},
                             {"name": "helpful", "source": "reward_model_head:helpful"},
                             {"name": "judge", "source": "python:my_pkg.rewards:judge"}]}
    assert objective_specs_from_record(record) == ["brevity=conciseness", "helpful=rm:helpful",
                                                   "judge=python:my_pkg.rewards:judge"]


def test_reference_point_parses_names_or_values_and_names_what_is_missing():
    assert parse_reference_point("b=-2,a=-1", ["a", "b"]).tolist() == [-1.0, -2.0]
    assert parse_reference_point("-1,-2", ["a", "b"]).tolist() == [-1.0, -2.0]
    with pytest.raises(ValueError, match="missing \\['b'\\]"):
        parse_reference_point("a=-1", ["a", "b"])


@pytest.mark.parametrize("names, values, reference, expected_hypervolume, expected_front", [
    # the staircase from (-1, -1): strips [-1, 1] x 4 + [1, 2] x 3 + [2, 3] x 2 = 13; (1.5, 1.5) is beaten by (2, 2)
    (["a", "b"], [[3.0, 1.0], [2.0, 2.0], [1.0, 3.0], [1.5, 1.5]], "-1,-1", 13.0, [True, True, True, False]),
    # boxes (2,1,1) and (1,2,1) overlap in (1,1,1): 2 + 2 - 1 = 3; (1, 1, 1) is beaten by both
    (["a", "b", "c"], [[2.0, 1.0, 1.0], [1.0, 2.0, 1.0], [1.0, 1.0, 1.0]], "0,0,0", 3.0, [True, True, False]),
])
def test_sweep_outputs_hold_the_points_the_front_and_the_plots(tmp_path, names, values, reference,
                                                                 expected_hypervolume, expected_front):
    grid = weight_grid(len(values), 2) if len(names) == 2 else np.eye(3).tolist()
    points = [{"label": str(w), "checkpoint": "x", "requested_weights": dict(zip(names, w)),
               "values": dict(zip(names, v)), "completion_tokens": 10.0} for w, v in zip(grid, values)]
    front = summarize(points, names, reference_point=reference)
    write_outputs(front, tmp_path)
    written = json.loads((tmp_path / "front.json").read_text())
    assert written["reference_point"] == dict(zip(names, map(float, reference.split(","))))
    assert written["reference_point_source"] == "given"
    assert written["hypervolume"] == pytest.approx(expected_hypervolume)
    assert [p["non_dominated"] for p in written["points"]] == expected_front
    assert set(written["controllability"]) == set(names)
    for image in ("front.png", "controllability.png"):
        assert (tmp_path / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_sweep_of_a_preference_conditioned_checkpoint_end_to_end(tiny_policy_path, tmp_path):
    from scripts.pareto_sweep import main
    from tests.test_grpo_trainer import make_trainer

    trainer = make_trainer(tiny_policy_path, tmp_path / "train", max_steps=1, weights_mode="dirichlet",
                           per_device_train_batch_size=16, max_completion_length=8)
    trainer.train()
    trainer.save_model(str(tmp_path / "conditioned"))
    main(["--checkpoint", str(tmp_path / "conditioned"), "--num_weights", "3", "--num_prompts", "8",
          "--max_new_tokens", "8", "--output_dir", str(tmp_path / "front")])
    front = json.loads((tmp_path / "front" / "front.json").read_text())
    assert [p["label"] for p in front["points"]] == ["conciseness=1.00,sentiment=0.00",
                                                      "conciseness=0.50,sentiment=0.50",
                                                      "conciseness=0.00,sentiment=1.00"]
    assert front["hypervolume"] > 0 and front["settings"]["num_prompts"] == 8
    assert (tmp_path / "front" / "front.png").exists()
    with pytest.raises(ValueError, match="steering is 'none'"):
        fixed = make_trainer(tiny_policy_path, tmp_path / "fixed", max_steps=1)
        fixed.save_model(str(tmp_path / "fixed_model"))
        main(["--checkpoint", str(tmp_path / "fixed_model"), "--output_dir", str(tmp_path / "nope")])
    assert not (tmp_path / "nope").exists()
