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

`--conditioning adapter`: every mode trains the same preference adapter (Panacea-style, base frozen) and is evaluated
with lambda set as in training: fixed modes at their constant weights, prompt_aware at each held-out prompt's
ORCHESTRATOR weights (PRO's deployment, `--weights auto`): a channel through which the policy can behave differently
per prompt. The metric is unchanged: it reads each prompt's TARGET weights, never the orchestrator's.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from alignment.data import resolve_data  # noqa: E402
from alignment.data.prompts import load_prompt_dataset  # noqa: E402
from alignment.evaluation import generate_completions  # noqa: E402
from alignment.models.packaged import resolve_model_path  # noqa: E402
from alignment.models.preference_adapter import preference_weights  # noqa: E402
from alignment.objectives.weights import parse_preference_weights  # noqa: E402
from alignment.orchestrator import PreferenceOrchestrator, prompt_and_chosen, target_weights  # noqa: E402
from alignment.trainers.grpo import MultiObjectiveGRPOConfig, MultiObjectiveGRPOTrainer  # noqa: E402
from reward_models.data import read_source, split_slice  # noqa: E402
from reward_models.scoring import MultiHeadRewardScorer  # noqa: E402

OBJECTIVES = ["helpful=rm:helpful", "harmless=rm:harmless"]
NAMES = ["helpful", "harmless"]


def held_out_prompts(scorer, orchestrator_settings, files):
    """Single-turn prompts of the dev pairs with their target weights (from the chosen reply's normalized scores)."""
    prompts, replies = [], []
    for spec in files:
        name, rows = split_slice(spec)
        for row in read_source(name, rows):
            pair = prompt_and_chosen(row, f"{name}, row {row['_row']}")
            if pair is not None and len(pair[0]) == 1:  # single-turn only: scored before anything else is read
                prompts.append(pair[0])
                replies.append(pair[1])
    scores = scorer.score(prompts, replies)[:, [scorer.head_names.index(n) for n in NAMES]]
    return prompts, target_weights(scores, orchestrator_settings["target"],
                                   orchestrator_settings.get("temperature", 1.0))


def steering_weights(mode, predicted, mean_weights=None):
    """Lambda per held-out prompt [P, K] (NAMES order) for an adapter-conditioned run, as it was set in training:
    prompt_aware (and dirichlet, steered as PRO deploys any steerable checkpoint), the orchestrator's weights of each
    prompt; fixed, equal weights; fixed_mean, `mean_weights`; 'prompt_aware:T', the orchestrator's weights sharpened
    (softmax(log w / T), T < 1 spreads them away from the mean); any other setting is read as a weights string."""
    if mode in ("prompt_aware", "dirichlet"):
        return predicted
    if mode.startswith("prompt_aware:"):
        return torch.softmax(predicted.log() / float(mode.split(":", 1)[1]), dim=-1)
    vector = parse_preference_weights(mean_weights if mode == "fixed_mean" else [1.0] * len(NAMES) if mode == "fixed"
                                      else mode, NAMES)
    return vector.unsqueeze(0).expand(len(predicted), -1)


def sample_replies(policy, tokenizer, prompts, weights, max_new_tokens, seed):
    """One sampled reply per prompt; with `weights` ([P, K]) the preference adapter reads row i for prompt i."""
    if weights is None:
        return generate_completions(policy, tokenizer, prompts, max_new_tokens=max_new_tokens, seed=seed)
    with preference_weights(policy, weights):  # one batch: the rows of lambda follow the rows of prompts
        return generate_completions(policy, tokenizer, prompts, max_new_tokens=max_new_tokens, seed=seed,
                                    batch_size=len(prompts))


def run(args):
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
    print(f"{len(train)} training prompts, {len(eval_prompts)} held-out prompts; "
          f"mean target {eval_targets.mean(0).tolist()}, "
          f"orchestrator on held-out: mean {predicted.mean(0).tolist()} std {predicted[:, 0].std():.3f}", flush=True)

    policy_path = resolve_model_path(args.policy)
    adapter = args.conditioning == "adapter"
    results = {"seed": args.seed, "steps": args.steps, "num_eval": len(eval_prompts), "samples": args.samples,
               "conditioning": args.conditioning, "aggregation": args.aggregation, "beta": args.beta,
               "learning_rate": args.learning_rate, "policy": args.policy, "lora_r": args.lora_r,
               "num_generations": args.num_generations, "prompts_per_step": args.prompts_per_step,
               "orchestrator_std_helpful": predicted[:, 0].std().item(),
               # per held-out prompt: its target weight (the metric's) and the orchestrator's (what steering used)
               "target_helpful": eval_targets[:, 0].tolist(), "orchestrator_helpful": predicted[:, 0].tolist(),
               "runs": {}}
    for mode in args.modes:
        start = time.time()
        config = MultiObjectiveGRPOConfig(
            output_dir=f"{args.output_dir}/{mode}-seed{args.seed}", objectives=OBJECTIVES,
            reward_model_name_or_path=args.reward_model, weights_mode="fixed" if mode == "fixed_mean" else mode,
            dirichlet_alpha=args.dirichlet_alpha,
            orchestrator_name_or_path=args.orchestrator if mode == "prompt_aware" else None,
            # fixed_mean: one fixed vector, the orchestrator's constant predictor (its mean training target)
            preference_weights=args.mean_weights if mode == "fixed_mean" else None,
            num_generations=args.num_generations,
            per_device_train_batch_size=args.num_generations * args.prompts_per_step,
            max_completion_length=args.max_completion_length,
            max_steps=args.steps, learning_rate=args.learning_rate, lr_scheduler_type="constant", beta=args.beta,
            # adapter: the tiny steerable recipe's adapter (rank 4, lambda_scale 16, base frozen), the same in every
            # mode
            conditioning="adapter" if adapter else "none",
            temperature=1.0, multi_objective_aggregation=args.aggregation, use_cpu=True, bf16=False,
            gradient_checkpointing=False, logging_steps=1, save_strategy="no", report_to="none", seed=args.seed,
            disable_tqdm=True,
        )
        model = AutoModelForCausalLM.from_pretrained(policy_path)
        tokenizer = AutoTokenizer.from_pretrained(policy_path)
        peft_config = None
        if args.lora_r:  # not with the adapter (refused in main): it is the trained LoRA there
            peft_config = LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, target_modules="all-linear",
                                     task_type="CAUSAL_LM")
        trainer = MultiObjectiveGRPOTrainer(model=model, args=config, processing_class=tokenizer,
                                            train_dataset=train.shuffle(seed=args.seed), peft_config=peft_config)
        trainer.train()
        policy = trainer.accelerator.unwrap_model(trainer.model)
        # adapter: the run's own lambda first (as trained), then each --steer_eval setting on the same policy,
        # recorded as "mode@setting" (the same replies' seeds: paired comparisons of steering alone)
        settings = [None] + (args.steer_eval if adapter else [])
        own = steering_weights(mode, predicted, args.mean_weights) if adapter else None
        for setting in settings:
            steer = steering_weights(setting or mode, predicted, args.mean_weights) if adapter else None
            if setting is not None and torch.equal(steer, own):
                continue  # the run's own lambda, evaluated already
            per_prompt = []
            for sample in range(args.samples):
                replies = sample_replies(policy, tokenizer, eval_prompts, steer, args.max_completion_length,
                                         seed=1000 * args.seed + sample)
                per_prompt.append(scorer.score(eval_prompts, replies)[:, [scorer.head_names.index(n) for n in NAMES]])
            z = torch.stack(per_prompt).mean(0)  # [P, K], mean over samples
            weighted = (z * eval_targets).sum(1)  # each prompt's TARGET weights, whatever lambda steered it
            name = mode if setting is None else f"{mode}@{setting}"
            results["runs"][name] = {
                "target_weighted": weighted.tolist(), "helpful": z[:, 0].tolist(), "harmless": z[:, 1].tolist(),
                "equal_weighted": z.mean(1).tolist(), "seconds": time.time() - start,
                "train_weights_helpful": [e["weights/helpful"] for e in trainer.state.log_history
                                          if "weights/helpful" in e],
            }
            print(f"[{name} seed {args.seed}] {time.time() - start:.0f}s  target-weighted {weighted.mean():+.4f} "
                  f"+- {weighted.std() / len(weighted) ** 0.5:.4f}  helpful {z[:, 0].mean():+.4f} "
                  f"harmless {z[:, 1].mean():+.4f}", flush=True)
    Path(args.json).write_text(json.dumps(results))


def summarize(paths, plot=None, baselines=("fixed",), candidate="prompt_aware"):
    """Per seed and baseline: candidate - baseline, paired per prompt (SE within the seed); then the mean over seeds."""
    diffs, by_seed = {}, {}
    for path in paths:  # one file per (seed, mode) or per seed
        result = json.loads(Path(path).read_text())
        by_seed.setdefault(result["seed"], {"seed": result["seed"], "runs": {}})["runs"].update(result["runs"])
        conditioning = result.get("conditioning", "none")
    for baseline in baselines:
        print(f"{'seed':<6}{'metric':<16}{baseline:>20}{candidate:>20}{'diff (paired)':>22}")
        for result in by_seed.values():
            if baseline not in result["runs"] or candidate not in result["runs"]:
                continue  # a seed without both runs
            fixed, aware = result["runs"][baseline], result["runs"][candidate]
            for metric in ("target_weighted", "equal_weighted", "helpful", "harmless"):
                a, b = torch.tensor(fixed[metric]), torch.tensor(aware[metric])
                d = b - a
                diffs.setdefault((baseline, metric), []).append(d.mean().item())
                print(f"{result['seed']:<6}{metric:<16}{a.mean():>+20.4f}{b.mean():>+20.4f}"
                      f"{d.mean():>+12.4f} +- {d.std() / len(d) ** 0.5:.4f}")
    if plot:
        # Lazy: only --plot needs matplotlib, and its backend is chosen before pyplot is imported.
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        modes = [*baselines, candidate]
        seeds = sorted(s for s, r in by_seed.items() if all(m in r["runs"] for m in modes))
        figure, axis = plt.subplots(figsize=(1.2 + 1.1 * len(seeds), 3.4))
        width = 0.6 / max(len(modes) - 1, 1)
        for number, mode in enumerate(modes):
            values = [torch.tensor(by_seed[s]["runs"][mode]["target_weighted"]) for s in seeds]
            axis.errorbar([i - 0.3 + number * width for i in range(len(seeds))], [v.mean().item() for v in values],
                          yerr=[(v.std() / len(v) ** 0.5).item() for v in values], fmt="o", capsize=3, label=mode)
        axis.set_xticks(range(len(seeds)), [f"seed {s}" for s in seeds])
        axis.set_ylabel("held-out sum_k target_k z_k")
        axis.set_title(f"GRPO ({conditioning} conditioning): {candidate} vs {', '.join(baselines)}", fontsize=9)
        axis.legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(plot, dpi=120)
        print(f"plot written to {plot}")
    for (baseline, metric), values in diffs.items():
        values = torch.tensor(values)
        se = values.std() / len(values) ** 0.5 if len(values) > 1 else float("nan")
        print(f"mean over {len(values)} seeds, {metric}: {candidate} - {baseline} = {values.mean():+.4f} +- {se:.4f} "
              "(SE over seeds)")


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
    parser.add_argument("--conditioning", default="none", choices=["none", "adapter"],
                        help="adapter: every mode trains a preference adapter fed its weights (prompt_aware: each "
                             "prompt's orchestrator weights) and is steered with them at evaluation")
    parser.add_argument("--steer_eval", nargs="*", default=[],
                        help="adapter: also evaluate each trained policy steered at these settings (fixed, "
                             "fixed_mean, prompt_aware = the orchestrator's weights per prompt, or a weights string), "
                             "as mode@setting")
    parser.add_argument("--dirichlet_alpha", default="1.0",
                        help="dirichlet mode (adapter): the training weights' alpha")
    parser.add_argument("--aggregation", default="normalize_then_sum",
                        choices=["normalize_then_sum", "sum_then_normalize"],
                        help="sum_then_normalize: the advantage is the group-normalized w . z, the metric's units")
    parser.add_argument("--lora_r", type=int, default=0,
                        help="conditioning none: train a LoRA of this rank (alpha 2r, all linear layers) instead of "
                             "the whole policy, as the SmolLM2 recipes do (e.g. --policy smollm2-135m-instruct "
                             "--lora_r 16)")
    parser.add_argument("--beta", type=float, default=0.0,
                        help="KL to the initial policy (adapter: 0.05 keeps replies long)")
    parser.add_argument("--modes", nargs="+", default=["fixed", "prompt_aware"],
                        help="fixed (equal weights), prompt_aware, fixed_mean (--mean_weights for every prompt), "
                             "dirichlet (adapter only: a steerable checkpoint, evaluated with the orchestrator's "
                             "weights)")
    parser.add_argument("--mean_weights", help="fixed_mean mode: e.g. helpful=0.45,harmless=0.55, the orchestrator's "
                                               "mean training target (the constant predictor)")
    parser.add_argument("--baseline", nargs="+", default=["fixed"],
                        help="with --summarize: the runs (mode or mode@setting) the candidate is compared with")
    parser.add_argument("--candidate", default="prompt_aware", help="with --summarize: the run compared with them")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", default="/tmp/moalign/prompt_aware_grpo")
    parser.add_argument("--json", default="prompt_aware_grpo.json")
    args = parser.parse_args(argv)
    if args.lora_r and args.conditioning == "adapter":
        parser.error("--lora_r with --conditioning adapter: the preference adapter is the trained LoRA; drop --lora_r")
    if args.summarize:
        return summarize(args.summarize, args.plot, args.baseline, args.candidate)
    if not (args.reward_model and args.orchestrator):
        raise SystemExit("give --reward_model and --orchestrator (or --summarize FILES)")
    if "dirichlet" in args.modes and args.conditioning != "adapter":
        raise SystemExit("--modes dirichlet trains a steerable checkpoint: it needs --conditioning adapter")
    run(args)


if __name__ == "__main__":
    main()
