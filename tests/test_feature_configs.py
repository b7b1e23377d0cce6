"""The example configs of issue 30's features parse into what they say, and (shortened) run through their recipes."""

import json
from pathlib import Path

import pytest

from alignment.data.preferences import load_preference_splits
from alignment.objectives.sources import parse_gates
from tests.helpers import load_recipe

pytestmark = pytest.mark.usefixtures("one_thread")
CONFIGS = Path(__file__).resolve().parent.parent / "recipes" / "configs"


def parse(recipe: str, config: str, tmp_path, *overrides):
    return load_recipe(recipe).parse_args(["--config", str(CONFIGS / config), "--output_dir", str(tmp_path / "out"),
                                           *overrides])


def test_the_schedule_configs_parse_into_their_schedules(tmp_path):
    _, grpo, _ = parse("grpo", "grpo_schedule_tiny_cpu.yaml", tmp_path)
    schedule = grpo.weight_schedule()
    assert schedule.unit == "fraction" and schedule.at(0, 32).tolist() == [1.0, 0.0]
    assert schedule.at(4, 32).tolist() == [0.0, 1.0]  # past 0.1 of the run: all sentiment
    _, dpo, _ = parse("dpo", "dpo_modpo_schedule_tiny_cpu.yaml", tmp_path)
    assert dpo.loss == "modpo" and dpo.weight_schedule().interpolation == "cosine"
    assert dpo.weight_schedule().at(10, 20).tolist() == pytest.approx([0.7, 0.3])


def test_the_gate_and_aggregation_configs_parse(tmp_path):
    _, gate, _ = parse("grpo", "grpo_gate_tiny_cpu.yaml", tmp_path)
    assert str(parse_gates(gate.objectives)["sentiment"]) == "conciseness>=-0.4:floor=-1"
    _, rdpo, _ = parse("grpo", "grpo_rdpo_tiny_cpu.yaml", tmp_path)
    assert rdpo.multi_objective_aggregation == "rdpo"
    _, variance, _ = parse("grpo", "grpo_rdpo_tiny_cpu.yaml", tmp_path,
                           "--multi_objective_aggregation", "variance_weighted")
    assert variance.multi_objective_aggregation == "variance_weighted"


def test_the_pair_weights_config_reads_its_own_data_file(tmp_path):
    script_args, dpo, _ = parse("dpo", "dpo_pair_weights_tiny_cpu.yaml", tmp_path)
    assert Path(script_args.dataset).is_file()  # anchored to the YAML's folder
    train, held_out, _ = load_preference_splits(script_args.dataset, "pairs", ["helpful"], num_eval_rows=8,
                                                pair_weight_field=dpo.pair_weight_column,
                                                weight_objectives=dpo.objective_names)
    assert len(train) == 24 and len(held_out) == 8
    assert {row["pair_weight"] for row in train} == {0.0, 0.5, 1.0, 2.0}
    assert train[0]["preference_weights"] == pytest.approx([0.9, 0.1])


@pytest.mark.slow
def test_the_pair_weights_config_trains_through_the_dpo_recipe(tmp_path):
    recipe = load_recipe("dpo")
    args = parse("dpo", "dpo_pair_weights_tiny_cpu.yaml", tmp_path, "--max_steps", "4", "--logging_steps", "1",
                 "--save_strategy", "no", "--disable_tqdm", "true")
    trainer = recipe.main(*args)
    # each row's own weights reach the loss: their batch means are logged, between the two vectors of the file
    logged = [entry["weights/helpful"] for entry in trainer.state.log_history if "weights/helpful" in entry]
    assert logged and all(0.6 <= value <= 0.9 for value in logged)
    record = json.loads((tmp_path / "out" / "objectives.json").read_text())
    assert record["trainer"] == "dpo:modpo" and record["evaluation"]["rewards/margins/after"] > 0


@pytest.mark.slow
def test_the_rdpo_config_trains_through_the_grpo_recipe(tmp_path):
    recipe = load_recipe("grpo")
    args = parse("grpo", "grpo_rdpo_tiny_cpu.yaml", tmp_path, "--max_steps", "2", "--num_eval_prompts", "8",
                 "--per_device_train_batch_size", "16", "--max_completion_length", "12", "--eval_max_new_tokens", "12",
                 "--save_strategy", "no", "--disable_tqdm", "true")
    trainer = recipe.main(*args)
    record = json.loads((tmp_path / "out" / "objectives.json").read_text())
    assert record["aggregation"] == "rdpo" and trainer.multi_objective_aggregation == "normalize_then_sum"
    assert len([entry for entry in trainer.state.log_history if "rewards/profanity_free/mean" in entry]) == 2
