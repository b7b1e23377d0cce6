"""Is the Preference Orchestrator better than chance, and what makes it so? Held-out prompts, the orchestrator vs
the constant mean-weight predictor, for each fit, target construction, score normalization and pooling.

One process, same inputs: the reward model scores the preferred replies once, the frozen encoder reads the prompts
once per pooling (both kept in `--cache`, reused when the file exists), then each configuration fits its head
(`alignment.orchestrator.fit_head`) and is evaluated on the held-out prompts:

- Spearman(predicted weight, target weight) of the first objective (with K = 2 the other's is the same), bootstrap
  standard error over prompts;
- KL(target || predicted) vs KL(target || mean training target), the paired standard error of the gain.

Configurations (softmax T = 1 targets on the RM's normalized scores, mean pooling, L2 penalty by 4-fold
cross-validation unless the row says otherwise):
- fit: no L2 penalty vs the cross-validated penalty;
- targets: softmax T = 0.5 / 1 / 2, clip-and-normalize; each head's scores as the RM normalizes them (its training
  mean/std) or re-standardized over the orchestrator's training prompts;
- pooling: mean vs [CLS] pooler.

    python benchmarks/orchestrator_quality.py --reward_model PATH [--cache scores.pt] [--json out.json]

The last line is the ratio KL(orchestrator) / KL(constant) of the default configuration.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from alignment.orchestrator import (  # noqa: E402
    PreferenceOrchestrator,
    evaluate_weights,
    fit_head,
    load_prompt_targets,
    target_weights,
)
from reward_models.scoring import MultiHeadRewardScorer  # noqa: E402


def scores_and_features(args):
    """Prompts, the RM's normalized scores of their preferred replies, and the encoder's features; cached."""
    if args.cache and Path(args.cache).is_file():
        return torch.load(args.cache, weights_only=False)
    scorer = MultiHeadRewardScorer.from_pretrained(args.reward_model, device="cpu")
    columns = list(range(len(scorer.head_names)))
    train_prompts, train_z = load_prompt_targets(args.train_files, scorer, columns)
    dev_prompts, dev_z = load_prompt_targets(args.eval_files, scorer, columns)
    seen = {str(p) for p in train_prompts}
    kept = [i for i, p in enumerate(dev_prompts) if str(p) not in seen]
    data = {"heads": scorer.head_names, "train_prompts": train_prompts, "train_z": train_z,
            "dev_prompts": [dev_prompts[i] for i in kept], "dev_z": dev_z[kept]}
    for pooling in ("mean", "pooler"):
        orchestrator = PreferenceOrchestrator.build(scorer.head_names[:2], pooling=pooling, max_length=128)
        data[f"train_{pooling}"] = orchestrator.features(train_prompts)
        data[f"dev_{pooling}"] = orchestrator.features(data["dev_prompts"])
    if args.cache:
        torch.save(data, args.cache)
    return data


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reward_model", required=True)
    parser.add_argument("--heads", nargs="+", default=["helpful", "harmless"])
    parser.add_argument("--train_files", nargs="+", default=["hh-helpful[:800]", "hh-harmless[:800]"])
    parser.add_argument("--eval_files", nargs="+", default=["hh-helpful-dev", "hh-harmless-dev"])
    parser.add_argument("--cache", help="file for the scores and features (computed once, then reused)")
    parser.add_argument("--json", help="write every figure to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    data = scores_and_features(args)
    columns = [data["heads"].index(h) for h in args.heads]
    train_z, dev_z = data["train_z"][:, columns], data["dev_z"][:, columns]
    print(f"{len(train_z)} training prompts, {len(dev_z)} held-out prompts; heads {args.heads}; chosen-reply z "
          f"(train) mean {[round(v, 3) for v in train_z.mean(0).tolist()]} "
          f"std {[round(v, 3) for v in train_z.std(0).tolist()]}; "
          f"correlation between the heads {torch.corrcoef(train_z.T)[0, 1].item():+.3f}", flush=True)

    def run(label, pooling="mean", target="softmax", temperature=1.0, normalization="rm",
            l2_penalties=(1e-3, 1e-2, 1e-1)):
        z_train, z_dev = train_z, dev_z
        if normalization == "data":  # each head re-standardized over the orchestrator's own training prompts
            mean, std = train_z.mean(0), train_z.std(0)
            z_train, z_dev = (train_z - mean) / std, (dev_z - mean) / std
        train_targets = target_weights(z_train, target, temperature)
        dev_targets = target_weights(z_dev, target, temperature)
        head = fit_head(data[f"train_{pooling}"], train_targets, l2_penalties=l2_penalties)
        with torch.no_grad():
            predicted = torch.softmax(head(data[f"dev_{pooling}"]), -1)
        metrics = evaluate_weights(predicted, dev_targets, train_targets.mean(0), args.heads, bootstrap=200)
        metrics.update(label=label, pooling=pooling, target=target, temperature=temperature,
                       normalization=normalization, l2_penalties=list(l2_penalties),
                       predicted_std=float(predicted[:, 0].std()), target_std=float(dev_targets[:, 0].std()))
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()}), flush=True)
        return metrics

    results = [
        run("default: softmax T=1, mean pooling, L2 by CV"),
        run("fit: no L2 penalty", l2_penalties=(0.0,)),
        run("target: softmax T=0.5", temperature=0.5),
        run("target: softmax T=2", temperature=2.0),
        run("target: clip-and-normalize", target="clip"),
        run("scores re-standardized per head on the data, softmax T=1", normalization="data"),
        run("scores re-standardized per head on the data, clip", target="clip", normalization="data"),
        run("pooling: [CLS] pooler", pooling="pooler"),
    ]
    first = args.heads[0]
    print(f"\n{'configuration':<58}{'Spearman':>16}{'KL':>17}{'KL constant':>17}{'gain (paired)':>19}")
    for m in results:
        print(f"{m['label']:<58}{m[f'spearman_{first}']:>+9.3f} +-{m[f'spearman_{first}_se']:.3f}"
              f"{m['kl']:>10.4f} +-{m['kl_se']:.4f}{m['kl_constant']:>10.4f} +-{m['kl_constant_se']:.4f}"
              f"{m['kl_gain']:>+11.4f} +-{m['kl_gain_se']:.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    default = results[0]
    print(f"KL(target||orchestrator) / KL(target||constant mean weights), default configuration: "
          f"{default['kl'] / default['kl_constant']:.3f}")


if __name__ == "__main__":
    main()
