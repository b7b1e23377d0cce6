"""Named objectives and the reward sources that score them.

An objective is a name plus a source. Sources are either Python reward functions (TRL's signature
`f(prompts, completions, **kwargs) -> list[float]`) or heads of a multi-head reward model. A source may score
several objectives at once: `RewardSource.__call__` returns an [N, K_source] tensor, so a K-head reward model
scores all of its objectives in ONE forward pass.

Objective specs, as written in YAML or on the command line:
- `conciseness`                      a registered reward (`register_reward`; `reward_models.verifiable`
                                     registers the built-in verifiable rewards when `reward_models` is imported)
- `brevity=conciseness`              a built-in reward under another name
- `polite=python:my_pkg.rewards:polite` any importable reward function
- `helpful=rm:helpful`               head `helpful` of the reward model given by `reward_model_name_or_path`

Any spec may end in a gate, `@OBJECTIVE OP THRESHOLD[:floor=FLOOR]` with OP one of >=, >, <=, <, e.g.
`format=format_ok@correct>=1`: the objective's reward counts only where the gate holds (another objective of the same
spec list, compared with the threshold) and is replaced by its floor (default 0.0) elsewhere (`Gate`, applied by
`alignment.objectives.reward_vector.RewardVectorBuilder`). Unknown gate objectives, self-gates and cycles are refused
when the specs are parsed (`parse_gates`).
"""

from __future__ import annotations

import importlib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import torch

# Named reward functions, filled by `register_reward`. The core does not know any reward itself: the built-in
# verifiable rewards live with the reward models (`reward_models.verifiable`) and register on import, so this layer
# depends on nothing above it.
REGISTERED_REWARDS: dict[str, Callable[..., Sequence[float]]] = {}


class ObjectiveSpecError(ValueError):
    """Raised for an objective spec that cannot be resolved to a reward source."""


def register_reward(name: str, function: Callable[..., Sequence[float]]) -> None:
    """Make `function` (TRL's reward signature) available as the objective spec `name`."""
    if not name.isidentifier():
        raise ObjectiveSpecError(f"reward name '{name}' must be an identifier")
    if not callable(function):
        raise ObjectiveSpecError(f"reward '{name}': {function!r} is not callable")
    REGISTERED_REWARDS[name] = function


@runtime_checkable
class RewardSource(Protocol):
    """Anything that scores completions on one or more named objectives in one call."""

    objective_names: list[str]

    def __call__(self, prompts: list, completions: list, **kwargs) -> torch.Tensor:
        """Return an [N, len(objective_names)] float tensor (NaN where a row cannot be scored)."""
        ...


@dataclass
class FunctionSource:
    """One objective scored by a Python reward function with TRL's signature."""

    name: str
    function: Callable[..., Sequence[float]]
    objective_names: list[str] = field(init=False)

    def __post_init__(self):
        self.objective_names = [self.name]

    def __call__(self, prompts, completions, **kwargs) -> torch.Tensor:
        scores = self.function(prompts=prompts, completions=completions, **kwargs)
        if hasattr(scores, "tolist"):  # a torch tensor or numpy array
            scores = scores.tolist()
        if not isinstance(scores, Sequence) or isinstance(scores, str):  # a bare number, None, a generator...
            raise ValueError(f"returned {type(scores).__name__}; expected a list with one reward per completion")
        scores = list(scores)
        if len(scores) != len(completions):
            raise ValueError(f"returned {len(scores)} rewards for {len(completions)} completions")
        try:
            values = [float("nan") if s is None else float(s) for s in scores]
        except (TypeError, ValueError, OverflowError) as error:
            raise ValueError(f"returned a value that is not a number ({error})") from None
        return torch.tensor(values, dtype=torch.float32).unsqueeze(1)


# The comparisons a gate may make, by their operator.
GATE_OPERATORS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    ">=": torch.ge, ">": torch.gt, "<=": torch.le, "<": torch.lt,
}
_GATE = re.compile(r"^\s*(?P<objective>\w+)\s*(?P<op>>=|<=|>|<)\s*(?P<threshold>[^:\s]+)\s*"
                   r"(?::\s*floor\s*=\s*(?P<floor>\S+))?\s*$")


@dataclass(frozen=True)
class Gate:
    """`objective OP threshold`: where it does not hold, the gated objective's reward is replaced by `floor`.

    The floor is a fixed number (default 0.0, the reward of "not rewarded"), not a statistic of the batch: in a
    distributed run each process builds the reward vector of its own rows, and a batch minimum would differ from
    process to process. Pick the floor on the gated reward's own scale, e.g. its minimum (`:floor=-1` for a reward
    in [-1, 1]) so that failing the gate is never better than passing it.
    """

    objective: str
    op: str
    threshold: float
    floor: float = 0.0

    def holds(self, values: torch.Tensor) -> torch.Tensor:
        """Where the gate holds, for the gate objective's rewards `values` [N] (False where NaN)."""
        return GATE_OPERATORS[self.op](values, self.threshold)

    def __str__(self) -> str:
        floor = f":floor={self.floor:g}" if self.floor != 0.0 else ""
        return f"{self.objective}{self.op}{self.threshold:g}{floor}"


@dataclass
class Objective:
    """A named objective: where its reward comes from, an optional lower bound for constrained training, and an
    optional gate on another objective."""

    name: str
    source: str  # human-readable origin, recorded in checkpoints ("builtin:conciseness", "rm:helpful", ...)
    threshold: float | None = None
    gate: Gate | None = None


def _import_function(path: str, name: str) -> Callable:
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise ObjectiveSpecError(f"objective '{name}': 'python:{path}' must look like 'python:package.module:function'")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise ObjectiveSpecError(f"objective '{name}': cannot import '{path}' ({error})") from None
    if not callable(function):
        raise ObjectiveSpecError(f"objective '{name}': '{path}' is not callable")
    return function


def split_objective_spec(spec: str) -> tuple[str, str]:
    """'name=source' -> (name, source); a bare name is its own source
    ('conciseness' -> ('conciseness', 'conciseness')). A gate ('@...') is not part of either."""
    name, _, target = (part.strip() for part in spec.partition("@")[0].partition("="))
    return name, target or name


def _number(text: str, what: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ObjectiveSpecError(f"objective spec '{spec}': the gate's {what} {text!r} is not a finite number")
    return value


def parse_gate(spec: str) -> Gate | None:
    """The gate of one spec ('...@correct>=1' -> Gate('correct', '>=', 1.0)), or None; a malformed gate is refused."""
    _, at, text = spec.partition("@")
    if not at:
        return None
    match = _GATE.match(text)
    if match is None:
        raise ObjectiveSpecError(f"objective spec '{spec}': the gate '{text}' must look like OBJECTIVE OP THRESHOLD "
                                 f"with OP one of {list(GATE_OPERATORS)}, optionally ':floor=VALUE' "
                                 "(e.g. 'format=format_ok@correct>=1')")
    floor = _number(match["floor"], "floor", spec) if match["floor"] is not None else 0.0
    return Gate(match["objective"], match["op"], _number(match["threshold"], "threshold", spec), floor)


def parse_gates(specs: Sequence[str]) -> dict[str, Gate]:
    """{gated objective: its gate} of specs, checked: every gate names another objective of the same list, and
    gates form no cycle. Sources are not resolved (a DPO objective may be a data label)."""
    if isinstance(specs, str):
        specs = [s for s in specs.split(",") if s.strip()]
    names = objective_names_of(specs)
    gates = {}
    for name, spec in zip(names, specs):
        gate = parse_gate(spec)
        if gate is None:
            continue
        if gate.objective == name:
            raise ObjectiveSpecError(f"objective '{name}' is gated on itself ('{spec}'); a gate reads another "
                                     "objective")
        if gate.objective not in names:
            raise ObjectiveSpecError(f"objective '{name}': its gate reads '{gate.objective}', which is not one of "
                                     f"the objectives {names}")
        gates[name] = gate
    gate_order(gates)  # refuses cycles
    return gates


def gate_order(gates: dict[str, Gate]) -> list[str]:
    """The gated objectives in the order their gates are applied: an objective's gate reads the gate objective's
    final (gated) reward, so the gate objective comes first. Raises on a cycle, naming it."""
    order, state = [], {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done" or name not in gates:
            return
        if state.get(name) == "visiting":
            cycle = path[path.index(name):] + [name]
            raise ObjectiveSpecError(f"objective gates form a cycle: {' -> '.join(cycle)} (each gated on the next)")
        state[name] = "visiting"
        visit(gates[name].objective, path + [name])
        state[name] = "done"
        order.append(name)

    for name in gates:
        visit(name, [])
    return order


def objective_names_of(specs: Sequence[str]) -> list[str]:
    """The objective names of specs, in order, without resolving their sources (a DPO objective may have none)."""
    return [split_objective_spec(spec)[0] for spec in specs]


def reward_model_heads_or_names(specs: Sequence[str]) -> list[str]:
    """What each objective is called outside the trainer: the head a 'name=rm:HEAD' spec reads, else its name
    (a Preference Orchestrator trained on reward-model heads names its outputs by head)."""
    labels = []
    for spec in specs:
        name, target = split_objective_spec(spec)
        labels.append((target[3:] or name) if target.startswith("rm:") else name)
    return labels


def parse_objective_specs(specs: Sequence[str]) -> tuple[list[Objective], list[FunctionSource], dict[str, str]]:
    """Resolve specs into objectives, the function sources, and {objective: reward-model head label}.

    The reward-model heads are returned separately so the caller loads the model once and scores all heads in
    one forward pass (see `reward_models` for the model itself).
    """
    if isinstance(specs, str):
        specs = [s for s in specs.split(",") if s.strip()]
    if not specs:
        raise ObjectiveSpecError("no objectives given; e.g. objectives: [conciseness, sentiment]")
    objectives, function_sources, reward_model_heads = [], [], {}
    for spec in specs:
        if not isinstance(spec, str) or not spec.strip():
            raise ObjectiveSpecError(f"objective spec {spec!r} is not a non-empty string")
        name, target = split_objective_spec(spec)
        if not name.isidentifier():
            raise ObjectiveSpecError(f"objective name '{name}' (from spec '{spec}') must be an identifier")
        if name in (o.name for o in objectives):
            raise ObjectiveSpecError(f"objective '{name}' is defined twice")
        gate = parse_gate(spec)
        if target.startswith("rm:"):
            reward_model_heads[name] = target[3:] or name
            objectives.append(Objective(name, f"reward_model_head:{reward_model_heads[name]}", gate=gate))
        elif target.startswith("python:"):
            function_sources.append(FunctionSource(name, _import_function(target[7:], name)))
            objectives.append(Objective(name, target, gate=gate))
        elif target in REGISTERED_REWARDS:
            function_sources.append(FunctionSource(name, REGISTERED_REWARDS[target]))
            objectives.append(Objective(name, f"builtin:{target}", gate=gate))
        else:
            raise ObjectiveSpecError(
                f"objective '{name}': unknown source '{target}'; use a registered reward {sorted(REGISTERED_REWARDS)} "
                "(`import reward_models` registers the built-in ones), 'python:module:function' or 'rm:HEAD'"
            )
    parse_gates(specs)  # gates name objectives of this list, no cycle
    return objectives, function_sources, reward_model_heads


def objectives_to_dict(objectives: Sequence[Objective]) -> list[dict[str, Any]]:
    """The record's objectives table: name, source, threshold, and the gate of a gated objective."""
    return [{"name": o.name, "source": o.source, "threshold": o.threshold, **({"gate": str(o.gate)} if o.gate else {})}
            for o in objectives]
