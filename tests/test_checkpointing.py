"""Atomic checkpoints and reruns: a kill while saving leaves the previous checkpoint whole, and a rerun resumes
to the same parameters as a run that was never interrupted. A tiny regression model keeps this fast; the
2-process GRPO recipe is killed for real in test_grpo_recipe.py."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file

from alignment.hub.checkpointing import FINAL_STAGING_DIR, STAGING_DIR, atomic_output, last_checkpoint
from tests.helpers import file_hashes, grpo_trainer

SCRIPT = textwrap.dedent('''
    import os, signal, sys
    import torch
    from torch.utils.data import Dataset
    from transformers import Trainer, TrainingArguments
    from alignment.hub.checkpointing import ResumableCheckpointsMixin, last_checkpoint

    class Regression(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(4, 1)

        def forward(self, x, y):
            return {"loss": torch.nn.functional.mse_loss(self.linear(x).squeeze(-1), y)}

    class Rows(Dataset):
        def __init__(self):
            generator = torch.Generator().manual_seed(0)
            self.x = torch.randn(64, 4, generator=generator)
            self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
        def __len__(self):
            return len(self.x)
        def __getitem__(self, i):
            return {"x": self.x[i], "y": self.y[i]}

    class KillableTrainer(ResumableCheckpointsMixin, Trainer):
        """Dies by SIGKILL halfway through writing checkpoint KILL_AT (after the weights, before the RNG states)."""
        def _save_rng_state(self, output_dir):
            if self.state.global_step == int(os.environ.get("KILL_AT", "-1")):
                os.kill(os.getpid(), signal.SIGKILL)
            super()._save_rng_state(output_dir)

        def _save(self, output_dir=None, state_dict=None):
            super()._save(output_dir, state_dict)
            if self._final_staging is not None and os.environ.get("KILL_IN_FINAL_SAVE"):
                os.kill(os.getpid(), signal.SIGKILL)  # the final weights are written, the rest of the save is not

    output_dir, max_steps = sys.argv[1], int(sys.argv[2])
    torch.manual_seed(0)
    args = TrainingArguments(output_dir=output_dir, max_steps=max_steps, save_steps=2, per_device_train_batch_size=8,
                             learning_rate=0.05, use_cpu=True, report_to="none", disable_tqdm=True, seed=0,
                             save_total_limit=None)
    trainer = KillableTrainer(model=Regression(), args=args, train_dataset=Rows())
    trainer.train(resume_from_checkpoint=last_checkpoint(output_dir))
    trainer.save_model(output_dir)
''')


def run(workdir, output_dir, max_steps, kill_at=None, kill_in_final_save=False):
    script = workdir / "train_regression.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", **({"KILL_AT": str(kill_at)} if kill_at else {}),
           **({"KILL_IN_FINAL_SAVE": "1"} if kill_in_final_save else {})}
    return subprocess.run([sys.executable, str(script), str(output_dir), str(max_steps)], capture_output=True,
                          text=True, env=env, timeout=300)


def weights(path):
    return load_file(str(path / "model.safetensors"))


def global_step(checkpoint):
    return json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("checkpointing")
    result = run(workdir, workdir / "uninterrupted", 6)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir / "uninterrupted"


def test_kill_while_saving_leaves_the_previous_checkpoint_and_the_rerun_matches_an_uninterrupted_run(tmp_path,
                                                                                                     uninterrupted):
    interrupted = tmp_path / "interrupted"
    killed = run(tmp_path, interrupted, 6, kill_at=4)
    assert killed.returncode == -9  # SIGKILL, halfway through writing checkpoint-4
    # the half-written checkpoint is in staging, under a name no resume picks; checkpoint-2 is the last one
    assert (interrupted / STAGING_DIR / "checkpoint-4" / "model.safetensors").exists()
    assert not (interrupted / "checkpoint-4").exists()
    assert last_checkpoint(str(interrupted)).endswith("checkpoint-2")
    assert global_step(interrupted / "checkpoint-2") == 2
    assert {"optimizer.pt", "scheduler.pt", "rng_state.pth"} <= {
        p.name for p in (interrupted / "checkpoint-2").iterdir()}

    saved_at = (interrupted / "checkpoint-2" / "model.safetensors").stat().st_mtime_ns
    rerun = run(tmp_path, interrupted, 6)  # the same command
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    # resumed, not restarted: a rerun from step 0 would reach the same weights but write checkpoint-2 again
    assert (interrupted / "checkpoint-2" / "model.safetensors").stat().st_mtime_ns == saved_at
    assert not (interrupted / STAGING_DIR).exists()
    assert global_step(interrupted / "checkpoint-6") == 6
    for name, tensor in weights(uninterrupted).items():  # same seed, data order and optimizer state: exact on CPU
        assert torch.equal(weights(interrupted)[name], tensor), name


def test_rerunning_a_finished_run_trains_no_further_step_and_a_longer_schedule_continues(tmp_path, uninterrupted):
    output_dir = tmp_path / "finished"
    shutil.copytree(uninterrupted, output_dir)
    saved = {p: p.stat().st_mtime_ns for p in output_dir.rglob("checkpoint-*/model.safetensors")}
    rerun = run(tmp_path, output_dir, 6)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in saved} == saved  # no checkpoint written again: no step was trained
    assert sorted(p.name for p in output_dir.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4", "checkpoint-6"]
    for name, tensor in weights(output_dir).items():
        assert torch.equal(tensor, weights(uninterrupted)[name]), name

    assert run(tmp_path, output_dir, 8).returncode == 0
    assert global_step(output_dir / "checkpoint-8") == 8
    assert {p: p.stat().st_mtime_ns for p in saved} == saved  # continued from checkpoint-6, not from step 0
    assert not torch.equal(weights(output_dir)["linear.weight"], weights(uninterrupted)["linear.weight"])


def test_a_checkpoint_trained_on_other_objectives_is_not_resumed(tmp_path):
    checkpoint = tmp_path / "run" / "checkpoint-3"
    checkpoint.mkdir(parents=True)
    (checkpoint / "objectives.json").write_text(json.dumps({"objective_names": ["conciseness", "sentiment"]}))
    assert last_checkpoint(str(tmp_path / "run"), ["conciseness", "sentiment"]) == str(checkpoint)
    for other in (["sentiment", "conciseness"], ["conciseness", "sentiment", "profanity_free"]):
        with pytest.raises(ValueError,
                           match=r"checkpoint-3 was trained with objectives \['conciseness', 'sentiment'\]"):
            last_checkpoint(str(tmp_path / "run"), other)
    # a policy's config.json carries transformers' default id2label, which names no objectives
    (checkpoint / "objectives.json").unlink()
    (checkpoint / "config.json").write_text(json.dumps({"id2label": {"0": "LABEL_0", "1": "LABEL_1"}}))
    assert last_checkpoint(str(tmp_path / "run"), ["helpful"]) == str(checkpoint)
    assert last_checkpoint(str(tmp_path / "missing"), ["helpful"]) is None


def test_a_kill_in_the_final_save_leaves_the_previous_final_model_and_the_rerun_completes_it(tmp_path,
                                                                                              uninterrupted):
    output_dir = tmp_path / "longer"
    shutil.copytree(uninterrupted, output_dir)  # a finished run: its final model at the top of output_dir
    previous = {name: (output_dir / name).read_bytes() for name in ("model.safetensors", "training_args.json")}
    killed = run(tmp_path, output_dir, 8, kill_in_final_save=True)
    assert killed.returncode == -9  # SIGKILL after the new final weights were written, before the save ended
    assert (output_dir / FINAL_STAGING_DIR / "model.safetensors").exists()  # they went to the staging folder
    assert {name: (output_dir / name).read_bytes() for name in previous} == previous  # the final model as it was
    assert global_step(output_dir / "checkpoint-8") == 8

    assert run(tmp_path, output_dir, 8).returncode == 0  # the same command: nothing to train, the final save again
    assert not (output_dir / FINAL_STAGING_DIR).exists()
    for name, tensor in weights(output_dir / "checkpoint-8").items():
        assert torch.equal(weights(output_dir)[name], tensor), name


def previous_final_output(output_dir):
    """A finished run's folder: a final model with its record and card, a steerable adapter subfolder, a checkpoint."""
    for name, text in (("model.safetensors", "old weights"), ("objectives.json", '{"old": 1}'),
                       ("README.md", "old card"), ("preference_adapter/adapter.json", "old adapter"),
                       ("checkpoint-2/optimizer.pt", "optimizer"), ("samples.jsonl", "{}")):
        (output_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (output_dir / name).write_text(text)
    return file_hashes(output_dir)


def test_atomic_output_keeps_the_previous_output_when_a_save_fails_and_moves_a_complete_one_in(tmp_path):
    before = previous_final_output(tmp_path)
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_output(tmp_path) as staging:
            (staging / "model.safetensors").write_text("half the new weights")
            raise RuntimeError("disk full")
    assert file_hashes(tmp_path) == before and not (tmp_path / FINAL_STAGING_DIR).exists()

    with atomic_output(tmp_path) as staging:
        for name in ("model.safetensors", "objectives.json", "preference_adapter/adapter.json"):
            (staging / name).parent.mkdir(exist_ok=True)
            (staging / name).write_text(f"new {name}")
    after = file_hashes(tmp_path)
    assert {name for name in before if after[name] != before[name]} == {
        "model.safetensors", "objectives.json", "preference_adapter/adapter.json"}  # checkpoints and logs untouched
    assert "README.md" in after and not (tmp_path / FINAL_STAGING_DIR).exists()


def test_a_folder_interrupted_while_the_final_output_moves_in_has_no_record(tmp_path, monkeypatch):
    """The record goes first and comes back last: a folder caught between two saves is never taken as complete."""
    previous_final_output(tmp_path)
    real_replace, moved = os.replace, []

    def die_after_one_move(source, destination):
        if moved:
            raise KeyboardInterrupt  # stands in for a kill between two renames
        moved.append(destination)
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", die_after_one_move)
    with pytest.raises(KeyboardInterrupt):
        with atomic_output(tmp_path) as staging:
            for name in ("model.safetensors", "objectives.json", "README.md"):
                (staging / name).write_text(f"new {name}")
    assert len(moved) == 1 and not (tmp_path / "objectives.json").exists()


def test_a_trainer_final_save_failing_midway_leaves_the_previous_checkpoint_intact(tiny_policy_path, tmp_path,
                                                                                  monkeypatch):
    import alignment.hub.steerable

    trainer = grpo_trainer(tiny_policy_path, tmp_path)
    trainer.save_model(str(tmp_path))
    before = file_hashes(tmp_path)
    assert {"model.safetensors", "objectives.json", "README.md"} <= set(before)

    def fail(*args, **kwargs):
        raise OSError("no space left on device")

    monkeypatch.setattr(alignment.hub.steerable, "save_record", fail)  # after the new weights, before the record
    with torch.no_grad():
        next(trainer.model.parameters()).add_(1.0)  # weights that differ from the saved ones
    with pytest.raises(OSError, match="no space left"):
        trainer.save_model(str(tmp_path))
    assert file_hashes(tmp_path) == before and not (tmp_path / FINAL_STAGING_DIR).exists()
