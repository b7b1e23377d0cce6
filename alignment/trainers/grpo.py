"""Multi-objective GRPO: TRL's GRPOTrainer, fed a reward vector and preference weights instead of a scalar reward.

What changes relative to TRL (everything else, generation, the clipped loss, vLLM, PEFT, DeepSpeed, is TRL's):
- rewards: every objective's source runs once per batch (`alignment.objectives.reward_vector`), giving an [N, K]
  reward vector; all heads of a multi-head reward model are scored in one forward pass;
- weights: fixed, sampled per prompt from Dirichlet(alpha), or inferred per prompt by a Preference Orchestrator
  (PRO, `alignment.orchestrator`; `weights_mode: prompt_aware`), optionally moved during training by a weight
  schedule (`alignment.objectives.schedules`), made by `weights_for` and carried by every row
  (`preference_weights`) through TRL's batch. With sampled weights the policy is conditioned on them so that one
  checkpoint can be steered at inference: written into the prompt (`alignment.objectives.conditioning`), fed as
  numbers to a preference adapter (`alignment.models.preference_adapter`, the prompt's weights set lambda for its
  completions in generation and in every loss forward pass), or both;
- advantages: the advantage estimator that `scalarization` selects (`alignment.objectives.advantages`: the
  scalarizations linear / tchebycheff / worst_case, or the estimators pama / lagrangian); the aggregation and
  `scale_rewards` are GRPOConfig's own `multi_objective_aggregation` and `scale_rewards`, with TRL's meaning, and two
  aggregations TRL does not have (`rdpo`, `variance_weighted`; `alignment.objectives.scalarize.AGGREGATIONS`);
- the checkpoint records its objectives, sources, aggregation and weights (`alignment.hub.record`).

The config, `MultiObjectiveGRPOConfig`, is defined in `alignment.trainers.grpo_config` and importable from here.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Sequence

import torch
from accelerate.utils import gather
from transformers import AutoModelForCausalLM
from trl import GRPOTrainer

from alignment.hub.checkpointing import ResumableCheckpointsMixin
from alignment.hub.record import build_record
from alignment.hub.steerable import SteerableCheckpointMixin
from alignment.models.packaged import model_display_name
from alignment.models.preference_adapter import (
    add_preference_adapter,
    has_preference_adapter,
    parameter_groups,
    preference_state,
    preference_weights,
)
from alignment.models.preference_grid import snap_to_grid
from alignment.models.vllm_engine import require_vllm
from alignment.objectives.conditioning import FORMAT_VERSION, PROMPT_FORMAT, condition_prompt
from alignment.objectives.reward_vector import RewardVectorBuilder
from alignment.objectives.schedules import dirichlet_alpha_at, tilt_weights
from alignment.objectives.sources import objectives_to_dict
from alignment.objectives.weights import sample_dirichlet_weights
from alignment.orchestrator import PreferenceOrchestrator, weights_in_order
from alignment.trainers.grpo_config import MultiObjectiveGRPOConfig
from alignment.trainers.lm_head_scoring import compact_lm_head_scoring
from alignment.trainers.vllm_generation import ColocatedVLLMGeneration, trl_builds
from alignment.trainers.vllm_grid import trl_builds_grid_generation
from reward_models.scoring import objective_reward_sources

STATE_FILE = "multi_objective_state.json"  # the advantage estimator's state, saved beside the optimizer's
WEIGHTS_COLUMN = "preference_weights"  # each row's [K] weights: in TRL's input rows, then in its output batch
# Row fields that are not handed to the reward functions: TRL's own, and the weights the rows carry.
NOT_REWARD_KWARGS = ("prompt", "completion", "completion_ids", WEIGHTS_COLUMN)
# The aggregations TRL's own GRPOTrainer computes. Its advantages are replaced by ours, but it still runs its own
# computation (for its logged frac_reward_zero_std) and refuses any other name: it is given GDPO's for ours.
TRL_AGGREGATIONS = ("sum_then_normalize", "normalize_then_sum")


class MultiObjectiveGRPOTrainer(ResumableCheckpointsMixin, SteerableCheckpointMixin, GRPOTrainer):
    """GRPO on a reward vector. Construct like TRL's GRPOTrainer, without `reward_funcs`: the objectives come from
    `args.objectives`, or from `reward_sources` (any `alignment.objectives.sources.RewardSource`).

    Public attributes: `objectives` and `objective_names` (in reward-vector order), `reward_vector_builder`,
    `advantage_estimator` (`alignment.objectives.advantages`), `orchestrator` (prompt-aware weights, else None),
    `weight_schedule` (`alignment.objectives.schedules.WeightSchedule`, or None) and `mean_weights` ([K] at the
    current step: the fixed or scheduled weights, the Dirichlet mean, or equal weights for prompt-aware weights, which
    are only known per prompt). `weights_for` gives any prompts' weights.
    """

    pareto_method = "none"  # how the update combines the objectives, recorded; MGDAGRPOTrainer: "mgda"

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
        self.reward_vector_builder = RewardVectorBuilder.from_objectives(  # gates included
            self.objectives, sources, on_invalid="drop" if args.drop_invalid_rewards else "raise"
        )

        self.fixed_weights = self.dirichlet_alpha = self.orchestrator = None
        self.weight_schedule = args.weight_schedule()
        if args.weights_mode == "fixed":
            self.fixed_weights = args.fixed_weight_vector()
        elif args.weights_mode == "prompt_aware":
            self.orchestrator = PreferenceOrchestrator.from_pretrained(args.orchestrator_name_or_path,
                                                                       device=args.device)
        else:
            self.dirichlet_alpha = args.dirichlet_alpha_vector()

        self.advantage_estimator = args.advantage_estimator_class.from_config(args, self.objective_names)
        self.advantage_estimator.mark_objectives(self.objectives)
        self.dataset_names = dataset_names or []
        self._pending_output_columns = {}  # see _calculate_rewards

        if args.uses_preference_adapter:
            model = self._with_preference_adapter(model, args, kwargs)
        if args.use_vllm:
            require_vllm()
        with self._vllm_generation_built_by_trl(args):
            super().__init__(model=model, reward_funcs=self._trl_reward_funcs(), args=args, **kwargs)
        # TRL weighs its logged "reward" metric (and its own advantages, which ours replace) with these (moved with
        # the schedule, batch by batch); our advantages use each row's weights.
        self.reward_weights = self.mean_weights.to(torch.float32)
        if args.multi_objective_aggregation not in TRL_AGGREGATIONS:
            self.multi_objective_aggregation = "normalize_then_sum"  # TRL's stand-in; see TRL_AGGREGATIONS

    @staticmethod
    def _vllm_generation_built_by_trl(args):
        """The block in which TRL builds our vLLM generation: with a preference adapter, each row served its grid
        point's LoRA (trainers.vllm_grid); otherwise TRL's, with a weight sync that works on CPU too."""
        if not args.use_vllm:
            return contextlib.nullcontext()
        if args.uses_preference_adapter:
            return trl_builds_grid_generation(args, args.per_device_train_batch_size * args.steps_per_generation)
        return trl_builds(ColocatedVLLMGeneration)

    def _with_preference_adapter(self, model, args, kwargs):
        if kwargs.get("peft_config") is not None:
            raise ValueError("conditioning with a preference adapter: the adapter is the peft model; "
                             "do not pass a LoRA peft_config as well")
        kwargs.pop("peft_config", None)
        if isinstance(model, str):
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
        trains_base = self.args.uses_preference_adapter and self.args.base_learning_rate is not None
        if not trains_base or self.optimizer is not None:
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

    # ---- weights and prompts ----
    def scheduled_weights(self) -> torch.Tensor | None:
        """[K] the weight schedule at the current global step (None without a schedule). A pure function of the
        step and max_steps, both restored with a checkpoint: a resumed run computes the same weights."""
        if self.weight_schedule is None:
            return None
        return self.weight_schedule.at(self.state.global_step, self.state.max_steps or self.args.max_steps)

    @property
    def mean_weights(self) -> torch.Tensor:
        """[K] the weights at the current step: the fixed (or scheduled) weights, the Dirichlet mean (the scheduled
        weights under a schedule), or equal weights for prompt-aware weights (tilted like a prompt's by a schedule)."""
        scheduled = self.scheduled_weights()
        if self.fixed_weights is not None:
            return self.fixed_weights if scheduled is None else scheduled
        if self.dirichlet_alpha is not None:
            return self.dirichlet_alpha / self.dirichlet_alpha.sum() if scheduled is None else scheduled
        equal = torch.full((len(self.objectives),), 1.0 / len(self.objectives))
        return equal if scheduled is None else tilt_weights(equal, self.weight_schedule.start, scheduled)

    def weights_for(self, rows_or_prompts: Sequence) -> torch.Tensor:
        """[N, K] preference weights, in objective order, for N prompts or N input rows (dicts with a 'prompt'):
        the fixed weights, each prompt's orchestrator weights, or each prompt's Dirichlet draw at this training
        step, each moved by the weight schedule if there is one. The one place where a prompt's weights are made."""
        prompts = [row["prompt"] if isinstance(row, dict) else row for row in rows_or_prompts]
        scheduled = self.scheduled_weights()
        if self.fixed_weights is not None:
            return self.mean_weights.unsqueeze(0).expand(len(prompts), -1)
        if self.orchestrator is not None:  # once per distinct prompt (cached), the same on every rank
            weights = weights_in_order(self.orchestrator, prompts, self.args.orchestrator_objective_names)
            weights = weights if scheduled is None else tilt_weights(weights, self.weight_schedule.start, scheduled)
        else:
            # Keyed by (step, prompt): the G copies of a prompt get the same weights on every rank, and a resumed
            # run draws the same weights as the original.
            keys = [f"{self.state.global_step}:{json.dumps(prompt, sort_keys=True)}" for prompt in prompts]
            alpha = self.dirichlet_alpha if scheduled is None else dirichlet_alpha_at(self.dirichlet_alpha, scheduled)
            weights = sample_dirichlet_weights(alpha, keys, seed=self.args.seed)
        # On a grid (preference_grid): the weights trained on are the ones vLLM generates with
        return weights if self.args.preference_grid is None else snap_to_grid(weights, self.args.preference_grid)

    def _generate_and_score_completions(self, inputs):
        """TRL's, on rows that carry their weights (`preference_weights`, also written into the prompt when the policy
        is conditioned on them); the output holds our advantages and each row's weights."""
        weights = self.weights_for(inputs)
        rows = []
        for row, row_weights in zip(inputs, weights):
            prompt = row["prompt"]
            if self.args.condition_on_weights:
                prompt = condition_prompt(prompt, row_weights, self.objective_names)
            rows.append({**row, "prompt": prompt, WEIGHTS_COLUMN: row_weights})
        # A preference adapter: each row's weights are its lambda in generation and for the old and reference log-probs
        uses_adapter = self.args.uses_preference_adapter
        with preference_weights(self.model, weights) if uses_adapter else contextlib.nullcontext():
            output = super()._generate_and_score_completions(rows)
        columns, self._pending_output_columns = self._pending_output_columns, {}
        output.update(columns)
        output[WEIGHTS_COLUMN] = weights.to(output["advantages"].device)  # split and shuffled by row with the rest
        return output

    def _compute_loss(self, model, inputs):
        if not self.args.uses_preference_adapter:
            return super()._compute_loss(model, inputs)
        with preference_weights(model, inputs[WEIGHTS_COLUMN]):  # each row's lambda; chunked by the method below
            return super()._compute_loss(model, inputs)

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           **kwargs):
        """TRL's, scoring only the completion tokens on CPU too (`lm_head_scoring`). With a preference adapter, chunk
        by chunk with each chunk's rows of lambda set (TRL chunks inside, lambda must follow): the rows' weights are
        the adapter's current lambda, one row per scored row, set by the callers above with `preference_weights` (in
        generation and in the loss)."""
        with compact_lm_head_scoring(input_ids.device):
            if not self.args.uses_preference_adapter:
                return super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep,
                                                                  batch_size, **kwargs)
            return self._per_row_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep, batch_size,
                                                     **kwargs)

    def _per_row_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size, **kwargs):
        """TRL's scoring with each chunk's rows of lambda set on the preference adapter."""
        flags = ("compute_entropy", "compute_aux_loss")
        if any(value is not None for key, value in kwargs.items() if key not in flags):
            raise ValueError("preference adapters support text-only GRPO (no images or token type ids)")
        weights = preference_state(model).weights
        if weights is None or weights.dim() != 2 or weights.shape[0] != input_ids.shape[0]:
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
        """The [N, K] reward vector of every process's completions (what TRL's template expects back) and, from it
        and each row's weights, the batch's advantages, metrics and estimator update."""
        device = self.accelerator.device
        mode = "train" if self.model.training else "eval"
        self.reward_weights = self.mean_weights.to(torch.float32)  # TRL's logged "reward": this step's weights
        reward_kwargs = {key: [x[key] for x in inputs] for key in inputs[0] if key not in NOT_REWARD_KWARGS}
        reward_vector, dropped = self.reward_vector_builder(
            prompts, completions, step=self.state.global_step, completion_ids=completion_ids_list,
            trainer_state=self.state, **reward_kwargs,
        )
        weights = torch.stack([x[WEIGHTS_COLUMN] for x in inputs])
        # Completions of one group may sit on different ranks: gather rewards and weights before normalizing.
        local = torch.cat([reward_vector, weights, dropped.float().unsqueeze(1)], dim=1).to(device)
        everything = gather(local)
        k = len(self.objective_names)
        reward_vector, weights, dropped = everything[:, :k], everything[:, k:2 * k], everything[:, -1].bool()

        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        columns = self._advantage_columns(reward_vector, weights, group_size)
        rank = self.accelerator.process_index
        local_rows = slice(rank * len(prompts), (rank + 1) * len(prompts))
        # TRL's template makes `_generate_and_score_completions` ask this method for the reward vector only and build
        # its output itself. So the per-row columns computed here, from the gathered batch, wait (this process's rows
        # of them) in this one holder until our `_generate_and_score_completions` moves them into that output.
        self._pending_output_columns = {name: column[local_rows] for name, column in columns.items()}

        metrics = self._metrics[mode]
        for column, name in enumerate(self.objective_names):
            metrics[f"weights/{name}"].append(weights[:, column].mean().item())
        # rows left with no reward at all: every incomplete row under drop_row, only empty ones under sum_present
        empty = dropped if self.args.partial_rewards == "drop_row" else torch.isnan(reward_vector).all(dim=1)
        metrics["objectives/dropped_rows"].append(empty.sum().item())
        metrics["objectives/incomplete_rows"].append(dropped.sum().item())
        estimator_metrics = self.advantage_estimator.metrics(reward_vector, weights, group_size,
                                                             scale_rewards=self.args.scale_rewards)
        for name, value in estimator_metrics.items():
            metrics[name].append(value)
        if mode == "train":  # evaluation batches leave the estimator's state (the Lagrangian multiplier) alone
            self.advantage_estimator.update(reward_vector)
        return reward_vector

    def _advantage_columns(self, reward_vector, weights, group_size) -> dict[str, torch.Tensor]:
        """Per-row columns of the gathered batch that go into TRL's output: the `advantages` (MGDA adds its own).
        The advantage settings are read from args on every batch, like TRL's."""
        args = self.args
        advantages = self.advantage_estimator.advantages(
            reward_vector, weights, group_size, aggregation=args.multi_objective_aggregation,
            scale_rewards=args.scale_rewards, partial_rewards=args.partial_rewards,
        )
        return {"advantages": advantages}

    # ---- what the checkpoint records ----
    @property
    def weights_used(self) -> bool:
        """Whether the preference weights enter the update (not for MGDA, nor for an estimator that ignores them)."""
        return self.pareto_method == "none" and self.advantage_estimator.uses_weights

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
            weights={n: round(w, 6) for n, w in zip(self.objective_names, self.mean_weights.tolist())}
            if fixed else None,  # under a schedule: the weights in force from the saved step on
            weight_distribution=args.weight_distribution_record(),
            aggregation=args.multi_objective_aggregation if args.advantage_estimator_class.uses_aggregation else None,
            scalarization=args.scalarization,
            steering="adapter" if adapter else "prompt" if conditioned else "none",
            datasets=self.dataset_names,
            extra={
                "prompt_format": PROMPT_FORMAT if conditioned else None,
                "prompt_format_version": FORMAT_VERSION if conditioned else None,
                "preference_adapter": args.preference_adapter_record(args.base_learning_rate is not None)
                if adapter else None,
                "preference_grid": args.preference_grid,  # the weights it was trained on (and vLLM serves) snap to it
                # named portably (hub id, packaged name or folder name), as the base model is
                "reward_model": model_display_name(args.reward_model_name_or_path)
                if args.reward_model_name_or_path else None,
                "weights_schedule": args.schedule_record(self.state.global_step,
                                                         self.state.max_steps or args.max_steps),
                "pareto_method": self.pareto_method,
                "weights_used": self.weights_used,
                "scale_rewards": args.scale_rewards,
                "partial_rewards": args.partial_rewards,
                **self.advantage_estimator.record(),
            },
        )

    # ---- resume: the estimator's state (the Lagrangian multiplier) is training state too ----
    def _save_optimizer_and_scheduler(self, output_dir):
        super()._save_optimizer_and_scheduler(output_dir)  # output_dir is the checkpoint being staged
        if self.args.should_save:
            with open(os.path.join(output_dir, STATE_FILE), "w") as f:
                json.dump(self.advantage_estimator.state_dict(), f)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        path = os.path.join(checkpoint, STATE_FILE) if checkpoint else None
        if path and os.path.exists(path):
            with open(path) as f:
                self.advantage_estimator.load_state_dict(json.load(f))
