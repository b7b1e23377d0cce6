"""The DPO and reward-model recipes, rerun after an interruption, resume from the last checkpoint and finish with
the parameters of a run that was never interrupted; a hub token (argument or environment) is written nowhere.

The interruption is simulated by removing what the run wrote after its checkpoint-2 (the checkpoints are atomic,
see test_checkpointing.py; the GRPO recipe is killed for real with SIGKILL on 2 processes in test_grpo_recipe.py)."""

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from trl import ModelConfig

from alignment.models.packaged import TINY_POLICY
from reward_models.data import RewardDataArguments
from reward_models.trainer import MultiHeadRewardConfig
from tests.helpers import load_recipe

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

ROOT = Path(__file__).resolve().parent.parent
FAKE_TOKEN = "hf_FakeRecipeTokenNeverWritten789"
FAKE_ENV_TOKEN = "hf_FakeEnvironmentTokenNeverWritten012"


def roll_back_to_checkpoint_2(output_dir: Path) -> None:
    """What a kill right after checkpoint-2 leaves: checkpoint-2 and nothing newer."""
    for path in output_dir.iterdir():
        if path.name != "checkpoint-2":
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def run_twice_with_an_interruption(run, output_dir: Path, capsys, caplog, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", FAKE_ENV_TOKEN)
    caplog.set_level(logging.INFO)
    run()
    final = load_file(output_dir / "model.safetensors")
    record = json.loads((output_dir / "objectives.json").read_text())
    first = capsys.readouterr()
    roll_back_to_checkpoint_2(output_dir)
    saved_at = (output_dir / "checkpoint-2" / "trainer_state.json").stat().st_mtime_ns
    run()
    second = capsys.readouterr()
    assert f"Resuming from {output_dir / 'checkpoint-2'}" in second.out
    # a run that started over would reach the same weights (same seed) but write checkpoint-2 again
    assert (output_dir / "checkpoint-2" / "trainer_state.json").stat().st_mtime_ns == saved_at
    resumed = load_file(output_dir / "model.safetensors")
    assert final.keys() == resumed.keys() and all(torch.equal(final[k], resumed[k]) for k in final)
    assert json.loads((output_dir / "objectives.json").read_text())["evaluation"] == record["evaluation"]

    logs = first.out + first.err + second.out + second.err + caplog.text
    for secret in (FAKE_TOKEN, FAKE_ENV_TOKEN):
        assert secret not in logs
        assert not [p for p in output_dir.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert not list(output_dir.rglob("*.bin")) and not list(output_dir.rglob("*.pkl"))


def test_dpo_recipe_resumes_to_the_uninterrupted_result(tmp_path, tiny_policy_path, capsys, caplog, monkeypatch):
    recipe = load_recipe("dpo")
    output_dir = tmp_path / "modpo"
    args = recipe.parse_args([
        "--output_dir", str(output_dir), "--num_train_rows", "48", "--num_eval_rows", "16", "--max_steps", "4",
        "--save_steps", "2", "--save_total_limit", "3", "--disable_tqdm", "true", "--hub_token", FAKE_TOKEN,
    ])
    run_twice_with_an_interruption(lambda: recipe.main(*args), output_dir, capsys, caplog, monkeypatch)


def test_reward_model_recipe_resumes_to_the_uninterrupted_result(tmp_path, tiny_policy_path, capsys, caplog,
                                                                 monkeypatch):
    recipe = load_recipe("reward_model")
    output_dir = tmp_path / "rm"
    data = RewardDataArguments(
        heads=["helpful", "harmless"],
        pairwise_train_files=["helpful=hh-helpful[:48]", "harmless=hh-harmless[:48]"],
        pairwise_eval_files=["helpful=hh-helpful-dev[:32]"],
    )
    training_args = MultiHeadRewardConfig(
        output_dir=str(output_dir), max_length=64, per_device_train_batch_size=8, max_steps=4, save_steps=2,
        learning_rate=1e-3, report_to="none", use_cpu=True, seed=0, disable_tqdm=True, normalization_samples=32,
        hub_token=FAKE_TOKEN,
    )
    run = lambda: recipe.main(data, training_args, ModelConfig(model_name_or_path=TINY_POLICY))  # noqa: E731
    run_twice_with_an_interruption(run, output_dir, capsys, caplog, monkeypatch)
