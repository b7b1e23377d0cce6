"""Small helpers shared by the tests (fixtures live in conftest.py)."""

import importlib.util
import json
import math
from pathlib import Path

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def write_jsonl(path: Path, rows: list[dict]) -> str:
    """Write `rows` as JSON lines; returns the path as a string (what the loaders and recipes take)."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def load_recipe(name: str):
    """recipes/<name>.py as a module (the recipes are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_recipe", RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def neg_log_sigmoid(x: float) -> float:
    """-log sigmoid(x) = log(1 + exp(-x)), the pairwise loss the hand-computed expectations use."""
    return math.log(1.0 + math.exp(-x))
