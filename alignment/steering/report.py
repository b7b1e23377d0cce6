"""What a steerable run shows at its end: one checkpoint generating at several preference weights on held-out prompts.

For K = 2 objectives the points run in 5 steps from the first objective's corner (1, 0) to the second's (0, 1); for
K > 2, each corner and the uniform weights. At each point, one sampled reply per held-out prompt (the same prompts
and the same sampling seed at every point, so the points differ by their weights alone), scored on every objective:

- each objective's mean with its standard error over prompts, the mean reply length in tokens, and the shares of
  empty and of distinct replies (a policy that steers by answering nothing, or the same text, shows here);
- per objective, Spearman's rho between the weight asked for and the mean achieved (+1: the objective rises with
  its weight at every step);
- the base model's point (the policy before training), for reference.

`steering_report` turns the scored replies into that summary (a plain dict: it goes into objectives.json and the
model card); `format_steering_table` prints it; `plot_steering_front` draws front.png.
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.figure import Figure

from alignment.evaluation import HeldOutReplies
from alignment.pareto import controllability, weight_grid

NUM_POINTS = 5


def steering_weights(num_objectives: int) -> list[list[float]]:
    """The weight vectors of the table: 5 from corner to corner for 2 objectives; each corner and the uniform
    weights for more."""
    if num_objectives == 2:
        return weight_grid(NUM_POINTS, 2)
    corners = [[float(i == k) for i in range(num_objectives)] for k in range(num_objectives)]
    return corners + [[1.0 / num_objectives] * num_objectives]


def _point(replies: HeldOutReplies, weights: list[float] | None) -> dict:
    """One row of the table: means and standard errors of the objectives, and the reply-health figures."""
    rows = replies.per_prompt()
    means, errors = {}, {}
    for name in replies.objective_names:
        values = rows[name][~rows[name].isnan()]
        means[name] = values.mean().item()
        errors[name] = (values.std() / math.sqrt(len(values))).item() if len(values) > 1 else float("nan")
    point = {"weights": None if weights is None else dict(zip(replies.objective_names, weights)),
             "means": means, "standard_errors": errors,
             "completion_tokens": rows["completion_tokens"].mean().item(),
             "empty_replies": rows["empty_replies"].mean().item(),
             "distinct_replies": replies.means()["distinct_replies"]}
    return point


def steering_report(weights: list[list[float]], replies: list[HeldOutReplies], base: HeldOutReplies | None,
                    num_examples: int = 1, settings: dict | None = None) -> dict:
    """The summary of a steering sweep: `replies[i]` were generated at `weights[i]`, `base` by the starting policy.

    Returns {"objective_names", "num_prompts", "settings" (the decoding, as given), "points", "base",
    "spearman" {objective: rho or None},
    "examples": [{"prompt", "weights_a", "reply_a", "weights_b", "reply_b"}]}: replies to the first
    `num_examples` held-out prompts at the two ends of the sweep (the first prompts, not picked by their replies)."""
    names = replies[0].objective_names
    points = [_point(r, w) for r, w in zip(replies, weights)]
    achieved = [[p["means"][n] for n in names] for p in points]
    rho = {name: value["spearman"] for name, value in controllability(weights, achieved, names).items()}
    far = len(weights) - 1 if len(names) == 2 else 1  # the other end of the line, or the second corner
    first, last = replies[0], replies[far]
    examples = [{"prompt": _prompt_text(first.prompts[i]),
                 "weights_a": points[0]["weights"], "reply_a": first.completions[i],
                 "weights_b": points[far]["weights"], "reply_b": last.completions[i]}
                for i in range(min(num_examples, len(first.prompts)))]
    return {"objective_names": list(names), "num_prompts": len(first.prompts), "settings": settings or {},
            "points": points,
            "base": _point(base, None) if base is not None else None, "spearman": rho, "examples": examples}


def _prompt_text(prompt) -> str:
    """The user's words of a held-out prompt (a chat message list or a plain string)."""
    return prompt[-1]["content"] if isinstance(prompt, list) else str(prompt)


def _weights_label(weights: dict | None) -> str:
    return "base model" if weights is None else ",".join(f"{k}={v:.2f}" for k, v in weights.items())


def format_steering_table(report: dict) -> str:
    """The report as plain text: one line per point (the base model first), then Spearman's rho per objective."""
    names = report["objective_names"]
    rows = ([report["base"]] if report["base"] else []) + report["points"]
    width = max(len(_weights_label(p["weights"])) for p in rows) + 2
    header = f"{'weights':<{width}}" + "".join(f"{name + ' (s.e.)':>24}" for name in names)
    lines = [header + f"{'tokens':>9}{'empty':>8}{'distinct':>10}"]
    for point in rows:
        cells = "".join(f"{point['means'][n]:>15.3f} ({point['standard_errors'][n]:.3f})" for n in names)
        lines.append(f"{_weights_label(point['weights']):<{width}}{cells}{point['completion_tokens']:>9.1f}"
                     f"{point['empty_replies']:>8.0%}{point['distinct_replies']:>10.0%}")
    lines.append("Spearman rho (weight on the objective vs its mean): " + ", ".join(
        f"{name} {'n/a' if rho is None else f'{rho:+.2f}'}" for name, rho in report["spearman"].items()))
    return "\n".join(lines)


def plot_steering_front(report: dict, path: Path) -> None:
    """front.png: the steered points joined in order with their standard errors, and the base model's point. For more
    than 2 objectives, the first two."""
    names = report["objective_names"][:2]
    figure = Figure(figsize=(6, 4.8))
    axis = figure.subplots()
    xs, ys = ([p["means"][n] for p in report["points"]] for n in names)
    xerr, yerr = ([p["standard_errors"][n] for p in report["points"]] for n in names)
    axis.errorbar(xs, ys, xerr=xerr, yerr=yerr, fmt="o-", color="tab:red", capsize=3, label="steered checkpoint")
    for point, x, y in zip(report["points"], xs, ys):
        axis.annotate(_weights_label(point["weights"]), (x, y), fontsize=7, xytext=(4, 4), textcoords="offset points")
    if report["base"]:
        base = report["base"]
        axis.errorbar([base["means"][names[0]]], [base["means"][names[1]]],
                      xerr=[base["standard_errors"][names[0]]], yerr=[base["standard_errors"][names[1]]],
                      fmt="s", color="tab:gray", capsize=3, label="base model")
    rho = ", ".join(f"{n} {report['spearman'][n]:+.2f}" if report["spearman"][n] is not None else f"{n} n/a"
                    for n in report["objective_names"])
    axis.set_title(f"One checkpoint steered on {report['num_prompts']} held-out prompts\nSpearman rho: {rho}",
                   fontsize=9)
    axis.set_xlabel(f"{names[0]} (mean, ± s.e.)")
    axis.set_ylabel(f"{names[1]} (mean, ± s.e.)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)

