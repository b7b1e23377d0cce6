"""Per-head evaluation of a (multi-head) reward model, and the comparison with single-head models of the same recipe.

    # evaluate a model on the evaluation files of its recipe config
    python scripts/evaluate_reward_model.py --model /tmp/moalign/reward_model_cpu \
        --config recipes/configs/reward_model_cpu.yaml --output /tmp/moalign/rm_eval/eval.json

    # also train one single-head model per head with the same recipe (same config, that head's data only) and compare
    python scripts/evaluate_reward_model.py --model /tmp/moalign/reward_model_cpu \
        --config recipes/configs/reward_model_cpu.yaml --train_single_heads --single_dir /tmp/moalign/rm_single \
        --output /tmp/moalign/rm_eval/eval.json

    # explicit files instead of the config's evaluation files
    python scripts/evaluate_reward_model.py --model PATH --pairwise helpful=hh-helpful-dev harmless=hh-harmless-dev \
        --rated "qa_feedback:qa-feedback[340:]" --output eval.json

Reported per head: pairwise accuracy with its standard error sqrt(p (1 - p) / n) and the Bradley-Terry loss on
the pairs (ln 2 = 0.693 is chance); Spearman correlation and MSE for rated heads; the std of the head's scores.
With single-head models: the same for each of them, the joint - single difference with its paired standard error
(same pairs, so the SE of the per-pair difference), and whether the joint head is >= the single one within one
standard error of its accuracy. Writes the JSON and a PNG bar chart (accuracy / Spearman per head, joint vs single,
error bars = one SE) next to it.

Single-head models are trained in-process by `recipes/reward_model.py`'s `main` from the same config, with
`heads` = [that head], its pairwise files only, and the rated files restricted to its ratings; a finished model
already in `--single_dir/<head>` (same head) is reused, so a 2-head and a 5-head comparison share them.
"""

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from trl import ModelConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # recipes/ and scripts/ are not installed packages
from alignment.cli import parse_recipe_args  # noqa: E402
from recipes.reward_model import main as train_reward_model  # noqa: E402
from reward_models.chat_format import render_conversation  # noqa: E402
from reward_models.data import RewardDataArguments, load_pairwise_source, load_rated_source  # noqa: E402
from reward_models.metrics import per_head_metrics  # noqa: E402
from reward_models.scoring import MultiHeadRewardScorer  # noqa: E402
from reward_models.trainer import MultiHeadRewardConfig  # noqa: E402


def evaluate_source(scorer: MultiHeadRewardScorer, name: str, examples) -> dict[str, float]:
    """Score every text of one source in batches and compute the per-head metrics of its labelled heads."""
    return per_head_metrics(*score_source(scorer, examples), scorer.head_names)


def score_source(scorer: MultiHeadRewardScorer, examples) -> tuple[np.ndarray, np.ndarray]:
    """(predictions [N, 2, K], labels [N, 3, K]) in the trainer's evaluation layout (see reward_models.metrics)."""
    heads = scorer.head_names
    render = lambda messages: render_conversation(scorer.tokenizer, messages)  # noqa: E731
    first = scorer.score(None, [render(e.first) for e in examples], normalize=False).numpy()
    paired = [i for i, e in enumerate(examples) if e.second]
    second = first.copy()
    if paired:
        second[paired] = scorer.score(None, [render(examples[i].second) for i in paired], normalize=False).numpy()
    labels = np.zeros((len(examples), 3, len(heads)))
    for i, example in enumerate(examples):
        labels[i, 0] = [example.objective == head for head in heads]
        labels[i, 1] = [example.ratings.get(head, 0.0) for head in heads]
        labels[i, 2] = [head in example.ratings for head in heads]
    return np.stack([first, second], axis=1), labels


def evaluate_model(model: str, pairwise: list[str], rated: list[str], rating_range, batch_size: int, device=None):
    """{head: metrics} of one model on every source that labels its heads, plus per-pair correctness for pairing.

    Returns (per_head, correct): per_head[head] holds accuracy, accuracy_se, bt_loss, pairs (pairwise sources),
    spearman, mse, rated (rated sources) and score_std (over every text of every source); correct[head] is the
    0 / 0.5 / 1 outcome of each of its pairs, in file order, for the paired joint-vs-single difference.
    """
    scorer = MultiHeadRewardScorer.from_pretrained(model, device=device, batch_size=batch_size)
    heads = scorer.head_names
    per_head, correct, all_scores = {h: {} for h in heads}, {}, []
    for spec in pairwise:
        head = spec.partition("=")[0].strip()
        if head not in heads:
            continue  # a single-head model is evaluated only on its own head's pairs
        # identical or empty pairs state no preference to score: left out and counted, not fatal
        predictions, labels = score_source(scorer, load_pairwise_source(spec, heads, drop_degenerate=True))
        metrics = per_head_metrics(predictions, labels, heads)
        per_head[head].update({key: metrics[f"{key}_{head}"]
                               for key in ("accuracy", "accuracy_se", "bt_loss", "pairs")})
        gap = predictions[:, 0, heads.index(head)] - predictions[:, 1, heads.index(head)]
        correct[head] = ((gap > 0) + 0.5 * (gap == 0)).astype(float)
        all_scores.append(predictions.reshape(-1, len(heads)))
    for spec in rated:
        examples = load_rated_source(spec, heads, rating_range, drop_other_objectives=True)
        if not examples:
            continue  # the file rates none of this model's heads (a pairwise single-head model)
        predictions, labels = score_source(scorer, examples)
        metrics = per_head_metrics(predictions, labels, heads)
        for head in heads:
            if f"spearman_{head}" in metrics:
                per_head[head].update({key: metrics[f"{key}_{head}"] for key in ("spearman", "mse", "rated")})
        all_scores.append(predictions[:, 0])
    scores = np.concatenate(all_scores) if all_scores else np.zeros((0, len(heads)))
    for k, head in enumerate(heads):
        per_head[head]["score_std"] = float(np.std(scores[:, k], ddof=1)) if len(scores) > 1 else 0.0
    return per_head, correct


def compare(joint: dict, joint_correct: dict, single: dict, single_correct: dict) -> dict:
    """Per head: joint - single accuracy (or Spearman) with the paired SE, and whether joint >= single - SE(joint)."""
    rows = {}
    for head, metrics in joint.items():
        if head not in single:
            continue
        row = {}
        if "accuracy" in metrics and "accuracy" in single[head]:
            difference = joint_correct[head] - single_correct[head]
            row["accuracy_difference"] = float(difference.mean())
            row["accuracy_difference_se"] = float(difference.std(ddof=1) / math.sqrt(len(difference)))
            row["joint_within_one_se"] = bool(metrics["accuracy"] >= single[head]["accuracy"] - metrics["accuracy_se"])
        if "spearman" in metrics and "spearman" in single[head]:
            row["spearman_difference"] = metrics["spearman"] - single[head]["spearman"]
        rows[head] = row
    return rows


def recipe_args(config: str, extra: list[str] = ()):
    """(data, training, model) arguments of the reward-model recipe from its YAML (paths anchored to the YAML's
    folder)."""
    return parse_recipe_args((RewardDataArguments, MultiHeadRewardConfig, ModelConfig), config,
                             ["--config", config, *extra])


def single_head_recipe_args(config: str, head: str, output_dir: Path, extra: list[str]):
    """The recipe's (data, training, model) arguments for a single-head model of `head`, from the joint's config."""
    data, training, model = recipe_args(config, extra)
    if head not in data.heads:
        raise ValueError(f"{config}: head {head!r} is not among its heads {data.heads}")
    own = lambda specs: [s for s in specs if s.partition("=")[0].strip() == head]  # noqa: E731
    data.heads = [head]
    data.pairwise_train_files, data.pairwise_eval_files = own(data.pairwise_train_files), own(data.pairwise_eval_files)
    data.drop_other_ratings = True  # a multi-aspect rated file trains this head on its own aspect only
    if data.pairwise_train_files:  # a pairwise head: rated files rate other heads
        data.rated_train_files, data.rated_eval_files = [], []
    training.output_dir = str(output_dir)
    return data, training, model


def trained_single_head_model(config: str, head: str, single_dir: Path, extra: list[str]) -> Path:
    """The single-head model of `head` in `single_dir/<head>`: reused when a finished one is there, else trained."""
    output_dir = single_dir / head
    saved = output_dir / "config.json"
    if saved.exists() and json.loads(saved.read_text()).get("id2label", {}).get("0") == head:
        print(f"reusing the single-head model {output_dir}", flush=True)
        return output_dir
    print(f"training the single-head model of {head!r} into {output_dir}", flush=True)
    train_reward_model(*single_head_recipe_args(config, head, output_dir, extra))
    return output_dir


def plot(results: dict, path: Path) -> None:
    """Per head: joint vs single accuracy (pairwise heads) or Spearman (rated heads), error bars = one SE."""
    # Lazy: only the plot needs matplotlib, and its backend is chosen before pyplot is imported.
    import matplotlib

    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt

    heads = list(results["joint"])
    models = ["joint"] + (["single"] if results.get("single") else [])
    figure, axis = plt.subplots(figsize=(1.6 * len(heads) + 2, 3.8))
    width = 0.8 / len(models)
    for m, name in enumerate(models):
        values, errors = [], []
        for head in heads:
            metrics = results[name].get(head, {})
            values.append(metrics.get("accuracy", metrics.get("spearman", np.nan)))
            errors.append(metrics.get("accuracy_se", 0.0))
        positions = np.arange(len(heads)) + (m - (len(models) - 1) / 2) * width
        axis.bar(positions, values, width, yerr=errors, capsize=3, label=f"{name}-head model" if name == "single"
                 else f"joint {len(heads)}-head model")
    axis.axhline(0.5, color="grey", lw=0.8, ls="--")
    axis.set_xticks(range(len(heads)), [f"{h}\n({'accuracy' if 'accuracy' in results['joint'][h] else 'Spearman'})"
                                        for h in heads])
    axis.set_ylabel("pairwise accuracy / Spearman (± 1 SE)")
    axis.set_title(f"{Path(results['model']).name}: joint vs single-head reward models")
    axis.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def print_table(results: dict) -> None:
    print(f"{'head':<14} {'model':<7} {'accuracy':>9} {'± SE':>6} {'BT loss':>8} {'Spearman':>9} {'MSE':>7} "
          f"{'score std':>9}")
    for head in results["joint"]:
        for name in ("joint", "single"):
            metrics = (results.get(name) or {}).get(head)
            if metrics is None:
                continue
            cell = lambda key, width, digits=3: (f"{metrics[key]:>{width}.{digits}f}" if key in metrics  # noqa: E731
                                                 else " " * width)
            print(f"{head:<14} {name:<7} {cell('accuracy', 9)} {cell('accuracy_se', 6)} {cell('bt_loss', 8)} "
                  f"{cell('spearman', 9)} {cell('mse', 7)} {cell('score_std', 9)}")
        row = (results.get("comparison") or {}).get(head)
        if row and "accuracy_difference" in row:
            print(f"{'':<14} joint - single = {row['accuracy_difference']:+.3f} ± {row['accuracy_difference_se']:.3f} "
                  f"(paired SE); joint >= single within one SE: {row['joint_within_one_se']}")
        elif row and "spearman_difference" in row:
            print(f"{'':<14} joint - single Spearman = {row['spearman_difference']:+.3f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Reward model directory or hub name (the joint model).")
    parser.add_argument("--config", help="The recipe YAML the model was trained with: its evaluation files are the "
                                         "default ones, and single-head models are trained from it.")
    parser.add_argument("--pairwise", nargs="*", default=None, help="HEAD=PATH[slice] files of chosen/rejected pairs.")
    parser.add_argument("--rated", nargs="*", default=None, help="PATH[slice] or qa_feedback:PATH[slice] rated files.")
    parser.add_argument("--rating_range", nargs=2, type=float, default=None, help="Allowed [min, max] rating.")
    parser.add_argument("--train_single_heads", action="store_true",
                        help="Train (or reuse) one single-head model per head with --config and compare.")
    parser.add_argument("--single_heads", nargs="*", default=None,
                        help="With --train_single_heads: only these heads get a single-head model "
                             "(default: every head).")
    parser.add_argument("--single_dir", default=None, help="Where single-head models live (default: beside --output).")
    parser.add_argument("--recipe_args", nargs=argparse.REMAINDER, default=[],
                        help="Extra recipe overrides for the single-head models (the ones the joint was trained with).")
    parser.add_argument("--batch_size", type=int, default=64, help="Texts per forward pass.")
    parser.add_argument("--device", default=None, help="cpu, cuda, ...; default: cuda when available.")
    parser.add_argument("--output", required=True, help="Where to write the metrics as JSON (the PNG goes beside it).")
    args = parser.parse_args(argv)

    config = recipe_args(args.config, args.recipe_args)[0] if args.config else None
    pairwise = args.pairwise if args.pairwise is not None else (config.pairwise_eval_files if config else [])
    rated = args.rated if args.rated is not None else (config.rated_eval_files if config else [])
    rating_range = args.rating_range or (config.rating_range if config else [-100.0, 100.0])
    pairwise, rated = [s for s in pairwise if s.strip()], [s for s in rated if s.strip()]
    if not pairwise and not rated:
        parser.error("give --pairwise / --rated files, or a --config with evaluation files")
    if args.train_single_heads and not args.config:
        parser.error("--train_single_heads needs --config (the recipe the joint model was trained with)")

    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    joint, joint_correct = evaluate_model(args.model, pairwise, rated, rating_range, args.batch_size, args.device)
    results = {"model": args.model, "config": args.config, "joint": joint}
    if args.train_single_heads:
        single_dir = Path(args.single_dir) if args.single_dir else output.parent / "single_head_models"
        single, single_correct = {}, {}
        for head in args.single_heads or list(joint):
            if head not in joint:
                parser.error(f"--single_heads: {head!r} is not a head of {args.model} ({list(joint)})")
            path = trained_single_head_model(args.config, head, single_dir, args.recipe_args)
            metrics, correct = evaluate_model(str(path), pairwise, rated, rating_range, args.batch_size, args.device)
            single[head] = metrics[head]
            single_correct.update(correct)
        results |= {"single": single, "single_dir": str(single_dir),
                    "comparison": compare(joint, joint_correct, single, single_correct)}

    print_table(results)
    output.write_text(json.dumps(results, indent=2) + "\n")
    plot(results, output.with_suffix(".png"))
    print(f"wrote {output} and {output.with_suffix('.png')}")
    return results


if __name__ == "__main__":
    main()
