"""What the preference grid costs in controllability: the steerable tiny recipe trained on continuous weights and on
grid weights (`--preference_grid`, what vLLM generation needs), the same steps and seed, swept at the same weights.

Both runs are `recipes/configs/grpo_steerable_tiny_cpu.yaml` (preference adapter, conciseness vs sentiment) with
Dirichlet(1, 1) weights, trained `--steps` on the same prompts (HF generation: with a grid, the weights trained on
are the grid points vLLM would serve). Each checkpoint is then swept by `scripts/pareto_sweep.py` on the same
held-out prompts at `--steered_weights` evenly spaced weights (continuous lambda at inference, so weights between
grid points are asked for too), with one reference point: hypervolume and Spearman's rho per objective.

    python benchmarks/preference_grid_cost.py --seeds 0 1 2          # tiny policy, CPU: ~3 CPU-minutes per seed

Last line: the mean hypervolume ratio grid / continuous with its standard error over seeds, and the mean Spearman rho
of both.
"""

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from steerable_front import NAMES, train  # noqa: E402

from alignment.pareto import weight_grid  # noqa: E402
from scripts.pareto_sweep import main as pareto_sweep  # noqa: E402


def sweep(checkpoint: Path, options) -> dict:
    weights = weight_grid(options.steered_weights, len(NAMES))
    pareto_sweep(["--checkpoint", str(checkpoint), "--weights", *[f"conciseness={w[0]},sentiment={w[1]}"
                                                                   for w in weights],
                  "--num_prompts", str(options.num_prompts), "--max_new_tokens", str(options.max_new_tokens),
                  "--seed", "0", "--reference_point", options.reference_point,
                  "--output_dir", str(checkpoint / "front")])
    front = json.loads((checkpoint / "front" / "front.json").read_text())
    return {"hypervolume": front["hypervolume"],
            "spearman": {n: front["controllability"][n]["spearman"] for n in NAMES}}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=66)
    parser.add_argument("--preference_grid", type=float, default=0.1)
    parser.add_argument("--steered_weights", type=int, default=5)
    parser.add_argument("--num_prompts", type=int, default=64, help="held-out evaluation prompts (end of the file)")
    parser.add_argument("--max_new_tokens", type=int, default=48)
    parser.add_argument("--reference_point", default="conciseness=-2,sentiment=-0.2")
    parser.add_argument("--output_dir", default="outputs/preference_grid_cost")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--train_args", nargs=argparse.REMAINDER, default=[])
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    results = []
    for seed in options.seeds:
        root = Path(options.output_dir) / f"seed{seed}"
        runs = {"continuous": [], "grid": ["--preference_grid", str(options.preference_grid)]}
        result = {"seed": seed}
        for name, extra in runs.items():
            checkpoint = train(root / name, options.steps, seed, options.num_prompts,
                               ["--dirichlet_alpha", "1.0", *extra], options)
            result[name] = sweep(checkpoint, options)
        result["ratio"] = result["grid"]["hypervolume"] / result["continuous"]["hypervolume"]
        results.append(result)
        print(f"seed {seed}: HV continuous {result['continuous']['hypervolume']:.4f}, grid "
              f"{result['grid']['hypervolume']:.4f} (ratio {result['ratio']:.3f}); Spearman continuous "
              f"{result['continuous']['spearman']}, grid {result['grid']['spearman']}", flush=True)
    Path(options.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(options.output_dir) / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    ratios = [r["ratio"] for r in results]
    error = statistics.stdev(ratios) / math.sqrt(len(ratios)) if len(ratios) > 1 else float("nan")

    def mean_rho(run):
        return ", ".join(f"{n} {statistics.mean(r[run]['spearman'][n] for r in results):+.2f}" for n in NAMES)

    print(f"grid {options.preference_grid} vs continuous weights, {options.steps} steps, {len(results)} seeds: HV "
          f"ratio grid/continuous {statistics.mean(ratios):.3f} (s.e. {error:.3f}); Spearman continuous "
          f"{mean_rho('continuous')}; grid {mean_rho('grid')}")


if __name__ == "__main__":
    main()
