"""The steering methods by name, and `load_steerable`: one checkpoint or K checkpoints -> the method its record (or
the caller) names.

Every method is a `Steerable` subclass that loads itself (`from_checkpoint`) and says what it takes
(`mixes_checkpoints`, `method_arguments`); this module is the one place that maps method names to classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from alignment.objectives.sources import RewardSource
from alignment.steering.adapter import PreferenceAdapterSteerable
from alignment.steering.base import Steerable, SteeringError
from alignment.steering.checkpoints import named_checkpoints, read_record_if_any
from alignment.steering.heads import HeadMixing
from alignment.steering.mixture import LogProbMixture
from alignment.steering.prompt import PromptConditioned
from alignment.steering.rmod import BestOfK, RobustDecoding
from alignment.steering.soup import Soup

METHODS: dict[str, type[Steerable]] = {
    "prompt": PromptConditioned,
    "adapter": PreferenceAdapterSteerable,
    "heads": HeadMixing,
    "mod": LogProbMixture,
    "soup": Soup,
    "rmod": RobustDecoding,
    "best_of_k": BestOfK,
}
# Not a method: read the method from a single checkpoint's record, or `mod` for several checkpoints
AUTO = "auto"
# The methods a checkpoint's record can name in its `steering` field (the others need the caller to choose them)
RECORDED_METHODS = ("prompt", "adapter", "heads")
AUTO_FOR_SEVERAL_CHECKPOINTS = "mod"


def recorded_method(record: Mapping | None) -> type[Steerable] | None:
    """The method class a checkpoint's record names in `steering`; None for 'none', another value, or no record."""
    steering = (record or {}).get("steering", "none")
    return METHODS[steering] if steering in RECORDED_METHODS else None


def load_steerable(paths, method: str = AUTO, *, reward_sources: RewardSource | Sequence[RewardSource] | None = None,
                   objective_names: Sequence[str] | None = None, base_model: str | None = None,
                   device: str = "cpu", dtype: torch.dtype | None = None, **method_kwargs) -> Steerable:
    """A steerable model from one checkpoint or K checkpoints (paths, 'NAME=PATH' items, or a mapping name -> path).

    `method`: a name of `METHODS`, or `auto` (the `steering` of a single checkpoint's record; `mod` for several).
    `reward_sources` is needed for `rmod` / `best_of_k` (e.g. `reward_models.scoring.load_reward_model_source(...)`
    or `alignment.objectives.sources.FunctionSource`s); `method_kwargs` go to the method (its `method_arguments`:
    num_candidates, block_size, lam, tau). `base_model`: the base of K LoRA adapters whose configs name none.
    """
    if method != AUTO and method not in METHODS:
        raise SteeringError(f"unknown steering method '{method}'; choose one of {[AUTO, *METHODS]}")
    items = [paths] if isinstance(paths, (str, Path)) else paths
    if not items:
        raise SteeringError("load_steerable: no checkpoint given")
    single = not isinstance(items, Mapping) and len(items) == 1 and "=" not in str(items[0])
    if single:
        path = Path(items[0])
        if not path.exists():
            raise SteeringError(f"checkpoint {path} does not exist")
        record = read_record_if_any(path)
        if method == AUTO:
            steering_class = recorded_method(record)
            if steering_class is None:
                steering = (record or {}).get("steering", "none")
                raise SteeringError(f"{path}: its record says steering '{steering}', so the method cannot be read from "
                                    "it; pass several checkpoints (mod / soup), or a reward source with method rmod")
            method = steering_class.method
        if METHODS[method].mixes_checkpoints:
            raise SteeringError(f"{method} mixes K checkpoints, one per objective; got one ({path})")
        # every method gets every option; those of other methods are unused, as they always were
        return METHODS[method].from_checkpoint(path, record, objective_names=objective_names,
                                               reward_sources=reward_sources, device=device, dtype=dtype,
                                               **method_kwargs)

    named = named_checkpoints(items)
    method = AUTO_FOR_SEVERAL_CHECKPOINTS if method == AUTO else method
    if not METHODS[method].mixes_checkpoints:
        raise SteeringError(f"method '{method}' takes one checkpoint; got {len(named)}")
    # reward sources and method options mean nothing to a mixture of checkpoints: unused, as they always were
    return METHODS[method].from_checkpoint(named, objective_names=objective_names, base_model=base_model,
                                           device=device, dtype=dtype)
