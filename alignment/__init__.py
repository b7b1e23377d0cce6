"""moalign: multi-objective alignment and reward modeling of language models.

The folders follow the pipeline:

    objectives/  what "multi-objective" means: objectives and their reward sources, the reward vector,
                 preference weights, scalarizations, and how a policy is shown the weights (conditioning)
    data/        built-in packaged data, local files and hub sets; prompts; preference pairs, groups and lists
    models/      policies (hub, local, the packaged tiny and SmolLM2 models), multi-head LM heads, preference adapters
    trainers/    multi-objective GRPO, MGDA-GRPO, the DPO family and the preference losses they use
    hub/         resumable checkpoints, the objectives record, model cards, publishing
    steering/    inference-time steering, one module per method, and `load_steerable`
    pareto.py    fronts, hypervolume, controllability, min-norm (MGDA) weights
    orchestrator/    prompt-aware weights (PRO)
    evaluation.py    held-out before/after figures shared by the recipes
    cli.py       recipe argument parsing (YAML + command-line overrides)
    console.py   the `moalign` command: the recipes under accelerate launch, the scripts, the packaged configs

The multi-head reward model is the sibling package `reward_models`; it builds on `objectives`, `data`, `models`
and `hub`, and `trainers`, `steering` and the recipes build on it.

The public API below is importable from the top level, e.g. `from alignment import load_steerable,
MultiObjectiveGRPOTrainer`. Names load on first use, so `import alignment` stays cheap.
"""

from __future__ import annotations

import importlib

_PUBLIC_API = {
    # objectives: the multi-objective core (pure functions of torch tensors)
    "alignment.objectives.weights": ["PreferenceWeightsError", "format_preference_weights", "parse_preference_weights"],
    "alignment.objectives.sources": ["FunctionSource", "Gate", "Objective", "ObjectiveSpecError", "RewardSource",
                                     "parse_objective_specs", "register_reward"],
    "alignment.objectives.schedules": ["WeightSchedule", "parse_weight_schedule"],
    "alignment.objectives.reward_vector": ["RewardVectorBuilder"],
    "alignment.objectives.scalarize": ["AGGREGATIONS", "group_normalize", "labels_from_ranks",
                                       "labels_from_reward_vector", "scalarize"],
    "alignment.objectives.advantages": ["ADVANTAGE_ESTIMATORS", "compute_advantages"],
    "alignment.objectives.conditioning": ["condition_prompt", "read_prompt_weights"],
    "alignment.pareto": ["controllability", "hypervolume", "min_norm_weights", "non_dominated"],
    # data
    "alignment.data.sources": ["DataSourceError", "resolve_data"],
    "alignment.data.preferences": ["PreferenceDataError", "load_preference_splits"],
    # models
    "alignment.models.policy": ["load_policy"],
    "alignment.models.packaged": ["resolve_model_path"],
    "alignment.models.multi_head": ["add_lm_heads", "generate_with_weights", "load_multi_head_model"],
    "alignment.models.preference_adapter": ["add_preference_adapter", "merge_preference", "preference_weights"],
    # trainers
    "alignment.trainers.grpo": ["MultiObjectiveGRPOConfig", "MultiObjectiveGRPOTrainer"],
    "alignment.trainers.mgda_grpo": ["MGDAGRPOTrainer"],
    "alignment.trainers.mo_dpo": ["MultiObjectiveDPOConfig", "MultiObjectiveDPOTrainer"],
    "alignment.trainers.preference_losses": ["cardinal_dpo_loss", "dpo_loss", "lipo_lambda_loss", "mah_dpo_loss",
                                             "ipo_loss", "mdpo_loss", "mipo_loss", "modpo_loss"],
    # checkpoints and publishing
    "alignment.hub.record": ["build_record", "load_record", "save_record"],
    "alignment.hub.publishing": ["PublishError", "build_folder", "plan_publication", "push_folder"],
    # steering, prompt-aware weights, evaluation
    "alignment.steering": ["Steerable", "SteeringError", "load_steerable"],
    "alignment.orchestrator": ["PreferenceOrchestrator"],
    "alignment.evaluation": ["score_held_out"],
}
_MODULE_OF = {name: module for module, names in _PUBLIC_API.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    # Lazy: the trainers pull in TRL and transformers, which a user of the weights or Pareto math need not wait for.
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'alignment' has no attribute '{name}'")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
