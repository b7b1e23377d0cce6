"""Is the Preference Orchestrator better than chance? Held-out prompts, orchestrator vs the constant mean-weight
predictor, for each target construction (softmax with temperature, clip-and-normalize) and each pooling.

One process, same inputs: the reward model scores the chosen replies once, the frozen encoder reads the prompts once
per pooling, then each configuration fits its head (seconds) and is evaluated on the held-out prompts:

- Spearman(predicted weight, target weight) per objective, bootstrap standard error over prompts;
- KL(target || predicted) vs KL(target || mean training target), paired standard error of the gain;
- target-free: Spearman(predicted weight of objective k, z_k - mean_j z_j), the same yardstick for every target.

    python benchmarks/orchestrator_quality.py --reward_model PATH [--json out.json]

The last line is the ratio KL(orchestrator) / KL(constant) of the default configuration (mean pooling, softmax T=1).
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from alignment.orchestrator import (  # noqa: E402
    PreferenceOrchestrator, evaluate_weights, fit_head, load_prompt_targets, target_weights,
)
from reward_models.metrics import spearman_correlation  # noqa: E402
from reward_models.scoring import MultiHeadRewardScorer  # noqa: E402

TARGET_CONFIGS = [("softmax", 1.0), ("softmax", 0.5), ("softmax", 2.0), ("clip", 1.0)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reward_model", required=True)
    parser.add_argument("--train_files", nargs="+", default=["hh-helpful[:800]", "hh-harmless[:800]"])
    parser.add_argument("--eval_files", nargs="+", default=["hh-helpful-dev", "hh-harmless-dev"])
    parser.add_argument("--poolings", nargs="+", default=["mean", "pooler"])
    parser.add_argument("--json", help="write every figure to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    scorer = MultiHeadRewardScorer.from_pretrained(args.reward_model, device="cpu")
    heads = scorer.head_names
    columns = list(range(len(heads)))
    train_prompts, train_scores = load_prompt_targets(args.train_files, scorer, columns)
    eval_prompts, eval_scores = load_prompt_targets(args.eval_files, scorer, columns)
    seen = {str(p) for p in train_prompts}
    kept = [i for i, p in enumerate(eval_prompts) if str(p) not in seen]
    eval_prompts, eval_scores = [eval_prompts[i] for i in kept], eval_scores[kept]
    print(f"{len(train_prompts)} training prompts, {len(eval_prompts)} held-out prompts; heads {heads}; "
          f"mean z of chosen replies (train) {dict(zip(heads, [round(v, 3) for v in train_scores.mean(0).tolist()]))}")
    relative = eval_scores - eval_scores.mean(dim=1, keepdim=True)  # target-free yardstick

    results = []
    for pooling in args.poolings:
        orchestrator = PreferenceOrchestrator.build(heads, pooling=pooling, max_length=128)
        train_features, eval_features = orchestrator.features(train_prompts), orchestrator.features(eval_prompts)
        for target, temperature in TARGET_CONFIGS:
            train_targets = target_weights(train_scores, target, temperature)
            head = fit_head(train_features, train_targets)
            orchestrator.set_head(head)
            predicted = orchestrator.weights_from_features(eval_features)
            metrics = evaluate_weights(predicted, target_weights(eval_scores, target, temperature),
                                       train_targets.mean(0), heads)
            for k, name in enumerate(heads):
                metrics[f"spearman_vs_z_{name}"] = spearman_correlation(predicted[:, k].numpy(), relative[:, k].numpy())
            metrics.update(pooling=pooling, target=target, temperature=temperature,
                           predicted_std=float(predicted[:, 0].std()), target_std=float(train_targets[:, 0].std()))
            results.append(metrics)
            print(f"{pooling} {target} T={temperature}: " + json.dumps({k: round(v, 4) if isinstance(v, float) else v
                                                                         for k, v in metrics.items()}), flush=True)

    name0 = heads[0]
    print(f"\n{'pooling':<8}{'target':<10}{'T':>5}" + "".join(f"{'rho ' + h:>18}" for h in heads)
          + f"{'KL':>16}{'KL const':>16}{'gain':>18}{'rho vs z ' + name0:>16}")
    for m in results:
        print(f"{m['pooling']:<8}{m['target']:<10}{m['temperature']:>5}"
              + "".join(f"{m[f'spearman_{h}']:>+10.3f} +-{m[f'spearman_{h}_se']:.3f}" for h in heads)
              + f"{m['kl']:>9.4f} +-{m['kl_se']:.4f}{m['kl_constant']:>9.4f} +-{m['kl_constant_se']:.4f}"
              + f"{m['kl_gain']:>+10.4f} +-{m['kl_gain_se']:.4f}{m[f'spearman_vs_z_{name0}']:>+16.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    default = next(m for m in results if m["pooling"] == "mean" and m["target"] == "softmax" and m["temperature"] == 1.0)
    print(f"KL(target||orchestrator) / KL(target||constant mean weights), mean pooling, softmax T=1: "
          f"{default['kl'] / default['kl_constant']:.3f}")


if __name__ == "__main__":
    main()
