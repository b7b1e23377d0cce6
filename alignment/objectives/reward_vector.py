"""The reward vector: every reward source run once on a batch, giving an [N, K] tensor in objective order, with the
objectives' gates applied (`alignment.objectives.sources.Gate`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from alignment.objectives.sources import Gate, Objective, RewardSource, gate_order


class RewardFunctionError(RuntimeError):
    """A reward source raised, returned the wrong shape, or returned NaN/inf/None; the message names the objective."""


class RewardVectorBuilder:
    """Runs each source once and assembles the [N, K] reward vector.

    `on_invalid="raise"` (default) stops on any NaN/inf/None reward with the objective's name, the row and the step.
    `on_invalid="drop"` leaves such a reward out instead: it becomes NaN (a missing reward), and the scalarization
    decides what the row is worth (`alignment.objectives.scalarize`, `partial_rewards`: drop the whole row, or sum the
    objectives present). A source that raises or returns the wrong number of rewards always stops: that is a bug
    in the reward function, not a bad completion.

    `gates` {gated objective: Gate}: after scoring, a gated objective's reward is kept where its gate holds on the
    gate objective's reward and replaced by the gate's floor elsewhere; where either reward is missing (NaN) the gated
    reward is missing too (whether the gate holds is unknown). Gates are applied in dependency order, each reading the
    gate objective's gated reward. Every trainer that reads objectives builds its rewards here (GRPO's reward vector,
    the DPO family's MODPO margins and per-objective labels), so a gate means the same everywhere.
    """

    def __init__(self, objective_names: Sequence[str], sources: Sequence[RewardSource], on_invalid: str = "raise",
                 gates: Mapping[str, Gate] | None = None):
        if on_invalid not in ("raise", "drop"):
            raise ValueError(f"on_invalid must be 'raise' or 'drop', got {on_invalid!r}")
        self.objective_names = list(objective_names)
        self.sources = list(sources)
        self.on_invalid = on_invalid
        provided = [name for source in self.sources for name in source.objective_names]
        missing = [name for name in self.objective_names if name not in provided]
        duplicated = sorted({name for name in provided if provided.count(name) > 1})
        if missing:
            raise ValueError(f"reward vector: no reward source provides objective(s) {missing}; sources provide "
                             f"{provided}")
        if duplicated:
            raise ValueError(f"reward vector: objective(s) {duplicated} are provided by more than one source")
        self._columns = [[self.objective_names.index(name) for name in source.objective_names]
                         for source in self.sources]
        self.gates = dict(gates or {})
        for name, gate in self.gates.items():
            for role, objective in (("gated", name), ("gate", gate.objective)):
                if objective not in self.objective_names:
                    raise ValueError(f"reward vector: the gate '{name}@{gate}' needs the {role} objective "
                                     f"'{objective}' in the reward vector, which scores {self.objective_names}")
        self._gate_order = gate_order(self.gates)

    @classmethod
    def from_objectives(cls, objectives: Sequence[Objective], sources: Sequence[RewardSource],
                        on_invalid: str = "raise") -> RewardVectorBuilder:
        """A builder for parsed objectives (`parse_objective_specs`), their gates included."""
        return cls([o.name for o in objectives], sources, on_invalid=on_invalid,
                   gates={o.name: o.gate for o in objectives if o.gate is not None})

    def apply_gates(self, reward_vector: torch.Tensor) -> torch.Tensor:
        """The reward vector [N, K] with every gate applied (see the class docstring); a new tensor."""
        gated = reward_vector.clone()
        for name in self._gate_order:
            gate = self.gates[name]
            column, gate_column = self.objective_names.index(name), self.objective_names.index(gate.objective)
            values, gate_values = gated[:, column], gated[:, gate_column]
            kept = torch.where(gate.holds(gate_values), values, torch.full_like(values, gate.floor))
            gated[:, column] = kept.masked_fill(torch.isnan(values) | torch.isnan(gate_values), math.nan)
        return gated

    def __call__(self, prompts: list, completions: list, step: int | None = None,
                 **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (reward_vector [N, K] with NaN where a reward is missing, incomplete [N] bool: rows missing one)."""
        where = f" at step {step}" if step is not None else ""
        num_rows = len(completions)
        reward_vector = torch.full((num_rows, len(self.objective_names)), math.nan)
        for source, columns in zip(self.sources, self._columns):
            label = ", ".join(f"'{n}'" for n in source.objective_names)
            try:
                scores = source(prompts, completions, **kwargs)
            except RewardFunctionError:
                raise
            except Exception as error:
                raise RewardFunctionError(
                    f"reward for objective {label} failed{where}: {type(error).__name__}: {error}"
                ) from error
            scores = torch.as_tensor(scores, dtype=torch.float32).cpu()
            if scores.dim() == 1 and len(columns) == 1:
                scores = scores.unsqueeze(1)
            if scores.shape != (num_rows, len(columns)):
                raise RewardFunctionError(
                    f"reward for objective {label} returned shape {tuple(scores.shape)}{where}; "
                    f"expected ({num_rows}, {len(columns)}): one score per completion and objective"
                )
            reward_vector[:, columns] = scores

        invalid = ~torch.isfinite(reward_vector)
        if invalid.any() and self.on_invalid == "raise":
            row, column = invalid.nonzero()[0].tolist()
            raise RewardFunctionError(
                f"reward for objective '{self.objective_names[column]}' is {reward_vector[row, column].item()} "
                f"for completion {row}{where} ({int(invalid.any(dim=1).sum())} of {num_rows} rows affected); "
                "fix the reward function, or set drop_invalid_rewards=true to drop such rows"
            )
        reward_vector[invalid] = math.nan
        return self.apply_gates(reward_vector), invalid.any(dim=1)
