"""`load_steerable`: one checkpoint or K checkpoints -> the steering method its record (or the caller) names."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignment.hub.record import RECORD_FILE, load_record
from alignment.models.multi_head import HEADS_RECORD, load_multi_head_model
from alignment.models.packaged import resolve_model_path
from alignment.models.policy import check_safetensors_adapter, eos_token_ids
from alignment.models.preference_adapter import load_steerable_model
from alignment.objectives.conditioning import record_format_version
from alignment.objectives.sources import RewardSource
from alignment.steering.adapter import PreferenceAdapterSteerable
from alignment.steering.base import Steerable, SteeringError
from alignment.steering.heads import HeadMixing
from alignment.steering.mixture import LogProbMixture
from alignment.steering.prompt import PromptConditioned
from alignment.steering.rmod import RobustDecoding
from alignment.steering.soup import AdapterSoup, RewardedSoup

METHODS = ("auto", "prompt", "adapter", "heads", "mod", "soup", "rmod", "best_of_k")
ADAPTER_CONFIG = "adapter_config.json"


def _record_or_none(path: Path) -> dict | None:
    return load_record(path) if (path / RECORD_FILE).exists() else None


def _objective_of(path: Path) -> str:
    """The objective a single-objective checkpoint was trained for: its only objective, or its one-hot weight."""
    record = _record_or_none(path)
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


def _named_paths(paths) -> dict[str, Path]:
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
        name = name or _objective_of(path)
        if name in named:
            raise SteeringError(f"two checkpoints stand for objective '{name}' ({named[name]} and {path})")
        named[name] = path
    return named


def _check_shared_tokenizer(named: dict[str, Path]) -> None:
    vocabularies = {n: AutoTokenizer.from_pretrained(p).get_vocab() for n, p in named.items()}
    first_name, first = next(iter(vocabularies.items()))
    for name, vocabulary in vocabularies.items():
        if vocabulary != first:
            raise SteeringError(f"checkpoints '{first_name}' and '{name}' have different tokenizers; "
                                "MOD and soups need K models sharing one tokenizer")


def _load_peft_adapters(named: dict[str, Path], base_model: str | None, dtype, device):
    from peft import PeftModel

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


def _adapter_policy(peft_model, name: str) -> Callable:
    def forward(**kwargs):
        peft_model.set_adapter(name)
        return peft_model(**kwargs)
    return forward


def load_steerable(paths, method: str = "auto", *, reward_sources: RewardSource | Sequence[RewardSource] | None = None,
                   objective_names: Sequence[str] | None = None, base_model: str | None = None,
                   device: str = "cpu", dtype: torch.dtype | None = None, **method_kwargs) -> Steerable:
    """A steerable model from one checkpoint or K checkpoints (paths, 'NAME=PATH' items, or a mapping name -> path).

    `reward_sources` is needed for `rmod` / `best_of_k` (e.g. `reward_models.scoring.load_reward_model_source(...)`
    or `alignment.objectives.sources.FunctionSource`s); `method_kwargs` go to the method (num_candidates, block_size, lam, tau).
    """
    if method not in METHODS:
        raise SteeringError(f"unknown steering method '{method}'; choose one of {list(METHODS)}")
    items = [paths] if isinstance(paths, (str, Path)) else paths
    if not items:
        raise SteeringError("load_steerable: no checkpoint given")
    single = not isinstance(items, Mapping) and len(items) == 1 and "=" not in str(items[0])
    if single:
        path = Path(items[0])
        if not path.exists():
            raise SteeringError(f"checkpoint {path} does not exist")
        record = _record_or_none(path)
        if method == "auto":
            steering = (record or {}).get("steering", "none")
            if steering not in ("prompt", "adapter", "heads"):
                raise SteeringError(f"{path}: its record says steering '{steering}', so the method cannot be read from it; "
                                    "pass several checkpoints (mod / soup), or a reward source with method rmod")
            method = steering
        if method in ("mod", "soup"):
            raise SteeringError(f"{method} mixes K checkpoints, one per objective; got one ({path})")
        tokenizer = AutoTokenizer.from_pretrained(path)
        names = objective_names or (record or {}).get("objective_names")
        if method == "heads":
            if not (path / HEADS_RECORD).exists():
                raise SteeringError(f"{path}: no {HEADS_RECORD}; head mixing needs a multi-head checkpoint")
            model = load_multi_head_model(path, dtype=dtype).to(device).eval()
            return HeadMixing(model, tokenizer, names, device)
        if method == "adapter":
            try:
                model = load_steerable_model(path, dtype=dtype, device=device)
            except FileNotFoundError as error:
                raise SteeringError(str(error)) from None
            return PreferenceAdapterSteerable(model, tokenizer, names, device,
                                              prompt_format_version=record_format_version(record)
                                              if (record or {}).get("prompt_format") else None)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, use_safetensors=True).to(device).eval()
        if method == "prompt":
            if not names:
                raise SteeringError(f"{path}: no objective names in a record; pass objective_names")
            return PromptConditioned(model, tokenizer, names, device, record_format_version(record))
        if reward_sources is None:
            raise SteeringError(f"{method} needs reward_sources: the value function that scores candidate blocks")
        return RobustDecoding(model, tokenizer, reward_sources, objective_names, device,
                              robust=method == "rmod", **method_kwargs)

    named = _named_paths(items)
    method = "mod" if method == "auto" else method
    if method not in ("mod", "soup"):
        raise SteeringError(f"method '{method}' takes one checkpoint; got {len(named)}")
    if objective_names is not None:
        if sorted(objective_names) != sorted(named):
            raise SteeringError(f"objective_names {list(objective_names)} do not match the checkpoints' objectives {list(named)}")
        named = {n: named[n] for n in objective_names}
    names = list(named)
    adapters = [(p / ADAPTER_CONFIG).exists() for p in named.values()]
    if any(adapters) and not all(adapters):
        raise SteeringError("mix of LoRA adapters and full checkpoints; give K adapters of one base or K full checkpoints")
    _check_shared_tokenizer(named)
    tokenizer = AutoTokenizer.from_pretrained(next(iter(named.values())))
    if all(adapters):
        peft_model, _ = _load_peft_adapters(named, base_model, dtype, device)
        if method == "soup":
            return AdapterSoup(peft_model, tokenizer, names, device)
        eos = eos_token_ids(peft_model)
        return LogProbMixture([_adapter_policy(peft_model, n) for n in names], tokenizer, names, eos, device)
    models = [AutoModelForCausalLM.from_pretrained(p, dtype=dtype, use_safetensors=True).to(device).eval()
              for p in named.values()]
    if method == "soup":
        states = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in models]
        return RewardedSoup(models[0], states, tokenizer, names, device)
    return LogProbMixture(models, tokenizer, names, eos_token_ids(models[0]), device)
