"""Step time of our MultiObjectiveGRPOTrainer vs TRL's GRPOTrainer given the same K reward functions.

Same tiny policy, prompts, seed, weights, aggregation and generation settings; the only difference is the trainer.
Runs alternate (TRL, ours, TRL, ours, ...) so that machine noise hits both; the first step of each run (warm-up) is
dropped and the median step time is compared. The ratio (ours / TRL) is printed on the last line. Goal: <= 1.05.

    python benchmarks/grpo_overhead.py [--steps 12] [--repeats 3]
"""

import argparse
import statistics
import tempfile
from pathlib import Path

import torch
from timing import StepTimer
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer

from alignment.data import resolve_data
from alignment.prompts import load_prompt_dataset
from alignment.tiny_policy import build_tiny_policy
from alignment.trainers.grpo import MultiObjectiveGRPOConfig, MultiObjectiveGRPOTrainer
from reward_models.verifiable import conciseness, profanity_free, sentiment

PROMPTS = resolve_data("hh-prompts")
OBJECTIVES = ["conciseness", "sentiment", "profanity_free"]
WEIGHTS = [0.5, 0.4, 0.1]


def run(kind: str, policy: Path, steps: int, output_dir: str) -> list[float]:
    common = dict(output_dir=output_dir, num_generations=8, per_device_train_batch_size=64, max_completion_length=32,
                  max_steps=steps, learning_rate=1e-3, use_cpu=not torch.cuda.is_available(), activation_checkpointing=False,
                  save_strategy="no", report_to="none", seed=0, logging_steps=1, disable_tqdm=True,
                  multi_objective_aggregation="normalize_then_sum")
    model = AutoModelForCausalLM.from_pretrained(policy)
    tokenizer = AutoTokenizer.from_pretrained(policy)
    dataset = load_prompt_dataset(PROMPTS, limit=512)
    timer = StepTimer()
    if kind == "trl":
        trainer = GRPOTrainer(model=model, reward_funcs=[conciseness, sentiment, profanity_free],
                              args=GRPOConfig(reward_weights=WEIGHTS, **common), train_dataset=dataset,
                              processing_class=tokenizer, callbacks=[timer])
    else:
        args = MultiObjectiveGRPOConfig(objectives=OBJECTIVES, preference_weights=",".join(map(str, WEIGHTS)), **common)
        trainer = MultiObjectiveGRPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                            callbacks=[timer])
    trainer.train()
    return timer.times[1:]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    policy = build_tiny_policy()
    times = {"trl": [], "ours": []}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(options.repeats):
            for kind in ("trl", "ours"):
                times[kind] += run(kind, policy, options.steps, f"{scratch}/{kind}-{repeat}")
    trl_median, ours_median = statistics.median(times["trl"]), statistics.median(times["ours"])
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"K={len(OBJECTIVES)} objectives, {len(times['trl'])} timed steps each, 64 completions/step, on {device}")
    print(f"TRL GRPOTrainer          median step {trl_median * 1000:8.1f} ms")
    print(f"MultiObjectiveGRPOTrainer median step {ours_median * 1000:8.1f} ms")
    print(f"step time ratio (ours / TRL): {ours_median / trl_median:.3f}")


if __name__ == "__main__":
    main()
