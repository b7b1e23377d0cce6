"""Prompt-aware beats fixed? GRPO with Preference-Orchestrator weights vs fixed equal weights, same everything else.

Both runs: the same policy, prompts, steps, seed and the multi-head reward model in the loop (`helpful=rm:helpful`,
`harmless=rm:harmless`, normalized head scores). Held-out prompts: the single-turn prompts of the HH dev pairs
(never trained on: they are removed from the GRPO prompts), each with its own TARGET weights, computed as the
orchestrator's training targets are (its target construction on the reward model's normalized scores of the dev
pair's chosen reply). Metric: the mean over held-out prompts of sum_k target_k(prompt) * z_k(prompt, reply), for
`--samples` sampled replies per prompt; also the per-objective means and the equal-weight score.

    python benchmarks/prompt_aware_grpo.py --reward_model RM --orchestrator ORCH --seed 0 --json out.json

Run once per seed (the processes can run side by side); `--summarize a.json b.json ...` pools them: the paired
(per prompt) difference prompt_aware - fixed, its standard error within each seed, and the mean over seeds.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from alignment.data import resolve_data  # noqa: E402
from alignment.evaluation import generate_completions  # noqa: E402
from alignment.orchestrator import PreferenceOrchestrator, prompt_and_chosen, target_weights  # noqa: E402
from alignment.data.prompts import load_prompt_dataset  # noqa: E402
from reward_models.scoring import MultiHeadRewardScorer  # noqa: E402

OBJECTIVES = ["helpful=rm:helpful", "harmless=rm:harmless"]
NAMES = ["helpful", "harmless"]


def held_out_prompts(scorer, orchestrator_settings, files):
    """Single-turn prompts of the dev pairs with their target weights (from the chosen reply's normalized scores)."""
    from reward_models.data import read_jsonl, split_slice

    prompts, replies = [], []
    for spec in files:
        name, rows = split_slice(spec)
        for number, row in read_jsonl(name, rows):
            pair = prompt_and_chosen(row, f"{name}, row {number}")
            if pair is not None and len(pair[0]) == 1:  # single-turn only: scored before anything else is read
                prompts.append(pair[0])
                replies.append(pair[1])
    scores = scorer.score(prompts, replies)[:, [scorer.head_names.index(n) for n in NAMES]]
    return prompts, target_weights(scores, orchestrator_settings["target"], orchestrator_settings.get("temperature", 1.0))


def run(args):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alignment.models.packaged import resolve_model_path
    from alignment.trainers.grpo import MultiObjectiveGRPOConfig, MultiObjectiveGRPOTrainer

    torch.set_num_threads(1)
    scorer = MultiHeadRewardScorer.from_pretrained(args.reward_model, device="cpu")
    orchestrator = PreferenceOrchestrator.from_pretrained(args.orchestrator)
    settings = orchestrator.model.config.preference_orchestrator
    eval_prompts, eval_targets = held_out_prompts(scorer, settings, args.eval_files)
    eval_prompts, eval_targets = eval_prompts[:args.num_eval], eval_targets[:args.num_eval]
    held_out = {p[0]["content"].strip() for p in eval_prompts}
    train = load_prompt_dataset(resolve_data("hh-prompts"))
    train = train.filter(lambda row: row["prompt"][-1]["content"].strip() not in held_out)
    predicted = orchestrator.weights(eval_prompts)[:, [orchestrator.objective_names.index(n) for n in NAMES]]
    print(f"{len(train)} training prompts, {len(eval_prompts)} held-out prompts; mean target {eval_targets.mean(0).tolist()}, "
          f"orchestrator on held-out: mean {predicted.mean(0).tolist()} std {predicted[:, 0].std():.3f}", flush=True)

    policy_path = resolve_model_path(args.policy)
    results = {"seed": args.seed, "steps": args.steps, "num_eval": len(eval_prompts), "samples": args.samples, "runs": {}}
    for mode in args.modes:
        start = time.time()
        config = MultiObjectiveGRPOConfig(
            output_dir=f"{args.output_dir}/{mode}-seed{args.seed}", objectives=OBJECTIVES,
            reward_model_name_or_path=args.reward_model, weights_mode=mode,
            orchestrator_name_or_path=args.orchestrator if mode == "prompt_aware" else None,
            num_generations=args.num_generations,
            per_device_train_batch_size=args.num_generations * args.prompts_per_step,
            max_completion_length=args.max_completion_length,
            max_steps=args.steps, learning_rate=args.learning_rate, lr_scheduler_type="constant", beta=0.0,
            temperature=1.0, multi_objective_aggregation="normalize_then_sum", use_cpu=True, bf16=False,
            activation_checkpointing=False, logging_steps=1, save_strategy="no", report_to="none", seed=args.seed,
            disable_tqdm=True,
        )
        model = AutoModelForCausalLM.from_pretrained(policy_path)
        tokenizer = AutoTokenizer.from_pretrained(policy_path)
        trainer = MultiObjectiveGRPOTrainer(model=model, args=config, processing_class=tokenizer,
                                            train_dataset=train.shuffle(seed=args.seed))
        trainer.train()
        policy = trainer.accelerator.unwrap_model(trainer.model)
        per_prompt = []
        for sample in range(args.samples):
            replies = generate_completions(policy, tokenizer, eval_prompts, max_new_tokens=args.max_completion_length,
                                           seed=1000 * args.seed + sample)
            per_prompt.append(scorer.score(eval_prompts, replies)[:, [scorer.head_names.index(n) for n in NAMES]])
        z = torch.stack(per_prompt).mean(0)  # [P, K], mean over samples
        weighted = (z * eval_targets).sum(1)
        results["runs"][mode] = {
            "target_weighted": weighted.tolist(), "helpful": z[:, 0].tolist(), "harmless": z[:, 1].tolist(),
            "equal_weighted": z.mean(1).tolist(), "seconds": time.time() - start,
            "train_weights_helpful": [e["weights/helpful"] for e in trainer.state.log_history if "weights/helpful" in e],
        }
        print(f"[{mode} seed {args.seed}] {time.time() - start:.0f}s  target-weighted {weighted.mean():+.4f} "
              f"+- {weighted.std() / len(weighted) ** 0.5:.4f}  helpful {z[:, 0].mean():+.4f} harmless {z[:, 1].mean():+.4f}",
              flush=True)
    Path(args.json).write_text(json.dumps(results))


def summarize(paths, plot=None):
    print(f"{'seed':<6}{'metric':<16}{'fixed':>10}{'prompt_aware':>14}{'diff (paired)':>22}")
    diffs, by_seed = {}, {}
    for path in paths:  # one file per (seed, mode) or per seed
        result = json.loads(Path(path).read_text())
        by_seed.setdefault(result["seed"], {"seed": result["seed"], "runs": {}})["runs"].update(result["runs"])
    for result in by_seed.values():
        fixed, aware = result["runs"]["fixed"], result["runs"]["prompt_aware"]
        for metric in ("target_weighted", "equal_weighted", "helpful", "harmless"):
            a, b = torch.tensor(fixed[metric]), torch.tensor(aware[metric])
            d = b - a
            diffs.setdefault(metric, []).append(d.mean().item())
            print(f"{result['seed']:<6}{metric:<16}{a.mean():>+10.4f}{b.mean():>+14.4f}"
                  f"{d.mean():>+12.4f} +- {d.std() / len(d) ** 0.5:.4f}")
    if plot:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        seeds = sorted(by_seed)
        figure, axis = plt.subplots(figsize=(5, 3.2))
        for offset, mode in ((-0.15, "fixed"), (0.15, "prompt_aware")):
            values = [torch.tensor(by_seed[s]["runs"][mode]["target_weighted"]) for s in seeds]
            axis.errorbar([i + offset for i in range(len(seeds))], [v.mean().item() for v in values],
                          yerr=[(v.std() / len(v) ** 0.5).item() for v in values], fmt="o", capsize=3, label=mode)
        axis.set_xticks(range(len(seeds)), [f"seed {s}" for s in seeds])
        axis.set_ylabel("held-out sum_k target_k z_k")
        axis.set_title("GRPO: prompt-aware vs fixed equal weights")
        axis.legend()
        figure.tight_layout()
        figure.savefig(plot, dpi=120)
        print(f"plot written to {plot}")
    for metric, values in diffs.items():
        values = torch.tensor(values)
        se = values.std() / len(values) ** 0.5 if len(values) > 1 else float("nan")
        print(f"mean over {len(values)} seeds, {metric}: prompt_aware - fixed = {values.mean():+.4f} +- {se:.4f} (SE over seeds)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--summarize", nargs="+", help="pool the JSON files of earlier runs and stop")
    parser.add_argument("--plot", help="with --summarize: write a PNG of each seed's score per mode")
    parser.add_argument("--reward_model")
    parser.add_argument("--orchestrator")
    parser.add_argument("--policy", default="tiny")
    parser.add_argument("--eval_files", nargs="+", default=["hh-helpful-dev", "hh-harmless-dev"])
    parser.add_argument("--num_eval", type=int, default=160)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--num_generations", type=int, default=8)
    parser.add_argument("--prompts_per_step", type=int, default=8)
    parser.add_argument("--learning_rate", type=float, default=2e-3)
    parser.add_argument("--max_completion_length", type=int, default=32)
    parser.add_argument("--modes", nargs="+", default=["fixed", "prompt_aware"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", default="/tmp/moalign/prompt_aware_grpo")
    parser.add_argument("--json", default="prompt_aware_grpo.json")
    args = parser.parse_args(argv)
    if args.summarize:
        return summarize(args.summarize, args.plot)
    if not (args.reward_model and args.orchestrator):
        raise SystemExit("give --reward_model and --orchestrator (or --summarize FILES)")
    run(args)


if __name__ == "__main__":
    main()
