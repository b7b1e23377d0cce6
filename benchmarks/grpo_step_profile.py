"""Where one GRPO step of the default recipe goes: generation, reference (and old) log-probabilities, rewards and
advantages, the policy's forward and backward, and the optimizer.

Runs the embedded default (`recipes/configs/grpo_smollm2_cpu.yaml`, or `--config`) for `--steps` steps, times each
part of every step after the first (warm-up), and prints the median split. Each part is timed by wrapping the
trainer's own methods on this one instance (TRL's `_generate`, `_get_per_token_logps_and_entropies`,
`_calculate_rewards`, `compute_loss`, `training_step`); what is left of the step (optimizer, scheduler, logging) is
"other". Peak resident memory of the process is printed too.

    python benchmarks/grpo_step_profile.py                    # SmolLM2, the default's settings, 4 steps
    python benchmarks/grpo_step_profile.py --steps 6 -- --max_completion_length 32    # any recipe option after --

Last line: the share of the step spent generating.
"""

import argparse
import functools
import resource
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # recipes/ is not an installed package

from trl import get_peft_config  # noqa: E402

from alignment.data import resolve_data  # noqa: E402
from alignment.data.prompts import load_prompt_dataset  # noqa: E402
from alignment.models.policy import load_policy  # noqa: E402
from alignment.trainers.grpo import MultiObjectiveGRPOTrainer  # noqa: E402
from recipes.grpo import parse_args  # noqa: E402

CLOCK = time.perf_counter  # --clock cpu: time.process_time, this process's CPU time (fair on a shared machine)


def instrument(trainer, seconds: dict) -> None:
    """Wrap the trainer's step methods on this instance so each adds its wall seconds to `seconds[part]`."""

    def timed(name, part_of):
        method = getattr(trainer, name)

        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            start = CLOCK()
            try:
                return method(*args, **kwargs)
            finally:
                seconds[part_of(args, kwargs)] += CLOCK() - start
        setattr(trainer, name, wrapper)

    timed("_generate", lambda a, k: "generation")
    timed("_calculate_rewards", lambda a, k: "rewards + advantages")
    # Without autograd: the reference pass (and the old policy's, when TRL needs one); with it: the loss's forward
    timed("_get_per_token_logps_and_entropies", lambda a, k: "logps" if torch.is_grad_enabled() else "no-grad logps")
    timed("_prepare_inputs", lambda a, k: "prepare")
    timed("compute_loss", lambda a, k: "loss")
    timed("training_step", lambda a, k: "step")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="a GRPO recipe YAML (default: the embedded default)")
    parser.add_argument("--steps", type=int, default=4, help="steps to run; the first is warm-up and not counted")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="time by the wall clock, or by this process's CPU time (all its threads)")
    parser.add_argument("recipe_args", nargs="*", help="recipe options, after --")
    options = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if options.clock == "cpu" else time.perf_counter
    with tempfile.TemporaryDirectory() as output_dir:
        argv = (["--config", options.config] if options.config else []) + [
            "--output_dir", output_dir, "--max_steps", str(options.steps), "--save_strategy", "no",
            "--disable_tqdm", "true", "--logging_steps", "1", *options.recipe_args]
        script_args, training_args, model_args = parse_args(argv)
        torch.set_num_threads(max(1, torch.get_num_threads()))
        prompts = load_prompt_dataset(resolve_data(script_args.data_source().train), script_args.prompt_field)
        model, tokenizer = load_policy(model_args)
        trainer = MultiObjectiveGRPOTrainer(model=model, args=training_args, processing_class=tokenizer,
                                            train_dataset=prompts.select(range(len(prompts) - 64)),
                                            peft_config=get_peft_config(model_args))
        steps = profile(trainer)
    report(steps, training_args, model_args, options.clock)


def profile(trainer) -> list[dict]:
    """Train, recording each step's parts in seconds; returns one dict per step."""
    raw = defaultdict(float)
    instrument(trainer, raw)
    steps = []
    original = trainer.training_step

    def training_step(*args, **kwargs):
        raw.clear()
        start = CLOCK()
        result = original(*args, **kwargs)
        steps.append({"step_start": start, **raw})
        return result
    trainer.training_step = training_step
    ends = []

    class StepEnd(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            ends.append(CLOCK())
    trainer.add_callback(StepEnd())
    trainer.train()
    return [split(step, end) for step, end in zip(steps, ends)]


def split(step: dict, end: float) -> dict:
    """One step's parts from the wrapped timings (nested calls are subtracted from their callers)."""
    total = end - step["step_start"]
    generation = step.get("generation", 0.0)
    rewards = step.get("rewards + advantages", 0.0)
    no_grad_logps = step.get("no-grad logps", 0.0)
    loss = step.get("loss", 0.0)
    backward = step.get("step", 0.0) - loss - step.get("prepare", 0.0)
    return {"total": total, "generation": generation, "reference + old log-probs": no_grad_logps,
            "rewards + advantages": rewards, "forward (loss)": loss, "backward": backward}


def report(steps, training_args, model_args, clock: str) -> None:
    counted = steps[1:] or steps
    print(f"{model_args.model_name_or_path}: {training_args.per_device_train_batch_size} completions/step of up to "
          f"{training_args.max_completion_length} tokens, conditioning {training_args.conditioning}, "
          f"{torch.get_num_threads()} threads, {len(counted)} timed steps (medians, {clock} seconds)")
    total = statistics.median(s["total"] for s in counted)
    for part in counted[0]:
        if part == "total":
            continue
        value = statistics.median(s[part] for s in counted)
        print(f"  {part:<22} {value:7.2f} s  {value / total:6.1%}")
    accounted = sum(statistics.median(s[p] for s in counted) for p in counted[0] if p != "total")
    print(f"  {'other (optimizer, ...)':<22} {total - accounted:7.2f} s  {(total - accounted) / total:6.1%}")
    print(f"  {'step':<22} {total:7.2f} s")
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    generation = statistics.median(s["generation"] for s in counted)
    print(f"generation share of the step: {generation / total:.1%}")


if __name__ == "__main__":
    main()
