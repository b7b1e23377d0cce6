"""Measure and draw the Pareto front of trained policies: one point per preference weight vector.

Two ways to get the points:
- one preference-conditioned checkpoint (trained with `--weights_mode dirichlet`), steered at a grid of weights
  written into the prompt (`alignment.conditioning`):

    python scripts/pareto_sweep.py --checkpoint outputs/grpo-conditioned --num_weights 5 --output_dir outputs/front
    python scripts/pareto_sweep.py --checkpoint outputs/grpo-conditioned \\
        --weights conciseness=0.9,sentiment=0.1 conciseness=0.5,sentiment=0.5 --output_dir outputs/front

- a set of checkpoints, one per fixed weight vector (each one's weights are read from its objectives.json):

    python scripts/pareto_sweep.py --checkpoints outputs/w0.2 outputs/w0.5 outputs/w0.8 --output_dir outputs/front

Each point: generate one reply per evaluation prompt (by default the last 64 prompts of the recipe's prompt
file, the recipe's held-out slice), score every objective of the checkpoint (read from its objectives.json),
average. Written to `--output_dir`:
- `front.json`: the points (requested weights, mean value per objective, mean reply length, on the front or not),
  the hypervolume with its reference point, and the controllability (Spearman's rho per objective between the
  requested weight and the achieved value);
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
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from alignment.checkpoint_record import load_record  # noqa: E402
from alignment.evaluation import evaluate_objectives  # noqa: E402
from alignment.objectives import parse_objective_specs  # noqa: E402
from alignment.policy import ensure_pad_token  # noqa: E402
from alignment.pareto import controllability, default_reference_point, hypervolume, non_dominated  # noqa: E402
from alignment.data import resolve_data
from alignment.prompts import load_prompt_dataset  # noqa: E402
from alignment.reward_vector import RewardVectorBuilder  # noqa: E402
from alignment.weights import format_preference_weights, parse_preference_weights  # noqa: E402



def weight_grid(num_points: int, num_objectives: int) -> list[list[float]]:
    """Evenly spaced points of the simplex: for K = 2, (i/(n-1), 1 - i/(n-1)); for K > 2, every vector of
    multiples of 1/(n-1) summing to 1 (the simplex lattice), so the corners are always included."""
    if num_points < 2 or num_objectives < 1:
        raise ValueError(f"weight grid: need num_points >= 2 and at least one objective, got {num_points}, {num_objectives}")
    steps = num_points - 1
    grid = [list(c) for c in itertools.product(range(steps, -1, -1), repeat=num_objectives) if sum(c) == steps]
    return [[c / steps for c in point] for point in grid]


def objective_specs_from_record(record: dict) -> list[str]:
    """Turn the sources recorded in objectives.json back into objective specs (`alignment.objectives`)."""
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
    _, sources, heads = parse_objective_specs(objective_specs_from_record(record))
    sources = list(sources)
    if heads:
        path = reward_model or record.get("reward_model")
        if not path:
            raise ValueError(f"objectives {sorted(heads)} are reward-model heads, but objectives.json names no "
                             "reward model; pass --reward_model")
        from reward_models.scoring import load_reward_model_source

        sources.append(load_reward_model_source(path, heads))
    return RewardVectorBuilder(record["objective_names"], sources)


def load_policy(path: str):
    tokenizer = ensure_pad_token(AutoTokenizer.from_pretrained(path), path)
    return AutoModelForCausalLM.from_pretrained(path, use_safetensors=True), tokenizer


def sweep(args) -> dict:
    """Evaluate every sweep point; returns the front as a JSON-able dict."""
    prompts = [row["prompt"] for row in load_prompt_dataset(resolve_data(args.dataset_path), args.prompt_field)]
    prompts = prompts[-args.num_prompts:]
    generation = dict(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=args.seed)

    if args.checkpoint:
        record = load_record(args.checkpoint)
        names = record["objective_names"]
        if record.get("steering") != "prompt":
            raise ValueError(f"{args.checkpoint}: steering is '{record.get('steering')}', not 'prompt'; a single "
                             "checkpoint can be swept only if it was trained preference-conditioned "
                             "(--weights_mode dirichlet); otherwise pass one checkpoint per weight with --checkpoints")
        grid = ([parse_preference_weights(w, names).tolist() for w in args.weights] if args.weights
                else weight_grid(args.num_weights, len(names)))
        runs = [(args.checkpoint, weights, record, True) for weights in grid]
    else:
        records = [load_record(path) for path in args.checkpoints]
        names = records[0]["objective_names"]
        runs = []
        for path, record in zip(args.checkpoints, records):
            if record["objective_names"] != names:
                raise ValueError(f"{path}: objectives {record['objective_names']} differ from {names} "
                                 f"({args.checkpoints[0]}); a front needs the same objectives everywhere")
            if record.get("weights") is None:
                raise ValueError(f"{path}: objectives.json records no fixed weights (it was trained with sampled "
                                 "weights); sweep it on its own with --checkpoint")
            weights = parse_preference_weights(record["weights"], names).tolist()
            runs.append((path, weights, record, record.get("steering") == "prompt"))

    if args.reference_point is not None:  # a malformed reference point fails before minutes of generation
        parse_reference_point(args.reference_point, names)
    points, loaded = [], None
    for path, weights, record, conditioned in runs:
        if loaded is None or loaded[0] != path:  # one policy in memory at a time; a single checkpoint loads once
            loaded = (path, *load_policy(path), build_reward_vector(record, args.reward_model))
        _, model, tokenizer, builder = loaded
        means = evaluate_objectives(model, tokenizer, prompts, builder, weights if conditioned else None, **generation)
        points.append({
            "label": format_preference_weights(weights, names),
            "checkpoint": str(path),
            "requested_weights": dict(zip(names, weights)),
            "values": {name: means[name] for name in names},
            "completion_tokens": means["completion_tokens"],
        })
        print(f"{points[-1]['label']}: " + ", ".join(f"{n}={means[n]:.4f}" for n in names), flush=True)
    return summarize(points, names, args.reference_point, num_prompts=len(prompts), generation=generation)


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
    """2 objectives: scatter, non-dominated points joined in order. More: one panel per pair of objectives."""
    names = front["objective_names"]
    values = np.array([[p["values"][n] for n in names] for p in front["points"]])
    on_front = np.array([p["non_dominated"] for p in front["points"]])
    labels = [p["label"] for p in front["points"]]
    pairs = list(itertools.combinations(range(len(names)), 2)) or [(0, 0)]
    columns = min(3, len(pairs))
    rows = -(-len(pairs) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 4.5 * rows), squeeze=False)
    for axis, (i, j) in zip(axes.flat, pairs):
        axis.scatter(values[~on_front, i], values[~on_front, j], c="tab:gray", label="dominated")
        axis.scatter(values[on_front, i], values[on_front, j], c="tab:red", label="non-dominated")
        if len(names) == 2:
            order = np.argsort(values[on_front, i])
            axis.plot(values[on_front, i][order], values[on_front, j][order], c="tab:red", lw=1)
            for label, (x, y) in zip(labels, values[:, [i, j]]):
                axis.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        axis.set_xlabel(names[i])
        axis.set_ylabel(names[j])
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(pairs):]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=8)
    reference = ", ".join(f"{v:.3g}" for v in front["reference_point"].values())
    figure.suptitle(f"Pareto front: hypervolume {front['hypervolume']:.4g} (reference point {reference})")
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
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="One preference-conditioned checkpoint, steered at each sweep weight.")
    source.add_argument("--checkpoints", nargs="+", help="Several checkpoints, one per fixed weight vector.")
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
    if args.weights and not args.checkpoint:
        parser.error("--weights goes with --checkpoint (with --checkpoints the weights come from each objectives.json)")
    if args.num_prompts < 1:
        parser.error("--num_prompts must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    with torch.no_grad():
        front = sweep(args)
    write_outputs(front, args.output_dir)
    print(f"hypervolume {front['hypervolume']:.6g} at reference point {front['reference_point']}")
    for name, result in (front["controllability"] or {}).items():
        print(f"controllability {name}: Spearman rho = {result['spearman']}")
    print(f"front.json, front.png and controllability.png written to {args.output_dir}")


if __name__ == "__main__":
    sys.exit(main())
