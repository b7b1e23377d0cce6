"""The recipe end to end, as a user runs it: accelerate launch, 2 CPU processes (gloo), resume, checkpoint record."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FAKE_TOKEN = "hf_FakeTokenThatMustNeverBeWritten123"


def launch(output_dir, *overrides, config="accelerate_configs/cpu_2proc.yaml"):
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config, "recipes/grpo.py",
               "--output_dir", str(output_dir), "--num_eval_prompts", "16", "--per_device_train_batch_size", "32",
               "--max_completion_length", "24", "--eval_max_new_tokens", "24", "--save_steps", "2",
               "--disable_tqdm", "true", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.distributed
def test_recipe_trains_on_two_processes_resumes_and_records_its_objectives(tmp_path):
    output_dir = tmp_path / "grpo"
    first = launch(output_dir, "--max_steps", "2")
    assert (output_dir / "checkpoint-2" / "multi_objective_state.json").exists()
    assert first.count("Mean of each objective on 16 held-out prompts") == 1  # printed by the main process only

    # rerun after the "interruption" with a longer schedule: it picks up checkpoint-2 instead of starting over
    second = launch(output_dir, "--max_steps", "4", "--hub_token", FAKE_TOKEN)
    assert "Resuming from" in second and "checkpoint-2" in second
    state = json.loads((output_dir / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    steps = [entry["step"] for entry in state["log_history"] if "rewards/conciseness/mean" in entry]
    assert steps == [1, 2, 3, 4]
    # both ranks' completions reached the rewards: 2 processes x 32 completions per step
    assert all(entry["objectives/dropped_rows"] == 0 for entry in state["log_history"] if "objectives/dropped_rows" in entry)

    record = json.loads((output_dir / "objectives.json").read_text())
    assert record["objective_names"] == ["conciseness", "sentiment", "profanity_free"]
    assert record["weights"] == {"conciseness": 0.5, "sentiment": 0.4, "profanity_free": 0.1}
    assert record["aggregation"] == "normalize_then_sum"
    assert set(record["evaluation"]) >= {"conciseness/before", "conciseness/after"}
    card = (output_dir / "README.md").read_text()
    assert "Fixed preference weights: conciseness=0.5, sentiment=0.4, profanity_free=0.1." in card
    assert (output_dir / "model.safetensors").exists() and not list(output_dir.glob("*.bin"))
    assert json.loads((output_dir / "training_args.json").read_text())["hub_token"] == "<HUB_TOKEN>"
    # the token given on the command line reaches no log line and no file of the run
    assert FAKE_TOKEN not in second
    leaks = [path for path in output_dir.rglob("*") if path.is_file() and FAKE_TOKEN.encode() in path.read_bytes()]
    assert not leaks
