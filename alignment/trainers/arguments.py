"""Field groups shared by the trainer configs (TRL's mixin pattern): one place for one idea.

- `PreferenceWeightsArguments`: which preference weights a run trains under (fixed, sampled per prompt from a
  Dirichlet, or inferred per prompt by a Preference Orchestrator), how they move during training (a weight schedule,
  `alignment.objectives.schedules`), and how the policy is shown them (`conditioning`). It gives the one
  objective-name parser, the one weight-vector builder, the one schedule parser and the one Dirichlet-alpha parser
  that GRPO and the DPO family use.
- `PreferenceAdapterArguments`: the Panacea-style preference adapter's settings (`alignment.models.preference_adapter`).

A config inherits both and calls `check_preference_weights()` from its `__post_init__`, so bad weights stop a run
when the config is parsed, before any data or model loads.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch

from alignment.models.packaged import model_display_name
from alignment.models.preference_adapter import ADAPTER_SUBFOLDER, DEFAULT_TARGET_MODULES
from alignment.objectives.schedules import INTERPOLATIONS, SCHEDULE_UNITS, WeightSchedule, parse_weight_schedule
from alignment.objectives.sources import objective_names_of, parse_gates, reward_model_heads_or_names
from alignment.objectives.weights import PreferenceWeightsError, parse_dirichlet_alpha, parse_preference_weights
from alignment.orchestrator import check_orchestrator_objectives

WEIGHTS_MODES = ("fixed", "dirichlet", "prompt_aware")
# How a policy sees each prompt's weights: as text in the prompt, as numbers in a preference adapter, or both.
CONDITIONING = ("none", "prompt", "adapter", "both")


@dataclass
class PreferenceWeightsArguments:
    """Preference weights: `preference_weights`, `weights_mode`, `dirichlet_alpha`, `orchestrator_name_or_path`, and a
    schedule that moves them during training: `weights_schedule`, `weights_schedule_interpolation`,
    `weights_schedule_unit`.

    The config that inherits this defines `objectives` (a list of objective specs) and `conditioning`.
    """

    preference_weights: str | None = field(
        default=None,
        metadata={"help": "Fixed weights over `objectives`, e.g. 'conciseness=0.7,sentiment=0.3' (normalized). "
                          "Default: equal weights. Unused by weights_mode 'dirichlet' and 'prompt_aware' (a warning "
                          "says so), and by the methods that take no weights (their config says which)."},
    )
    weights_mode: str = field(
        default="fixed",
        metadata={"help": "'fixed': preference_weights for every prompt; 'dirichlet': weights sampled per prompt "
                          "from Dirichlet(dirichlet_alpha), for a preference-conditioned, steerable checkpoint; "
                          "'prompt_aware': each prompt's weights inferred by a Preference Orchestrator (PRO, "
                          "recipes/orchestrator.py, orchestrator_name_or_path)."},
    )
    dirichlet_alpha: str = field(
        default="1.0",
        metadata={"help": "Dirichlet concentration: one number for all objectives, or 'name=a,name=b'. "
                          "1.0 is uniform on the simplex; smaller values favour corners."},
    )
    orchestrator_name_or_path: str | None = field(
        default=None,
        metadata={"help": "prompt_aware mode: a Preference Orchestrator checkpoint (recipes/orchestrator.py) whose "
                          "objectives are these objectives (for a 'name=rm:HEAD' objective: the head it reads)."},
    )

    weights_schedule: str | None = field(
        default=None,
        metadata={"help": "Weights that move during training: 'POSITION:WEIGHTS;POSITION:WEIGHTS;...', e.g. "
                          "'0:conciseness=1,sentiment=0;0.5:conciseness=0.2,sentiment=0.8'. Each vector is checked "
                          "like preference_weights; between points the weights are interpolated, before the first "
                          "and after the last they hold. Positions are fractions of max_steps or global steps (see "
                          "weights_schedule_unit). Replaces preference_weights (fixed mode); moves the Dirichlet "
                          "mean (alpha_t = sum(dirichlet_alpha) * w_t) or tilts each prompt's orchestrator weights "
                          "(w_prompt * w_t / w_first, renormalized). Logged per step as weights/<objective>, recorded "
                          "in objectives.json; a pure function of the global step, so a resumed run continues it "
                          "exactly. Unset: no schedule."},
    )
    weights_schedule_interpolation: str = field(
        default="linear",
        metadata={"help": f"weights_schedule: how weights move between two points, one of {tuple(INTERPOLATIONS)} "
                          "('cosine' eases in and out: share (1 - cos(pi t)) / 2 of the next point at t of the way)."},
    )
    weights_schedule_unit: str = field(
        default="auto",
        metadata={"help": f"weights_schedule: what positions count, one of {SCHEDULE_UNITS}. 'fraction': of "
                          "max_steps (0 start, 1 end); 'step': global optimizer steps; 'auto': fractions when every "
                          "position is in [0, 1], else steps (then all must be whole numbers; a mix is refused)."},
    )

    @property
    def objective_names(self) -> list[str]:
        """The objective names, in weight order."""
        return objective_names_of(self.objectives)

    @property
    def orchestrator_objective_names(self) -> list[str]:
        """What the orchestrator calls each objective: the head an 'rm:HEAD' objective reads, else its name."""
        return reward_model_heads_or_names(self.objectives)

    @property
    def uses_preference_adapter(self) -> bool:
        """Whether the weights enter the policy as numbers, through a preference adapter."""
        return self.conditioning in ("adapter", "both")

    def fixed_weight_vector(self) -> torch.Tensor:
        """`preference_weights` on the simplex, in objective order (equal weights when unset)."""
        names = self.objective_names
        return parse_preference_weights(self.preference_weights or [1.0] * len(names), names)

    def weight_schedule(self) -> WeightSchedule | None:
        """`weights_schedule` parsed over the objectives (None when unset)."""
        if not self.weights_schedule:
            return None
        return parse_weight_schedule(self.weights_schedule, self.objective_names, self.weights_schedule_unit,
                                     self.weights_schedule_interpolation)

    def dirichlet_alpha_vector(self) -> torch.Tensor:
        """`dirichlet_alpha` as one concentration per objective."""
        return parse_dirichlet_alpha(_number_or_text(self.dirichlet_alpha), self.objective_names)

    def weight_distribution_record(self) -> dict | None:
        """What a checkpoint's record says about per-prompt weights (None for fixed weights)."""
        if self.weights_mode == "dirichlet":
            alpha = self.dirichlet_alpha_vector().tolist()
            return {"type": "dirichlet", "alpha": {n: round(a, 6) for n, a in zip(self.objective_names, alpha)}}
        if self.weights_mode == "prompt_aware":
            return {"type": "prompt_aware", "orchestrator": model_display_name(self.orchestrator_name_or_path)}
        return None

    def check_preference_weights(self) -> None:
        """The weights settings, checked when the config is parsed (the orchestrator by its config.json only)."""
        if self.weights_mode not in WEIGHTS_MODES:
            raise ValueError(f"weights_mode must be one of {WEIGHTS_MODES}, got '{self.weights_mode}'")
        if self.conditioning not in CONDITIONING:
            raise ValueError(f"conditioning must be one of {CONDITIONING}, got '{self.conditioning}'")
        if self.weights_mode == "prompt_aware":
            if not self.orchestrator_name_or_path:
                raise ValueError("weights_mode 'prompt_aware' needs orchestrator_name_or_path (a checkpoint of "
                                 "recipes/orchestrator.py)")
            check_orchestrator_objectives(self.orchestrator_name_or_path, self.orchestrator_objective_names)
        if self.weights_mode == "dirichlet":
            self.dirichlet_alpha_vector()
        if self.preference_weights and self.weights_mode != "fixed":
            warnings.warn(f"preference_weights are ignored with weights_mode '{self.weights_mode}': each prompt's "
                          "weights are sampled or inferred", UserWarning, stacklevel=3)
        self.fixed_weight_vector()
        self._check_weight_schedule()
        parse_gates(self.objectives)  # gate syntax, unknown gate objectives, self-gates and cycles

    def _check_weight_schedule(self) -> None:
        """The schedule parses, and fits the weights mode: Dirichlet needs every scheduled weight > 0 (alpha_t =
        sum(alpha) * w_t), prompt-aware needs the first vector > 0 (each prompt is tilted by w_t / w_first)."""
        schedule = self.weight_schedule()
        if schedule is None:
            return
        if self.preference_weights and self.weights_mode == "fixed":
            warnings.warn("preference_weights are ignored: weights_schedule sets the weights at every step",
                          UserWarning, stacklevel=4)
        positive = {"dirichlet": (schedule.weights, "every point's weights", "alpha_t = sum(dirichlet_alpha) * w_t"),
                    "prompt_aware": (schedule.start, "the first point's weights",
                                     "each prompt's weights are tilted by w_t / w_first")}.get(self.weights_mode)
        if positive is not None and not (positive[0] > 0).all():
            raise PreferenceWeightsError(f"weights_schedule with weights_mode '{self.weights_mode}': {positive[1]} "
                                         f"must all be > 0 ({positive[2]}); got {self.weights_schedule!r}")

    def schedule_record(self, step: int, max_steps: int | None) -> dict | None:
        """What a checkpoint's record says about the schedule at `step` (None without one)."""
        schedule = self.weight_schedule()
        return schedule.record(step, max_steps) if schedule is not None else None


@dataclass
class PreferenceAdapterArguments:
    """The preference adapter's settings, shared by the trainer configs that can train one (GRPO, the DPO family)."""

    preference_adapter_rank: int = field(
        default=4, metadata={"help": "Preference adapter: learnable singular values r per layer (rank r + K)."}
    )
    preference_adapter_target_modules: list[str] = field(
        default_factory=lambda: list(DEFAULT_TARGET_MODULES),
        metadata={"help": "Preference adapter: names of the linear layers it wraps (default: attention and MLP "
                          "projections)."},
    )
    preference_adapter_alpha: float | None = field(
        default=None, metadata={"help": "Preference adapter: LoRA alpha (scaling alpha / (r + K)); default r + K."}
    )
    preference_adapter_lambda_scale: float = field(
        default=16.0, metadata={"help": "Preference adapter: the weights enter as lambda_scale * s * lambda_k."}
    )

    def check_preference_adapter(self) -> None:
        """The adapter's settings, checked when the config is parsed (only when the run uses the adapter)."""
        if isinstance(self.preference_adapter_target_modules, str):  # 'q_proj,v_proj' from the command line
            self.preference_adapter_target_modules = [
                name.strip() for name in self.preference_adapter_target_modules.split(",")]
        if self.uses_preference_adapter and self.preference_adapter_rank < 1:
            raise ValueError(f"preference_adapter_rank must be >= 1, got {self.preference_adapter_rank}")

    def preference_adapter_record(self, base_trained: bool) -> dict:
        """What a checkpoint's record says about its adapter (where it is saved, its shape)."""
        return {"path": ADAPTER_SUBFOLDER, "rank": self.preference_adapter_rank,
                "target_modules": list(self.preference_adapter_target_modules),
                "lambda_scale": self.preference_adapter_lambda_scale, "base_trained": base_trained}


def _number_or_text(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return value
