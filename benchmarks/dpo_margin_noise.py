"""How far chance moves the trained margin of each DPO-family run of tests/test_dpo_training.py.

Each test trains the tiny policy briefly (`CASES`) and requires the trained objective's margin to rise; the policy
starts as its own reference, so every margin starts at 0. This script measures, per run,
- real: the test's run, at several seeds (the seed orders the training rows);
- null: the same run on its rows with their preference shuffled (chosen and rejected swapped in a random half of the
  pairs or groups, each list's labels permuted), at the same seeds: a trainer that moves the policy as much, but
  learns no preference;
- noop: the real run at learning rate 0 (seed 0): nothing trained;
each scored on the true labels of the training rows after training (what the tests assert), and by the change of
the held-out rows' margin (what the tests asserted before: at this budget it is noise, the null moving it as much as
the real run). It prints, per margin, the null's mean and standard deviation, mean + 5 sd, and the real runs'
smallest and mean value: the tests' thresholds (`MIN_MARGIN`) are the null's mean + 5 sd, below the real minimum.
Results of the run behind the thresholds: benchmarks/results/dpo_margin_noise/.

    python benchmarks/dpo_margin_noise.py [--losses cardinal,mah] [--seeds 6] [--out margins.jsonl]
"""

import argparse
import itertools
import json
import random
import statistics
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignment import load_preference_splits
from alignment.models.tiny_policy import build_tiny_policy
from tests.test_dpo_training import CASES, run_case


def shuffled_preferences(rows: list[dict], seed: int) -> list[dict]:
    """The rows with their preference made random: chosen/rejected swapped in a random half, list labels permuted."""
    rng = random.Random(seed)
    swapped = set(rng.sample(range(len(rows)), len(rows) // 2))
    result = []
    for index, row in enumerate(rows):
        row = dict(row)
        if "labels" in row:
            labels = list(row["labels"])
            rng.shuffle(labels)
            row["labels"] = labels
        elif index in swapped:
            row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
        result.append(row)
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--losses", default=",".join(CASES))
    parser.add_argument("--seeds", type=int, default=6)
    parser.add_argument("--out", type=Path, default=None, help="also append each run's gains here (JSON lines)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    path = build_tiny_policy()
    results = []
    for loss in args.losses.split(","):
        (dataset, data_format, objectives), split_sizes, _ = CASES[loss]
        rows = load_preference_splits(dataset, data_format, objectives, **split_sizes)[0]
        runs = [("noop", 0, dict(learning_rate=0.0), None)]
        for seed in range(args.seeds):
            runs += [("real", seed, dict(seed=seed), None), ("null", seed, dict(seed=seed), seed)]
        for kind, seed, overrides, shuffle_seed in runs:
            policy = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
            train = shuffled_preferences(rows, shuffle_seed) if shuffle_seed is not None else None
            with tempfile.TemporaryDirectory() as tmp:
                margins = run_case(loss, policy, Path(tmp), train=train, held_out=True, **overrides)[2]
            result = {"loss": loss, "kind": kind, "seed": seed, **margins}
            results.append(result)
            if args.out:
                with args.out.open("a") as handle:
                    handle.write(json.dumps(result) + "\n")
    summarize(results)


def summarize(results):
    print(f"{'run':10} {'rows':9} {'margin':26} {'noop':>8} {'null mean':>10} {'null sd':>8} {'+5 sd':>8} "
          f"{'real min':>9} {'real mean':>10}")
    for loss, split in itertools.product(dict.fromkeys(r["loss"] for r in results), ("trained", "held_out")):
        mine = [r for r in results if r["loss"] == loss]
        for key in mine[0][split]:
            by_kind = {kind: [r[split][key] for r in mine if r["kind"] == kind] for kind in ("noop", "real", "null")}
            null_mean, null_sd = statistics.mean(by_kind["null"]), statistics.stdev(by_kind["null"])
            real_min, real_mean = min(by_kind["real"]), statistics.mean(by_kind["real"])
            print(f"{loss:10} {split:9} {key:26} {by_kind['noop'][0]:+8.4f} {null_mean:+10.4f} {null_sd:8.4f} "
                  f"{null_mean + 5 * null_sd:+8.4f} {real_min:+9.4f} {real_mean:+10.4f}")


if __name__ == "__main__":
    main()
