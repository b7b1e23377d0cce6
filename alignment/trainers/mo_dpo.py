"""The multi-objective preference-optimization family on TRL's DPOTrainer: MODPO, cardinal margins, multi-head DPO,
mDPO / mIPO on groups, LiPO-lambda on lists, per-objective DPO (the registry: `alignment.trainers.dpo_losses`).

What changes relative to TRL (tokenization of pairs, the reference model or adapter, precomputed reference log-probs,
PEFT, DeepSpeed, logging and checkpointing stay TRL's):
- the loss: the component of `loss` (`args.loss_component`), whose maths is in
  `alignment.trainers.preference_losses`; the trainer computes the policy / reference log-ratios and hands them,
  the batch and the preference weights to it, and logs the metrics it returns;
- pairs carry extra columns the loss needs (MODPO's frozen margin rewards, the cardinal score gap, the objective
  that picks a head) and the collator passes them through (`alignment.data.collators`);
- lists and groups (K responses per prompt) are tokenized like TRL tokenizes a pair
  (`alignment.data.list_tokenization`) and collated as K sequences per prompt; a group is a list whose first k are
  chosen;
- multi-head DPO scores each pair with its objective's head (`alignment.models.multi_head`) and saves every head;
- per-objective DPO (`loss: per_objective`, pairs labelled per objective) scalarizes one DPO loss per objective under
  preference weights lambda; with `conditioning: adapter` lambda is drawn per row (or per batch) from a Dirichlet and
  fed as numbers to a preference adapter (Panacea, `alignment.models.preference_adapter`) for the policy's forward
  pass, so one checkpoint can be steered at inference; the reference is the base with the adapter disabled.

Logged (train and eval_): TRL's `rewards/chosen|rejected|margins|accuracies` of the implicit reward
s = beta * log pi/pi_ref (for groups: group means; for lists: over the label-ordered pairs), plus
`rewards/margins_<objective>`: per head for multi-head DPO, and for MODPO the trained objective's implied reward gap
(1/w_0)(s_w - s_l - w_{1:}.(m_w - m_l)) (the policy's own implicit reward estimates the weighted sum of objectives).
Per-objective DPO logs `rewards/margins_<objective>` (beta * label * Delta over the pairs labelled for it).
Whenever the weights are per row (per-objective DPO's lambda, prompt-aware weights) the batch mean of each
objective's weight is logged as `weights/<objective>`. Checkpoints carry `objectives.json` and a model card
(`alignment.hub.record`), trainer "dpo:<loss>"; with the adapter, steering "adapter".
With `weights_mode: prompt_aware` (modpo, lipo) each prompt's weights come from a Preference Orchestrator
(`alignment.orchestrator`), once per distinct prompt, as a `preference_weights` column [K] per row: MODPO's margin
uses each pair's own weights, LiPO's list labels are scalarized under them (`attach_list_labels`). A dataset may
carry that column itself (fixed mode): each row then trains under its own weights (the losses that take weights per
row: modpo, lipo, per_objective).
Per-row loss weights: a dataset's `pair_weight_column` (default `pair_weight`) scales each pair's, group's or
list's loss (`PreferenceLoss.reduce`: sum_i p_i l_i / sum_i p_i over the micro-batch). With a `weights_schedule`
(modpo, per_objective) the weights of the update from step s are the schedule at s (`alignment.objectives.schedules`;
rows with their own weights are tilted by it), logged as `weights/<objective>` every step and recorded.
"""

from __future__ import annotations

import hashlib

import torch
from datasets import Dataset
from trl import DPOTrainer

from alignment.data.collators import _ListCollator, _PairCollatorWithExtras
from alignment.data.list_tokenization import TOKENIZED_LIST_COLUMNS, tokenize_lists
from alignment.data.preferences.formats import PROMPT_WEIGHTS_COLUMN, check_pair_weight, check_row_weights
from alignment.hub.checkpointing import ResumableCheckpointsMixin
from alignment.hub.record import build_record
from alignment.hub.steerable import SteerableCheckpointMixin
from alignment.models.preference_adapter import (
    has_preference_adapter,
    keep_preference_under_checkpointing,
    preference_adapter_config,
    preference_weights,
)
from alignment.objectives.schedules import dirichlet_alpha_at, tilt_weights
from alignment.objectives.sources import objectives_to_dict
from alignment.objectives.weights import sample_dirichlet_weights
from alignment.orchestrator import PreferenceOrchestrator, weights_in_order
from alignment.trainers.distributed_evaluation import DistributedEvaluationMixin
from alignment.trainers.dpo_config import MultiObjectiveDPOConfig
from alignment.trainers.dpo_losses import PER_OBJECTIVE

__all__ = ["MultiObjectiveDPOConfig", "MultiObjectiveDPOTrainer"]


class MultiObjectiveDPOTrainer(ResumableCheckpointsMixin, SteerableCheckpointMixin, DistributedEvaluationMixin,
                               DPOTrainer):
    """TRL's DPOTrainer with a multi-objective preference loss (see the module docstring).

    Datasets, by `args.loss` (see `alignment.data.preferences` for loaders and validators, and each loss's component
    in `alignment.trainers.dpo_losses` for the columns it needs):
    - modpo: pairs of the trained objective with `chosen_margins`, `rejected_margins` [K-1] (`add_margin_rewards`);
    - cardinal: pairs with `score_gap` >= 0;
    - mah: pairs with `objective` naming a head of the model (`alignment.models.multi_head.add_lm_heads`);
    - per_objective: pairs with `objective_labels` [K] (or one `objective`);
    - mdpo / mipo: groups {prompt, chosen: [k], rejected: [k]};
    - lipo: lists {prompt, completions: [K], labels: [K]}.

    `evaluation_weights`: one weight vector [K] every evaluation pair of a loss with weights per pair is scored
    under (a steerable checkpoint's margins at chosen weights); None: the training distribution of weights.
    """

    _tag_names = ["trl", "dpo", "moalign"]
    _name = "MultiObjectiveDPO"

    def __init__(self, model, ref_model=None, args: MultiObjectiveDPOConfig | None = None, train_dataset=None,
                 eval_dataset=None, processing_class=None, peft_config=None, dataset_names: list[str] | None = None,
                 **kwargs):
        if args is None or not isinstance(args, MultiObjectiveDPOConfig):
            raise TypeError("MultiObjectiveDPOTrainer needs a MultiObjectiveDPOConfig as `args`")
        self.loss_component = args.loss_component
        self._format = self.loss_component.data_format
        self.dataset_names = list(dataset_names or [])
        self.objective_names = args.objective_names
        self.preference_weights = args.fixed_weight_vector()  # checked by the config
        self.weight_schedule = args.weight_schedule()
        self.evaluation_weights: torch.Tensor | None = None
        self._prompt_aware = args.weights_mode == "prompt_aware"
        self._orchestrator = None  # loaded only if a dataset comes without its rows' weights
        # What the collators pass on beside the tokens (a column a dataset does not carry is left out of its batches)
        self._extra_columns = self.loss_component.batch_columns + (PROMPT_WEIGHTS_COLUMN, args.pair_weight_column)
        self.loss_component.prepare_policy(model, peft_config)
        adapter_spec = None
        if args.uses_preference_adapter:
            peft_config, adapter_spec = self._preference_adapter_config(model, ref_model, peft_config, args)
        if args.weights_mode == "dirichlet":
            self.dirichlet_alpha = args.dirichlet_alpha_vector()
        train_dataset = self._check_and_shape(train_dataset, args, "train_dataset")
        if isinstance(eval_dataset, dict):
            eval_dataset = {k: self._check_and_shape(v, args, f"eval_dataset['{k}']") for k, v in eval_dataset.items()}
        elif eval_dataset is not None:
            eval_dataset = self._check_and_shape(eval_dataset, args, "eval_dataset")
        self._reference_is_initial_policy = ref_model is None and peft_config is None
        super().__init__(model=model, ref_model=ref_model, args=args, train_dataset=train_dataset,
                         eval_dataset=eval_dataset, processing_class=processing_class, peft_config=peft_config,
                         **kwargs)
        if adapter_spec is not None:  # TRL wrapped the policy in peft with our preference layers
            policy = self.accelerator.unwrap_model(self.model)
            policy.preference_spec = adapter_spec
            keep_preference_under_checkpointing(policy)
        # TRL built its pair collator (and used it for any reference precompute); ours adds what the loss reads.
        if self._format == "pairs":
            self.data_collator = _PairCollatorWithExtras(self.data_collator, self._extra_columns)
        else:
            self.data_collator = _ListCollator(self._tokenizer.pad_token_id, args.max_length, args.truncation_mode,
                                               args.pad_to_multiple_of, fields=self._extra_columns)

    @staticmethod
    def _preference_adapter_config(model, ref_model, peft_config, args):
        """The preference adapter, as the peft_config TRL applies: TRL then computes the reference with the adapter
        disabled (the frozen base), which needs no lambda."""
        if peft_config is not None:
            raise ValueError("conditioning 'adapter': the preference adapter is the policy's peft adapter; do not pass "
                             "a LoRA peft_config (use_peft) as well")
        if ref_model is not None:
            raise ValueError("conditioning 'adapter': the reference is the base with the adapter disabled; "
                             "do not pass ref_model")
        if not isinstance(model, str) and has_preference_adapter(model):
            raise ValueError("conditioning 'adapter': pass the base model; the trainer adds the preference adapter "
                             "(resume a run with resume_from_checkpoint)")
        return preference_adapter_config(
            args.objective_names, rank=args.preference_adapter_rank, lora_alpha=args.preference_adapter_alpha,
            target_modules=args.preference_adapter_target_modules, lambda_scale=args.preference_adapter_lambda_scale)

    # ------------------------------------------------------------------------------------------ data

    def _check_and_shape(self, dataset, args: MultiObjectiveDPOConfig, name: str):
        """Fail before any training step if a column the loss needs is missing; shape the rows for the loss (groups
        become lists); attach prompt-aware weights."""
        if dataset is None:
            return None
        if not isinstance(dataset, Dataset):
            raise TypeError(f"{name}: expected a datasets.Dataset, got {type(dataset).__name__}")
        columns = set(dataset.column_names)
        missing = sorted(self.loss_component.needed_columns(columns) - columns)
        if missing:
            raise ValueError(f"{name}: loss '{args.loss}' needs column(s) {missing}; the dataset has {sorted(columns)}")
        dataset = self.loss_component.prepare_rows(dataset, name)
        if args.pair_weight_column in dataset.column_names:
            for index, value in enumerate(dataset[args.pair_weight_column], start=1):
                check_pair_weight(value, f"{name}, row {index}, field '{args.pair_weight_column}'")
        if self._prompt_aware or PROMPT_WEIGHTS_COLUMN in dataset.column_names:
            dataset = self._with_prompt_weights(dataset, args, name)
        return dataset

    def _with_prompt_weights(self, dataset, args: MultiObjectiveDPOConfig, name: str):
        """Each row's `preference_weights` [K] (objective order): kept, checked and normalized when the data carry
        them (given by the user, or attached by the recipe: LiPO's labels were scalarized under them), else asked of
        the orchestrator (prompt-aware), once per distinct prompt."""
        if PROMPT_WEIGHTS_COLUMN in dataset.column_names:
            loss = self.loss_component
            if not (loss.takes_prompt_weights or loss.weights_per_pair) or args.weights_mode == "dirichlet":
                raise ValueError(f"{name}: rows carry their own preference_weights, but loss '{args.loss}' with "
                                 f"weights_mode '{args.weights_mode}' takes no weights per row; drop the column")
            weights = [check_row_weights(value, self.objective_names, f"{name}, row {index}, field "
                                         f"'{PROMPT_WEIGHTS_COLUMN}'")
                       for index, value in enumerate(dataset[PROMPT_WEIGHTS_COLUMN], start=1)]
            return dataset.remove_columns(PROMPT_WEIGHTS_COLUMN).add_column(PROMPT_WEIGHTS_COLUMN, weights)
        if self._orchestrator is None:
            self._orchestrator = PreferenceOrchestrator.from_pretrained(args.orchestrator_name_or_path)
        weights = weights_in_order(self._orchestrator, dataset["prompt"], args.orchestrator_objective_names)
        return dataset.add_column(PROMPT_WEIGHTS_COLUMN, weights.tolist())

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if self._format == "pairs":
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        return tokenize_lists(dataset, processing_class, self._tokenizer.eos_token, args.max_length,
                              args.truncation_mode, args.dataset_num_proc, dataset_name, keep=self._extra_columns)

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            if self._format == "pairs":
                super()._set_signature_columns_if_needed()
                self._signature_columns = self._signature_columns + list(self._extra_columns)
            else:
                self._signature_columns = list(TOKENIZED_LIST_COLUMNS) + list(self._extra_columns)

    # ------------------------------------------------------------------------------------------ loss

    def _sequence_logps(self, model, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed completion log-probs of every sequence under the policy, and under the reference."""
        completion_mask = inputs["completion_mask"]
        model_inputs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        seq_len = completion_mask.size(1) - 1
        if self._policy_is_reference:  # see DistributedEvaluationMixin: FSDP, before train()
            ref_logps = torch.cat(self.compute_ref_log_probs(self.ref_model, {**model_inputs,
                                                                                "completion_mask": completion_mask}))
            return ref_logps, ref_logps
        outputs = model(**model_inputs, labels=labels, use_cache=False, **self.loss_component.forward_kwargs(inputs))
        logps = outputs.log_probs[:, -seq_len:].sum(dim=1)

        if self.precompute_ref_logps:
            ref_logps = torch.cat([inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]]).to(logps)
        else:
            # TRL's reference pass: the reference model, or the policy with its adapter disabled (PEFT).
            reference = self.ref_model if self.ref_model is not None else model
            ref_inputs = {**model_inputs, "completion_mask": completion_mask}
            ref_logps = torch.cat(self.compute_ref_log_probs(reference, ref_inputs)).to(logps)
        return logps, ref_logps

    def _compute_loss(self, model, inputs, return_outputs):
        if return_outputs:
            raise ValueError("MultiObjectiveDPOTrainer does not return logits; use prediction_loss_only=True")
        mode = "train" if self.model.training else "eval"
        weights = self._batch_weights(inputs, mode)
        if weights.dim() == 2 or self.weight_schedule is not None:  # per row, or moving: each objective's batch mean
            self._log_metrics({f"weights/{PER_OBJECTIVE}": weights.reshape(-1, weights.shape[-1])}, mode)
        if self.args.uses_preference_adapter:  # lambda of each pair for its chosen and its rejected row
            with preference_weights(model, weights.repeat(2, 1)):
                logps, ref_logps = self._sequence_logps(model, inputs)
        else:
            logps, ref_logps = self._sequence_logps(model, inputs)
        loss, metrics = self.loss_component.compute(logps - ref_logps, inputs, weights)
        self._log_metrics(metrics, mode)
        self._metrics[mode]["logps/policy"].append(self.accelerator.gather(logps.detach()).mean().item())
        return loss

    def current_weights(self) -> torch.Tensor:
        """[K] the fixed weights, or the weight schedule at the current global step (a pure function of the step and
        max_steps, both restored with a checkpoint: a resumed run computes the same weights)."""
        if self.weight_schedule is None:
            return self.preference_weights
        return self.weight_schedule.at(self.state.global_step, self.state.max_steps or self.args.max_steps)

    def _batch_weights(self, inputs: dict, mode: str) -> torch.Tensor:
        """The preference weights the batch trains under: each row's own [N, K] (prompt-aware or given in the data,
        tilted by a schedule; or lambda per pair for a loss with weights per pair), else the fixed or scheduled
        weights [K]."""
        if PROMPT_WEIGHTS_COLUMN in inputs:
            own = inputs[PROMPT_WEIGHTS_COLUMN]
            if self.weight_schedule is None:
                return own
            return tilt_weights(own, self.weight_schedule.start, self.current_weights())
        if self.loss_component.weights_per_pair:
            return self._pair_weights(inputs, mode)
        return self.current_weights().to(inputs["input_ids"].device)  # logged: gathered across processes

    def _pair_weights(self, inputs: dict, mode: str) -> torch.Tensor:
        """[N, K] lambda of each pair: the fixed weights, or Dirichlet draws keyed by (step, the pair's tokens)
        (per row) or by the step (per batch), so every process and a resumed run draw the same lambda."""
        rows = inputs["input_ids"].shape[0] // 2  # [chosen; rejected]
        device = inputs["input_ids"].device
        if mode == "eval" and self.evaluation_weights is not None:
            return self.evaluation_weights.to(device).expand(rows, -1)
        if self.args.weights_mode == "fixed":
            return self.current_weights().to(device).expand(rows, -1)
        step = f"{mode}:{self.state.global_step if mode == 'train' else 'eval'}"
        alpha = self.dirichlet_alpha
        if self.weight_schedule is not None:  # the Dirichlet's mean follows the schedule
            alpha = dirichlet_alpha_at(alpha, self.current_weights())
        if self.args.weights_per == "batch":
            return sample_dirichlet_weights(alpha, [step], self.args.seed).to(device).expand(rows, -1)
        tokens = [ids[mask.bool()].cpu().numpy().tobytes()  # without padding: the key is the pair's, not the batch's
                  for ids, mask in zip(inputs["input_ids"][:rows], inputs["attention_mask"][:rows])]
        keys = [f"{step}:{hashlib.sha256(t).hexdigest()[:16]}" for t in tokens]
        return sample_dirichlet_weights(alpha, keys, self.args.seed).to(device)

    def _log_metrics(self, metrics: dict[str, torch.Tensor], mode: str) -> None:
        """Log a loss's metrics (see `alignment.trainers.dpo_losses.base`): each tensor gathered from every process
        and averaged; a name with the per-objective placeholder is logged once per objective."""
        for name, values in metrics.items():
            if PER_OBJECTIVE in name:
                self._log_objective_means(name, values.detach(), mode)
            else:
                self._metrics[mode][name].append(self.accelerator.gather(values.detach()).mean().item())

    def _log_objective_means(self, name: str, values: torch.Tensor, mode: str) -> None:
        """`name` per objective: the mean of each column of values [N, K] over its non-NaN rows, on every process.
        A process that saw no row of an objective contributes NaN, which the gathered nanmean ignores."""
        local = values.float().nanmean(dim=0)
        gathered = self.accelerator.gather(local.unsqueeze(0))
        for column, objective in enumerate(self.objective_names):
            if not torch.isnan(gathered[:, column]).all():
                self._metrics[mode][name.replace(PER_OBJECTIVE, objective)].append(
                    gathered[:, column].nanmean().item())

    # ------------------------------------------------------------------------------------------ checkpoints

    def objectives_record(self) -> dict:
        """What this checkpoint was trained for (alignment.hub.record): objectives, weights, loss, heads."""
        args, loss = self.args, self.loss_component
        policy = self.accelerator.unwrap_model(self.model)
        max_steps = self.state.max_steps or args.max_steps
        extra = {"loss": args.loss, "beta": self.beta,
                 "weights_schedule": args.schedule_record(self.state.global_step, max_steps)}
        adapter = args.uses_preference_adapter
        if adapter:
            extra["preference_adapter"] = args.preference_adapter_record(base_trained=False)
        extra.update(loss.record_extras(policy))
        weighted = loss.uses_weights and args.weights_mode == "fixed"
        weights = self.current_weights().tolist()  # under a schedule: the weights in force from the saved step on
        return build_record(
            trainer=f"dpo:{args.loss}",
            base_model=getattr(policy.config, "_name_or_path", None) or "unknown",
            objectives=objectives_to_dict(loss.record_objectives(f"preference_{self._format}")),
            weights={n: round(w, 6) for n, w in zip(self.objective_names, weights)} if weighted else None,
            weight_distribution=args.weight_distribution_record(),
            scalarization=loss.scalarization,
            steering=loss.steering or ("adapter" if adapter else "none"),
            datasets=self.dataset_names,
            extra=extra,
        )

    def _save_policy(self, output_dir: str, state_dict: dict | None) -> None:
        if not self.loss_component.saves_policy_itself:
            super()._save_policy(output_dir, state_dict)
        elif self.args.should_save:
            self.loss_component.save_policy(self.accelerator.unwrap_model(self.model), output_dir, state_dict,
                                            self.processing_class)

    def _load_policy(self, resume_from_checkpoint: str, model=None) -> None:
        super()._load_policy(resume_from_checkpoint, model)
        # DeepSpeed and FSDP restore the whole module from their own checkpoint files, extra heads included.
        if not (self.is_deepspeed_enabled or self.is_fsdp_enabled):
            policy = self.accelerator.unwrap_model(model if model is not None else self.model)
            self.loss_component.load_policy_extras(policy, resume_from_checkpoint)
