"""The folders are layers, and imports point one way: down the pipeline, never up.

    objectives, pareto, plots, cache  <  data  <  models  <  hub  <  reward_models  <  trainers, steering, orchestrator,
    evaluation  <  cli (recipe plumbing)

A module may import from its own layer or a lower one. `reward_models` builds on the `alignment` core, and only
the layers above it import `reward_models`. The multi-objective core (objectives, pareto) loads no model library
(transformers, TRL, peft, accelerate, datasets): only torch and numerical libraries. Every import statement counts,
including those inside functions.
"""

import ast
from pathlib import Path

import alignment

ROOT = Path(__file__).resolve().parents[1]
LAYER = {
    "alignment.objectives": 0, "alignment.pareto": 0, "alignment.plots": 0, "alignment.cache": 0,
    "alignment.data": 1,
    "alignment.models": 2,
    "alignment.hub": 3,
    "reward_models": 4,
    "alignment.trainers": 5, "alignment.steering": 5, "alignment.orchestrator": 5, "alignment.evaluation": 5,
    "alignment.cli": 6,
}


def layer_of(module: str) -> tuple[str, int] | None:
    for prefix in sorted(LAYER, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return prefix, LAYER[prefix]
    return None


def imports_of(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def modules():
    for package in ("alignment", "reward_models"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name == "__init__.py" and path.parent.name == "alignment":
                continue  # the top-level package re-exports the public API of every layer (lazily)
            dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            yield path, dotted


def test_every_module_belongs_to_a_layer():
    assert [dotted for _, dotted in modules() if layer_of(dotted) is None] == []


def test_imports_never_point_up_a_layer():
    upward = []
    for path, dotted in modules():
        own_prefix, own = layer_of(dotted)
        for imported in imports_of(path):
            target = layer_of(imported)
            if target and target[1] > own:
                upward.append(f"{dotted} (layer {own}) imports {imported} (layer {target[1]})")
    assert upward == []


def test_the_multi_objective_core_loads_no_model_library():
    model_libraries = {"transformers", "trl", "peft", "accelerate", "datasets", "deepspeed", "huggingface_hub"}
    loaded = []
    for path, dotted in modules():
        if layer_of(dotted)[0] in ("alignment.objectives", "alignment.pareto"):
            loaded += [f"{dotted} imports {m}" for m in imports_of(path) if m.split(".")[0] in model_libraries]
    assert loaded == []


def test_the_public_api_is_importable_from_the_top_level():
    from alignment import MultiObjectiveGRPOTrainer, load_steerable, parse_preference_weights

    assert callable(load_steerable) and callable(parse_preference_weights)
    assert MultiObjectiveGRPOTrainer.__module__ == "alignment.trainers.grpo"

    missing = [name for name in alignment.__all__ if getattr(alignment, name, None) is None]
    assert missing == []
    assert {"load_steerable", "MultiObjectiveGRPOTrainer", "MultiObjectiveDPOTrainer", "scalarize",
            "PreferenceOrchestrator", "hypervolume"} <= set(alignment.__all__)
