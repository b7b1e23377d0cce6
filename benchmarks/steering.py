"""Generation time of each steering method (alignment.steering) against plain generation of the same base model.

Same prompts, same sampling settings, and every model's end-of-sequence token disabled so that every method runs
exactly `--max_new_tokens` decoding steps. The K = 2 "objective" models of MOD and soups, and the second head of
the multi-head model, are the base with small weight perturbations (their timing does not depend on what they
learned). RMOD is compared with best-of-K blockwise decoding with the same K, block size and reward sources
(built-in conciseness and VADER sentiment), and both are also shown against plain generation. Rounds alternate the
methods and medians are compared; the ratios are printed last.

Goals: prompt conditioning and head mixing <= 1.15 x plain; RMOD <= 1.5 x best-of-K.

    python benchmarks/steering.py                                   # tiny offline policy, CPU, one thread
    python benchmarks/steering.py --model Qwen/Qwen2.5-0.5B-Instruct --device cuda --batch_size 16
"""

import argparse
import statistics

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignment.data import resolve_data
from alignment.data.jsonl import iter_jsonl
from alignment.models.multi_head import add_lm_heads, head_modules
from alignment.models.tiny_policy import build_tiny_policy
from alignment.objectives.sources import FunctionSource
from alignment.steering import HeadMixing, LogProbMixture, PromptConditioned, RewardedSoup, RobustDecoding
from reward_models.verifiable import conciseness, sentiment

from timing import timed

NAMES = ["conciseness", "sentiment"]


def load(path: str, device: str, dtype: str, perturb_seed: int | None = None):
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), use_safetensors=True)
    model = model.to(device).eval()
    model.generation_config.eos_token_id = None  # a fixed number of steps for every method
    if perturb_seed is not None:
        generator = torch.Generator().manual_seed(perturb_seed)
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(0.01 * torch.randn(parameter.shape, generator=generator).to(parameter))
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="'tiny' (offline policy) or a hub id / path")
    parser.add_argument("--prompts_file", default="hh-prompts")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--num_candidates", type=int, default=4, help="K of RMOD and best-of-K")
    parser.add_argument("--block_size", type=int, default=8, help="tokens per block of RMOD and best-of-K")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (1 gives stable timings on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    path = str(build_tiny_policy()) if args.model == "tiny" else args.model
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompts = [row["prompt"]
               for _, (_, row) in zip(range(args.batch_size), iter_jsonl(resolve_data(args.prompts_file)))]
    weights = "conciseness=0.6,sentiment=0.4"
    device = args.device

    base = load(path, device, args.dtype)
    multi_head = add_lm_heads(load(path, device, args.dtype), NAMES)
    with torch.no_grad():
        head_modules(multi_head)[1].weight.add_(0.01 * torch.randn_like(head_modules(multi_head)[1].weight))
    objective_models = [load(path, device, args.dtype, seed) for seed in (1, 2)]
    sources = [FunctionSource("conciseness", conciseness), FunctionSource("sentiment", sentiment)]
    blockwise = dict(num_candidates=args.num_candidates, block_size=args.block_size)
    steerables = {
        "prompt": PromptConditioned(base, tokenizer, NAMES, device),
        "heads": HeadMixing(multi_head, tokenizer, NAMES, device),
        "mod": LogProbMixture(objective_models, tokenizer, NAMES, set(), device),
        "soup": RewardedSoup(load(path, device, args.dtype), [m.state_dict() for m in objective_models], tokenizer,
                             NAMES, device),
        "best_of_k": RobustDecoding(base, tokenizer, sources, device=device, robust=False, **blockwise),
        "rmod": RobustDecoding(base, tokenizer, sources, device=device, robust=True, **blockwise),
    }
    plain_inputs = steerables["prompt"].encode(prompts)
    decoding = dict(max_new_tokens=args.max_new_tokens, do_sample=True)

    def plain():
        with torch.no_grad():
            base.generate(**plain_inputs, **decoding, pad_token_id=tokenizer.pad_token_id)

    runs = {"plain": plain,
            **{name: (lambda s=s: s.generate(prompts, weights, **decoding)) for name, s in steerables.items()}}
    for run in runs.values():  # warm-up (the soup is loaded here; timed calls reuse it, as with fixed weights)
        run()
    times = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            times[name].append(timed(run, device))
    medians = {name: statistics.median(values) for name, values in times.items()}

    print(f"model={args.model} device={device} batch={args.batch_size} new_tokens={args.max_new_tokens} "
          f"K={args.num_candidates} block={args.block_size} rounds={args.rounds} threads={args.threads}")
    for name, median in medians.items():
        print(f"{name:<10} median {median * 1000:9.1f} ms")
    print("ratios (goals: prompt, heads <= 1.15; rmod/best_of_k <= 1.5):")
    for name in ("prompt", "heads", "mod", "soup", "best_of_k", "rmod"):
        print(f"{name}/plain {medians[name] / medians['plain']:.3f}")
    print(f"rmod/best_of_k {medians['rmod'] / medians['best_of_k']:.3f}")


if __name__ == "__main__":
    main()
