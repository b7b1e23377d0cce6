"""Measure and draw the Pareto front of trained policies: one point per preference weight vector.

Two kinds of front, alone or together on one plot:
- a steerable model swept over a grid of weights: one checkpoint steered the way its objectives.json says
  (`steering: prompt | adapter | heads`), or K single-objective checkpoints mixed with `--method soup | mod`
  (`alignment.steering`):

    python scripts/pareto_sweep.py --checkpoint outputs/grpo-steerable --num_weights 5 --output_dir outputs/front
    python scripts/pareto_sweep.py --checkpoint outputs/grpo-steerable \\
        --weights conciseness=0.9,sentiment=0.1 conciseness=0.5,sentiment=0.5 --output_dir outputs/front
    python scripts/pareto_sweep.py --models conciseness=outputs/c sentiment=outputs/s --method soup --output_dir outputs/front

- K checkpoints, one per fixed weight vector (each one's weights are read from its objectives.json):

    python scripts/pareto_sweep.py --checkpoints outputs/w0.2 outputs/w0.5 outputs/w0.8 --output_dir outputs/front
    # both: the steerable front and the fixed-weight front on one plot, each with its hypervolume
    python scripts/pareto_sweep.py --checkpoint outputs/grpo-steerable --checkpoints outputs/w* --output_dir outputs/front

Each point: generate one reply per evaluation prompt (by default the last 64 prompts of the recipe's prompt
file, the recipe's held-out slice), score every objective of the checkpoint (read from its objectives.json),
average. Written to `--output_dir`:
- `front.json`: the points (requested weights, mean value per objective, mean reply length, on the front or not),
  the hypervolume with its reference point, and the controllability (Spearman's rho per objective between the
  requested weight and the achieved value); with both kinds, the fixed-weight front under `baseline`, measured
  at the same reference point;
- `front.png`: 2 objectives, a scatter with the non-dominated points joined; 3 or more, one panel per pair;
- `controllability.png`: per objective, requested weight against achieved value, titled with rho.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from alignment.hub.record import load_record  # noqa: E402
from alignment.evaluation import generate_completions  # noqa: E402
from alignment.pareto import controllability, default_reference_point, hypervolume, non_dominated  # noqa: E402
from alignment.data import resolve_data  # noqa: E402
from alignment.models.policy import load_policy  # noqa: E402
from alignment.data.prompts import load_prompt_dataset  # noqa: E402
from alignment.objectives.reward_vector import RewardVectorBuilder  # noqa: E402
from alignment.steering import load_steerable  # noqa: E402
from alignment.objectives.weights import format_preference_weights, parse_preference_weights  # noqa: E402
from reward_models.scoring import objective_reward_sources  # noqa: E402



def weight_grid(num_points: int, num_objectives: int) -> list[list[float]]:
    """Evenly spaced points of the simplex: for K = 2, (i/(n-1), 1 - i/(n-1)); for K > 2, every vector of
    multiples of 1/(n-1) summing to 1 (the simplex lattice), so the corners are always included."""
    if num_points < 2 or num_objectives < 1:
        raise ValueError(f"weight grid: need num_points >= 2 and at least one objective, got {num_points}, {num_objectives}")
    steps = num_points - 1
    grid = [list(c) for c in itertools.product(range(steps, -1, -1), repeat=num_objectives) if sum(c) == steps]
    return [[c / steps for c in point] for point in grid]


def objective_specs_from_record(record: dict) -> list[str]:
    """Turn the sources recorded in objectives.json back into objective specs (`alignment.objectives.sources`)."""
    specs = []
    for objective in record["objectives"]:
        name, source = objective["name"], objective["source"]
        kind, _, target = source.partition(":")
        if kind == "builtin":
            specs.append(f"{name}={target}")
        elif kind == "python":
            specs.append(f"{name}={source}")
        elif kind == "reward_model_head":
            specs.append(f"{name}=rm:{target}")
        else:
            raise ValueError(f"objectives.json: objective '{name}' has source '{source}', which this sweep cannot rebuild")
    return specs


def build_reward_vector(record: dict, reward_model: str | None = None) -> RewardVectorBuilder:
    """The reward sources the checkpoint was trained on, so the front is measured on the same objectives."""
    specs = objective_specs_from_record(record)
    reward_model = reward_model or record.get("reward_model")
    if any(spec.partition("=")[2].startswith("rm:") for spec in specs) and not reward_model:
        raise ValueError("some objectives are reward-model heads, but objectives.json names no reward model; "
                         "pass --reward_model")
    _, sources = objective_reward_sources(specs, reward_model)
    return RewardVectorBuilder(record["objective_names"], sources)


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
        if args.method == "auto" and record.get("steering", "none") == "none":
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
        if record.get("steering") in ("prompt", "adapter"):  # conditioned during training: given its own weights
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
            "given" if args.reference_point is not None else "default: nadir of both fronts - 0.1 x range per objective")
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


def parse_reference_point(text, names: list[str]) -> np.ndarray:
    """'name=value,...' or 'v1,v2,...' in objective order; every objective needs a value (any real number)."""
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",") if p.strip()]
        if all("=" in p for p in parts):
            mapping = dict(p.split("=", 1) for p in parts)
            unknown = sorted(set(mapping) - set(names))
            missing = [n for n in names if n not in mapping]
            if unknown or missing:
                raise ValueError(f"reference point '{text}': unknown {unknown}, missing {missing}; objectives are {names}")
            parts = [mapping[n] for n in names]
        text = parts
    values = np.asarray([float(v) for v in text], dtype=float)
    if values.shape != (len(names),):
        raise ValueError(f"reference point: {values.size} values for {len(names)} objectives {names}")
    return values


def plot_front(front: dict, path: Path) -> None:
    """2 objectives: scatter, non-dominated points joined in order. More: one panel per pair of objectives.
    A fixed-weight baseline front (`front["baseline"]`) is drawn on the same axes in another colour."""
    names = front["objective_names"]
    fronts = [("steered", front, "tab:red")] + ([("fixed weights", front["baseline"], "tab:blue")]
                                                if front.get("baseline") else [])
    pairs = list(itertools.combinations(range(len(names)), 2)) or [(0, 0)]
    columns = min(3, len(pairs))
    rows = -(-len(pairs) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 4.5 * rows), squeeze=False)
    for kind, points_front, colour in fronts:
        values = np.array([[p["values"][n] for n in names] for p in points_front["points"]])
        on_front = np.array([p["non_dominated"] for p in points_front["points"]])
        labels = [p["label"] for p in points_front["points"]]
        name = kind if len(fronts) > 1 else "non-dominated"
        for axis, (i, j) in zip(axes.flat, pairs):
            axis.scatter(values[~on_front, i], values[~on_front, j], c=colour, alpha=0.35, marker="x")
            axis.scatter(values[on_front, i], values[on_front, j], c=colour,
                         label=f"{name} (HV {points_front['hypervolume']:.3g})")
            if len(names) == 2:
                order = np.argsort(values[on_front, i])
                axis.plot(values[on_front, i][order], values[on_front, j][order], c=colour, lw=1)
                for label, (x, y) in zip(labels, values[:, [i, j]]):
                    axis.annotate(label, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points", color=colour)
            axis.set_xlabel(names[i])
            axis.set_ylabel(names[j])
            axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(pairs):]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=8)
    reference = ", ".join(f"{v:.3g}" for v in front["reference_point"].values())
    ratio = f", ratio {front['hypervolume_ratio']:.3f}" if "hypervolume_ratio" in front else ""
    figure.suptitle(f"Pareto front: hypervolume {front['hypervolume']:.4g}{ratio} (reference point {reference})",
                    fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_controllability(front: dict, path: Path) -> None:
    """Per objective: the weight requested on it against the value achieved, titled with Spearman's rho."""
    names = front["objective_names"]
    figure, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 4), squeeze=False)
    for axis, name in zip(axes.flat, names):
        weights = [p["requested_weights"][name] for p in front["points"]]
        values = [p["values"][name] for p in front["points"]]
        axis.plot(weights, values, "o-")
        rho = (front["controllability"] or {}).get(name, {}).get("spearman")
        axis.set_title(f"{name}: Spearman rho = {'n/a' if rho is None else f'{rho:.2f}'}")
        axis.set_xlabel(f"requested weight on {name}")
        axis.set_ylabel(f"achieved {name}")
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_outputs(front: dict, output_dir: str | Path) -> None:
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    plot_front(front, output_dir / "front.png")
    plot_controllability(front, output_dir / "controllability.png")
    (output_dir / "front.json").write_text(json.dumps(front, indent=2) + "\n")  # last: its presence means complete


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", help="One steerable checkpoint (prompt, adapter or heads), steered at each weight.")
    source.add_argument("--models", nargs="+", help="K single-objective checkpoints (NAME=PATH) mixed by --method.")
    parser.add_argument("--method", default="auto", help="Steering method (alignment.steering): auto reads the "
                        "checkpoint's record; soup or mod for --models.")
    parser.add_argument("--checkpoints", nargs="+", help="Checkpoints, one per fixed weight vector: their own front, "
                        "or the baseline front beside --checkpoint / --models.")
    parser.add_argument("--weights", nargs="+", help="With --checkpoint: the weight vectors ('a=0.7,b=0.3' each).")
    parser.add_argument("--num_weights", type=int, default=5,
                        help="With --checkpoint and no --weights: grid points per simplex edge (5 -> 0, .25, ..., 1).")
    parser.add_argument("--dataset_path", default="hh-prompts", help="Evaluation prompts: a data name (packaged, JSONL file or hub id).")
    parser.add_argument("--prompt_field", default="prompt", help="Name of the prompt field in the JSONL rows.")
    parser.add_argument("--num_prompts", type=int, default=64, help="Evaluate on the last N prompts of the file.")
    parser.add_argument("--max_new_tokens", type=int, default=48, help="Reply length cap.")
    parser.add_argument("--batch_size", type=int, default=32, help="Prompts per generation batch.")
    parser.add_argument("--seed", type=int, default=0, help="Sampling seed (the same for every sweep point).")
    parser.add_argument("--reference_point", default=None,
                        help="Hypervolume reference point, 'name=value,...' or values in objective order; it must be "
                             "worse than every point. Default: nadir - 0.1 x range (recorded in front.json).")
    parser.add_argument("--reward_model", default=None, help="Reward model for 'rm:' objectives (default: the recorded one).")
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
