"""Advantage estimators: how one batch's [N, K] reward vector becomes the [N] advantages that GRPO trains on.

An estimator is a component, picked by name from `ADVANTAGE_ESTIMATORS`. The trainer config's `scalarization`
setting selects it (`estimator_class`): one of the true scalarizations (`SCALARIZATIONS`: linear, tchebycheff,
worst_case) selects `weighted`, and `lagrangian` and `pama` select estimators of their own. Besides the advantages,
an estimator owns what its method needs beyond one batch: its state (the Lagrangian multiplier), how that state
moves (`update`), is saved and loaded (`state_dict` / `load_state_dict`), the checks of its config fields
(`check_config`), the metrics it logs (`metrics`) and what it adds to a checkpoint's record (`record`,
`uses_weights`).

- `weighted` (`WeightedEstimator`): the preference weights combine the objectives through a scalarization of
  `alignment.objectives.scalarize`, before or after group normalization (the aggregation); `linear` reproduces
  TRL's GRPOTrainer.
- `lagrangian` (`LagrangianEstimator`, Safe-RLHF): A = (A_main + lambda A_c) / (1 + lambda) on per-objective
  advantages, lambda learned so that the constraint objective's batch mean stays above its threshold; the
  preference weights are not used.
- `pama` (`PamaEstimator`, PAMA, He & Maghsudi 2025): per completion, the closed-form min-norm combination of its
  Noon-clipped per-objective advantages, each measured in units of its preference weight.

The maths are the pure functions of `alignment.objectives.scalarize`; `compute_advantages` is the functional form
of every estimator. Settings that shape every estimator's batch statistics alike (TRL's `multi_objective_aggregation`
and `scale_rewards`, and `partial_rewards`) come with each call, so a trainer always uses its config's current
values. Like the rest of the multi-objective core this module needs torch only; a config is read by its attributes.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import torch

from alignment.objectives.scalarize import (
    AGGREGATIONS,
    PARTIAL_REWARDS,
    SCALARIZATIONS,
    SCALE_REWARDS,
    broadcast_weights,
    drop_partial_rows,
    group_normalize,
    lagrangian_advantages,
    pama_advantages,
    pama_step_weights,
    update_log_lagrange_multiplier,
)


class AdvantageEstimator:
    """Turns a batch's reward vector (and each row's preference weights) into one advantage per completion.

    Subclasses implement `_combine` (the advantages of the rows left after `partial_rewards`); stateful ones also
    override `update`, `state_dict` and `load_state_dict`. Rows with no reward left get advantage 0.
    """

    name: ClassVar[str]
    uses_weights: ClassVar[bool] = True  # whether the preference weights enter the advantages (recorded)
    needs_complete_rows: ClassVar[bool] = False  # whether it refuses partial_rewards 'sum_present'
    record_key: ClassVar[str | None] = None  # the record entry this estimator fills (None in other records)
    # Whether `multi_objective_aggregation` shapes its advantages (PAMA and the Lagrangian normalize each objective
    # in its group whatever the aggregation): a setting it ignores is warned about, and the record leaves it out.
    uses_aggregation: ClassVar[bool] = True

    def __init__(self, objective_names: Sequence[str] = ()):
        self.objective_names = list(objective_names)

    # ---- construction and config checks ----
    @classmethod
    def from_config(cls, config: Any, objective_names: Sequence[str]) -> AdvantageEstimator:
        """Built from a trainer config (read by its attributes) for these objectives, in reward-vector order."""
        return cls(objective_names)

    @classmethod
    def from_arguments(cls, scalarization: str,
                       lagrangian: tuple[int, int, float] | None = None) -> AdvantageEstimator:
        """Built from `compute_advantages`' plain arguments (no config, no objective names)."""
        return cls()

    @classmethod
    def check_config(cls, config: Any, objective_names: Sequence[str]) -> None:
        """This estimator's config fields, checked when the config is parsed (before any model loads)."""
        if not cls.uses_aggregation and config.multi_objective_aggregation != "sum_then_normalize":
            # A warning, not an error: a fixed-weight recipe's YAML sets an aggregation, and `--scalarization pama`
            # on top of it is a documented command. The record leaves the aggregation out.
            warnings.warn(f"multi_objective_aggregation '{config.multi_objective_aggregation}' has no effect with "
                          f"scalarization '{config.scalarization}', which normalizes each objective within its group "
                          "itself (scale_rewards); the record does not list it", UserWarning, stacklevel=3)
        if cls.needs_complete_rows and config.partial_rewards == "sum_present":
            raise ValueError(f"partial_rewards 'sum_present' does not fit scalarization '{config.scalarization}', "
                             "which needs every objective of a completion; use 'drop_row'")

    # ---- the advantages ----
    def advantages(self, reward_vector: torch.Tensor, weights: torch.Tensor, group_size: int, *,
                   aggregation: str = "sum_then_normalize", scale_rewards: str = "group",
                   partial_rewards: str = "drop_row") -> torch.Tensor:
        """[N, K] rewards (NaN: missing) and [N, K] or [K] weights -> [N] advantages, G = `group_size` consecutive
        rows per prompt. Reads the estimator's state and leaves it as it is (`update` moves it)."""
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"compute_advantages: unknown aggregation '{aggregation}'; expected one of "
                             f"{tuple(AGGREGATIONS)}")
        if scale_rewards not in SCALE_REWARDS:
            raise ValueError(f"compute_advantages: unknown scale_rewards {scale_rewards!r}; "
                             f"expected one of {SCALE_REWARDS}")
        if partial_rewards not in PARTIAL_REWARDS:
            raise ValueError(f"compute_advantages: unknown partial_rewards {partial_rewards!r}; "
                             f"expected one of {PARTIAL_REWARDS}")
        rewards = drop_partial_rows(reward_vector) if partial_rewards == "drop_row" else reward_vector
        scorable = ~torch.isnan(rewards).all(dim=1)
        if self.needs_complete_rows and partial_rewards != "drop_row":
            raise ValueError(f"compute_advantages: scalarization '{self.name}' needs every objective of a row; "
                             "use partial_rewards='drop_row'")
        advantages = self._combine(rewards, weights, group_size, aggregation, scale_rewards)
        return torch.nan_to_num(advantages.masked_fill(~scorable, 0.0), nan=0.0)

    def _combine(self, rewards: torch.Tensor, weights: torch.Tensor, group_size: int, aggregation: str,
                 scale_rewards: str) -> torch.Tensor:
        """The [N] advantages of `rewards` (partial rows already dropped); rows with no reward left are zeroed after."""
        raise NotImplementedError

    # ---- state, metrics and record ----
    def update(self, reward_vector: torch.Tensor) -> None:
        """Move the state after a training batch (the batch's full [N, K] reward vector); stateless by default."""

    def metrics(self, reward_vector: torch.Tensor, weights: torch.Tensor, group_size: int, *,
                scale_rewards: str = "group") -> dict[str, float]:
        """What to log for this batch ({name: value}), computed before `update`."""
        return {}

    def state_dict(self) -> dict:
        """The state a resumed run needs (JSON-able)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Take back the state of `state_dict`. Stateless estimators ignore what they are given: a checkpoint of a
        run before this refactor holds the Lagrangian multiplier whatever the scalarization was."""

    def record(self) -> dict:
        """What this estimator adds to a checkpoint's record. Every record carries every estimator's entry (None
        unless that estimator trained it), so a record's keys do not depend on the method."""
        return {estimator.record_key: None for estimator in ADVANTAGE_ESTIMATORS.values() if estimator.record_key}

    def mark_objectives(self, objectives: Sequence[Any]) -> None:
        """Write this estimator's per-objective settings onto the objectives (`alignment.objectives.sources.Objective`)
        that the record lists; nothing by default."""


class WeightedEstimator(AdvantageEstimator):
    """The preference weights combine the objectives through a scalarization (linear, tchebycheff, worst_case).

    The aggregation (`alignment.objectives.scalarize.AGGREGATIONS`) says where the scalarization sits:
    `sum_then_normalize` (TRL's default): scalarize the rewards, then normalize within each group (`scale_rewards`).
    `normalize_then_sum` (GDPO): z-score each objective within its group (always, as TRL does), scalarize, then
    whiten over the batch. `rdpo`: quantile-normalize each objective within its group, whiten the objectives against
    each other, scalarize, whiten over the batch. `variance_weighted` (MO-GRPO): divide each objective by its group
    std, scalarize under K * weights, no batch whitening.
    """

    name = "weighted"

    def __init__(self, scalarization: str = "linear", objective_names: Sequence[str] = ()):
        super().__init__(objective_names)
        self.scalarization = scalarization

    @classmethod
    def from_config(cls, config: Any, objective_names: Sequence[str]) -> WeightedEstimator:
        return cls(config.scalarization, objective_names)

    @classmethod
    def from_arguments(cls, scalarization: str,
                       lagrangian: tuple[int, int, float] | None = None) -> WeightedEstimator:
        return cls(scalarization)

    def _combine(self, rewards, weights, group_size, aggregation, scale_rewards):
        return AGGREGATIONS[aggregation](rewards, weights, self.scalarization, group_size, scale_rewards)


class LagrangianEstimator(AdvantageEstimator):
    """Safe-RLHF: maximize the main objective subject to E[r_constraint] >= threshold, with a learned multiplier.

    Advantages: (A_main + lambda A_c) / (1 + lambda) on per-objective advantages (group-normalized with
    `scale_rewards`, whatever the aggregation). After every training batch, one step on log(lambda) with the
    batch's constraint mean (`update_log_lagrange_multiplier`); lambda is the state saved with a checkpoint.
    The preference weights are not used.
    """

    name = "lagrangian"
    uses_weights = False
    needs_complete_rows = True
    record_key = "lagrangian"
    uses_aggregation = False

    def __init__(self, main_column: int, constraint_column: int, *, multiplier: float = 1.0, threshold: float = 0.0,
                 learning_rate: float = 0.05, max_multiplier: float = 100.0, objective_names: Sequence[str] = ()):
        super().__init__(objective_names)
        self.main_column, self.constraint_column = main_column, constraint_column
        self.threshold, self.learning_rate, self.max_multiplier = threshold, learning_rate, max_multiplier
        self.log_multiplier = math.log(multiplier)  # the state: lambda is kept > 0 by its log

    @property
    def multiplier(self) -> float:
        """The current lambda."""
        return math.exp(self.log_multiplier)

    @classmethod
    def from_config(cls, config: Any, objective_names: Sequence[str]) -> LagrangianEstimator:
        names = list(objective_names)
        return cls(names.index(config.main_objective), names.index(config.constraint_objective),
                   multiplier=config.lagrange_init, threshold=config.constraint_threshold,
                   learning_rate=config.lagrange_learning_rate, max_multiplier=config.lagrange_max,
                   objective_names=names)

    @classmethod
    def from_arguments(cls, scalarization: str,
                       lagrangian: tuple[int, int, float] | None = None) -> LagrangianEstimator:
        if lagrangian is None:
            raise ValueError("compute_advantages: 'lagrangian' needs (main index, constraint index, lambda)")
        main, constraint, multiplier = lagrangian
        return cls(main, constraint, multiplier=multiplier)

    @classmethod
    def check_config(cls, config: Any, objective_names: Sequence[str]) -> None:
        """main_objective and constraint_objective set and among the objectives, lambda's bounds > 0; set
        preference_weights are warned about (they are not used)."""
        super().check_config(config, objective_names)
        if config.preference_weights:
            warnings.warn("preference_weights are ignored by scalarization 'lagrangian': it maximizes main_objective "
                          "subject to constraint_objective >= constraint_threshold", UserWarning, stacklevel=3)
        fields = ("main_objective", "constraint_objective")
        missing = [field for field in fields if getattr(config, field) is None]
        if missing:
            raise ValueError(f"scalarization 'lagrangian' needs {missing}")
        if config.lagrange_init <= 0 or config.lagrange_max <= 0:
            raise ValueError("lagrange_init and lagrange_max must be > 0")
        for field in fields:
            if getattr(config, field) not in objective_names:
                raise ValueError(f"{field} '{getattr(config, field)}' is not one of the objectives "
                                 f"{list(objective_names)}")

    def _combine(self, rewards, weights, group_size, aggregation, scale_rewards):
        per_objective = group_normalize(rewards, group_size, scale=scale_rewards)
        return lagrangian_advantages(per_objective[:, self.main_column], per_objective[:, self.constraint_column],
                                     self.multiplier)

    def update(self, reward_vector: torch.Tensor) -> None:
        """One step on log(lambda): lambda grows while the batch's constraint mean is below the threshold."""
        constraint_mean = torch.nanmean(reward_vector[:, self.constraint_column]).item()
        if math.isfinite(constraint_mean):
            self.log_multiplier = update_log_lagrange_multiplier(self.log_multiplier, constraint_mean, self.threshold,
                                                                 self.learning_rate, self.max_multiplier)

    def metrics(self, reward_vector, weights, group_size, *, scale_rewards="group"):
        """`lagrange/lambda`: the multiplier this batch's advantages used, before the batch's update."""
        return {"lagrange/lambda": self.multiplier}

    def state_dict(self) -> dict:
        """{'log_lagrange_multiplier': log(lambda)}: the format checkpoints have always used."""
        return {"log_lagrange_multiplier": self.log_multiplier}

    def load_state_dict(self, state: dict) -> None:
        """A state without a multiplier (a checkpoint of another estimator's run) leaves lambda where it is."""
        self.log_multiplier = state.get("log_lagrange_multiplier", self.log_multiplier)

    def record(self) -> dict:
        """The `lagrangian` entry: the objectives, the threshold and the final lambda (the model card shows them)."""
        return {**super().record(), self.record_key: {
            "main_objective": self.objective_names[self.main_column],
            "constraint_objective": self.objective_names[self.constraint_column],
            "constraint_threshold": self.threshold, "final_lambda": self.multiplier,
        }}

    def mark_objectives(self, objectives: Sequence[Any]) -> None:
        """The constraint objective carries its threshold (the record's objectives table shows it)."""
        objectives[self.constraint_column].threshold = self.threshold


class PamaEstimator(AdvantageEstimator):
    """PAMA: each completion's advantage is the min-norm combination of its Noon-clipped per-objective advantages
    (group-normalized with `scale_rewards`, whatever the aggregation), each in units of its preference weight
    (`alignment.objectives.scalarize.pama_advantages`). Logs `pama/weight/<objective>`: the closed form's weights,
    averaged over the batch's completions."""

    name = "pama"
    needs_complete_rows = True
    uses_aggregation = False

    def _combine(self, rewards, weights, group_size, aggregation, scale_rewards):
        per_objective = group_normalize(rewards, group_size, scale=scale_rewards)
        advantages, _ = pama_advantages(per_objective, broadcast_weights(weights, rewards))
        return advantages

    def metrics(self, reward_vector, weights, group_size, *, scale_rewards="group"):
        """`pama/weight/<objective>`: what PAMA's closed form weighted, averaged over the batch's completions."""
        step_weights = pama_step_weights(reward_vector, weights, group_size, scale_rewards)
        return {f"pama/weight/{name}": value for name, value in zip(self.objective_names, step_weights.tolist())}


ADVANTAGE_ESTIMATORS: dict[str, type[AdvantageEstimator]] = {
    "weighted": WeightedEstimator,
    "lagrangian": LagrangianEstimator,
    "pama": PamaEstimator,
}
# What a config's `scalarization` may say: a scalarization (the weighted estimator), or another estimator's name.
SCALARIZATION_CHOICES = SCALARIZATIONS + tuple(
    name for name, estimator in ADVANTAGE_ESTIMATORS.items() if estimator is not WeightedEstimator)


def estimator_class(scalarization: str) -> type[AdvantageEstimator]:
    """The estimator a `scalarization` setting selects: the one registered under that name, else `weighted`, which
    hands the name on to `scalarize` (where an unknown scalarization is refused)."""
    return ADVANTAGE_ESTIMATORS.get(scalarization, WeightedEstimator)


def compute_advantages(
    reward_vector: torch.Tensor,
    weights: torch.Tensor,
    group_size: int,
    aggregation: str = "sum_then_normalize",
    scalarization: str = "linear",
    scale_rewards: str = "group",
    lagrangian: tuple[int, int, float] | None = None,
    partial_rewards: str = "drop_row",
) -> torch.Tensor:
    """[N, K] reward vector -> [N] advantages, by the estimator `scalarization` selects (see the module docstring).
    `lagrangian` = (main column, constraint column, lambda), for scalarization 'lagrangian'.

    `scale_rewards` is TRL's: group | batch | none (`alignment.objectives.scalarize` says where it applies). Rows
    with no reward left get advantage 0 and are left out of the statistics.
    """
    estimator = estimator_class(scalarization).from_arguments(scalarization, lagrangian)
    return estimator.advantages(reward_vector, weights, group_size, aggregation=aggregation,
                                scale_rewards=scale_rewards, partial_rewards=partial_rewards)


def objective_advantages(reward_vector: torch.Tensor, group_size: int, scale_rewards: str = "group") -> torch.Tensor:
    """[N, K] each objective's own advantage, normalized within its group (`scale_rewards`): what MGDA takes one
    gradient of per objective. A row with any reward missing is dropped (0 in every column)."""
    valid = ~torch.isnan(reward_vector).any(dim=1, keepdim=True)
    per_objective = group_normalize(drop_partial_rows(reward_vector), group_size, scale=scale_rewards)
    return torch.nan_to_num(per_objective.masked_fill(~valid, 0.0), nan=0.0)
