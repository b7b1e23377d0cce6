"""Multi-objective GRPO: TRL's GRPOTrainer, fed a reward vector and preference weights instead of a scalar reward.

What changes relative to TRL (everything else, generation, the clipped loss, vLLM, PEFT, DeepSpeed, is TRL's):
- rewards: every objective's source runs once per batch (`alignment.objectives.reward_vector`), giving an [N, K] reward vector;
  all heads of a multi-head reward model are scored in one forward pass;
- weights: fixed, sampled per prompt from Dirichlet(alpha), or inferred per prompt by a Preference Orchestrator
  (PRO, `alignment.orchestrator`; `weights_mode: prompt_aware`); with sampled weights the policy is conditioned on
  them so that one checkpoint can be steered at inference: written into the prompt (`alignment.objectives.conditioning`),
  fed as numbers to a preference adapter (`alignment.models.preference_adapter`, the prompt's weights set lambda for its
  completions in generation and in every loss forward pass), or both;
- advantages: `alignment.objectives.scalarize.compute_advantages` (the aggregation and `scale_rewards` are GRPOConfig's own
  `multi_objective_aggregation` and `scale_rewards`, with TRL's meaning; scalarizations linear / tchebycheff /
  worst_case / pama / lagrangian);
- the checkpoint records its objectives, sources, aggregation and weights (`alignment.hub.record`).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field

import torch
from accelerate.utils import gather
from trl import GRPOConfig, GRPOTrainer

from alignment.hub.checkpointing import ResumableCheckpointsMixin
from alignment.hub.record import build_record
from alignment.hub.steerable import SteerableCheckpointMixin
from alignment.objectives.conditioning import FORMAT_VERSION, PROMPT_FORMAT, condition_prompt
from alignment.models.preference_adapter import (
    add_preference_adapter,
    has_preference_adapter,
    parameter_groups,
    preference_weights,
)
from alignment.objectives.sources import objectives_to_dict, parse_objective_specs
from alignment.objectives.reward_vector import RewardVectorBuilder
from alignment.objectives.scalarize import (
    PARTIAL_REWARDS,
    SCALARIZATIONS,
    compute_advantages,
    pama_step_weights,
    update_log_lagrange_multiplier,
)
from alignment.objectives.weights import sample_dirichlet_weights
from alignment.trainers.arguments import PreferenceAdapterArguments, PreferenceWeightsArguments
from reward_models.scoring import objective_reward_sources

STATE_FILE = "multi_objective_state.json"


@dataclass
class MultiObjectiveGRPOConfig(PreferenceWeightsArguments, PreferenceAdapterArguments, GRPOConfig):
    """GRPOConfig plus the multi-objective settings.

    Objectives: `objectives`, `reward_model_name_or_path`, `drop_invalid_rewards`, `partial_rewards`.
    Weights: `preference_weights`, `weights_mode`, `dirichlet_alpha`, `orchestrator_name_or_path`, `conditioning`
    (`condition_on_weights`).
    Preference adapters: `preference_adapter_rank`, `preference_adapter_target_modules`, `preference_adapter_alpha`,
    `preference_adapter_lambda_scale`, `base_learning_rate`.
    Advantages: `multi_objective_aggregation` and `scale_rewards` (inherited, TRL's meaning), `scalarization`, and
    for `lagrangian` the `main_objective`, `constraint_objective`, `constraint_threshold`, `lagrange_*` fields.

    Against TRL's GRPOTrainer: with `scalarization: linear` the advantages are TRL's for both aggregations and every
    `scale_rewards` (tests/test_peer_equivalence.py). Deliberate differences: `partial_rewards` defaults to
    `drop_row` (TRL sums the objectives present: `sum_present`), and a NaN/inf reward stops training unless
    `drop_invalid_rewards` (TRL only maps None to NaN). The other scalarizations have no TRL counterpart.
    """

    objectives: list[str] = field(
        default_factory=lambda: ["conciseness", "sentiment"],
        metadata={"help": "Objective specs: a built-in name (conciseness, sentiment, profanity_free, format), "
                          "'name=python:module:function', or 'name=rm:HEAD' for a head of the reward model."},
    )
    reward_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Multi-head reward model (hub id or path) that scores the 'rm:' objectives in one forward pass."},
    )
    conditioning: str | None = field(
        default=None,
        metadata={"help": "How the policy sees each prompt's weights: 'prompt' (written into the prompt as text), "
                          "'adapter' (numbers fed to a preference adapter, Panacea-style SVD-LoRA), 'both', or 'none'. "
                          "Default: condition_on_weights if set, else 'prompt' for dirichlet weights, 'none' for fixed."},
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
        default=None, metadata={"help": "Lagrangian mode: the objective whose batch mean must stay above the threshold."}
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
                          "leaves it out (see partial_rewards) and counts the rows in objectives/dropped_rows. A reward "
                          "source that raises or returns the wrong number of rewards always stops training."},
    )
    partial_rewards: str = field(
        default="drop_row",
        metadata={"help": "With drop_invalid_rewards, a completion with some rewards missing: 'drop_row' drops the "
                          "whole completion (advantage 0, the safe default); 'sum_present' scalarizes the objectives "
                          "present, as TRL's GRPOTrainer does (linear, tchebycheff, worst_case)."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.scalarization not in SCALARIZATIONS:
            raise ValueError(f"scalarization must be one of {SCALARIZATIONS}, got '{self.scalarization}'")
        if self.conditioning is None:
            legacy = self.condition_on_weights
            self.conditioning = ("prompt" if (self.weights_mode == "dirichlet" if legacy is None else legacy) else "none")
        self.condition_on_weights = self.conditioning in ("prompt", "both")
        self.check_preference_adapter()
        if self.uses_preference_adapter:
            if self.use_vllm:
                raise ValueError("conditioning with a preference adapter needs per-row weights in generation; "
                                 "vLLM generation cannot take them (set use_vllm false)")
            if self.base_learning_rate is not None and self.beta != 0.0:
                raise ValueError("base_learning_rate with beta > 0: the reference model would be the trained base "
                                 "(the adapter disabled), not the initial policy; use beta 0 or a frozen base")
        if self.partial_rewards not in PARTIAL_REWARDS:
            raise ValueError(f"partial_rewards must be one of {PARTIAL_REWARDS}, got '{self.partial_rewards}'")
        if self.partial_rewards == "sum_present" and self.scalarization in ("lagrangian", "pama"):
            raise ValueError(f"partial_rewards 'sum_present' does not fit scalarization '{self.scalarization}', which "
                             "needs every objective of a completion; use 'drop_row'")
        if self.scalarization == "lagrangian" and self.preference_weights:
            warnings.warn("preference_weights are ignored by scalarization 'lagrangian': it maximizes main_objective "
                          "subject to constraint_objective >= constraint_threshold", UserWarning, stacklevel=2)
        if self.scalarization == "lagrangian":
            missing = [f for f in ("main_objective", "constraint_objective") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"scalarization 'lagrangian' needs {missing}")
            if self.lagrange_init <= 0 or self.lagrange_max <= 0:
                raise ValueError("lagrange_init and lagrange_max must be > 0")
        # Objectives and weights are checked when the config is parsed, before a recipe loads any model.
        names = [objective.name for objective in parse_objective_specs(self.objectives)[0]]
        self.check_preference_weights()
        if self.scalarization == "lagrangian":
            for field_name in ("main_objective", "constraint_objective"):
                if getattr(self, field_name) not in names:
                    raise ValueError(f"{field_name} '{getattr(self, field_name)}' is not one of the objectives {names}")


class MultiObjectiveGRPOTrainer(ResumableCheckpointsMixin, SteerableCheckpointMixin, GRPOTrainer):
    """GRPO on a reward vector. Construct like TRL's GRPOTrainer, without `reward_funcs`:
    the objectives come from `args.objectives`, or from `reward_sources` (any `alignment.objectives.sources.RewardSource`).
    """

    def __init__(self, model, args: MultiObjectiveGRPOConfig, reward_sources=None, dataset_names=None, **kwargs):
        if "reward_funcs" in kwargs:
            raise TypeError("MultiObjectiveGRPOTrainer takes objectives from args.objectives (or reward_sources), "
                            "not reward_funcs")
        if args.reward_weights is not None:
            raise ValueError("set preference_weights (e.g. 'conciseness=0.7,sentiment=0.3'), not reward_weights")

        self.objectives, sources = objective_reward_sources(
            args.objectives, args.reward_model_name_or_path, trust_remote_code=args.trust_remote_code,
            device=args.device,  # this rank's device, not cuda:0 on every rank
        )
        sources += list(reward_sources or [])
        self.objective_names = [o.name for o in self.objectives]
        self.reward_vector_builder = RewardVectorBuilder(
            self.objective_names, sources, on_invalid="drop" if args.drop_invalid_rewards else "raise"
        )

        self.orchestrator = None
        if args.weights_mode == "fixed":
            self.fixed_weights = args.fixed_weight_vector()
            mean_weights = self.fixed_weights
        elif args.weights_mode == "prompt_aware":
            from alignment.orchestrator import PreferenceOrchestrator

            self.fixed_weights = None
            self.orchestrator = PreferenceOrchestrator.from_pretrained(args.orchestrator_name_or_path, device=args.device)
            # The weights are only known per prompt; TRL's logged "reward" uses equal weights.
            mean_weights = torch.full((len(self.objectives),), 1.0 / len(self.objectives))
        else:
            self.fixed_weights = None
            self.dirichlet_alpha = args.dirichlet_alpha_vector()
            mean_weights = self.dirichlet_alpha / self.dirichlet_alpha.sum()
        # TRL logs its "reward" metric with these; per-row weights drive the advantages.
        args.reward_weights = mean_weights.tolist()

        if args.scalarization == "lagrangian":  # names checked by the config
            self.objectives[self.objective_names.index(args.constraint_objective)].threshold = args.constraint_threshold
        self.dataset_names = dataset_names or []
        self.log_lagrange_multiplier = math.log(args.lagrange_init)

        if args.uses_preference_adapter:
            model = self._with_preference_adapter(model, args, kwargs)
        self._row_weights = None
        super().__init__(model=model, reward_funcs=self._trl_reward_funcs(), args=args, **kwargs)

    def _with_preference_adapter(self, model, args, kwargs):
        if kwargs.get("peft_config") is not None:
            raise ValueError("conditioning with a preference adapter: the adapter is the peft model; "
                             "do not pass a LoRA peft_config as well")
        kwargs.pop("peft_config", None)
        if isinstance(model, str):
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(model, **(args.model_init_kwargs or {}))
        if has_preference_adapter(model):
            return model
        return add_preference_adapter(
            model, self.objective_names, rank=args.preference_adapter_rank, lora_alpha=args.preference_adapter_alpha,
            target_modules=args.preference_adapter_target_modules, lambda_scale=args.preference_adapter_lambda_scale,
            train_base=args.base_learning_rate is not None,
        )

    def create_optimizer(self, model=None):
        """With a trained base: the adapter at learning_rate, the base's own weights at base_learning_rate."""
        if not (self.args.uses_preference_adapter and self.args.base_learning_rate is not None) or self.optimizer is not None:
            return super().create_optimizer(model)
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model or self.model)
        optimizer_kwargs.pop("lr", None)
        groups = parameter_groups(model or self.model, self.args.learning_rate, self.args.base_learning_rate,
                                  self.args.weight_decay)
        self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def _trl_reward_funcs(self):
        """One TRL reward function per objective (TRL derives names and weight counts from them).

        Our `_calculate_rewards` replaces TRL's loop, so these run only if TRL calls them directly; they are real
        column views of the reward vector, not placeholders.
        """
        funcs = []
        for column, name in enumerate(self.objective_names):
            def reward(prompts, completions, _column=column, **kwargs):
                return self.reward_vector_builder(prompts, completions, **kwargs)[0][:, _column].tolist()
            reward.__name__ = name
            funcs.append(reward)
        return funcs

    @property
    def lagrange_multiplier(self) -> float:
        return math.exp(self.log_lagrange_multiplier)

    # ---- weights and prompts ----
    def _weights_for(self, inputs) -> torch.Tensor:
        if self.fixed_weights is not None:
            return self.fixed_weights.unsqueeze(0).expand(len(inputs), -1)
        if self.orchestrator is not None:  # once per distinct prompt (cached), the same on every rank
            from alignment.orchestrator import weights_in_order

            return weights_in_order(self.orchestrator, [x["prompt"] for x in inputs], self.args.orchestrator_objective_names)
        # Keyed by (step, prompt): the G copies of a prompt get the same weights on every rank, and a resumed
        # run draws the same weights as the original.
        keys = [f"{self.state.global_step}:{json.dumps(x['prompt'], sort_keys=True)}" for x in inputs]
        return sample_dirichlet_weights(self.dirichlet_alpha, keys, seed=self.args.seed)

    def _generate_and_score_completions(self, inputs):
        weights = self._weights_for(inputs)
        if self.args.condition_on_weights:
            inputs = [{**x, "prompt": condition_prompt(x["prompt"], w, self.objective_names)}
                      for x, w in zip(inputs, weights)]
        self._batch_weights = weights
        if not self.args.uses_preference_adapter:
            output = super()._generate_and_score_completions(inputs)
        else:  # lambda per row for generation and the old log-probs; rows follow the batch through TRL's splits
            self._row_weights = weights
            with preference_weights(self.model, weights):
                output = super()._generate_and_score_completions(inputs)
            output["preference_weights"] = weights.to(output["advantages"].device)
        output["advantages"] = self._local_advantages
        return output

    def _compute_loss(self, model, inputs):
        if self.args.uses_preference_adapter:
            self._row_weights = inputs["preference_weights"]
        return super()._compute_loss(model, inputs)

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           **kwargs):
        """TRL's, chunk by chunk, with each chunk's rows of lambda set (TRL chunks inside, lambda must follow)."""
        if not self.args.uses_preference_adapter:
            return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep,
                                                              batch_size, **kwargs)
        if any(value is not None for key, value in kwargs.items() if key not in ("compute_entropy", "compute_aux_loss")):
            raise ValueError("preference adapters support text-only GRPO (no images or token type ids)")
        weights = self._row_weights
        if weights is None or weights.shape[0] != input_ids.shape[0]:
            raise RuntimeError("preference adapter: the rows being scored have no preference weights")
        batch_size = batch_size or input_ids.shape[0]
        pieces = []
        for start in range(0, input_ids.shape[0], batch_size):
            rows = slice(start, start + batch_size)
            with preference_weights(model, weights[rows]):
                pieces.append(super()._get_per_token_logps_and_entropies(
                    model, input_ids[rows], attention_mask[rows], logits_to_keep, None, **kwargs))
        logps = torch.cat([p[0] for p in pieces])
        entropies = None if pieces[0][1] is None else torch.cat([p[1] for p in pieces])
        aux = None if pieces[0][2] is None else torch.stack([p[2] for p in pieces]).mean()
        return logps, entropies, aux

    # ---- rewards and advantages ----
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        device = self.accelerator.device
        mode = "train" if self.model.training else "eval"
        reward_kwargs = {key: [x[key] for x in inputs] for key in inputs[0]
                         if key not in ("prompt", "completion", "completion_ids")}
        reward_vector, dropped = self.reward_vector_builder(
            prompts, completions, step=self.state.global_step, completion_ids=completion_ids_list,
            trainer_state=self.state, **reward_kwargs,
        )
        # Completions of one group may sit on different ranks: gather rewards and weights before normalizing.
        local = torch.cat([reward_vector, self._batch_weights, dropped.float().unsqueeze(1)], dim=1).to(device)
        everything = gather(local)
        k = len(self.objective_names)
        reward_vector, weights, dropped = everything[:, :k], everything[:, k:2 * k], everything[:, -1].bool()

        metrics, args = self._metrics[mode], self.args
        if self.args.scalarization == "lagrangian":  # the multiplier these advantages use, before this step's update
            metrics["lagrange/lambda"].append(self.lagrange_multiplier)
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        advantages = self._advantages(reward_vector, weights, group_size, update_state=(mode == "train"))
        rank = self.accelerator.process_index
        self._local_advantages = advantages[rank * len(prompts):(rank + 1) * len(prompts)]

        for column, name in enumerate(self.objective_names):
            metrics[f"weights/{name}"].append(weights[:, column].mean().item())
        # rows left with no reward at all: every incomplete row under drop_row, only empty ones under sum_present
        empty = dropped if args.partial_rewards == "drop_row" else torch.isnan(reward_vector).all(dim=1)
        metrics["objectives/dropped_rows"].append(empty.sum().item())
        metrics["objectives/incomplete_rows"].append(dropped.sum().item())
        if self.args.scalarization == "pama":  # what PAMA's closed form weighted, averaged over the completions
            step_weights = pama_step_weights(reward_vector, weights, group_size, self.args.scale_rewards)
            for name, value in zip(self.objective_names, step_weights.tolist()):
                metrics[f"pama/weight/{name}"].append(value)
        return reward_vector

    def _advantages(self, reward_vector, weights, group_size, update_state):
        args = self.args
        lagrangian = None
        if args.scalarization == "lagrangian":
            main = self.objective_names.index(args.main_objective)
            constraint = self.objective_names.index(args.constraint_objective)
            lagrangian = (main, constraint, self.lagrange_multiplier)
        advantages = compute_advantages(
            reward_vector, weights, group_size,
            aggregation=args.multi_objective_aggregation, scalarization=args.scalarization,
            scale_rewards=args.scale_rewards, lagrangian=lagrangian, partial_rewards=args.partial_rewards,
        )
        if lagrangian is not None and update_state:
            constraint_mean = torch.nanmean(reward_vector[:, lagrangian[1]]).item()
            if math.isfinite(constraint_mean):
                self.log_lagrange_multiplier = update_log_lagrange_multiplier(
                    self.log_lagrange_multiplier, constraint_mean, args.constraint_threshold,
                    args.lagrange_learning_rate, args.lagrange_max,
                )
        return advantages

    # ---- what the checkpoint records ----
    pareto_method = "none"  # MGDAGRPOTrainer: "mgda"

    @property
    def weights_used(self) -> bool:
        """Whether the preference weights enter the update (they do not for MGDA and the Lagrangian mode)."""
        return self.pareto_method == "none" and self.args.scalarization != "lagrangian"

    def objectives_record(self) -> dict:
        """What this checkpoint was trained for (alignment.hub.record)."""
        args = self.args
        conditioned = bool(args.condition_on_weights)
        fixed = self.fixed_weights is not None and self.weights_used
        adapter = args.uses_preference_adapter
        return build_record(
            trainer="grpo",
            base_model=getattr(self.model.config, "_name_or_path", None) or "unknown",
            objectives=objectives_to_dict(self.objectives),
            weights={n: round(w, 6) for n, w in zip(self.objective_names, self.fixed_weights.tolist())} if fixed else None,
            weight_distribution=args.weight_distribution_record(),
            aggregation=args.multi_objective_aggregation,
            scalarization=args.scalarization,
            steering="adapter" if adapter else "prompt" if conditioned else "none",
            datasets=self.dataset_names,
            extra={
                "prompt_format": PROMPT_FORMAT if conditioned else None,
                "prompt_format_version": FORMAT_VERSION if conditioned else None,
                "preference_adapter": args.preference_adapter_record(args.base_learning_rate is not None)
                if adapter else None,
                "reward_model": args.reward_model_name_or_path,
                "pareto_method": self.pareto_method,
                "weights_used": self.weights_used,
                "scale_rewards": args.scale_rewards,
                "partial_rewards": args.partial_rewards,
                "lagrangian": {"main_objective": args.main_objective, "constraint_objective": args.constraint_objective,
                               "constraint_threshold": args.constraint_threshold,
                               "final_lambda": self.lagrange_multiplier} if args.scalarization == "lagrangian" else None,
            },
        )

    # ---- resume: the multiplier is training state too ----
    def _save_optimizer_and_scheduler(self, output_dir):
        super()._save_optimizer_and_scheduler(output_dir)  # output_dir is the checkpoint being staged
        if self.args.should_save:
            state = {"log_lagrange_multiplier": self.log_lagrange_multiplier}
            with open(os.path.join(output_dir, STATE_FILE), "w") as f:
                json.dump(state, f)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        path = os.path.join(checkpoint, STATE_FILE) if checkpoint else None
        if path and os.path.exists(path):
            with open(path) as f:
                state = json.load(f)
            self.log_lagrange_multiplier = state["log_lagrange_multiplier"]
