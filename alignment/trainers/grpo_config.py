"""`MultiObjectiveGRPOConfig`: the settings of multi-objective GRPO (`alignment.trainers.grpo`), checked on parsing."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import GRPOConfig

from alignment.models.preference_grid import grid_steps
from alignment.objectives.advantages import SCALARIZATION_CHOICES, AdvantageEstimator, estimator_class
from alignment.objectives.scalarize import AGGREGATIONS, PARTIAL_REWARDS
from alignment.objectives.sources import parse_objective_specs
from alignment.trainers.arguments import PreferenceAdapterArguments, PreferenceWeightsArguments


@dataclass
class MultiObjectiveGRPOConfig(PreferenceWeightsArguments, PreferenceAdapterArguments, GRPOConfig):
    """GRPOConfig plus the multi-objective settings.

    Objectives: `objectives`, `reward_model_name_or_path`, `drop_invalid_rewards`, `partial_rewards`.
    Weights: `preference_weights`, `weights_mode`, `dirichlet_alpha`, `orchestrator_name_or_path`, `conditioning`
    (`condition_on_weights`), and their schedule: `weights_schedule`, `weights_schedule_interpolation`,
    `weights_schedule_unit`.
    Preference adapters: `preference_adapter_rank`, `preference_adapter_target_modules`, `preference_adapter_alpha`,
    `preference_adapter_lambda_scale`, `base_learning_rate`.
    Advantages: `multi_objective_aggregation` (TRL's two, plus `rdpo` and `variance_weighted`) and `scale_rewards`
    (inherited, TRL's meaning), `scalarization` (which
    picks the advantage estimator, `alignment.objectives.advantages`), and for `lagrangian` the `main_objective`,
    `constraint_objective`, `constraint_threshold`, `lagrange_*` fields.

    Against TRL's GRPOTrainer: with `scalarization: linear` the advantages are TRL's for both aggregations and every
    `scale_rewards` (tests/test_peer_equivalence.py). Deliberate differences: `partial_rewards` defaults to
    `drop_row` (TRL sums the objectives present: `sum_present`), and a NaN/inf reward stops training unless
    `drop_invalid_rewards` (TRL only maps None to NaN). The other scalarizations have no TRL counterpart.
    """

    objectives: list[str] = field(
        default_factory=lambda: ["conciseness", "sentiment"],
        metadata={"help": "Objective specs: a built-in name (conciseness, sentiment, profanity_free, format), "
                          "'name=python:module:function', or 'name=rm:HEAD' for a head of the reward model; any of "
                          "them gated on another objective with '@OBJECTIVE OP THRESHOLD[:floor=F]' (OP >=, >, <=, "
                          "<), e.g. 'format=format_ok@correct>=1': the reward counts where the gate holds and is "
                          "the floor (default 0) elsewhere."},
    )
    multi_objective_aggregation: str = field(
        default="sum_then_normalize",
        metadata={"help": "How the objectives become one advantage (alignment.objectives.scalarize.AGGREGATIONS): "
                          "'sum_then_normalize' (TRL's default: scalarize, then normalize per scale_rewards), "
                          "'normalize_then_sum' (GDPO: z-score each objective in its group, scalarize, whiten over "
                          "the batch), 'rdpo' (RDPO: quantile-normalize each objective in its group, whiten the "
                          "objectives against each other, scalarize, whiten over the batch), 'variance_weighted' "
                          "(MO-GRPO: divide each objective by its group std, then weight; no batch whitening)."},
    )
    reward_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Multi-head reward model (hub id or path) that scores the 'rm:' objectives in one "
                          "forward pass."},
    )
    conditioning: str | None = field(
        default=None,
        metadata={"help": "How the policy sees each prompt's weights: 'prompt' (written into the prompt as text), "
                          "'adapter' (numbers fed to a preference adapter, Panacea-style SVD-LoRA), 'both', or 'none'. "
                          "Default: condition_on_weights if set, else 'prompt' for dirichlet weights, 'none' for "
                          "fixed."},
    )
    condition_on_weights: bool | None = field(
        default=None,
        metadata={"help": "Older switch, kept for existing configs: true is conditioning 'prompt', false 'none'. "
                          "After parsing it says whether the weights are written into the prompt."},
    )
    base_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Preference adapter: also train the base model's own weights at this learning rate "
                          "(learning_rate is the adapter's); unset keeps the base frozen."},
    )
    preference_grid: float | None = field(
        default=None,
        metadata={"help": "Snap each prompt's sampled (or prompt-aware) weights to a grid on the simplex with this "
                          "step, e.g. 0.1; training and generation use the snapped weights. Needed for the "
                          "preference adapter on vLLM (use_vllm), which serves the adapter at each grid point as a "
                          "LoRA (alignment.models.preference_grid). Unset: continuous weights."},
    )
    scalarization: str = field(
        default="linear",
        metadata={"help": "How weights combine objectives: linear (sum_k w_k r_k, TRL's), tchebycheff "
                          "(-max_k w_k (z*_k - z_k)), worst_case (min_k (z_k - z_nadir_k) / w_k), both on objectives "
                          "z-scored within their group; pama (PAMA's closed-form min-norm weights per completion, "
                          "Noon-clipped; weights scale each objective's advantage); or lagrangian (maximize "
                          "main_objective subject to constraint_objective >= constraint_threshold; weights unused)."},
    )
    main_objective: str | None = field(
        default=None, metadata={"help": "Lagrangian mode: the objective to maximize."}
    )
    constraint_objective: str | None = field(
        default=None,
        metadata={"help": "Lagrangian mode: the objective whose batch mean must stay above the threshold."},
    )
    constraint_threshold: float = field(
        default=0.0, metadata={"help": "Lagrangian mode: the lower bound d in E[r_c] >= d."}
    )
    lagrange_init: float = field(
        default=1.0, metadata={"help": "Lagrangian mode: initial multiplier lambda (> 0)."}
    )
    lagrange_learning_rate: float = field(
        default=0.05, metadata={"help": "Lagrangian mode: step size of the update of log(lambda)."}
    )
    lagrange_max: float = field(
        default=100.0, metadata={"help": "Lagrangian mode: upper clip of lambda."}
    )
    drop_invalid_rewards: bool = field(
        default=False,
        metadata={"help": "A reward that is NaN, inf or None: false stops with an error naming the objective; true "
                          "leaves it out (see partial_rewards) and counts the rows in objectives/dropped_rows. A "
                          "reward source that raises or returns the wrong number of rewards always stops training."},
    )
    partial_rewards: str = field(
        default="drop_row",
        metadata={"help": "With drop_invalid_rewards, a completion with some rewards missing: 'drop_row' drops the "
                          "whole completion (advantage 0, the safe default); 'sum_present' scalarizes the objectives "
                          "present, as TRL's GRPOTrainer does (linear, tchebycheff, worst_case)."},
    )

    def check_vllm_preference_grid(self) -> None:
        """The preference adapter on vLLM: one LoRA per grid point, sent with each request of TRL's colocated engine
        (alignment.trainers.vllm_grid). What that path cannot do is refused here, with the reason."""
        if self.preference_grid is None:
            raise ValueError("use_vllm with a preference adapter: vLLM serves the adapter at fixed weights, one LoRA "
                             "per point of a grid; set preference_grid (e.g. 0.1), or use_vllm false for continuous "
                             "weights")
        if self.vllm_mode != "colocate":
            raise ValueError(f"use_vllm with a preference adapter needs vllm_mode 'colocate' (got "
                             f"'{self.vllm_mode}'): each request carries its grid point's LoRA, and TRL's vllm-serve "
                             "takes no LoRA from the trainer")
        if self.vllm_tensor_parallel_size != 1:
            raise ValueError("use_vllm with a preference adapter: vllm_tensor_parallel_size must be 1 (TRL gathers "
                             "the prompts of a tensor-parallel group, and the rows' LoRAs are this process's)")
        if self.vllm_enable_sleep_mode:
            raise ValueError("use_vllm with a preference adapter: vllm_enable_sleep_mode discards the engine's "
                             "weights, which the grid path does not push back (it sends LoRAs); set it false")

    def _weights_example(self) -> str:
        weights = self.reward_weights or []
        return ",".join(f"{name}={w}" for name, w in zip(self.objective_names, weights))

    @property
    def advantage_estimator_class(self) -> type[AdvantageEstimator]:
        """The advantage estimator that `scalarization` selects (`alignment.objectives.advantages`)."""
        return estimator_class(self.scalarization)

    def __post_init__(self):
        super().__post_init__()
        if self.scalarization not in SCALARIZATION_CHOICES:
            raise ValueError(f"scalarization must be one of {SCALARIZATION_CHOICES}, got '{self.scalarization}'")
        if self.conditioning is None:
            legacy = self.condition_on_weights
            sampled = self.weights_mode == "dirichlet" if legacy is None else legacy
            self.conditioning = "prompt" if sampled else "none"
        self.condition_on_weights = self.conditioning in ("prompt", "both")
        self.check_preference_adapter()
        if self.weights_mode == "dirichlet" and self.conditioning == "none":
            raise ValueError("weights_mode 'dirichlet' with conditioning 'none': each prompt would be trained under "
                             "its own random weights that the policy never sees; set conditioning 'adapter', "
                             "'prompt' or 'both' (or weights_mode 'fixed')")
        if self.weights_mode == "prompt_aware" and self.conditioning == "both":
            raise ValueError("weights_mode 'prompt_aware' with conditioning 'both': the held-out evaluation steers "
                             "each prompt by its own weights through the prompt, and the adapter takes one weight "
                             "vector there; use conditioning 'prompt' or 'adapter'")
        if self.reward_weights is not None:
            raise ValueError("reward_weights: TRL's weights per reward function are replaced here by the weights over "
                             f"the objectives; give them as preference_weights, e.g. '{self._weights_example()}'")
        if self.uses_preference_adapter:
            for flag in ("use_transformers_continuous_batching", "use_transformers_paged"):
                if getattr(self, flag):
                    raise ValueError(f"{flag} with a preference adapter: continuous batching schedules the rows in its "
                                     "own order, and each row's lambda cannot follow it; use plain generation")
            if self.use_vllm:
                self.check_vllm_preference_grid()
            if self.base_learning_rate is not None and self.beta != 0.0:
                raise ValueError("base_learning_rate with beta > 0: the reference model would be the trained base "
                                 "(the adapter disabled), not the initial policy; use beta 0 or a frozen base")
        if self.preference_grid is not None:
            grid_steps(self.preference_grid)
            if self.conditioning == "none" or self.weights_mode == "fixed":
                raise ValueError("preference_grid snaps weights that vary per prompt (weights_mode dirichlet or "
                                 "prompt_aware, with conditioning); fixed weights are used as given")
        if self.multi_objective_aggregation not in AGGREGATIONS:
            raise ValueError(f"multi_objective_aggregation must be one of {tuple(AGGREGATIONS)}, got "
                             f"'{self.multi_objective_aggregation}'")
        if self.partial_rewards not in PARTIAL_REWARDS:
            raise ValueError(f"partial_rewards must be one of {PARTIAL_REWARDS}, got '{self.partial_rewards}'")
        # Objectives and weights are checked when the config is parsed, before a recipe loads any model.
        names = [objective.name for objective in parse_objective_specs(self.objectives)[0]]
        self.check_preference_weights()
        self.advantage_estimator_class.check_config(self, names)
