"""Generate with preference weights chosen at inference time, for every kind of checkpoint the suite writes.

    # a preference-conditioned GRPO checkpoint (prompt or preference adapter) or a multi-head DPO checkpoint: the
    # method is read from objectives.json
    python scripts/generate.py --model outputs/grpo-steerable --weights conciseness=0.8,sentiment=0.2 \
        --prompt "How do I bake bread?"
    # MOD: K single-objective policies (or LoRA adapters) sharing a tokenizer; NAME=PATH names the objective of each
    python scripts/generate.py --method mod --model helpful=outputs/helpful --model harmless=outputs/harmless \
        --weights helpful=0.7,harmless=0.3 --prompts_file prompts.jsonl
    # rewarded soup of the same checkpoints
    python scripts/generate.py --method soup --model helpful=outputs/helpful --model harmless=outputs/harmless ...
    # RMOD: one policy, a multi-head reward model (or built-in rewards) as value function
    python scripts/generate.py --method rmod --model outputs/sft --reward_model outputs/rm \
        --objectives helpful=rm:helpful,harmless=rm:harmless --weights helpful=0.5,harmless=0.5 --prompt "..."

    # the same checkpoint served by vLLM (the `vllm` extra): a preference adapter as one LoRA per weight vector
    python scripts/generate.py --engine vllm --model outputs/grpo-steerable --weights conciseness=0.8,sentiment=0.2 \
        --prompt "How do I bake bread?"

    # prompt-aware weights (PRO): a Preference Orchestrator (recipes/orchestrator.py) picks each prompt's weights
    python scripts/generate.py --model outputs/grpo-steerable --weights auto --orchestrator outputs/orchestrator \
        --prompt "What dose of ibuprofen is safe?" --prompt "Write a poem about autumn"

Prints one JSON line per prompt: {"prompt", "weights", "method", "completion"} (also written to --output).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from alignment.objectives.sources import ObjectiveSpecError
from alignment.objectives.weights import PreferenceWeightsError, format_preference_weights
from alignment.orchestrator import OrchestratorError, PreferenceOrchestrator, weights_in_order
from alignment.steering import AUTO, METHODS, SteeringError, load_steerable
from alignment.steering.vllm import VLLMSteerable
from reward_models.scoring import objective_reward_sources


def read_prompts(args) -> list:
    """The prompts of --prompt and --prompts_file (a JSONL 'prompt' field per line), in that order."""
    prompts = list(args.prompt or [])
    if args.prompts_file:
        with open(args.prompts_file) as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                row = json.loads(line)
                if "prompt" not in row:
                    raise SystemExit(f"{args.prompts_file}, line {number}: no 'prompt' field")
                prompts.append(row["prompt"])
    if not prompts:
        raise SystemExit("no prompts: give --prompt TEXT or --prompts_file FILE.jsonl")
    return prompts


def reward_sources(args) -> list:
    """The RMOD value function: objective specs (alignment.objectives.sources), reward-model heads loaded once."""
    if not args.objectives:
        return None
    specs = [s for s in args.objectives.split(",") if s]
    try:
        return objective_reward_sources(specs, args.reward_model, device=args.device)[1]
    except ObjectiveSpecError as error:
        raise SystemExit(f"--objectives: {error}; give --reward_model PATH for rm:HEAD objectives") from None


def vllm_steerable(args):
    """--engine vllm: one checkpoint, served by vLLM (alignment.steering.vllm); the hf-only options are refused."""
    if len(args.model) > 1 or args.method not in (AUTO, "adapter", "prompt"):
        raise SteeringError("--engine vllm serves one preference-adapter, prompt-conditioned or baked checkpoint; "
                            "mixtures of checkpoints and rmod / best_of_k need --engine hf")
    if args.objectives or args.reward_model:
        raise SteeringError("--objectives / --reward_model are for rmod / best_of_k, which need --engine hf")
    dtype = args.vllm_dtype or ("auto" if torch.cuda.is_available() else "float32")
    return VLLMSteerable.from_checkpoint(args.model[0], dtype=dtype, seed=args.seed)


def main(argv=None):
    """Parse the command line, steer the checkpoint(s) and print one JSON line per prompt; returns 0."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True,
                        help="checkpoint path; repeat for mod / soup, as NAME=PATH to name the objective each "
                             "stands for")
    parser.add_argument("--method", default=AUTO, choices=[AUTO, *METHODS],
                        help="how to steer (auto: read from objectives.json)")
    parser.add_argument("--weights", required=True,
                        help="preference weights, e.g. helpful=0.8,harmless=0.2, or 'auto': each prompt's weights from "
                             "--orchestrator")
    parser.add_argument("--orchestrator", help="with --weights auto: a Preference Orchestrator checkpoint "
                                               "(recipes/orchestrator.py) over the checkpoint's objectives")
    parser.add_argument("--prompt", action="append", help="a user prompt; repeat for several")
    parser.add_argument("--prompts_file", help="JSONL with a 'prompt' field per line (text or chat messages)")
    parser.add_argument("--objectives",
                        help="rmod / best_of_k: objective specs, e.g. conciseness,sentiment or helpful=rm:helpful")
    parser.add_argument("--reward_model", help="rmod / best_of_k: the multi-head reward model for rm:HEAD objectives")
    parser.add_argument("--base_model", help="base model of LoRA adapters, when their adapter_config does not name one")
    parser.add_argument("--max_new_tokens", type=int, default=64)
    parser.add_argument("--greedy", action="store_true", help="greedy decoding instead of sampling (not for rmod)")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top_p", type=float, default=1.0)
    parser.add_argument("--top_k", type=int, default=None)
    parser.add_argument("--num_candidates", type=int, default=4, help="rmod / best_of_k: candidate blocks per step (K)")
    parser.add_argument("--block_size", type=int, default=8, help="rmod / best_of_k: tokens per block (B)")
    parser.add_argument("--lam", type=float, default=1.0, help="rmod: lambda of the log-mean-exp worst-case objective")
    parser.add_argument("--tau", type=float, default=0.0,
                        help="rmod: pull of the worst-case weights toward --weights. 0 is the paper's robust "
                             "objective, which uses only WHICH objectives have weight > 0, not the values (a warning "
                             "says so)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="the hf engine's device (vLLM runs on its platform's)")
    parser.add_argument("--engine", default="hf", choices=["hf", "vllm"],
                        help="hf: transformers generate; vllm: a vLLM engine (the `vllm` extra) for preference-adapter "
                             "checkpoints (each weight vector served as a LoRA, snapped to the checkpoint's "
                             "preference_grid if it has one), prompt-conditioned and baked checkpoints")
    parser.add_argument("--vllm_dtype", default=None,
                        help="--engine vllm: the engine's dtype (default: float32 on CPU, auto on GPU)")
    parser.add_argument("--output", help="also write the JSON lines to this file")
    args = parser.parse_args(argv)

    auto = args.weights.strip() == "auto"
    if auto and not args.orchestrator:
        raise SystemExit("error: --weights auto asks a Preference Orchestrator for each prompt's weights: give "
                         "--orchestrator PATH (a checkpoint written by recipes/orchestrator.py)")
    if args.orchestrator and not auto:
        raise SystemExit(f"error: --orchestrator is used only with --weights auto (got --weights {args.weights})")
    prompts = read_prompts(args)
    # the chosen method's own options (e.g. rmod: --num_candidates, --block_size, --lam, --tau); auto takes none
    options = METHODS[args.method].method_arguments if args.method in METHODS else ()
    method_kwargs = {name: getattr(args, name) for name in options}
    try:
        if auto:  # before the policy: a bad orchestrator path fails fast
            orchestrator = PreferenceOrchestrator.from_pretrained(args.orchestrator, device=args.device)
        if args.engine == "vllm":
            steerable = vllm_steerable(args)
        else:
            steerable = load_steerable(args.model if len(args.model) > 1 else args.model[0], args.method,
                                       reward_sources=reward_sources(args), base_model=args.base_model,
                                       device=args.device, **method_kwargs)
        if auto:
            per_prompt = weights_in_order(orchestrator, prompts, steerable.objective_names)
        else:
            per_prompt = steerable.parse_weights(args.weights).unsqueeze(0).expand(len(prompts), -1)
        decoding = dict(max_new_tokens=args.max_new_tokens, do_sample=not args.greedy, temperature=args.temperature,
                        top_p=args.top_p, top_k=args.top_k, seed=args.seed)
        completions = [None] * len(prompts)
        # One generate call per distinct weight vector (all prompts at once with fixed weights).
        groups = {}
        for index, row in enumerate(per_prompt):
            groups.setdefault(tuple(row.tolist()), []).append(index)
        for indices in groups.values():
            replies = steerable.generate([prompts[i] for i in indices], per_prompt[indices[0]], **decoding)
            for i, reply in zip(indices, replies):
                completions[i] = reply
    except (SteeringError, PreferenceWeightsError, OrchestratorError, OSError, ImportError) as error:
        # OSError: missing or pickle-only weights
        raise SystemExit(f"error: {error}") from None
    lines = [json.dumps({"prompt": p, "weights": format_preference_weights(w, steerable.objective_names),
                         "method": steerable.method, "completion": c})
             for p, w, c in zip(prompts, per_prompt, completions)]
    print("\n".join(lines))
    if args.output:
        Path(args.output).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
