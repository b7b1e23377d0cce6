"""Reading checkpoints for steering: records, objective names, K checkpoints named by objective, peft adapters.

The steering methods' `from_checkpoint` classmethods share these; `alignment.steering.registry.load_steerable`
picks the method and hands it the checkpoint(s).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignment.hub.record import RECORD_FILE, load_record
from alignment.models.packaged import resolve_model_path
from alignment.models.policy import check_safetensors_adapter
from alignment.steering.base import SteeringError

ADAPTER_CONFIG = "adapter_config.json"


def read_record_if_any(path: Path) -> dict | None:
    """The checkpoint's `objectives.json`, or None when it has none (e.g. a model not trained by moalign)."""
    return load_record(path) if (path / RECORD_FILE).exists() else None


def objective_names_for(record: dict | None, objective_names: Sequence[str] | None) -> list[str] | None:
    """The caller's objective names, else the ones the checkpoint's record lists (None when neither has any)."""
    return objective_names or (record or {}).get("objective_names")


def load_causal_lm(path: Path, dtype, device):
    """A full causal-LM checkpoint in eval mode on `device` (safetensors only: pickled weights are refused)."""
    return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, use_safetensors=True).to(device).eval()


def objective_of(path: Path) -> str:
    """The objective a single-objective checkpoint was trained for: its only objective, or its one-hot weight."""
    record = read_record_if_any(path)
    if record is None:
        raise SteeringError(f"{path}: no {RECORD_FILE}; name the objective on the command line as NAME=PATH")
    names = record.get("objective_names") or []
    weights = record.get("weights") or {}
    if len(names) == 1:
        return names[0]
    positive = [n for n, w in weights.items() if w > 0]
    if len(positive) == 1:
        return positive[0]
    raise SteeringError(f"{path}: trained on {names} with weights {weights or 'none'}, not one objective; "
                        "name the objective it stands for as NAME=PATH")


def named_checkpoints(paths) -> dict[str, Path]:
    """{objective: path} from a mapping, or from 'NAME=PATH' / plain paths (name read from each record)."""
    if isinstance(paths, Mapping):
        return {str(n): Path(p) for n, p in paths.items()}
    named = {}
    for item in paths:
        item = str(item)
        name, sep, path = item.partition("=")
        name, path = (name, Path(path)) if sep and name.isidentifier() else (None, Path(item))
        if not path.exists():
            raise SteeringError(f"checkpoint {path} does not exist")
        name = name or objective_of(path)
        if name in named:
            raise SteeringError(f"two checkpoints stand for objective '{name}' ({named[name]} and {path})")
        named[name] = path
    return named


def in_objective_order(named: dict[str, Path], objective_names: Sequence[str] | None) -> dict[str, Path]:
    """The named checkpoints in the caller's objective order (as given when `objective_names` is None)."""
    if objective_names is None:
        return named
    if sorted(objective_names) != sorted(named):
        raise SteeringError(f"objective_names {list(objective_names)} do not match the checkpoints' objectives "
                            f"{list(named)}")
    return {n: named[n] for n in objective_names}


def are_lora_adapters(named: dict[str, Path]) -> bool:
    """True for K LoRA adapters, False for K full checkpoints; a mix of both is an error."""
    adapters = [(p / ADAPTER_CONFIG).exists() for p in named.values()]
    if any(adapters) and not all(adapters):
        raise SteeringError("mix of LoRA adapters and full checkpoints; give K adapters of one base or K full "
                            "checkpoints")
    return all(adapters)


def load_shared_tokenizer(named: dict[str, Path]):
    """The tokenizer of the first checkpoint, once every checkpoint is checked to have the same vocabulary."""
    vocabularies = {n: AutoTokenizer.from_pretrained(p).get_vocab() for n, p in named.items()}
    first_name, first = next(iter(vocabularies.items()))
    for name, vocabulary in vocabularies.items():
        if vocabulary != first:
            raise SteeringError(f"checkpoints '{first_name}' and '{name}' have different tokenizers; "
                                "MOD and soups need K models sharing one tokenizer")
    return AutoTokenizer.from_pretrained(next(iter(named.values())))


def open_checkpoints(named: dict[str, Path], objective_names: Sequence[str] | None):
    """K checkpoints that one method mixes: (named paths in objective order, whether they are LoRA adapters, their
    shared tokenizer), each checked."""
    named = in_objective_order(named, objective_names)
    return named, are_lora_adapters(named), load_shared_tokenizer(named)


def load_peft_adapters(named: dict[str, Path], base_model: str | None, dtype, device) -> tuple[PeftModel, str]:
    """(one peft model holding every adapter under its objective's name, in eval mode; the base model's name).

    The base is `base_model`, else the one base every adapter_config.json names.
    """
    configs = {n: json.loads((p / ADAPTER_CONFIG).read_text()) for n, p in named.items()}
    bases = {c.get("base_model_name_or_path") for c in configs.values()}
    base = base_model or (bases.pop() if len(bases) == 1 else None)
    if base is None:
        raise SteeringError(f"the LoRA adapters name different base models {sorted(map(str, bases))}; pass base_model")
    for path in named.values():
        check_safetensors_adapter(path)
    model = AutoModelForCausalLM.from_pretrained(resolve_model_path(base), dtype=dtype, use_safetensors=True).to(device)
    names = list(named)
    model = PeftModel.from_pretrained(model, str(named[names[0]]), adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(str(named[name]), adapter_name=name)
    return model.eval(), base


def adapter_policy(peft_model: PeftModel, name: str) -> Callable:
    """A causal-LM forward that runs the peft model with adapter `name` active (one policy of a mixture)."""
    def forward(**kwargs):
        peft_model.set_adapter(name)
        return peft_model(**kwargs)
    return forward
