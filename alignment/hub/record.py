"""What a checkpoint was trained for: `objectives.json` beside the weights, and the model card made from it.

The record is the single source of truth: the model card (README.md) is generated from it, never typed by hand,
and inference-time steering reads it to know the objective order and the method.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

from alignment.data import data_display_name
from alignment.hub.model_card import render_model_card
from alignment.models.packaged import model_display_name
from alignment.redaction import scrub

RECORD_FILE = "objectives.json"
RECORD_VERSION = 1


def _atomic_write_text(path: Path, text: str) -> None:
    """Write `path` whole or not at all (a temporary file beside it, then a rename). The temporary file is created as
    any new file is (0666 less the umask, 0644 as a rule), not 0600 as `mkstemp` would: records and cards are meant
    to be read by others, on a shared machine and once published."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(staging, "x") as f:
            f.write(text)
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)


def build_record(
    *,
    trainer: str,
    base_model: str,
    objectives: list[dict],
    weights: dict[str, float] | None = None,
    weight_distribution: dict | None = None,
    aggregation: str | None = None,
    scalarization: str | None = None,
    steering: str = "none",
    datasets: list[str] | None = None,
    extra: dict | None = None,
) -> dict:
    """A JSON-able record. `steering` says how to steer it at inference ("prompt", "heads", "none", ...).

    The base model and the datasets are recorded by hub id, packaged name or file name, never by a local path, and
    every string with its secret query parameters redacted (`alignment.redaction`): the record and the card made from
    it are published as they are.
    """
    return scrub({
        "format_version": RECORD_VERSION,
        "trainer": trainer,
        "base_model": model_display_name(base_model),
        "objectives": objectives,
        "objective_names": [o["name"] for o in objectives],
        "weights": weights,
        "weight_distribution": weight_distribution,
        "aggregation": aggregation,
        "scalarization": scalarization,
        "steering": steering,
        "datasets": [data_display_name(d) for d in datasets or []],
        **(extra or {}),
    })


def save_record(output_dir: str | Path, record: dict, evaluation: dict | None = None) -> Path:
    """Write objectives.json and README.md (model card) into output_dir, each atomically."""
    output_dir = Path(output_dir)
    record = scrub({**record, **({"evaluation": evaluation} if evaluation else {})})
    _atomic_write_text(output_dir / RECORD_FILE, json.dumps(record, indent=2, sort_keys=False) + "\n")
    _atomic_write_text(output_dir / "README.md", render_model_card(record))
    return output_dir / RECORD_FILE


def load_record(path: str | Path) -> dict:
    """The record of a checkpoint folder (or of an objectives.json file); FileNotFoundError if it has none."""
    path = Path(path)
    if path.is_dir():
        path = path / RECORD_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no {RECORD_FILE}; this checkpoint was not written by a moalign trainer")
    with open(path) as f:
        return json.load(f)


def objective_specs_from_record(record: dict) -> list[str]:
    """Turn the sources recorded in objectives.json back into objective specs (`alignment.objectives.sources`):
    builtin:NAME -> name=NAME, reward_model_head:HEAD -> name=rm:HEAD, python:MODULE:FUNCTION as is; a gated
    objective gets its gate back ('@correct>=1')."""
    specs = []
    for objective in record["objectives"]:
        name, source = objective["name"], objective["source"]
        kind, _, target = source.partition(":")
        if kind == "builtin":
            spec = f"{name}={target}"
        elif kind == "python":
            spec = f"{name}={source}"
        elif kind == "reward_model_head":
            spec = f"{name}=rm:{target}"
        else:
            raise ValueError(f"objectives.json: objective '{name}' has source '{source}', which this sweep cannot "
                             "rebuild")
        specs.append(f"{spec}@{objective['gate']}" if objective.get("gate") else spec)
    return specs


def write_training_args_json(output_dir: str | Path, training_args) -> None:
    """Replace transformers' pickled `training_args.bin` with a JSON copy whose `*_token` fields are redacted.

    The pickle would carry `hub_token` in clear and needs `torch.load(weights_only=False)` to read; resuming does not
    use it (it reads trainer_state.json, the optimizer and RNG files).
    """
    output_dir = Path(output_dir)
    (output_dir / "training_args.bin").unlink(missing_ok=True)
    _atomic_write_text(output_dir / "training_args.json", training_args.to_json_string())
