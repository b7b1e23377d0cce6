"""Per-head evaluation of a (multi-head) reward model on JSONL files: pairwise accuracy, Spearman and MSE.

    python scripts/evaluate_reward_model.py --model /tmp/moalign/reward_model_cpu \
        --pairwise helpful=hh-helpful-dev \
                   harmless=hh-harmless-dev \
        --rated "qa_feedback:qa-feedback[340:]" \
        --output /tmp/moalign/reward_model_eval.json

Pairwise files name the head they test (`HEAD=PATH[slice]`, same format as the training recipe); rated files
(`PATH` or `qa_feedback:PATH`) test every head they rate. Scores are the raw head outputs (the scale the rated
heads were regressed on). Prints one table row per (source, head, metric) and writes the same as JSON.
"""

import argparse
import json
from pathlib import Path

import numpy as np

from reward_models.chat_format import render_conversation
from reward_models.data import load_pairwise_source, load_rated_source
from reward_models.metrics import per_head_metrics
from reward_models.scoring import MultiHeadRewardScorer


def evaluate_source(scorer: MultiHeadRewardScorer, name: str, examples) -> dict[str, float]:
    """Score every text of one source in batches and compute the per-head metrics of its labelled heads."""
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
    return per_head_metrics(np.stack([first, second], axis=1), labels, heads)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Reward model directory or hub name.")
    parser.add_argument("--pairwise", nargs="*", default=[], help="HEAD=PATH[slice] files of chosen/rejected pairs.")
    parser.add_argument("--rated", nargs="*", default=[], help="PATH[slice] or qa_feedback:PATH[slice] rated files.")
    parser.add_argument("--rating_range", nargs=2, type=float, default=[-100.0, 100.0], help="Allowed [min, max] rating.")
    parser.add_argument("--batch_size", type=int, default=32, help="Texts per forward pass.")
    parser.add_argument("--device", default=None, help="cpu, cuda, ...; default: cuda when available.")
    parser.add_argument("--output", required=True, help="Where to write the metrics as JSON.")
    args = parser.parse_args()
    if not args.pairwise and not args.rated:
        parser.error("give at least one --pairwise or --rated file")

    scorer = MultiHeadRewardScorer.from_pretrained(args.model, device=args.device, batch_size=args.batch_size)
    # identical or empty pairs state no preference to score: left out and counted, not fatal
    sources = [(spec, load_pairwise_source(spec, scorer.head_names, drop_degenerate=True)) for spec in args.pairwise]
    sources += [(spec, load_rated_source(spec, scorer.head_names, args.rating_range)) for spec in args.rated]

    results = {spec: evaluate_source(scorer, spec, examples) for spec, examples in sources}
    print(f"{'source':<60} {'head':<14} {'metric':<9} {'value':>8} {'n':>5}")
    for spec, metrics in results.items():
        for key, value in metrics.items():
            metric, _, head = key.partition("_")
            if metric in ("accuracy", "spearman", "mse"):
                count = metrics.get(f"pairs_{head}", metrics.get(f"rated_{head}"))
                print(f"{spec[-60:]:<60} {head:<14} {metric:<9} {value:>8.4f} {count:>5}")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"model": args.model, "results": results}, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
