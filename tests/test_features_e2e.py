"""Tiny end-to-end runs of the features of issue 30 on the tiny policy, each showing its effect with margins chance
cannot produce: a weight schedule (replies shrink under conciseness, then grow again once the weights reach
sentiment), a gate (the gated reward is the floor wherever the gate fails, and the policy learns what passes it),
pair weights of 0 (the model of training on the kept half alone), and a scheduled run killed with SIGKILL and
resumed (the same weights per step as an uninterrupted run)."""

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from alignment import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer, load_preference_splits
from alignment.data.preferences import add_margin_rewards, to_dataset
from alignment.objectives.reward_vector import RewardVectorBuilder
from reward_models.scoring import objective_reward_sources
from reward_models.verifiable import conciseness, sentiment
from tests.test_grpo_trainer import make_trainer

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]
ROOT = Path(__file__).resolve().parent.parent


def logged(trainer, key):
    return [entry[key] for entry in trainer.state.log_history if key in entry]


# ---- a weight schedule ----

SCHEDULE = "0:conciseness=1,sentiment=0;0.1:conciseness=0,sentiment=1"  # recipes/configs/grpo_schedule_tiny_cpu.yaml


def test_a_schedule_from_conciseness_to_sentiment_makes_replies_grow_again(tiny_policy_path, tmp_path, capsys):
    steps = 32
    runs = {}
    for label, seed, weights in (("scheduled", 0, {"weights_schedule": SCHEDULE}),
                                 ("scheduled", 1, {"weights_schedule": SCHEDULE}),
                                 ("constant", 0, {"preference_weights": "conciseness=1,sentiment=0"})):
        trainer = make_trainer(tiny_policy_path, tmp_path / f"{label}{seed}", max_steps=steps, seed=seed,
                               max_completion_length=24, **weights)
        trainer.train()
        runs[label, seed] = logged(trainer, "completions/mean_length")
        if label == "scheduled":  # the update of step k trains under the schedule at k - 1 (of 32; 0.1 = step 3.2)
            expected = [min(1.0, (k - 1) / (0.1 * steps)) for k in range(1, steps + 1)]
            assert logged(trainer, "weights/sentiment") == pytest.approx(expected, abs=1e-6)
    with capsys.disabled():
        for (label, seed), lengths in runs.items():
            print(f"\n{label} seed {seed}: mean reply length by step {[round(x, 1) for x in lengths]}")
    for seed in (0, 1):
        lengths = runs["scheduled", seed]
        trough, end = min(lengths[:16]), sum(lengths[-4:]) / 4
        # conciseness first: replies shrink from ~21 tokens; sentiment after: they grow back to the 24-token cap
        assert trough < 0.5 * lengths[0] and end > trough + 10 and end > 2 * trough
    constant = runs["constant", 0]
    assert sum(constant[-4:]) / 4 < min(constant[:16]) + 1.5  # under the first weights alone they stay short
    assert sum(runs["scheduled", 0][-4:]) / 4 > sum(constant[-4:]) / 4 + 10


# ---- a gated objective ----

GATED = ["conciseness", "sentiment@conciseness>=-0.4:floor=-1"]  # recipes/configs/grpo_gate_tiny_cpu.yaml


class FirstBatch(TrainerCallback):
    """Keeps the completions and per-objective rewards of the first step (TRL logs only the latest batch)."""

    def __init__(self, trainer):
        self.trainer, self.rows = trainer, None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 1:
            logs = self.trainer._logs
            self.rows = (list(logs["completion"]), {k: list(v) for k, v in logs["rewards"].items()})


def test_a_gate_stops_the_gated_objective_from_being_rewarded_where_it_fails(tiny_policy_path, tmp_path, capsys):
    runs = {}
    for label, objectives in (("gated", GATED), ("plain", ["conciseness", "sentiment"])):
        trainer = make_trainer(tiny_policy_path, tmp_path / label, max_steps=20, max_completion_length=24,
                               objectives=objectives, preference_weights="conciseness=0,sentiment=1",
                               log_completions=True)
        first = FirstBatch(trainer)
        trainer.add_callback(first)
        trainer.train()
        runs[label] = first.rows, logged(trainer, "rewards/conciseness/mean"), logged(trainer, "rewards/sentiment/mean")
    (completions, rewards), gated_conciseness, gated_sentiment = runs["gated"]
    (plain_completions, _), plain_conciseness, plain_sentiment = runs["plain"]
    assert completions == plain_completions  # same seed, same policy: the same first batch, scored two ways
    raw = sentiment(None, completions)
    failed = [i for i, c in enumerate(conciseness(None, completions)) if c < -0.4]
    passed = [i for i in range(len(completions)) if i not in failed]
    with capsys.disabled():
        print(f"\ngate: {len(failed)} of {len(completions)} first replies fail it; their raw sentiment averages "
              f"{sum(raw[i] for i in failed) / len(failed):+.3f}, their gated reward is -1")
        print(f"gated: conciseness {gated_conciseness[-1]:+.3f}, sentiment {gated_sentiment[-1]:+.3f} at step 20; "
              f"plain: conciseness {plain_conciseness[-1]:+.3f}, sentiment {plain_sentiment[-1]:+.3f}")
    # where the gate fails the reward is the floor, whatever the reply's sentiment; where it holds, the sentiment
    assert len(failed) >= 32 and all(rewards["sentiment"][i] == -1.0 for i in failed)
    assert sum(raw[i] != -1.0 for i in failed) >= 32
    assert all(rewards["sentiment"][i] == pytest.approx(raw[i], abs=1e-6) for i in passed)
    # the gated run learns replies that pass the gate (at most 40 characters); the plain run long warm ones
    assert gated_conciseness[-1] > -0.3 and plain_conciseness[-1] < -0.8
    assert gated_sentiment[-1] > 0.0 and plain_sentiment[-1] > 0.9


# ---- pair weights of 0 ----

def dpo_run(policy_path, output_dir, rows):
    """MODPO on the whole dataset as one batch per step (plain SGD), so only the rows' weights tell runs apart."""
    args = MultiObjectiveDPOConfig(
        output_dir=str(output_dir), loss="modpo", objectives=["helpful", "conciseness"],
        preference_weights="helpful=0.8,conciseness=0.2", use_cpu=True, gradient_checkpointing=False, max_length=64,
        per_device_train_batch_size=len(rows), max_steps=6, learning_rate=0.1, optim="sgd",
        lr_scheduler_type="constant", report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0)
    model = AutoModelForCausalLM.from_pretrained(policy_path)
    trainer = MultiObjectiveDPOTrainer(model=model, args=args, train_dataset=to_dataset(rows),
                                       processing_class=AutoTokenizer.from_pretrained(policy_path))
    trainer.train()
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}, logged(trainer, "loss")


def distance(first, second):
    return max((first[name] - second[name]).abs().max().item() for name in first)


def test_pair_weights_of_zero_train_the_model_of_the_kept_half_alone(tiny_policy_path, tmp_path, capsys):
    rows, _, _ = load_preference_splits("hh", "pairs", ["helpful"], num_train_rows=16, num_eval_rows=0,
                                        max_prompt_chars=160)
    objectives, sources = objective_reward_sources(["conciseness"])
    rows = add_margin_rewards(rows, RewardVectorBuilder.from_objectives(objectives, sources))
    kept = [{**row, "pair_weight": 1.0} for row in rows]
    # the other half: the same pairs the other way round, so they would pull the model back if they counted
    flipped = [{**row, "chosen": row["rejected"], "rejected": row["chosen"], "chosen_margins": row["rejected_margins"],
                "rejected_margins": row["chosen_margins"], "pair_weight": 0.0} for row in rows]
    mixed = [row for both in zip(kept, flipped) for row in both]
    base = {name: tensor.clone() for name, tensor in AutoModelForCausalLM.from_pretrained(tiny_policy_path)
            .state_dict().items()}
    zeroed, zeroed_losses = dpo_run(tiny_policy_path, tmp_path / "zeroed", mixed)
    half, half_losses = dpo_run(tiny_policy_path, tmp_path / "half", kept)
    reordered, _ = dpo_run(tiny_policy_path, tmp_path / "reordered", kept[::-1])
    counted, _ = dpo_run(tiny_policy_path, tmp_path / "counted", [{**row, "pair_weight": 1.0} for row in mixed])
    figures = {"zeroed vs half": distance(zeroed, half), "half vs half reordered": distance(half, reordered),
               "zeroed vs all counted": distance(zeroed, counted), "moved from base": distance(half, base)}
    with capsys.disabled():
        print("\npair weights, max |parameter difference|: " + ", ".join(f"{k} {v:.2e}" for k, v in figures.items()))
    # Mathematically the zeroed run IS the half run: each step sees every row, the weight-0 rows add 0 * l_i to the
    # numerator and 0 to the denominator of sum_i p_i l_i / sum_i p_i, and exactly 0 to every gradient. What is left
    # is float rounding: the forward pass of a 28-row batch and of a 14-row batch round differently (about 1e-7 at
    # step 1), which six SGD steps grow, exactly as they grow for the same half in another row order.
    assert zeroed_losses == pytest.approx(half_losses, abs=1e-3)
    noise = max(10 * figures["half vs half reordered"], 1e-3 * figures["moved from base"])
    assert figures["zeroed vs half"] < noise  # of the order of the rounding noise of a reordered batch
    assert figures["zeroed vs half"] < 0.01 * figures["moved from base"]
    assert figures["zeroed vs all counted"] > 100 * figures["zeroed vs half"]


# ---- a schedule killed and resumed ----

RESUME_SCRIPT = textwrap.dedent('''
    import os, signal, sys
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from alignment import MultiObjectiveGRPOConfig, MultiObjectiveGRPOTrainer
    from alignment.data import resolve_data
    from alignment.data.prompts import load_prompt_dataset
    from alignment.hub.checkpointing import last_checkpoint

    policy, output_dir, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(1)

    class KillAfter(TrainerCallback):
        """SIGKILL at the end of step KILL_AT: after checkpoint-2, before the next one (nothing is flushed)."""
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    args = MultiObjectiveGRPOConfig(
        output_dir=output_dir, objectives=["conciseness", "sentiment"], num_generations=4,
        per_device_train_batch_size=16, max_completion_length=12, max_steps=6, learning_rate=1e-3,
        lr_scheduler_type="constant", use_cpu=True, gradient_checkpointing=False, logging_steps=1,
        save_steps=2, report_to="none", seed=0, disable_tqdm=True, bf16=False,
        weights_schedule="0:conciseness=1,sentiment=0;5:conciseness=0,sentiment=1",
        weights_schedule_interpolation="cosine")
    trainer = MultiObjectiveGRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(policy), args=args,
        processing_class=AutoTokenizer.from_pretrained(policy),
        train_dataset=load_prompt_dataset(resolve_data("hh-prompts"), limit=128), callbacks=[KillAfter()])
    trainer.train(resume_from_checkpoint=last_checkpoint(output_dir))
''')


def run_resume_script(tmp_path, policy, output_dir, kill_at=-1):
    script = tmp_path / "scheduled_grpo.py"
    script.write_text(RESUME_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(script), str(policy), str(output_dir), str(kill_at)],
                          capture_output=True, text=True, env=env, timeout=600)


def per_step(run_dir):
    history = json.loads((run_dir / "checkpoint-6" / "trainer_state.json").read_text())["log_history"]
    return [(e["step"], e["weights/conciseness"], e["weights/sentiment"], e["rewards/conciseness/mean"])
            for e in history if "weights/sentiment" in e]


def test_a_scheduled_run_killed_and_resumed_logs_the_weights_of_an_uninterrupted_run(tiny_policy_path, tmp_path):
    uninterrupted = run_resume_script(tmp_path, tiny_policy_path, tmp_path / "uninterrupted")
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]
    interrupted = tmp_path / "interrupted"
    killed = run_resume_script(tmp_path, tiny_policy_path, interrupted, kill_at=3)
    assert killed.returncode == -9 and not (interrupted / "checkpoint-4").exists()
    assert (interrupted / "checkpoint-2").exists()
    resumed = run_resume_script(tmp_path, tiny_policy_path, interrupted)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    steps = per_step(tmp_path / "uninterrupted")
    # step k trains under the cosine schedule at global step k - 1 (of 0..5)
    shares = [(1 - math.cos(math.pi * (k - 1) / 5)) / 2 for k in range(1, 7)]
    assert [s for s, *_ in steps] == [1, 2, 3, 4, 5, 6]
    assert [w for _, _, w, _ in steps] == pytest.approx(shares, abs=1e-6)
    assert per_step(interrupted) == steps  # same weights per step, and the same rewards: the same run
    record = json.loads((interrupted / "checkpoint-2" / "objectives.json").read_text())
    assert record["weights_schedule"]["spec"] == "0:conciseness=1,sentiment=0;5:conciseness=0,sentiment=1"
    assert record["weights_schedule"]["step"] == 2
    assert record["weights"] == pytest.approx({"conciseness": 1 - shares[2], "sentiment": shares[2]}, abs=1e-6)
    final = [json.loads((run / "checkpoint-6" / "objectives.json").read_text())["weights_schedule"]
             for run in (tmp_path / "uninterrupted", interrupted)]
    assert final[0] == final[1] and final[0]["weights_at_step"] == {"conciseness": 0.0, "sentiment": 1.0}
