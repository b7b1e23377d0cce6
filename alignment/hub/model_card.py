"""Model cards (README.md with YAML front matter) rendered from a checkpoint's objectives record.

The front matter holds hub ids only (`base_model:`, `datasets:`), as the hub reads them; a packaged model or data set
is named in the body with where it came from.
"""

from __future__ import annotations

import yaml

from alignment.data.sources import PACKAGED_DATA, data_hub_id
from alignment.models.packaged import model_provenance

_STEERING_HELP = {
    "prompt": "Write your own weights into the prompt: a first system message in the format this checkpoint was "
              "trained with (`prompt_format` in objectives.json, `alignment.objectives.conditioning`), or "
              "`python scripts/generate.py --model PATH --weights {example}`.",
    "adapter": "A preference adapter (Panacea-style SVD-LoRA, `alignment.models.preference_adapter`) takes your "
               "weights as numbers: `python scripts/generate.py --model PATH --weights {example}`, or "
               "`alignment.steering.load_steerable(PATH).generate(prompts, \"{example}\")`. Bake one preference into a "
               "plain checkpoint with `python scripts/publish.py --output_dir PATH --weights {example}`.",
    "heads": "Mix the language-model heads with your weights at generation time: "
             "`python scripts/generate.py --model PATH --weights {example}` "
             "(or `alignment.models.multi_head.generate_with_weights`).",
    "none": "Trained under fixed weights: retrain, or use a preference-conditioned run, to move along the front.",
    "orchestrator": "Not a policy: a Preference Orchestrator that picks each prompt's weights (see below), for "
                    "`weights_mode: prompt_aware` in GRPO or "
                    "`python scripts/generate.py --weights auto --orchestrator PATH`.",
}


def _cell(text: str, limit: int = 160) -> str:
    """Text fit for one Markdown table cell: one line, pipes escaped, long text cut with an ellipsis."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _baked_lines(record: dict) -> list[str]:
    """A preference adapter baked at one weight vector: which one, and the prompt header it expects when it was
    trained with the weights in the prompt too (conditioning `both`)."""
    baked = ", ".join(f"{k}={v:.3g}" for k, v in record["baked_weights"].items())
    lines = [f"Baked at preference weights {baked}: the preference adapter of a steerable checkpoint merged at these "
             "weights. A plain checkpoint: load it with `AutoModelForCausalLM` alone. For other weights, steer the "
             "unbaked checkpoint or bake it again.", ""]
    header = record.get("baked_prompt_header")
    if header:
        version = record.get("prompt_format_version") or 1
        weights = ",".join(f"{k}={v:g}" for k, v in record["baked_weights"].items())
        lines += [f"It was trained with the weights written in the prompt as well (prompt format version {version}: "
                  f"{record.get('prompt_format')}). Start every prompt with the header of the baked weights, as the "
                  f"first system message (or the first line of a plain-text prompt):", "", f"    {header}", "",
                  f"(`alignment.objectives.conditioning.condition_prompt(prompt, \"{weights}\", "
                  f"{list(record['baked_weights'])}, format_version={version})` writes it). Without it, or with "
                  "other weights in it, the prompt contradicts the weights merged into the model.", ""]
    return lines


def _optimized_lines(record: dict) -> list[str]:
    """The update the run actually made, and whether the preference weights entered it (MGDA and the Lagrangian
    mode ignore them; a card must not claim fixed weights they never used)."""
    lines = []
    lagrangian = record.get("lagrangian")
    if record.get("pareto_method") == "mgda":
        lines.append("Update: MGDA (`pareto_method: mgda`), the min-norm combination of the per-objective gradients. "
                     "The preference weights were not used by the update.")
    elif lagrangian:
        lines.append(f"Update: maximize `{lagrangian['main_objective']}` subject to mean "
                     f"`{lagrangian['constraint_objective']}` >= {lagrangian['constraint_threshold']:g} (Lagrangian, "
                     f"final lambda = {lagrangian['final_lambda']:.4g}). The preference weights were not used.")
    elif record.get("weights_schedule"):
        schedule = record["weights_schedule"]
        at_step = ", ".join(f"{k}={v:.3g}" for k, v in schedule["weights_at_step"].items())
        lines.append(f"Preference weights scheduled over training (`{schedule['spec']}`, positions as "
                     f"{schedule['unit']}s, {schedule['interpolation']} interpolation); at step {schedule['step']}: "
                     f"{at_step}.")
    elif record.get("weights") and not record.get("baked_weights"):  # baked weights were chosen after training
        fixed = ", ".join(f"{k}={v:.3g}" for k, v in record["weights"].items())
        lines.append(f"Fixed preference weights: {fixed}.")
    if record.get("weight_distribution"):
        used = "" if record.get("weights_used", True) else " (they condition the prompt only)"
        unit = record.get("weights_per") or ("pair" if str(record.get("trainer", "")).startswith("dpo") else "prompt")
        lines.append(f"Weights sampled per {unit}: `{record['weight_distribution']}`{used}.")
    if record.get("aggregation"):
        settings = [f"aggregation `{record['aggregation']}`", f"scalarization `{record.get('scalarization')}`"]
        settings += [f"{key} `{record[key]}`" for key in ("scale_rewards", "partial_rewards") if record.get(key)]
        lines.append("Advantages: " + ", ".join(settings) + ".")
    if record.get("loss"):
        lines.append(f"Loss: `{record['loss']}`, beta {record.get('beta')}.")
    return lines or ["No preference weights (see objectives.json)."]


def _steering_lines(table: dict, plot: str | None) -> list[str]:
    """The run's steering table (`alignment.steering.report`): this one checkpoint at several weights on held-out
    prompts, with the base model, Spearman's rho, the plot, and replies to one prompt at the two ends."""
    names = table["objective_names"]
    lines = ["## Steering on held-out prompts", "",
             f"One sampled reply per prompt on {table['num_prompts']} held-out prompts, at each weight setting (same "
             "prompts and sampling seed at every row); each objective's mean ± its standard error.", "",
             "| weights | " + " | ".join(names) + " | reply tokens | empty | distinct |",
             "|---|" + "---|" * (len(names) + 3)]
    for point in ([table["base"]] if table.get("base") else []) + table["points"]:
        label = "base model" if point["weights"] is None else \
            ", ".join(f"{k}={v:.2f}" for k, v in point["weights"].items())
        cells = " | ".join(f"{point['means'][n]:.3f} ± {point['standard_errors'][n]:.3f}" for n in names)
        lines.append(f"| {label} | {cells} | {point['completion_tokens']:.1f} | {point['empty_replies']:.0%} | "
                     f"{point['distinct_replies']:.0%} |")
    rho = ", ".join(f"{n} {'n/a' if r is None else f'{r:+.2f}'}" for n, r in table["spearman"].items())
    lines += ["", f"Spearman's rho between each objective's weight and its mean: {rho}.", ""]
    if plot:
        lines += [f"![Steering front]({plot})", ""]
    for example in table.get("examples", []):
        lines += [f"The same held-out prompt at the two ends: *{_cell(example['prompt'], 300)}*", "",
                  "| weights | reply |", "|---|---|"]
        for side in ("a", "b"):
            weights = ", ".join(f"{k}={v:.2f}" for k, v in example[f"weights_{side}"].items())
            lines.append(f"| {weights} | {_cell(example[f'reply_{side}'], 600)} |")
        lines.append("")
    return lines


def _base_model_line(name: str | None, hub_id: str | None, note: str | None) -> str:
    """The base model as the record names it, and for a packaged one where its weights came from."""
    if note is None:
        return f"Base model: `{name}`."
    upstream = f", a copy of the hub model `{hub_id}`" if hub_id else ""
    return f"Base model: `{name}`: {note}{upstream}."


def _data_line(name: str) -> str:
    """A recorded data name; a packaged set with the hub dataset it came from, or the note that it is not on the hub."""
    if name not in PACKAGED_DATA:
        return f"- `{name}`"
    hub_id = data_hub_id(name)
    origin = f"from the hub dataset `{hub_id}`" if hub_id else "not on the hub"
    return f"- `{name}`: packaged with moalign, {origin} (sources: `alignment/data/files/README.md`)"


def render_model_card(record: dict) -> str:
    names = record.get("objective_names", [])
    base_hub_id, base_note = model_provenance(record.get("base_model"))
    hub_datasets = [data_hub_id(name) for name in record.get("datasets") or []]
    front_matter = {
        "library_name": "transformers",
        "base_model": base_hub_id,
        "tags": ["moalign", "multi-objective", record.get("trainer", "")],
        "datasets": list(dict.fromkeys(d for d in hub_datasets if d)) or None,  # hub ids, each once
    }
    front_matter = {k: v for k, v in front_matter.items() if v}
    lines = ["---", yaml.safe_dump(front_matter, sort_keys=False).strip(), "---", ""]
    lines += [f"# {record.get('trainer', 'moalign')} checkpoint on {len(names)} objectives", ""]
    lines += [f"{_base_model_line(record.get('base_model'), base_hub_id, base_note)} "
              f"Trainer: `{record.get('trainer')}`.", ""]
    gated = any(objective.get("gate") for objective in record.get("objectives", []))
    lines += ["## Objectives", "", "| objective | source | threshold |" + (" gate |" if gated else ""),
              "|---|---|---|" + ("---|" if gated else "")]
    for objective in record.get("objectives", []):
        threshold = objective.get("threshold")
        gate = f" `{objective['gate']}` |" if objective.get("gate") else " |" if gated else ""
        lines.append(f"| {objective['name']} | `{objective['source']}` | {'' if threshold is None else threshold} |"
                     + gate)
    lines.append("")
    if record.get("datasets"):
        lines += ["## Data", "", *[_data_line(name) for name in record["datasets"]], ""]
    lines += ["## What the run optimized", "", *_optimized_lines(record), ""]
    steering = record.get("steering", "none")
    example = ",".join(f"{n}={1 / len(names):.2f}" for n in names) if names else ""
    lines += ["## Steering at inference", ""]
    if record.get("baked_weights"):
        lines += _baked_lines(record)
    else:
        lines += [_STEERING_HELP.get(steering, steering).format(example=example), ""]
        if record.get("prompt_format"):
            version = record.get("prompt_format_version") or 1
            lines += [f"Prompt format (version {version}): {record['prompt_format']}.", ""]
    if record.get("merged_lora"):
        lines += ["The LoRA adapter is merged into the base weights: load it with `AutoModelForCausalLM` alone.", ""]
    evaluation = record.get("evaluation")
    if evaluation:
        lines += ["## Evaluation", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v:.4g} |" if isinstance(v, (int, float)) else f"| {k} | {v} |"
                  for k, v in evaluation.items()]
        lines.append("")
    if record.get("steering_table"):
        lines += _steering_lines(record["steering_table"], record.get("front_plot"))
    if record.get("samples"):
        lines += ["## Before / after samples", "",
                  "Held-out prompts, one sampled reply from the base model and one from "
                  "the trained one (all of them in `samples.jsonl`).", "",
                  "| prompt | base reply | trained reply |", "|---|---|---|"]
        lines += [f"| {_cell(s['prompt'])} | {_cell(s['base'])} | {_cell(s['trained'])} |" for s in record["samples"]]
        lines.append("")
    if record.get("front_plot") and not record.get("steering_table"):
        lines += ["## Pareto front", "", f"![Pareto front]({record['front_plot']})", ""]
    lines += ["The full record is in `objectives.json` beside the weights.", ""]
    return "\n".join(lines)
