"""Measure and draw the Pareto front of trained policies: one point per preference weight vector.

Two kinds of front, alone or together on one plot:
- a steerable model swept over a grid of weights: one checkpoint steered the way its objectives.json says
  (`steering: prompt | adapter | heads`), or K single-objective checkpoints mixed with `--method soup | mod`
  (`alignment.steering`):

    python scripts/pareto_sweep.py --checkpoint outputs/grpo-steerable --num_weights 5 --output_dir outputs/front
    python scripts/pareto_sweep.py --checkpoint outputs/grpo-steerable \\
        --weights conciseness=0.9,sentiment=0.1 conciseness=0.5,sentiment=0.5 --output_dir outputs/front
    python scripts/pareto_sweep.py --models conciseness=outputs/c sentiment=outputs/s --method soup \\
        --output_dir outputs/front

- K checkpoints, one per fixed weight vector (each one's weights are read from its objectives.json):

    python scripts/pareto_sweep.py --checkpoints outputs/w0.2 outputs/w0.5 outputs/w0.8 --output_dir outputs/front
    # both: the steerable front and the fixed-weight front on one plot, each with its hypervolume
    python scripts/pareto_sweep.py --checkpoint outputs/grpo-steerable --checkpoints outputs/w* \\
        --output_dir outputs/front

Each point: generate one reply per evaluation prompt (by default the last 64 prompts of the recipe's prompt
file, the recipe's held-out slice), score every objective of the checkpoint (read from its objectives.json),
average. Written to `--output_dir`:
- `front.json`: the points (requested weights, mean value per objective, mean reply length, on the front or not),
  the hypervolume with its reference point, and the controllability (Spearman's rho per objective between the
  requested weight and the achieved value); with both kinds, the fixed-weight front under `baseline`, measured
  at the same reference point;
- `front.png`: 2 objectives, a scatter with the non-dominated points joined; 3 or more, one panel per pair;
- `controllability.png`: per objective, requested weight against achieved value, titled with rho.

The sweep and its command line are here; the weight grid and the reference point (`alignment.pareto`), the
record's sources as objective specs (`alignment.hub.record`) and the plots (`alignment.plots`) are library code.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from alignment.data import resolve_data
from alignment.data.prompts import load_prompt_dataset
from alignment.evaluation import generate_completions
from alignment.hub.record import load_record, objective_specs_from_record
from alignment.models.policy import load_policy
from alignment.objectives.reward_vector import RewardVectorBuilder
from alignment.objectives.weights import format_preference_weights, parse_preference_weights
from alignment.pareto import (
    controllability,
    default_reference_point,
    hypervolume,
    non_dominated,
    parse_reference_point,
    weight_grid,
)
from alignment.plots import plot_controllability, plot_front
from alignment.steering import AUTO, load_steerable, recorded_method
from reward_models.scoring import objective_reward_sources


def build_reward_vector(record: dict, reward_model: str | None = None) -> RewardVectorBuilder:
    """The reward sources the checkpoint was trained on, so the front is measured on the same objectives."""
    specs = objective_specs_from_record(record)
    reward_model = reward_model or record.get("reward_model")
    if any(spec.partition("=")[2].startswith("rm:") for spec in specs) and not reward_model:
        raise ValueError("some objectives are reward-model heads, but objectives.json names no reward model; "
                         "pass --reward_model")
    objectives, sources = objective_reward_sources(specs, reward_model)
    return RewardVectorBuilder.from_objectives(objectives, sources)  # the gates recorded with the objectives


def _score(prompts, completions, builder: RewardVectorBuilder, tokenizer) -> dict[str, float]:
    reward_vector, _ = builder(prompts, completions)
    means = {name: torch.nanmean(reward_vector[:, i]).item() for i, name in enumerate(builder.objective_names)}
    means["completion_tokens"] = sum(len(tokenizer(c, add_special_tokens=False)["input_ids"])
                                     for c in completions) / len(completions)
    return means


def _point(label_weights, names, checkpoint, means) -> dict:
    point = {"label": format_preference_weights(label_weights, names), "checkpoint": str(checkpoint),
             "requested_weights": dict(zip(names, label_weights)),
             "values": {name: means[name] for name in names}, "completion_tokens": means["completion_tokens"]}
    print(f"{point['label']} ({checkpoint}): " + ", ".join(f"{n}={means[n]:.4f}" for n in names), flush=True)
    return point


def sweep_steerable(args, prompts) -> tuple[list[dict], list[str]]:
    """One steerable model (a checkpoint, or K checkpoints mixed) at every weight of the grid."""
    if args.checkpoint:
        record = load_record(args.checkpoint)
        if args.method == AUTO and record.get("steering", "none") == "none":
            raise ValueError(f"{args.checkpoint}: steering is 'none'; a single checkpoint can be swept only if it was "
                             "trained steerable (--weights_mode dirichlet with conditioning prompt / adapter, or a "
                             "multi-head model); otherwise pass one checkpoint per weight with --checkpoints")
        steerable, where = load_steerable(args.checkpoint, method=args.method), args.checkpoint
    else:
        steerable = load_steerable(args.models, method=args.method)
        where = "+".join(args.models)
        record = load_record(str(args.models[0]).partition("=")[2] or args.models[0])
    names = steerable.objective_names
    if sorted(record["objective_names"]) != sorted(names):
        raise ValueError(f"{where}: recorded objectives {record['objective_names']} are not the steered ones {names}")
    record = {**record, "objective_names": names,
              "objectives": sorted(record["objectives"], key=lambda o: names.index(o["name"]))}
    builder = build_reward_vector(record, args.reward_model)
    grid = ([parse_preference_weights(w, names).tolist() for w in args.weights] if args.weights
            else weight_grid(args.num_weights, len(names)))
    points = []
    for weights in grid:
        completions = []
        for batch, start in enumerate(range(0, len(prompts), args.batch_size)):
            completions += steerable.generate(prompts[start:start + args.batch_size], weights,
                                              max_new_tokens=args.max_new_tokens, seed=args.seed + batch)
        points.append(_point(weights, names, where, _score(prompts, completions, builder, steerable.tokenizer)))
    return points, names


def sweep_fixed(args, prompts, names: list[str] | None = None) -> tuple[list[dict], list[str]]:
    """K checkpoints, one per fixed weight vector (read from each objectives.json)."""
    records = [load_record(path) for path in args.checkpoints]
    names = names or records[0]["objective_names"]
    points = []
    for path, record in zip(args.checkpoints, records):
        if sorted(record["objective_names"]) != sorted(names):
            raise ValueError(f"{path}: objectives {record['objective_names']} differ from {names}; "
                             "a front needs the same objectives everywhere")
        if record.get("weights") is None:
            raise ValueError(f"{path}: objectives.json records no fixed weights (it was trained with sampled "
                             "weights); sweep it on its own with --checkpoint")
        weights = parse_preference_weights(record["weights"], names).tolist()
        record = {**record, "objective_names": names,
                  "objectives": sorted(record["objectives"], key=lambda o: names.index(o["name"]))}
        builder = build_reward_vector(record, args.reward_model)
        recorded = recorded_method(record)
        if recorded is not None and recorded.policy_reads_weights:  # conditioned during training: given its weights
            steerable = load_steerable(path)
            tokenizer = steerable.tokenizer

            def generate(chunk, seed, steerable=steerable, weights=weights):
                return steerable.generate(chunk, weights, max_new_tokens=args.max_new_tokens, seed=seed)
        else:
            model, tokenizer = load_policy(path)

            def generate(chunk, seed, model=model, tokenizer=tokenizer):
                return generate_completions(model, tokenizer, chunk, max_new_tokens=args.max_new_tokens,
                                            batch_size=args.batch_size, seed=seed)
        completions = []
        for batch, start in enumerate(range(0, len(prompts), args.batch_size)):
            completions += generate(prompts[start:start + args.batch_size], args.seed + batch)
        points.append(_point(weights, names, path, _score(prompts, completions, builder, tokenizer)))
    return points, names


def sweep(args) -> dict:
    """Evaluate every sweep point; returns the front (and the fixed-weight baseline front) as a JSON-able dict."""
    prompts = [row["prompt"] for row in load_prompt_dataset(resolve_data(args.dataset_path), args.prompt_field)]
    prompts = prompts[-args.num_prompts:]
    settings = dict(num_prompts=len(prompts), max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                    seed=args.seed)
    steered = args.checkpoint or args.models
    names = None
    if args.reference_point is not None and args.checkpoint:  # a malformed reference point fails before generation
        parse_reference_point(args.reference_point, load_record(args.checkpoint)["objective_names"])
    if steered:
        points, names = sweep_steerable(args, prompts)
    baseline = sweep_fixed(args, prompts, names)[0] if args.checkpoints else None
    if not steered:
        points, baseline = baseline, None
        names = list(points[0]["requested_weights"])
    reference = args.reference_point
    if reference is None and baseline is not None:  # one reference for both fronts, so their volumes compare
        all_values = np.array([[p["values"][n] for n in names] for p in points + baseline])
        reference = default_reference_point(all_values).tolist()
    front = summarize(points, names, reference, **settings)
    if baseline is not None:
        front["baseline"] = summarize(baseline, names, list(front["reference_point"].values()), **settings)
        front["baseline"]["reference_point_source"] = front["reference_point_source"] = (
            "given" if args.reference_point is not None
            else "default: nadir of both fronts - 0.1 x range per objective")
        front["hypervolume_ratio"] = front["hypervolume"] / front["baseline"]["hypervolume"]
    return front


def summarize(points: list[dict], names: list[str], reference_point=None, **settings) -> dict:
    """Non-dominated flags, hypervolume (with the reference point it used) and controllability for the points."""
    values = np.array([[p["values"][n] for n in names] for p in points])
    weights = np.array([[p["requested_weights"][n] for n in names] for p in points])
    if reference_point is None:
        reference, reference_source = default_reference_point(values), "default: nadir - 0.1 x range per objective"
    else:
        reference = parse_reference_point(reference_point, names)
        reference_source = "given"
    for point, on_front in zip(points, non_dominated(values)):
        point["non_dominated"] = bool(on_front)
    return {
        "objective_names": names,
        "points": points,
        "reference_point": dict(zip(names, reference.tolist())),
        "reference_point_source": reference_source,
        "hypervolume": hypervolume(values, reference),
        "controllability": controllability(weights, values, names) if len(points) >= 3 else None,
        "settings": settings,
    }


def write_outputs(front: dict, output_dir: str | Path) -> None:
    """front.png, controllability.png and front.json (written last, so its presence means complete) in output_dir."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    plot_front(front, output_dir / "front.png")
    plot_controllability(front, output_dir / "controllability.png")
    (output_dir / "front.json").write_text(json.dumps(front, indent=2) + "\n")  # last: its presence means complete


def parse_args(argv=None):
    """The command line, checked: one of --checkpoint / --models / --checkpoints, --weights only with a steered one."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint",
                        help="One steerable checkpoint (prompt, adapter or heads), steered at each weight.")
    source.add_argument("--models", nargs="+", help="K single-objective checkpoints (NAME=PATH) mixed by --method.")
    parser.add_argument("--method", default="auto", help="Steering method (alignment.steering): auto reads the "
                        "checkpoint's record; soup or mod for --models.")
    parser.add_argument("--checkpoints", nargs="+", help="Checkpoints, one per fixed weight vector: their own front, "
                        "or the baseline front beside --checkpoint / --models.")
    parser.add_argument("--weights", nargs="+", help="With --checkpoint: the weight vectors ('a=0.7,b=0.3' each).")
    parser.add_argument("--num_weights", type=int, default=5,
                        help="With --checkpoint and no --weights: grid points per simplex edge (5 -> 0, .25, ..., 1).")
    parser.add_argument("--dataset_path", default="hh-prompts",
                        help="Evaluation prompts: a data name (packaged, JSONL file or hub id).")
    parser.add_argument("--prompt_field", default="prompt", help="Name of the prompt field in the JSONL rows.")
    parser.add_argument("--num_prompts", type=int, default=64, help="Evaluate on the last N prompts of the file.")
    parser.add_argument("--max_new_tokens", type=int, default=48, help="Reply length cap.")
    parser.add_argument("--batch_size", type=int, default=32, help="Prompts per generation batch.")
    parser.add_argument("--seed", type=int, default=0, help="Sampling seed (the same for every sweep point).")
    parser.add_argument("--reference_point", default=None,
                        help="Hypervolume reference point, 'name=value,...' or values in objective order; it must be "
                             "worse than every point. Default: nadir - 0.1 x range (recorded in front.json).")
    parser.add_argument("--reward_model", default=None,
                        help="Reward model for 'rm:' objectives (default: the recorded one).")
    parser.add_argument("--output_dir", required=True, help="Where front.json, front.png and controllability.png go.")
    args = parser.parse_args(argv)
    if not (args.checkpoint or args.models or args.checkpoints):
        parser.error("give --checkpoint, --models or --checkpoints")
    if args.weights and not (args.checkpoint or args.models):
        parser.error("--weights goes with --checkpoint / --models (with --checkpoints the weights come from each "
                     "objectives.json)")
    if args.num_prompts < 1:
        parser.error("--num_prompts must be >= 1")
    return args


def main(argv=None):
    """Sweep, write front.json and the plots, and print the hypervolume(s) and controllability."""
    args = parse_args(argv)
    with torch.no_grad():
        front = sweep(args)
    write_outputs(front, args.output_dir)
    print(f"hypervolume {front['hypervolume']:.6g} at reference point {front['reference_point']}")
    if front.get("baseline"):
        print(f"fixed-weight baseline hypervolume {front['baseline']['hypervolume']:.6g}; "
              f"ratio {front['hypervolume_ratio']:.4f}")
    for name, result in (front["controllability"] or {}).items():
        print(f"controllability {name}: Spearman rho = {result['spearman']}")
    print(f"front.json, front.png and controllability.png written to {args.output_dir}")


if __name__ == "__main__":
    sys.exit(main())
