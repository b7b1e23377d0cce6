"""The held-out evaluation of the main job at two generation batch sizes (`--eval_batch_size` of recipes/grpo.py), in
one process on the same prompts: `alignment.evaluation.generate_completions` on the last 64 HH prompts (the main job's
held-out set), SmolLM2-135M-Instruct with a preference adapter at one weight vector, sampled up to 56 tokens as the
main job's steering table does (each pass runs until its longest reply ends). Medians of `--repeats` passes after
one warm-up pass each.

    python benchmarks/eval_batch_size.py                 # batch 32 against 64, 2 threads, ~4 min on 2 CPU cores

Last line: seconds per pass at each size and the ratio (larger batch / smaller).
"""

import argparse
import statistics
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alignment.data import resolve_data  # noqa: E402
from alignment.data.prompts import load_prompt_dataset  # noqa: E402
from alignment.evaluation import generate_completions  # noqa: E402
from alignment.models.packaged import resolve_model_path  # noqa: E402
from alignment.models.preference_adapter import add_preference_adapter, preference_weights  # noqa: E402

from timing import timed  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="packaged name, hub id or path")
    parser.add_argument("--num_prompts", type=int, default=64)
    parser.add_argument("--max_new_tokens", type=int, default=56)
    parser.add_argument("--batch_sizes", type=int, nargs=2, default=[32, 64])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    path = resolve_model_path(options.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompts = [row["prompt"] for row in load_prompt_dataset(resolve_data("hh-prompts"))][-options.num_prompts:]
    torch.manual_seed(0)
    model = add_preference_adapter(AutoModelForCausalLM.from_pretrained(path), ["conciseness", "sentiment"], rank=4)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:  # a trained-looking adapter: it changes the model
                parameter.normal_(0, 0.02)

    def one_pass(batch_size):
        with preference_weights(model, [0.5, 0.5]):
            generate_completions(model, tokenizer, prompts, max_new_tokens=options.max_new_tokens,
                                 batch_size=batch_size, seed=42)

    seconds = {}
    for size in options.batch_sizes:
        one_pass(size)  # warm-up
        seconds[size] = statistics.median(timed(lambda: one_pass(size), "cpu") for _ in range(options.repeats))
        print(f"batch {size:3d}: {seconds[size]:.2f} s per pass of {len(prompts)} prompts", flush=True)
    small, large = options.batch_sizes
    print(f"{options.model}, {len(prompts)} held-out prompts, up to {options.max_new_tokens} tokens, "
          f"{options.threads} threads; medians of {options.repeats}")
    print(f"batch {small}: {seconds[small]:.2f} s, batch {large}: {seconds[large]:.2f} s, "
          f"ratio {large}/{small}: {seconds[large] / seconds[small]:.2f}")


if __name__ == "__main__":
    main()
