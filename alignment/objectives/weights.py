"""Preference weights: parse, validate, normalize and sample points on the simplex over named objectives.

Weights reach us from a CLI string (`helpful=0.7,harmless=0.3`), a YAML mapping, a list in objective order,
or a tensor. Every entry point goes through `parse_preference_weights`, so every recipe rejects bad weights
with the same message.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch


class PreferenceWeightsError(ValueError):
    """Raised for weights that are malformed, unknown, negative, non-finite or all zero."""


def _parse_weight_string(text: str, objective_names: Sequence[str]) -> dict[str, float] | list[float]:
    text = text.strip()
    if not text:
        raise PreferenceWeightsError("preference weights: got an empty string; expected e.g. "
                                     "'helpful=0.7,harmless=0.3'")
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise PreferenceWeightsError(f"preference weights: '{text}' holds no weights; expected e.g. "
                                     "'helpful=0.7,harmless=0.3'")
    if all("=" in part for part in parts):
        mapping = {}
        for part in parts:
            name, _, value = part.partition("=")
            name = name.strip()
            if name in mapping:
                raise PreferenceWeightsError(f"preference weights: objective '{name}' is given twice in '{text}'")
            mapping[name] = _to_float(value.strip(), name)
        return mapping
    if any("=" in part for part in parts):
        raise PreferenceWeightsError(
            f"preference weights: '{text}' mixes 'name=value' and bare values; use one form, e.g. "
            "'helpful=0.7,harmless=0.3'"
        )
    return [_to_float(part, f"position {i}") for i, part in enumerate(parts)]


def _to_float(value, where: str) -> float:
    if isinstance(value, bool):
        raise PreferenceWeightsError(f"preference weights: weight for {where} is a boolean ({value}); expected a "
                                     "number")
    try:
        return float(value)
    except OverflowError:  # an int too large for a float (10**400)
        raise PreferenceWeightsError(f"preference weights: weight for {where} is {str(value)[:12]}..., too large for a "
                                     "float") from None
    except (TypeError, ValueError):
        raise PreferenceWeightsError(
            f"preference weights: weight for {where} is {value!r:.60}, which is not a number"
        ) from None


def parse_preference_weights(weights, objective_names: Sequence[str], normalize: bool = True) -> torch.Tensor:
    """Return a float32 tensor [K] of weights in the order of `objective_names`, validated and (by default)
    summing to 1.

    Accepts `"a=0.7,b=0.3"`, `"0.7,0.3"`, a mapping name -> weight, a list/tuple/array/tensor in objective order.
    Objectives missing from a mapping get weight 0. Raises `PreferenceWeightsError` naming what is wrong.
    """
    objective_names = list(objective_names)
    if not objective_names:
        raise PreferenceWeightsError("preference weights: there are no objectives to weight")
    if isinstance(weights, str):
        weights = _parse_weight_string(weights, objective_names)

    if isinstance(weights, Mapping):
        unknown = [str(name) for name in weights if name not in objective_names]
        if unknown:
            raise PreferenceWeightsError(
                f"preference weights: unknown objective(s) {unknown}; the known objectives are {objective_names}"
            )
        values = [_to_float(weights.get(name, 0.0), f"'{name}'") for name in objective_names]
    elif isinstance(weights, (Sequence, np.ndarray, torch.Tensor)) and not isinstance(weights, (bytes, bytearray)):
        if isinstance(weights, (np.ndarray, torch.Tensor)) and weights.ndim != 1:
            raise PreferenceWeightsError("preference weights: expected one weight per objective, got an array of "
                                         f"shape {tuple(weights.shape)}")
        flat = weights.tolist() if isinstance(weights, (np.ndarray, torch.Tensor)) else list(weights)
        if len(flat) != len(objective_names):
            raise PreferenceWeightsError(
                f"preference weights: got {len(flat)} weights for {len(objective_names)} objectives {objective_names}"
            )
        values = [_to_float(v, f"'{name}'") for v, name in zip(flat, objective_names)]
    else:
        raise PreferenceWeightsError(
            f"preference weights: expected a string, mapping or list, got {type(weights).__name__}"
        )

    for name, value in zip(objective_names, values):
        if not math.isfinite(value):
            raise PreferenceWeightsError(f"preference weights: weight for '{name}' is {value}; weights must be finite")
        if value < 0:
            raise PreferenceWeightsError(f"preference weights: weight for '{name}' is {value}; weights must be >= 0")
    largest = max(values)
    if largest <= 0:
        raise PreferenceWeightsError(f"preference weights: all weights are zero for {objective_names}; at least one "
                                     "must be > 0")
    if normalize:
        # Divide by the largest weight first, in float64: '1e308,1e308' would overflow the sum, and '1e300,1e300'
        # float32, both into NaN weights.
        scaled = [value / largest for value in values]
        return torch.tensor([value / sum(scaled) for value in scaled], dtype=torch.float32)
    if largest > torch.finfo(torch.float32).max:
        name = objective_names[values.index(largest)]
        raise PreferenceWeightsError(f"preference weights: weight for '{name}' is {largest}, too large for float32")
    return torch.tensor(values, dtype=torch.float32)


def format_preference_weights(weights: torch.Tensor | Sequence[float], objective_names: Sequence[str]) -> str:
    """The canonical `name=value,...` string (2 decimals), the inverse of `parse_preference_weights`."""
    values = weights.tolist() if isinstance(weights, torch.Tensor) else list(weights)
    return ",".join(f"{name}={value:.2f}" for name, value in zip(objective_names, values))


def parse_dirichlet_alpha(alpha, objective_names: Sequence[str]) -> torch.Tensor:
    """Concentration of the weight distribution: one positive float for all objectives, or one per objective."""
    if isinstance(alpha, (int, float)) and not isinstance(alpha, bool):
        values = [_to_float(alpha, "dirichlet alpha")] * len(objective_names)
    else:
        values = parse_preference_weights(alpha, objective_names, normalize=False).tolist()
    if any(not 0 < v <= torch.finfo(torch.float32).max for v in values):  # False for NaN and inf too
        raise PreferenceWeightsError(f"dirichlet alpha: every concentration must be a finite number > 0, got {values} "
                                     f"for {list(objective_names)}")
    return torch.tensor(values, dtype=torch.float32)


def sample_dirichlet_weights(alpha: torch.Tensor, keys: Sequence[str], seed: int) -> torch.Tensor:
    """One Dirichlet(alpha) sample per key, [len(keys), K].

    Each sample is a deterministic function of (seed, key): every process of a distributed run, and a resumed
    run, draws the same weights for the same prompt without any communication, so the G completions of a group
    that land on different ranks are scored under the same weights.
    """
    rows = []
    for key in keys:
        key_seed = int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "little")
        rng = np.random.default_rng(key_seed)
        rows.append(rng.dirichlet(alpha.double().numpy()))
    return torch.tensor(np.array(rows), dtype=torch.float32).reshape(len(keys), len(alpha))
