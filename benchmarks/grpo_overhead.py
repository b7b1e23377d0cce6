"""Step time of our MultiObjectiveGRPOTrainer vs TRL's GRPOTrainer given the same K reward functions.

Same policy, prompts, seed, weights, aggregation and generation settings; the only difference is the trainer.
Runs alternate (TRL, ours, TRL, ours, ...) so that machine noise hits both; the first step of each run (warm-up) is
dropped and the median step time is compared. The ratio (ours / TRL) is printed on the last line. Goal: <= 1.02.

    python benchmarks/grpo_overhead.py [--steps 12] [--repeats 3]            # the tiny offline policy
    python benchmarks/grpo_overhead.py --model smollm2-135m-instruct --steps 4 --repeats 2 --clock cpu
        # SmolLM2-135M-Instruct with LoRA r=16 on all linear layers, 16 completions of up to 32 tokens per step;
        # --clock cpu times each step by this process's CPU time (a fair measure on a shared machine)
    python benchmarks/grpo_overhead.py --model smollm2-135m-instruct --steps 4 --repeats 2 --clock cpu \
        --preference_adapter [--conditioning adapter]
        # ours trains the steerable default's setup (Dirichlet weights per prompt, fed to a preference adapter and,
        # with `--conditioning both`, the default, also written in a system message) against TRL's plain LoRA step
        # at fixed weights: after the first update the two policies, and so the lengths of their replies, differ,
        # so compare medians over several repeats. Goal: <= 1.05.
"""

import argparse
import statistics
import tempfile
import time

import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer

from alignment.data import resolve_data
from alignment.data.prompts import load_prompt_dataset
from alignment.models.packaged import resolve_model_path
from alignment.trainers.grpo import MultiObjectiveGRPOConfig, MultiObjectiveGRPOTrainer
from reward_models.verifiable import conciseness, profanity_free, sentiment

from timing import StepTimer

PROMPTS = resolve_data("hh-prompts")
OBJECTIVES = ["conciseness", "sentiment", "profanity_free"]
WEIGHTS = [0.5, 0.4, 0.1]


def run(kind: str, policy: str, steps: int, output_dir: str, lora: bool, clock, adapter: bool = False,
        conditioning: str = "both") -> list[float]:
    # The tiny policy is fully fine-tuned on 64 completions a step; a real model gets LoRA and 16 shorter ones.
    batch = dict(per_device_train_batch_size=16, max_completion_length=32, learning_rate=1e-4) if lora else \
        dict(per_device_train_batch_size=64, max_completion_length=32, learning_rate=1e-3)
    common = dict(output_dir=output_dir, num_generations=8, max_steps=steps, use_cpu=not torch.cuda.is_available(),
                  gradient_checkpointing=False, save_strategy="no", report_to="none", seed=0, logging_steps=1,
                  disable_tqdm=True, multi_objective_aggregation="normalize_then_sum", **batch,
                  bf16=torch.cuda.is_available())  # TRL's default bf16 is several times slower on a CPU without it
    peft_config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM") if lora else None
    model = AutoModelForCausalLM.from_pretrained(policy, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(policy)
    dataset = load_prompt_dataset(PROMPTS, limit=512)
    timer = StepTimer(clock)
    if kind == "ours" and adapter:  # the steerable default's setup: Dirichlet weights per prompt into the adapter
        peft_config = None
        extra = dict(weights_mode="dirichlet", conditioning=conditioning, preference_adapter_rank=4)
    else:
        extra = dict(preference_weights=",".join(map(str, WEIGHTS)))
    if kind == "trl":
        trainer = GRPOTrainer(model=model, reward_funcs=[conciseness, sentiment, profanity_free],
                              args=GRPOConfig(reward_weights=WEIGHTS, **common), train_dataset=dataset,
                              processing_class=tokenizer, callbacks=[timer], peft_config=peft_config)
    else:
        args = MultiObjectiveGRPOConfig(objectives=OBJECTIVES, **extra, **common)
        trainer = MultiObjectiveGRPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                            callbacks=[timer], peft_config=peft_config)
    trainer.train()
    return timer.times[1:]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny",
                        help="'tiny' (the offline tiny policy, full fine-tuning), or a model name or path, e.g. "
                             "smollm2-135m-instruct, trained with LoRA")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="time steps by the wall clock, or by this process's CPU time")
    parser.add_argument("--preference_adapter", action="store_true",
                        help="ours trains a steerable policy (Dirichlet weights per prompt into a preference "
                             "adapter of rank 4 + K, the default recipe's setup) against TRL's plain LoRA r=16 at "
                             "fixed weights")
    parser.add_argument("--conditioning", choices=("adapter", "both"),
                        help="with --preference_adapter: the weights reach ours through the adapter alone, or through "
                             "the adapter and a system message as in the default recipe (default: both; the message "
                             "makes prompts longer)")
    options = parser.parse_args()
    if options.conditioning and not options.preference_adapter:
        parser.error("--conditioning applies only with --preference_adapter (without it both trainers get a plain "
                     "LoRA at fixed weights)")
    options.conditioning = options.conditioning or "both"
    lora = options.model != "tiny"
    policy = resolve_model_path(options.model)
    clock = time.process_time if options.clock == "cpu" else time.perf_counter
    times = {"trl": [], "ours": []}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(options.repeats):
            for kind in ("trl", "ours"):
                times[kind] += run(kind, policy, options.steps, f"{scratch}/{kind}-{repeat}", lora, clock,
                                   options.preference_adapter, options.conditioning)
                print(f"repeat {repeat} {kind}: step times {[round(t, 2) for t in times[kind][-(options.steps - 1):]]}",
                      flush=True)
    trl_median, ours_median = statistics.median(times["trl"]), statistics.median(times["ours"])
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    completions = 16 if lora else 64
    ours = (f" (ours: preference adapter r=4+K, Dirichlet weights, conditioning {options.conditioning})"
            if options.preference_adapter else "")
    print(f"{options.model}{' (LoRA r=16)' if lora else ''}{ours}, K={len(OBJECTIVES)} objectives, "
          f"{len(times['trl'])} timed steps each, {completions} completions/step, {options.clock} clock, on {device}")
    print(f"TRL GRPOTrainer          median step {trl_median * 1000:8.1f} ms")
    print(f"MultiObjectiveGRPOTrainer median step {ours_median * 1000:8.1f} ms")
    print(f"step time ratio (ours / TRL): {ours_median / trl_median:.3f}")


if __name__ == "__main__":
    main()
