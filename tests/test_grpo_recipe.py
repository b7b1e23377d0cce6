"""The recipe end to end, as a user runs it: accelerate launch, 2 CPU processes (gloo), a SIGKILL and a rerun that
resumes, the checkpoint record, and a hub token that reaches no output."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
from safetensors.torch import load_file

from alignment.hub.model_card import _cell
from tests.helpers import run_process

ROOT = Path(__file__).resolve().parent.parent
FAKE_TOKEN = "hf_FakeTokenThatMustNeverBeWritten123"


def command(output_dir, *overrides, config=ROOT / "accelerate_configs" / "cpu_2proc.yaml"):
    # Absolute paths, run from another folder: the recipe must not depend on the current directory.
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config),
            str(ROOT / "recipes" / "grpo.py"),
            "--config", str(ROOT / "recipes" / "configs" / "grpo_tiny_cpu.yaml"),  # the tiny smoke run, not the default
            "--output_dir", str(output_dir), "--num_eval_prompts", "16", "--per_device_train_batch_size", "32",
            "--max_completion_length", "24", "--eval_max_new_tokens", "24", "--save_steps", "2",
            "--disable_tqdm", "true", *overrides]


FAKE_ENV_TOKEN = "hf_FakeEnvironmentTokenNeverWritten456"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_TOKEN": FAKE_ENV_TOKEN}


def launch(output_dir, *overrides):
    result = run_process(command(output_dir, *overrides), 900, cwd=output_dir.parent, env=ENV)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def launch_and_kill_after(checkpoint: Path, output_dir, *overrides):
    """SIGKILL the launcher and both ranks as soon as `checkpoint` appears: no handler runs, nothing is flushed."""
    process = subprocess.Popen(command(output_dir, *overrides), cwd=output_dir.parent, env=ENV,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not checkpoint.exists():
        assert process.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    launcher = psutil.Process(process.pid)
    for proc in [launcher, *launcher.children(recursive=True)]:
        proc.send_signal(signal.SIGKILL)
    process.wait()


@pytest.mark.slow
@pytest.mark.distributed
def test_two_process_run_killed_midway_resumes_to_the_same_result_and_records_its_objectives(tmp_path):
    same_command = ("--max_steps", "4", "--hub_token", FAKE_TOKEN)
    uninterrupted = tmp_path / "uninterrupted"
    log = launch(uninterrupted, *same_command)
    assert log.count("Mean of each objective on 16 held-out prompts") == 1  # printed by the main process only

    # SIGKILL right after checkpoint-2 is complete, then rerun the same command: it resumes from checkpoint-2
    interrupted = tmp_path / "interrupted"
    launch_and_kill_after(interrupted / "checkpoint-2", interrupted, *same_command)
    assert not (interrupted / "checkpoint-4").exists() and not (interrupted / "model.safetensors").exists()
    saved_at = (interrupted / "checkpoint-2" / "trainer_state.json").stat().st_mtime_ns
    rerun_log = launch(interrupted, *same_command)
    assert "Resuming from" in rerun_log and "checkpoint-2" in rerun_log
    # a rerun that started over would reach the same result (same seed) but write checkpoint-2 again
    assert (interrupted / "checkpoint-2" / "trainer_state.json").stat().st_mtime_ns == saved_at

    # Same final parameters, per-step rewards and held-out objective means as the uninterrupted run, exactly:
    # the checkpoint restores weights, Adam moments, scheduler, data position and every rank's RNG (CPU kernels
    # are deterministic for a fixed thread count).
    final, resumed = load_file(uninterrupted / "model.safetensors"), load_file(interrupted / "model.safetensors")
    assert all(torch.equal(final[name], resumed[name]) for name in final)
    history = [json.loads((run / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]
               for run in (uninterrupted, interrupted)]
    per_step = [[(e["step"], e["loss"], e["rewards/conciseness/mean"], e["rewards/sentiment/mean"])
                 for e in h if "rewards/conciseness/mean" in e] for h in history]
    assert [step for step, *_ in per_step[0]] == [1, 2, 3, 4] and per_step[0] == per_step[1]
    records = [json.loads((run / "objectives.json").read_text()) for run in (uninterrupted, interrupted)]
    assert records[0]["evaluation"] == records[1]["evaluation"]
    # both ranks' completions reached the rewards
    assert all(e["objectives/dropped_rows"] == 0 for e in history[0] if "objectives/dropped_rows" in e)

    record = records[0]
    assert record["objective_names"] == ["conciseness", "sentiment", "profanity_free"]
    assert record["weights"] == {"conciseness": 0.5, "sentiment": 0.4, "profanity_free": 0.1}
    assert record["aggregation"] == "normalize_then_sum"
    # portable: the packaged policy and data by name, no path of this machine in the record or the card
    assert record["base_model"] == "moalign/tiny-policy" and record["datasets"] == ["hh-prompts"]
    for published in ("objectives.json", "README.md"):
        text = (uninterrupted / published).read_text()
        assert str(Path.home()) not in text and str(tmp_path) not in text and str(ROOT) not in text
    assert set(record["evaluation"]) >= {"conciseness/before", "conciseness/after"}
    card = (uninterrupted / "README.md").read_text()
    assert "Fixed preference weights: conciseness=0.5, sentiment=0.4, profanity_free=0.1." in card
    # held-out prompts with the base and the trained reply, beside the checkpoint and as a table in the card
    samples = [json.loads(line) for line in (uninterrupted / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 6 and all(set(sample) == {"prompt", "base", "trained"} for sample in samples)
    assert record["samples"] == samples and "## Before / after samples" in card
    assert all(f"| {_cell(sample['prompt'])} | {_cell(sample['base'])} | {_cell(sample['trained'])} |" in card
               for sample in samples)
    assert {"distinct_replies/after", "empty_replies/after", "weighted_objective/after"} <= set(record["evaluation"])
    assert (uninterrupted / "checkpoint-2" / "multi_objective_state.json").exists()
    assert (uninterrupted / "model.safetensors").exists() and not list(tmp_path.rglob("*.bin"))
    assert json.loads((uninterrupted / "training_args.json").read_text())["hub_token"] == "<HUB_TOKEN>"
    # neither the token given on the command line nor the one in the environment reaches a log line or a file
    for secret in (FAKE_TOKEN, FAKE_ENV_TOKEN):
        assert secret not in log and secret not in rerun_log
        leaks = [path for path in tmp_path.rglob("*") if path.is_file() and secret.encode() in path.read_bytes()]
        assert not leaks, (secret, leaks)
