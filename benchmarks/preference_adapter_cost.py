"""What preference adapters cost: against plain LoRA of the same rank, and a baked checkpoint against the plain model.

1. GRPO step: MultiObjectiveGRPOTrainer with `conditioning: adapter` (rank r + K, lambda per prompt) vs the same
   trainer with a plain peft LoRA of rank r + K on the same target modules (fixed weights). Both with a frozen base.
2. Generation: steering a preference adapter with weights set vs generating with the plain LoRA model.
3. A checkpoint baked at one preference (`merge_preference`, what `scripts/publish.py --weights` writes) vs the plain
   base model: the same architecture, so the same speed.

Same tiny policy, prompts and decoding settings; every run generates exactly `--new_tokens` tokens (min_new_tokens
suppresses the end of sequence), so the work is identical. Runs alternate and medians are compared; the first step
of each training run (warm-up) is dropped. Goals: 1 and 2 <= 1.05, 3 = 1.00 within noise. Ratios on the last line,
with the spread over repeats (each repeat's median ratio: min..max).

On CPU the clock is this process's CPU time by default (`--clock cpu`, with one thread): other jobs on a shared
machine inflate wall time, not the CPU time the work itself takes. `--clock wall` for an idle machine or a GPU.

    python benchmarks/preference_adapter_cost.py [--steps 8] [--repeats 3] [--threads 1] [--clock cpu]
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignment.data import resolve_data
from alignment.data.prompts import load_prompt_dataset
from alignment.models.preference_adapter import DEFAULT_TARGET_MODULES, add_preference_adapter, merge_preference
from alignment.models.tiny_policy import build_tiny_policy
from alignment.steering import PreferenceAdapterSteerable
from alignment.trainers.grpo import MultiObjectiveGRPOConfig, MultiObjectiveGRPOTrainer

from timing import StepTimer, timed

PROMPTS = resolve_data("hh-prompts")
NAMES = ["conciseness", "sentiment"]
RANK = 4


def plain_lora(model):
    rank_total = RANK + len(NAMES)
    return get_peft_model(model, LoraConfig(r=rank_total, lora_alpha=rank_total,
                                            target_modules=list(DEFAULT_TARGET_MODULES), task_type="CAUSAL_LM"))


def grpo_step_times(kind: str, policy: Path, steps: int, new_tokens: int, output_dir: str, clock) -> list[float]:
    common = dict(output_dir=output_dir, objectives=NAMES, num_generations=8, per_device_train_batch_size=16,
                  max_completion_length=new_tokens, generation_kwargs={"min_new_tokens": new_tokens}, max_steps=steps,
                  learning_rate=1e-3, use_cpu=not torch.cuda.is_available(), gradient_checkpointing=False,
                  save_strategy="no", report_to="none", seed=0, logging_steps=1, disable_tqdm=True, loss_type="grpo",
                  bf16=torch.cuda.is_available())  # TRL's default bf16 is several times slower on a CPU without it
    model = AutoModelForCausalLM.from_pretrained(policy)
    if kind == "adapter":
        args = MultiObjectiveGRPOConfig(weights_mode="dirichlet", conditioning="adapter", preference_adapter_rank=RANK,
                                        **common)
    else:
        model = plain_lora(model)
        args = MultiObjectiveGRPOConfig(preference_weights="0.5,0.5", **common)
    timer = StepTimer(clock=clock)
    trainer = MultiObjectiveGRPOTrainer(model=model, args=args, train_dataset=load_prompt_dataset(PROMPTS, limit=256),
                                        processing_class=AutoTokenizer.from_pretrained(policy), callbacks=[timer])
    trainer.train()
    return timer.times[1:]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="GRPO steps per run (the first is dropped)")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each kind")
    parser.add_argument("--rounds", type=int, default=7, help="alternating generation rounds")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--new_tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (1 gives stable timings on a shared machine)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default=None,
                        help="cpu: this process's CPU time (default on CPU); wall: elapsed time (default on GPU)")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    clock_name = options.clock or ("wall" if device == "cuda" else "cpu")
    clock = time.process_time if clock_name == "cpu" else time.perf_counter
    policy = build_tiny_policy()

    step_times = {"adapter": [], "lora": []}
    step_ratios = []  # one per repeat: the spread
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(options.repeats):
            medians = {}
            for kind in step_times:
                times = grpo_step_times(kind, policy, options.steps, options.new_tokens, f"{scratch}/{kind}{repeat}",
                                        clock)
                step_times[kind] += times
                medians[kind] = statistics.median(times)
            step_ratios.append(medians["adapter"] / medians["lora"])
            print(f"repeat {repeat}: GRPO step adapter {medians['adapter'] * 1000:.1f} ms, LoRA "
                  f"{medians['lora'] * 1000:.1f} ms, ratio {step_ratios[-1]:.3f}", flush=True)

    tokenizer = AutoTokenizer.from_pretrained(policy)
    torch.manual_seed(0)
    adapter = add_preference_adapter(AutoModelForCausalLM.from_pretrained(policy), NAMES, rank=RANK).to(device).eval()
    lora = plain_lora(AutoModelForCausalLM.from_pretrained(policy)).to(device).eval()
    baked = merge_preference(add_preference_adapter(AutoModelForCausalLM.from_pretrained(policy), NAMES, rank=RANK),
                             "0.7,0.3").to(device).eval()
    plain = AutoModelForCausalLM.from_pretrained(policy).to(device).eval()
    prompts = [row["prompt"] for row in load_prompt_dataset(PROMPTS, limit=options.batch_size)]
    steerable = PreferenceAdapterSteerable(adapter, tokenizer, NAMES, device)
    inputs = steerable.encode(prompts)
    decoding = dict(max_new_tokens=options.new_tokens, min_new_tokens=options.new_tokens, do_sample=True,
                    pad_token_id=tokenizer.pad_token_id)

    def generate_with(model):
        def run():
            with torch.no_grad():
                model.generate(**inputs, **decoding)
        return run

    def steered():  # the whole steering call: weights parsed and set, prompts rendered, generated, decoded
        steerable.generate(prompts, "conciseness=0.7,sentiment=0.3", max_new_tokens=options.new_tokens)

    steerable_decoding = steerable._hf_generate  # noqa: SLF001 - pin min_new_tokens for the timed steering call
    steerable._hf_generate = lambda model, p, d, generate=None: steerable_decoding(
        model, p, {**d, "min_new_tokens": options.new_tokens}, generate)
    runs = {"adapter (lambda set)": steered, "plain LoRA": generate_with(lora), "baked": generate_with(baked),
            "plain model": generate_with(plain)}
    for run in runs.values():
        run()  # warm-up
    times = {name: [] for name in runs}
    for _ in range(options.rounds):
        for name, run in runs.items():
            times[name].append(timed(run, device, clock))
    medians = {name: statistics.median(values) for name, values in times.items()}
    # per round: the spread of the paired ratios
    generation_ratios = [a / b for a, b in zip(times["adapter (lambda set)"], times["plain LoRA"])]
    baked_ratios = [a / b for a, b in zip(times["baked"], times["plain model"])]

    step = {kind: statistics.median(values) for kind, values in step_times.items()}
    print(f"device={device} threads={options.threads} clock={clock_name} rank={RANK}+{len(NAMES)} "
          f"batch={options.batch_size} new_tokens={options.new_tokens}; GRPO: {len(step_times['adapter'])} timed steps "
          "each, 16 completions/step")
    print(f"GRPO step   preference adapter {step['adapter'] * 1000:8.1f} ms   plain LoRA {step['lora'] * 1000:8.1f} ms")
    for name, median in medians.items():
        print(f"generation  {name:<22} median {median * 1000:8.1f} ms")
    grpo_ratio = step["adapter"] / step["lora"]
    generation_ratio = medians["adapter (lambda set)"] / medians["plain LoRA"]
    baked_ratio = medians["baked"] / medians["plain model"]
    spread = lambda values: f"[{min(values):.3f}..{max(values):.3f}]"  # noqa: E731
    print(f"ratios (goals <= 1.05, <= 1.05, 1.00): GRPO step adapter/LoRA {grpo_ratio:.3f} {spread(step_ratios)}; "
          f"generation adapter/LoRA {generation_ratio:.3f} {spread(generation_ratios)}; "
          f"baked/plain {baked_ratio:.3f} {spread(baked_ratios)}")


if __name__ == "__main__":
    main()
