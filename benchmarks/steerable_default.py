"""The README's main job across seeds: does one checkpoint follow its weights, on held-out prompts of the training
distribution and of another one?

For each seed, `accelerate launch recipes/grpo.py --seed S --output_dir DIR/seedS` runs the embedded default in a
fresh process (its wall time is measured), and prints its own steering table on held-out HH-RLHF prompts (recorded
in the checkpoint's objectives.json). The checkpoint is then steered at the same 5 weights, with the same decoding, on
instruction-following prompts it never saw from another distribution (all 165 Self-Instruct seed tasks,
`self-instruct`, or the last `--num_ood_prompts` of them), with the base model's point. Written to `--output_dir`:
per seed its run, its `ood/front.png`; `summary.json` with every table and, per weight setting, the mean over seeds
of each objective with its standard error across seeds; `seeds.png` (both distributions, every seed).

    python benchmarks/steerable_default.py --seeds 42 1 --output_dir /tmp/steerable-default     # ~45 min
    python benchmarks/steerable_default.py --runs outputs/a outputs/b --output_dir /tmp/again     # trained runs

Last line: on how many runs every objective is monotone in its weight (Spearman +1), held-out HH and Self-Instruct.
"""

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import torch
from matplotlib.figure import Figure

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # recipes/ and scripts/ are not installed packages

from alignment.data import resolve_data  # noqa: E402
from alignment.data.prompts import load_prompt_dataset  # noqa: E402
from alignment.evaluation import score_held_out  # noqa: E402
from alignment.hub.record import load_record  # noqa: E402
from alignment.steering import load_steerable  # noqa: E402
from alignment.steering.report import (  # noqa: E402
    format_steering_table,
    plot_steering_front,
    steering_report,
    steering_weights,
)
from scripts.pareto_sweep import build_reward_vector  # noqa: E402


def train(seed: int, output_dir: Path) -> float:
    """The README's main job at one seed, in its own process; returns its wall seconds."""
    start = time.perf_counter()
    with open(output_dir.with_suffix(".log"), "w") as log:
        subprocess.run([sys.executable, "-m", "accelerate.commands.launch", str(ROOT / "recipes" / "grpo.py"),
                        "--seed", str(seed), "--output_dir", str(output_dir)],
                       check=True, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    return time.perf_counter() - start


def other_prompts(options) -> list:
    """The prompts of --ood_dataset (the last --num_ood_prompts of them when given), checked before any training."""
    prompts = [row["prompt"] for row in load_prompt_dataset(resolve_data(options.ood_dataset))]
    if options.num_ood_prompts is None:
        return prompts
    if not 1 <= options.num_ood_prompts <= len(prompts):
        sys.exit(f"--num_ood_prompts {options.num_ood_prompts}: {options.ood_dataset} has {len(prompts)} prompts; "
                 f"give 1 to {len(prompts)}, or leave it out for all")
    return prompts[-options.num_ood_prompts:]


def steer_out_of_distribution(run: Path, prompts: list, dataset_name: str) -> dict:
    """The run's checkpoint at its steering weights on the other distribution's prompts, with the base point."""
    record = load_record(run)
    steerable = load_steerable(str(run))
    builder = build_reward_vector(record)
    settings = record["steering_table"]["settings"]
    generation = dict(max_new_tokens=settings["max_new_tokens"], temperature=settings["temperature"],
                      seed=settings["seed"], batch_size=settings.get("batch_size", 32),
                      weights_in_prompt=bool(record.get("prompt_format")),
                      weights_in_adapter=True)
    weights = steering_weights(len(builder.objective_names))
    replies = []
    for w in weights:
        print(f"{run.name}: steering {len(prompts)} {dataset_name} prompts at weights {w}", flush=True)
        replies.append(score_held_out(steerable.model, steerable.tokenizer, prompts, builder, w, **generation))
    print(f"{run.name}: the base model on the same {len(prompts)} prompts", flush=True)
    with steerable.model.disable_adapter():
        base = score_held_out(steerable.model, steerable.tokenizer, prompts, builder, None,
                              **{**generation, "weights_in_adapter": False, "weights_in_prompt": False})
    report = steering_report(weights, replies, base)
    (run / "ood").mkdir(exist_ok=True)
    plot_steering_front(report, run / "ood" / "front.png")
    return report


def across_seeds(reports: list[dict]) -> list[dict]:
    """Per weight setting: each objective's mean over the runs and its standard error across runs."""
    names = reports[0]["objective_names"]
    rows = []
    for index, point in enumerate(reports[0]["points"]):
        values = {n: torch.tensor([r["points"][index]["means"][n] for r in reports]) for n in names}
        rows.append({"weights": point["weights"],
                     "means": {n: v.mean().item() for n, v in values.items()},
                     "standard_errors": {n: (v.std() / math.sqrt(len(v))).item() if len(v) > 1 else float("nan")
                                         for n, v in values.items()}})
    return rows


def plot_seeds(tables: dict[str, list[dict]], path: Path) -> None:
    """Both distributions side by side, one line per run."""
    figure = Figure(figsize=(11, 4.5))
    for axis, (title, reports) in zip(figure.subplots(1, len(tables)), tables.items()):
        names = reports[0]["objective_names"][:2]
        for number, report in enumerate(reports):
            xs, ys = ([p["means"][n] for p in report["points"]] for n in names)
            axis.plot(xs, ys, "o-", label=f"run {number + 1}")
            axis.annotate("corner " + names[0], (xs[0], ys[0]), fontsize=7)
            if report["base"]:
                axis.scatter([report["base"]["means"][names[0]]], [report["base"]["means"][names[1]]], marker="s",
                             c="gray", label="base model" if number == 0 else None)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel(names[0])
        axis.set_ylabel(names[1])
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def monotone(report: dict) -> bool:
    return all(rho is not None and rho > 0.999 for rho in report["spearman"].values())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1], help="one run of the default per seed")
    parser.add_argument("--runs", nargs="+", help="checkpoints of runs already trained (no training)")
    parser.add_argument("--ood_dataset", default="self-instruct", help="prompts of another distribution")
    parser.add_argument("--num_ood_prompts", type=int, default=None,
                        help="steer on the last N prompts of --ood_dataset only (default: all of them)")
    parser.add_argument("--output_dir", required=True)
    options = parser.parse_args()
    prompts = other_prompts(options)
    output_dir = Path(options.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    runs, walls = [Path(r) for r in options.runs or []], []
    for seed in [] if options.runs else options.seeds:
        runs.append(output_dir / f"seed{seed}")
        walls.append(train(seed, runs[-1]))
        print(f"seed {seed}: the main job took {walls[-1]:.0f} s wall", flush=True)
    in_distribution = [load_record(run)["steering_table"] for run in runs]
    out_of_distribution = [steer_out_of_distribution(run, prompts, options.ood_dataset) for run in runs]
    for run, wall, held_out, other in zip(runs, walls or [None] * len(runs), in_distribution, out_of_distribution):
        print(f"\n{run}" + (f" ({wall:.0f} s wall)" if wall else ""))
        print(f"held-out HH-RLHF prompts:\n{format_steering_table(held_out)}")
        print(f"{options.ood_dataset} prompts (another distribution):\n{format_steering_table(other)}")
    tables = {"held-out HH-RLHF prompts": in_distribution, f"{options.ood_dataset} prompts": out_of_distribution}
    summary = {"runs": [str(r) for r in runs], "wall_seconds": walls,
               "tables": tables, "across_seeds": {k: across_seeds(v) for k, v in tables.items()}}
    (output_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot_seeds(tables, output_dir / "seeds.png")
    for title, rows in summary["across_seeds"].items():
        print(f"\n{title}, mean over {len(runs)} runs (standard error across runs):")
        for row in rows:
            print("  " + ", ".join(f"{k}={v:.2f}" for k, v in row["weights"].items()) + ": " + ", ".join(
                f"{n} {row['means'][n]:.3f} ({row['standard_errors'][n]:.3f})" for n in row["means"]))
    print(f"every objective monotone in its weight: held-out HH {sum(map(monotone, in_distribution))}/{len(runs)} "
          f"runs, {options.ood_dataset} {sum(map(monotone, out_of_distribution))}/{len(runs)} runs")


if __name__ == "__main__":
    main()
