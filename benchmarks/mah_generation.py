"""Mixed-head generation vs plain generation of the same base model: what steering a multi-head policy costs.

Both runs use the same model, prompts and decoding (greedy, a fixed number of new tokens so both do the same number
of steps); the mixed run swaps in the weighted mix of the heads (`alignment.models.multi_head.generate_with_weights`).
Rounds alternate baseline / mixed and the medians are compared. The ratio mixed / plain is printed last.

    python benchmarks/mah_generation.py                                  # tiny offline policy, CPU
    python benchmarks/mah_generation.py --model Qwen/Qwen2.5-0.5B-Instruct --device cuda --batch_size 16
"""

import argparse
import statistics

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignment.data import resolve_data
from alignment.data.jsonl import iter_jsonl
from alignment.models.multi_head import add_lm_heads, generate_with_weights, head_modules
from alignment.models.policy import ensure_pad_token
from alignment.models.tiny_policy import build_tiny_policy

from timing import timed


def load_prompts(tokenizer, path: str, count: int) -> list[str]:
    prompts = []
    for _, row in iter_jsonl(resolve_data(path)):
        prompts.append(tokenizer.apply_chat_template([{"role": "user", "content": row["prompt"]}], tokenize=False,
                                                     add_generation_prompt=True))
        if len(prompts) == count:
            break
    return prompts


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="'tiny' (offline policy) or a hub id / path")
    parser.add_argument("--prompts_file", default="hh-prompts",
                        help="JSONL with a 'prompt' field per line (HH-RLHF single-turn prompts by default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--num_heads", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_new_tokens", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (1 gives stable timings on a shared machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    path = str(build_tiny_policy()) if args.model == "tiny" else args.model
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    ensure_pad_token(tokenizer, path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, args.dtype),
                                                 use_safetensors=True).to(args.device).eval()
    names = [f"objective_{i}" for i in range(args.num_heads)]
    add_lm_heads(model, names)
    with torch.no_grad():  # distinct heads, as after training
        for head in head_modules(model)[1:]:
            head.weight.add_(0.01 * torch.randn_like(head.weight))

    inputs = tokenizer(load_prompts(tokenizer, args.prompts_file, args.batch_size), return_tensors="pt",
                       padding=True).to(args.device)
    decoding = dict(max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens, do_sample=False,
                    pad_token_id=tokenizer.pad_token_id)
    weights = [1.0 / args.num_heads] * args.num_heads

    def plain():
        with torch.no_grad():
            model.generate(**inputs, **decoding)

    def mixed():
        with torch.no_grad():
            generate_with_weights(model, weights, **inputs, **decoding)

    plain(), mixed()  # warm-up
    plain_times, mixed_times = [], []
    for _ in range(args.rounds):
        plain_times.append(timed(plain, args.device))
        mixed_times.append(timed(mixed, args.device))
    plain_median, mixed_median = statistics.median(plain_times), statistics.median(mixed_times)
    print(f"model={args.model} device={args.device} heads={args.num_heads} batch={args.batch_size} "
          f"new_tokens={args.max_new_tokens} rounds={args.rounds}")
    print(f"plain generation  median {plain_median * 1000:.1f} ms")
    print(f"mixed-head        median {mixed_median * 1000:.1f} ms")
    print(f"mixed/plain generation time ratio: {mixed_median / plain_median:.3f}")


if __name__ == "__main__":
    main()
