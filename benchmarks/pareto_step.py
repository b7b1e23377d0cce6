"""Step time of the Pareto trainers against plain weighted GRPO: PAMA (closed-form weights) and MGDA (K gradients).

Same tiny policy, prompts, seed, objectives, batch and generation settings; only the update rule differs. The
learning rate is 0, so the policy never moves and every trainer generates the same completions at every step:
the step times differ only by what the update rule costs, not by how long the replies have become.
- plain: MultiObjectiveGRPOTrainer, `scalarization: linear` with fixed equal weights;
- pama:  the same trainer with `scalarization: pama` (O(K) per completion, no extra pass);
- mgda:  MGDAGRPOTrainer (K forward + K backward passes, min-norm weights).
Runs alternate (plain, pama, mgda, plain, ...) so that machine noise hits all three; the first step of each run
(warm-up) is dropped and the median step time is compared. On a shared machine whole-step noise can exceed PAMA's
cost, so the script also times the one thing PAMA changes, `compute_advantages` on the same [N, K] reward vector
(linear vs pama, many repeats), and reports PAMA's extra cost as a fraction of the plain median step.
Ratios are printed last. Goal: PAMA <= 1.02 x plain.

    python benchmarks/pareto_step.py [--steps 8] [--repeats 2] [--batch 32] [--completion_length 24]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignment.data import resolve_data
from alignment.data.prompts import load_prompt_dataset
from alignment.models.tiny_policy import build_tiny_policy
from alignment.objectives.advantages import compute_advantages
from alignment.trainers.grpo import MultiObjectiveGRPOConfig, MultiObjectiveGRPOTrainer
from alignment.trainers.mgda_grpo import MGDAGRPOTrainer

from timing import StepTimer

PROMPTS = resolve_data("hh-prompts")
OBJECTIVES = ["conciseness", "sentiment"]
KINDS = ("plain", "pama", "mgda")
SCALARIZATION_OF = {"plain": "linear", "pama": "pama", "mgda": "linear"}  # each kind's `scalarization` setting


def run(kind: str, policy: Path, options, output_dir: str) -> list[float]:
    args = MultiObjectiveGRPOConfig(
        output_dir=output_dir, objectives=OBJECTIVES, preference_weights="0.5,0.5", num_generations=8,
        per_device_train_batch_size=options.batch, max_completion_length=options.completion_length,
        max_steps=options.steps, learning_rate=0.0, use_cpu=True, gradient_checkpointing=False,
        save_strategy="no", report_to="none", seed=0, logging_steps=1, disable_tqdm=True,
        multi_objective_aggregation="normalize_then_sum", scalarization=SCALARIZATION_OF[kind],
    )
    timer = StepTimer()
    trainer_class = MGDAGRPOTrainer if kind == "mgda" else MultiObjectiveGRPOTrainer
    trainer = trainer_class(model=AutoModelForCausalLM.from_pretrained(policy, use_safetensors=True), args=args,
                            processing_class=AutoTokenizer.from_pretrained(policy),
                            train_dataset=load_prompt_dataset(PROMPTS, limit=512), callbacks=[timer])
    trainer.train()
    return timer.times[1:]


def advantage_cost(batch: int, repeats: int = 2000) -> dict[str, float]:
    """Seconds per call of compute_advantages, linear vs pama, on one step's [N, K] reward vector."""
    rewards = torch.rand(batch, len(OBJECTIVES))
    weights = torch.full((len(OBJECTIVES),), 1.0 / len(OBJECTIVES))
    cost = {}
    for scalarization in ("linear", "pama"):
        compute_advantages(rewards, weights, 8, "normalize_then_sum", scalarization)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            compute_advantages(rewards, weights, 8, "normalize_then_sum", scalarization)
        cost[scalarization] = (time.perf_counter() - start) / repeats
    return cost


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="Steps per run (the first is dropped as warm-up).")
    parser.add_argument("--repeats", type=int, default=2, help="Alternating runs per trainer.")
    parser.add_argument("--batch", type=int, default=32, help="Completions per step (a multiple of 8).")
    parser.add_argument("--completion_length", type=int, default=24, help="max_completion_length.")
    options = parser.parse_args()
    policy = build_tiny_policy()
    times = {kind: [] for kind in KINDS}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(options.repeats):
            for kind in KINDS:
                times[kind] += run(kind, policy, options, f"{scratch}/{kind}-{repeat}")
    medians = {kind: statistics.median(values) for kind, values in times.items()}
    cost = advantage_cost(options.batch)
    print(f"K={len(OBJECTIVES)} objectives, {len(times['plain'])} timed steps each, {options.batch} completions/step, "
          f"{options.completion_length} new tokens")
    for kind in KINDS:
        print(f"{kind:<6} median step {medians[kind] * 1000:9.1f} ms")
    extra = cost["pama"] - cost["linear"]
    print(f"advantages per step: linear {cost['linear'] * 1e3:.3f} ms, pama {cost['pama'] * 1e3:.3f} ms; PAMA's extra "
          f"cost is {extra / medians['plain'] * 100:.3f}% of the plain step "
          f"(ratio from it: {1 + extra / medians['plain']:.4f})")
    print(f"step time ratio PAMA / plain: {medians['pama'] / medians['plain']:.3f}")
    print(f"step time ratio MGDA / plain: {medians['mgda'] / medians['plain']:.3f}")


if __name__ == "__main__":
    main()
