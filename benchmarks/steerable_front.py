"""One steerable run against five fixed-weight runs of the same recipe: the front each reaches on held-out prompts.

The recipe is `recipes/configs/grpo_steerable_tiny_cpu.yaml` (preference adapter, conciseness vs sentiment). The
conditioned run samples Dirichlet(1, 1) weights per prompt and trains `--conditioned_steps`; each of the 5
fixed-weight runs trains `--fixed_steps` at one weight of the grid (1, 0), (0.75, 0.25), ..., (0, 1) with
everything else equal (the adapter's lambda is then that weight throughout). The conditioned run gets at most a
third of the fixed runs' total steps (checked). Both fronts are measured by `scripts/pareto_sweep.py` on the same
held-out prompts (the last `--num_prompts` of the prompt file, never trained on) at the same weights, with one
reference point (default (-2, -0.2), as in issue 13). Outputs in `--output_dir`: front.json, front.png (both
fronts on one plot), controllability.png.

    python benchmarks/steerable_front.py        # tiny policy, CPU: ~150 s of CPU time per seed
    python benchmarks/steerable_front.py --seeds 0 1 2 3 4       # one line per seed, then the mean
    # the real model: same recipe, other model and settings (any recipe option after --train_args); ~32 CPU-minutes
    python benchmarks/steerable_front.py --model smollm2-135m-instruct --conditioned_steps 12 --fixed_steps 8 \
        --num_prompts 32 --max_new_tokens 32 --train_args --max_completion_length 32 --learning_rate 1e-3 \
        --beta 0.05 --dirichlet_alpha 1.0

Last line: hypervolume ratio conditioned / fixed, with the conditioned run's Spearman rho per objective.
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # recipes/ and scripts/ are not installed packages

from alignment.data import resolve_data  # noqa: E402
from alignment.data.prompts import load_prompt_dataset  # noqa: E402
from alignment.models.policy import load_policy  # noqa: E402
from alignment.pareto import weight_grid  # noqa: E402
from alignment.trainers.grpo import MultiObjectiveGRPOTrainer  # noqa: E402
from recipes.grpo import parse_args  # noqa: E402
from scripts.pareto_sweep import main as pareto_sweep  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "recipes" / "configs" / "grpo_steerable_tiny_cpu.yaml"
NAMES = ["conciseness", "sentiment"]
GRID = weight_grid(5, len(NAMES))  # (1, 0), (0.75, 0.25), ..., (0, 1): one fixed-weight run each


def train(output_dir: Path, steps: int, seed: int, held_out: int, extra: list[str], options) -> Path:
    """One run of the recipe (options `extra` last), the last `held_out` prompts left out; returns its folder."""
    script_args, training_args, model_args = parse_args(
        ["--config", str(CONFIG), "--output_dir", str(output_dir), "--max_steps", str(steps), "--seed", str(seed),
         "--save_strategy", "no", "--logging_steps", "10", "--disable_tqdm", "true",
         "--model_name_or_path", options.model, *options.train_args, *extra])
    prompts = load_prompt_dataset(resolve_data(script_args.data_source().train), script_args.prompt_field)
    model, tokenizer = load_policy(model_args)
    trainer = MultiObjectiveGRPOTrainer(model=model, args=training_args, processing_class=tokenizer,
                                        train_dataset=prompts.select(range(len(prompts) - held_out)))
    trainer.train()
    trainer.save_model(str(output_dir))
    return output_dir


def run_seed(seed: int, options) -> dict:
    """Train the conditioned run and the fixed-weight runs at one seed, sweep both fronts, return their numbers."""
    root = Path(options.output_dir) / f"seed{seed}"
    start, start_cpu = time.perf_counter(), time.process_time()
    conditioned = train(root / "conditioned", options.conditioned_steps, seed, options.num_prompts, [], options)
    fixed = [train(root / f"fixed-{w[0]:.2f}", options.fixed_steps, seed, options.num_prompts,
                   ["--weights_mode", "fixed", "--preference_weights", f"conciseness={w[0]},sentiment={w[1]}"], options)
             for w in GRID]
    train_seconds, train_cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    steered_grid = weight_grid(options.steered_weights, len(NAMES))
    pareto_sweep(["--checkpoint", str(conditioned), "--checkpoints", *map(str, fixed),
                  "--weights", *[f"conciseness={w[0]},sentiment={w[1]}" for w in steered_grid],
                  "--num_prompts", str(options.num_prompts), "--max_new_tokens", str(options.max_new_tokens),
                  "--seed", "0",
                  "--reference_point", options.reference_point, "--output_dir", str(root / "front")])
    front = json.loads((root / "front" / "front.json").read_text())
    result = {"seed": seed, "hv_conditioned": front["hypervolume"], "hv_fixed": front["baseline"]["hypervolume"],
              "ratio": front["hypervolume_ratio"], "train_seconds": train_seconds,
              "train_cpu_seconds": train_cpu_seconds,
              "model": options.model, "steered_weights": options.steered_weights,
              "spearman": {n: front["controllability"][n]["spearman"] for n in NAMES},
              "spearman_fixed": {n: front["baseline"]["controllability"][n]["spearman"] for n in NAMES}}
    print(f"seed {seed}: HV conditioned {result['hv_conditioned']:.4f}, fixed {result['hv_fixed']:.4f}, ratio "
          f"{result['ratio']:.3f}; Spearman conditioned " + ", ".join(f"{n} {v}" for n, v in result["spearman"].items())
          + " (fixed runs: " + ", ".join(f"{n} {v}" for n, v in result["spearman_fixed"].items())
          + f"); training {train_seconds:.0f} s wall, {train_cpu_seconds:.0f} s CPU", flush=True)
    return result


def main():
    """Every seed of the comparison, then the mean hypervolume ratio and Spearman rho (also in results.json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--conditioned_steps", type=int, default=66)
    parser.add_argument("--fixed_steps", type=int, default=40)
    parser.add_argument("--steered_weights", type=int, default=5,
                        help="weights the steerable checkpoint is swept at (evenly spaced, corners included); the "
                             "fixed runs are their 5 points. Steering it at more weights costs no training, which is "
                             "the point of a steerable checkpoint; 5 compares the same grid")
    parser.add_argument("--num_prompts", type=int, default=64, help="held-out evaluation prompts (end of the file)")
    parser.add_argument("--reference_point", default="conciseness=-2,sentiment=-0.2")
    parser.add_argument("--output_dir", default="outputs/steerable_front")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model", default="tiny", help="policy for every run (a model name or path)")
    parser.add_argument("--max_new_tokens", type=int, default=48, help="reply length in the held-out evaluation")
    parser.add_argument("--train_args", nargs=argparse.REMAINDER, default=[],
                        help="recipe options for every run, after everything else (e.g. --learning_rate 5e-4)")
    options = parser.parse_args()
    if 3 * options.conditioned_steps > len(GRID) * options.fixed_steps:
        raise SystemExit(f"the conditioned run must get at most 1/3 of the fixed runs' "
                         f"{len(GRID) * options.fixed_steps} steps; got {options.conditioned_steps}")
    torch.set_num_threads(options.threads)
    results = [run_seed(seed, options) for seed in options.seeds]
    (Path(options.output_dir) / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    ratio = statistics.mean(r["ratio"] for r in results)
    spread = (f" +- {statistics.stdev(r['ratio'] for r in results):.3f} (std over {len(results)} seeds)"
              if len(results) > 1 else "")
    spearman = {n: statistics.mean(r["spearman"][n] if r["spearman"][n] is not None else float("nan") for r in results)
                for n in NAMES}
    print(f"steps: conditioned {options.conditioned_steps} (swept at {options.steered_weights} weights), fixed "
          f"{len(GRID)} x {options.fixed_steps}; "
          f"HV ratio conditioned/fixed {ratio:.3f}{spread}; Spearman conditioned "
          + ", ".join(f"{n} {v:.2f}" for n, v in spearman.items()))


if __name__ == "__main__":
    main()
