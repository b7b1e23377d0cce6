"""Weight schedules: preference weights that move during training, a pure function of the training step.

A schedule lists weight vectors at positions of training, e.g. ``0:format=1,correct=0;0.5:format=0.2,correct=0.8``
(points separated by ';', each 'POSITION:WEIGHTS'). Every WEIGHTS is parsed and validated by
`alignment.objectives.weights.parse_preference_weights` (normalized to the simplex), so a bad vector is refused with
the same message as a bad `preference_weights`. A list of 'POSITION:WEIGHTS' strings, or a mapping
{position: weights}, is accepted too.

Positions (`unit`):
- 'fraction': a fraction of the run's `max_steps` (0 is the start, 1 the end);
- 'step': a global optimizer step;
- 'auto' (the default): fractions when every position lies in [0, 1], steps otherwise; steps must then be whole
  numbers, so a schedule that mixes fractions with steps ('0.5' beside '200') is refused. '0;1' means start to end;
  a schedule over the first optimizer step only says `unit: step`.

Between two points the weights are interpolated (`INTERPOLATIONS`): 'linear', or 'cosine', which eases in and out
(the share of the second vector is (1 - cos(pi t)) / 2 at t in [0, 1] of the way). Before the first point the first
vector holds, after the last point the last. Every interpolated vector is a convex combination of two points of the
simplex, so it is on the simplex too.

The step convention: the update that takes the model from global step s to s + 1 (the batch generated, the loss
computed while `global_step == s`) trains under the schedule at s, i.e. at position s for steps and s / max_steps
for fractions. A resumed run restores `global_step` and `max_steps` from its checkpoint, so it computes the same
weights as the run it continues.

With sampled or per-prompt weights a schedule moves the weights' centre (`dirichlet_alpha_at`, `tilt_weights`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from alignment.objectives.weights import PreferenceWeightsError, parse_preference_weights

# How far along from one point to the next (t in [0, 1]) becomes the share of the next point's weights.
INTERPOLATIONS: dict[str, Callable[[float], float]] = {
    "linear": lambda t: t,
    "cosine": lambda t: (1.0 - math.cos(math.pi * t)) / 2.0,
}
SCHEDULE_UNITS = ("auto", "fraction", "step")


class WeightScheduleError(PreferenceWeightsError):
    """A weight schedule that is malformed: bad positions, units, interpolation, or a bad weight vector."""


@dataclass(frozen=True)
class WeightSchedule:
    """Weight vectors at increasing positions of training, in objective order (see the module docstring)."""

    positions: tuple[float, ...]
    weights: torch.Tensor  # [P, K], each row on the simplex
    unit: str  # 'fraction' | 'step' (resolved from 'auto')
    interpolation: str
    objective_names: tuple[str, ...]
    spec: str  # the schedule as written, for the record

    @property
    def start(self) -> torch.Tensor:
        """The first vector [K]: the weights at the start of training."""
        return self.weights[0]

    def position(self, step: int, max_steps: int | None) -> float:
        """Where global step `step` lies on this schedule's axis (a fraction of max_steps, or the step itself)."""
        if self.unit == "step":
            return float(step)
        if not max_steps or max_steps <= 0:
            if step == 0:
                return 0.0
            raise WeightScheduleError("weights_schedule: positions are fractions of training, but the run's "
                                      "max_steps is unknown; set max_steps or weights_schedule_unit: step")
        return step / max_steps

    def at(self, step: int, max_steps: int | None = None) -> torch.Tensor:
        """The weights [K] in force at global step `step` of a run of `max_steps` steps."""
        return self.at_position(self.position(step, max_steps))

    def at_position(self, position: float) -> torch.Tensor:
        """The weights [K] at a position of the schedule's own axis."""
        positions = self.positions
        if position <= positions[0]:
            return self.weights[0].clone()
        if position >= positions[-1]:
            return self.weights[-1].clone()
        right = next(i for i, p in enumerate(positions) if p > position)
        left = right - 1
        t = (position - positions[left]) / (positions[right] - positions[left])
        share = INTERPOLATIONS[self.interpolation](t)
        return (1.0 - share) * self.weights[left] + share * self.weights[right]

    def named(self, weights: torch.Tensor) -> dict[str, float]:
        """{objective: weight} of a [K] vector, rounded for a record."""
        return {name: round(float(w), 6) for name, w in zip(self.objective_names, weights.tolist())}

    def record(self, step: int, max_steps: int | None) -> dict:
        """What a checkpoint says about the schedule: its spec and points, and the weights in force from `step` on."""
        return {
            "spec": self.spec,
            "unit": self.unit,
            "interpolation": self.interpolation,
            "points": [{"at": p, "weights": self.named(w)} for p, w in zip(self.positions, self.weights)],
            "max_steps": max_steps,
            "step": step,
            "weights_at_step": self.named(self.at(step, max_steps)),
        }


def _points(spec) -> list[tuple[str, object]]:
    """(position text, weights) pairs of a spec string, list of strings, or mapping."""
    if isinstance(spec, Mapping):
        return [(str(position), weights) for position, weights in spec.items()]
    if isinstance(spec, str):
        spec = [part for part in spec.split(";") if part.strip()]
    if not isinstance(spec, Sequence) or not spec:
        raise WeightScheduleError(f"weights_schedule: expected e.g. '0:a=1,b=0;1:a=0,b=1', got {spec!r:.80}")
    points = []
    for part in spec:
        if not isinstance(part, str) or ":" not in part:
            raise WeightScheduleError(f"weights_schedule: point {part!r:.60} is not 'POSITION:WEIGHTS' "
                                      "(e.g. '0.5:a=0.2,b=0.8')")
        position, _, weights = part.partition(":")
        points.append((position.strip(), weights.strip()))
    return points


def _position(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise WeightScheduleError(f"weights_schedule: position {text!r:.40} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise WeightScheduleError(f"weights_schedule: position {text} must be a finite number >= 0")
    return value


def resolve_unit(positions: Sequence[float], unit: str = "auto") -> str:
    """'fraction' or 'step' for these positions, by the module docstring's rule; a mix of the two is refused."""
    if unit not in SCHEDULE_UNITS:
        raise WeightScheduleError(f"weights_schedule_unit: unknown unit '{unit}'; expected one of {SCHEDULE_UNITS}")
    if unit == "auto":
        unit = "fraction" if all(p <= 1.0 for p in positions) else "step"
        if unit == "step" and not all(float(p).is_integer() for p in positions):
            raise WeightScheduleError(
                f"weights_schedule: positions {list(positions)} mix fractions of training (in [0, 1]) with steps "
                "(whole numbers > 1); write all as fractions, or all as steps, or set weights_schedule_unit")
    if unit == "fraction" and any(p > 1.0 for p in positions):
        raise WeightScheduleError(f"weights_schedule: fractions of training must lie in [0, 1], got {list(positions)}")
    if unit == "step" and not all(float(p).is_integer() for p in positions):
        raise WeightScheduleError(f"weights_schedule: steps must be whole numbers, got {list(positions)}")
    return unit


def parse_weight_schedule(spec, objective_names: Sequence[str], unit: str = "auto",
                          interpolation: str = "linear") -> WeightSchedule:
    """A `WeightSchedule` from a spec (see the module docstring); raises `WeightScheduleError` naming what is wrong."""
    if interpolation not in INTERPOLATIONS:
        raise WeightScheduleError(f"weights_schedule_interpolation: unknown interpolation '{interpolation}'; "
                                  f"expected one of {tuple(INTERPOLATIONS)}")
    points = _points(spec)
    positions = [_position(text) for text, _ in points]
    if any(b <= a for a, b in zip(positions, positions[1:])):
        raise WeightScheduleError(f"weights_schedule: positions must increase, got {positions}")
    vectors = []
    for text, weights in points:
        try:
            vectors.append(parse_preference_weights(weights, objective_names))
        except PreferenceWeightsError as error:
            raise WeightScheduleError(f"weights_schedule, point at {text}: {error}") from None
    written = spec if isinstance(spec, str) else ";".join(f"{text}:{weights}" for text, weights in points)
    return WeightSchedule(tuple(positions), torch.stack(vectors), resolve_unit(positions, unit), interpolation,
                          tuple(objective_names), written)


def dirichlet_alpha_at(alpha: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Dirichlet concentration under a schedule: the run's total concentration sum(alpha) spread as the scheduled
    weights, alpha_t = sum(alpha) * w_t, so the distribution's mean is w_t and its spread (total concentration) is
    the configured one. Every w_t must be > 0 (checked when the config is parsed)."""
    return alpha.sum() * weights.to(alpha)


def tilt_weights(row_weights: torch.Tensor, start: torch.Tensor, current: torch.Tensor) -> torch.Tensor:
    """Per-row weights [N, K] (a prompt's orchestrator weights, a row's own weights) under a schedule: each row
    tilted by how far the schedule has moved from its first vector, w_i,t proportional to w_i * w_t / w_0 (entry by
    entry), then renormalized. At the start the rows are unchanged; a row whose tilted weights are all 0 (its weight
    sits only where the schedule has moved to 0) takes w_t. The schedule's first vector must be > 0 everywhere
    (checked when the config is parsed)."""
    tilted = row_weights * (current / start).to(row_weights)
    total = tilted.sum(dim=-1, keepdim=True)
    fallback = current.to(row_weights).expand_as(tilted)
    return torch.where(total > 0, tilted / total.clamp(min=torch.finfo(tilted.dtype).tiny), fallback)
