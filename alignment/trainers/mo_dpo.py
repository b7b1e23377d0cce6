"""The multi-objective preference-optimization family on TRL's DPOTrainer: MODPO, cardinal margins, multi-head DPO,
mDPO / mIPO on groups, LiPO-lambda on lists.

What changes relative to TRL (tokenization of pairs, the reference model or adapter, precomputed reference log-probs,
PEFT, DeepSpeed, logging and checkpointing stay TRL's):
- the loss: one of `alignment.trainers.preference_losses`, chosen by `loss`;
- pairs carry extra columns the loss needs (MODPO's frozen margin rewards, the cardinal score gap, the objective
  that picks a head) and the collator passes them through;
- lists and groups (K responses per prompt) are tokenized like TRL tokenizes a pair (same chat template, same
  prompt / completion split) and collated as K sequences per prompt; a group is a list whose first k are chosen;
- multi-head DPO scores each pair with its objective's head (`alignment.models.multi_head`) and saves every head;
- per-objective DPO (`loss: per_objective`, pairs labelled per objective) scalarizes one DPO loss per objective under
  preference weights lambda; with `conditioning: adapter` lambda is drawn per row (or per batch) from a Dirichlet and
  fed as numbers to a preference adapter (Panacea, `alignment.models.preference_adapter`) for the policy's forward pass, so
  one checkpoint can be steered at inference; the reference is the base with the adapter disabled.

Logged (train and eval_): TRL's `rewards/chosen|rejected|margins|accuracies` of the implicit reward
s = beta * log pi/pi_ref (for groups: group means; for lists: over the label-ordered pairs), plus
`rewards/margins_<objective>`: per head for multi-head DPO, and for MODPO the trained objective's implied reward gap
(1/w_0)(s_w - s_l - w_{1:}.(m_w - m_l)) (the policy's own implicit reward estimates the weighted sum of objectives).
Per-objective DPO logs `rewards/margins_<objective>` (beta * label * Delta over the pairs labelled for it) and
`weights/<objective>` (the mean lambda). Checkpoints carry `objectives.json` and a model card
(`alignment.hub.record`), trainer "dpo:<loss>"; with the adapter, steering "adapter".
With `weights_mode: prompt_aware` (modpo, lipo) each prompt's weights come from a Preference Orchestrator
(`alignment.orchestrator`), once per distinct prompt, as a `preference_weights` column [K] per row: MODPO's margin
uses each pair's own weights, LiPO's list labels are scalarized under them (`attach_list_labels`); the batch mean of
each objective's weight is logged as `weights/<objective>`.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from datasets import Dataset
from accelerate.utils import model_has_dtensor
from trl import DPOConfig, DPOTrainer
from trl.distributed import DistributedBackend
from trl.data_utils import _tokenize, common_prefix_length, is_conversational
from trl.trainer.utils import pad

from alignment.hub.checkpointing import ResumableCheckpointsMixin
from alignment.hub.record import build_record
from alignment.hub.steerable import SteerableCheckpointMixin
from alignment.models.multi_head import head_names, load_lm_heads, save_multi_head_model
from alignment.trainers.preference_losses import (
    CARDINAL_MODES,
    cardinal_dpo_loss,
    LIPO_REDUCTIONS,
    lipo_lambda_loss,
    mah_dpo_loss,
    mdpo_loss,
    mipo_loss,
    modpo_objective_margin,
    OBJECTIVE_SCALARIZATIONS,
    per_objective_dpo_losses,
    scalarized_dpo_loss,
)
from alignment.objectives.sources import Objective, objectives_to_dict, parse_objective_specs
from alignment.trainers.arguments import WEIGHTS_MODES, PreferenceAdapterArguments, PreferenceWeightsArguments
from alignment.models.preference_adapter import (
    has_preference_adapter,
    preference_adapter_config,
    preference_weights,
)
from alignment.objectives.weights import sample_dirichlet_weights

LOSSES = ("modpo", "cardinal", "mdpo", "mipo", "lipo", "mah", "per_objective")
# the losses whose margins, list labels or per-objective losses use the preference weights
WEIGHTED_LOSSES = ("modpo", "lipo", "per_objective")
PROMPT_AWARE_LOSSES = ("modpo", "lipo")  # weights fixed into margins / list labels per row, before the loss
PROMPT_WEIGHTS_COLUMN = "preference_weights"  # prompt_aware: each row's weights [K], in objective order
LOSS_FORMAT = {"modpo": "pairs", "cardinal": "pairs", "mah": "pairs", "mdpo": "groups", "mipo": "groups", "lipo": "lists",
               "per_objective": "pairs"}
# Columns each loss reads from a batch, beyond TRL's tokenized pair; they must survive `remove_unused_columns`.
EXTRA_PAIR_COLUMNS = {"modpo": ("chosen_margins", "rejected_margins"), "cardinal": ("score_gap",), "mah": ("head_id",),
                      "per_objective": ("objective_labels",)}
WEIGHTS_PER = ("row", "batch")
# Text headers are GRPO's: DPO tokenizes prompts once, before any weights are drawn.
DPO_CONDITIONING = ("none", "adapter")


@dataclass
class MultiObjectiveDPOConfig(PreferenceWeightsArguments, PreferenceAdapterArguments, DPOConfig):
    """DPOConfig plus the multi-objective settings.

    Loss: `loss` (modpo, cardinal, mah, per_objective on pairs; mdpo, mipo on groups; lipo on lists) and `beta`.
    Objectives and weights: `objectives`, `preference_weights`.
    Cardinal margins: `cardinal_mode`, `cardinal_scale`. Lists: `list_scalarization`.
    Multi-head: `plain_head`.
    Per-objective DPO and steerable checkpoints: `scalarization`, `conditioning`, `weights_mode`, `dirichlet_alpha`,
    `weights_per`, `preference_adapter_rank`, `preference_adapter_target_modules`, `preference_adapter_alpha`,
    `preference_adapter_lambda_scale`.
    """

    loss: str = field(
        default="modpo",
        metadata={"help": "Which preference loss: modpo | cardinal | mah | per_objective (pairs), mdpo | mipo (groups "
                          "of k chosen vs k rejected), lipo (LiPO-lambda on ranked lists). per_objective: pairs "
                          "labelled per objective (`objective_labels`, or one `objective`), one DPO loss per objective "
                          "combined under the weights (`scalarization`)."},
    )
    objectives: list[str] = field(
        default_factory=lambda: ["helpful", "conciseness"],
        metadata={"help": "Objectives in weight order. modpo: the trained objective (its pairs) first, then the margin "
                          "objectives as specs (built-in name, 'name=python:mod:fn', 'name=rm:HEAD'). mah: one head per "
                          "objective. lipo: the columns of the lists' reward vectors."},
    )
    cardinal_mode: str = field(
        default="weight",
        metadata={"help": "cardinal: 'weight' scales each pair's loss by cardinal_scale * score gap; 'offset' asks the "
                          "chosen reply to win by cardinal_scale * score gap (ODPO)."},
    )
    cardinal_scale: float = field(
        default=0.25,
        metadata={"help": "cardinal: multiplier of the score gap. 0.25 makes an average UltraFeedback gap (~3 points) "
                          "weigh about as much as a plain DPO pair."},
    )
    list_scalarization: str = field(
        default="linear",
        metadata={"help": "lipo: how a list's reward vectors become labels under the weights (alignment.objectives.scalarize: "
                          "linear, tchebycheff, worst_case); ignored for lists that carry labels or ranks."},
    )
    lipo_reduction: str = field(
        default="rax",
        metadata={"help": "lipo: 'rax' (default) is the loss scale of RAX's pairwise_logistic_loss with "
                          "dcg_lambdaweight and a mean over pairs, the call in LiPO's Algorithm 1 (lambda weights "
                          "times the list size, mean over the batch's valid pairs); 'sum' sums each list's pair "
                          "losses (eq. 11 unnormalized) and averages the lists."},
    )
    plain_head: str | None = field(
        default=None,
        metadata={"help": "mah: the head written as the plain `lm_head` of saved checkpoints, so plain transformers "
                          "loads that one. Default: the first objective."},
    )
    scalarization: str = field(
        default="linear",
        metadata={"help": "per_objective: how the per-objective DPO losses combine under the weights lambda: 'linear' "
                          "(sum_k lambda_k L_k) or 'tchebycheff' (max_k lambda_k L_k; ideal point 0, alignment.objectives.scalarize)."},
    )
    conditioning: str = field(
        default="none",
        metadata={"help": "per_objective: 'adapter' feeds each row's weights as numbers to a preference adapter "
                          "(Panacea-style SVD-LoRA on the policy; the reference is the base with the adapter disabled), "
                          "so the checkpoint can be steered by new weights at inference; 'none' trains one fixed "
                          "preference. (Text headers are GRPO's: DPO tokenizes prompts once, before the weights are drawn.)"},
    )
    weights_per: str = field(
        default="row",
        metadata={"help": "dirichlet: 'row' draws lambda per pair (each pair's loss under its own weights); 'batch' "
                          "draws one lambda per optimizer step, shared by every pair, micro-batch and process, so the "
                          "per-objective losses are batch means scalarized once (Tchebycheff then compares objectives "
                          "across pairs)."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.loss not in LOSSES:
            raise ValueError(f"loss: unknown loss '{self.loss}'; expected one of {LOSSES}")
        if self.lipo_reduction not in LIPO_REDUCTIONS:
            raise ValueError(f"lipo_reduction: unknown reduction '{self.lipo_reduction}'; expected one of {LIPO_REDUCTIONS}")
        if self.cardinal_mode not in CARDINAL_MODES:
            raise ValueError(f"cardinal_mode: unknown mode '{self.cardinal_mode}'; expected one of {CARDINAL_MODES}")
        if isinstance(self.objectives, str):
            self.objectives = [s.strip() for s in self.objectives.split(",") if s.strip()]
        self._check_preference_conditioning()
        # TRL's own loss variants are not used by this trainer: refuse settings that would silently do nothing.
        if self.ld_alpha is not None or self.f_divergence_type != "reverse_kl" or self.use_weighting:
            raise ValueError("ld_alpha, f_divergence_type and use_weighting are TRL loss options; "
                             "MultiObjectiveDPOTrainer computes its own loss (set `loss`)")
        if self.loss in ("mdpo", "mipo", "lipo") and self.precompute_ref_log_probs:
            raise ValueError(f"loss '{self.loss}': precompute_ref_log_probs stores one chosen/rejected value per row "
                             "and does not fit lists or groups; leave it false")
        # Weights are checked when the config is parsed, before a recipe loads any data or model.
        if self.weights_mode == "prompt_aware" and self.loss not in PROMPT_AWARE_LOSSES:
            raise ValueError(f"weights_mode 'prompt_aware': loss '{self.loss}' takes no weights per row; only "
                             f"{PROMPT_AWARE_LOSSES} do")
        self.check_preference_weights()
        weights = self.fixed_weight_vector()
        if self.preference_weights and self.loss not in WEIGHTED_LOSSES:
            warnings.warn(f"preference_weights are ignored by loss '{self.loss}': only {WEIGHTED_LOSSES} use them",
                          UserWarning, stacklevel=2)
        if self.loss == "modpo" and self.weights_mode == "fixed" and weights[0] <= 0:
            raise ValueError(f"loss 'modpo': the trained objective '{self.objective_names[0]}' needs a weight > 0 "
                             f"(MODPO divides by it); got preference_weights={self.preference_weights!r}")

    def _check_preference_conditioning(self) -> None:
        for name, value, allowed in (("conditioning", self.conditioning, DPO_CONDITIONING),
                                     ("weights_mode", self.weights_mode, WEIGHTS_MODES),
                                     ("weights_per", self.weights_per, WEIGHTS_PER)):
            if value not in allowed:
                raise ValueError(f"{name}: unknown value '{value}'; expected one of {allowed}")
        if self.loss == "per_objective":
            if self.scalarization not in OBJECTIVE_SCALARIZATIONS:
                raise ValueError(f"scalarization: per-objective DPO combines losses by {OBJECTIVE_SCALARIZATIONS}, "
                                 f"got '{self.scalarization}'")
            if len(self.objective_names) < 2:
                raise ValueError(f"loss 'per_objective' needs at least 2 objectives, got {self.objective_names}")
        elif self.uses_preference_adapter or self.weights_mode == "dirichlet":
            raise ValueError(f"conditioning '{self.conditioning}' / weights_mode '{self.weights_mode}': a preference "
                             f"adapter learns lambda from a loss that is a function of lambda, one loss per objective "
                             f"weighted by it; loss '{self.loss}' has no per-objective losses (modpo and lipo bake fixed "
                             "weights into margins or list labels before training, cardinal / mdpo / mipo have one "
                             "objective, mah one head per objective). Use loss 'per_objective' on pairs labelled per "
                             "objective")
        if self.weights_mode == "dirichlet":
            if not self.uses_preference_adapter:
                raise ValueError("weights_mode 'dirichlet' without conditioning 'adapter': the policy would never see "
                                 "the weights it is trained under; set conditioning: adapter")
        self.check_preference_adapter()


class MultiObjectiveDPOTrainer(ResumableCheckpointsMixin, SteerableCheckpointMixin, DPOTrainer):
    """TRL's DPOTrainer with a multi-objective preference loss (see the module docstring).

    Datasets, by `args.loss` (see `alignment.data.preferences` for loaders and validators):
    - modpo: pairs of the trained objective with `chosen_margins`, `rejected_margins` [K-1] (`add_margin_rewards`);
    - cardinal: pairs with `score_gap` >= 0;
    - mah: pairs with `objective` naming a head of the model (`alignment.models.multi_head.add_lm_heads`);
    - mdpo / mipo: groups {prompt, chosen: [k], rejected: [k]};
    - lipo: lists {prompt, completions: [K], labels: [K]}.
    """

    _tag_names = ["trl", "dpo", "moalign"]
    _name = "MultiObjectiveDPO"

    def __init__(self, model, ref_model=None, args: MultiObjectiveDPOConfig | None = None, train_dataset=None,
                 eval_dataset=None, processing_class=None, peft_config=None, dataset_names: list[str] | None = None,
                 **kwargs):
        if args is None or not isinstance(args, MultiObjectiveDPOConfig):
            raise TypeError("MultiObjectiveDPOTrainer needs a MultiObjectiveDPOConfig as `args`")
        self._format = LOSS_FORMAT[args.loss]
        self.dataset_names = list(dataset_names or [])
        self.objective_names = args.objective_names
        self.preference_weights = args.fixed_weight_vector()  # checked by the config
        # per_objective: one weight vector [K] every evaluation pair is scored under (a steerable checkpoint's
        # margins at chosen weights); None: the training distribution of weights
        self.evaluation_weights: torch.Tensor | None = None
        self._prompt_aware = args.weights_mode == "prompt_aware"
        self._orchestrator = None  # loaded only if a dataset comes without its rows' weights
        self._extra_columns = EXTRA_PAIR_COLUMNS.get(args.loss, ()) + ((PROMPT_WEIGHTS_COLUMN,) if self._prompt_aware else ())
        if args.loss == "mah":
            if isinstance(model, str) or not hasattr(model, "extra_lm_heads"):
                raise ValueError("loss 'mah' needs a model with one head per objective: "
                                 "alignment.models.multi_head.add_lm_heads(model, objectives)")
            if head_names(model) != self.objective_names:
                raise ValueError(f"loss 'mah': the model's heads {head_names(model)} differ from objectives {self.objective_names}")
            if peft_config is not None:
                raise ValueError("loss 'mah' trains full vocabulary heads; LoRA (peft_config) is not supported with it")
            if args.plain_head:
                model.config.multi_head["plain_head"] = args.plain_head
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
                         eval_dataset=eval_dataset, processing_class=processing_class, peft_config=peft_config, **kwargs)
        if adapter_spec is not None:  # TRL wrapped the policy in peft with our preference layers
            self.accelerator.unwrap_model(self.model).preference_spec = adapter_spec
        # TRL built its pair collator (and used it for any reference precompute); ours adds what the loss reads.
        if self._format == "pairs":
            self.data_collator = _PairCollatorWithExtras(self.data_collator, self._extra_columns)
        else:
            self.data_collator = _ListCollator(self._tokenizer.pad_token_id, args.max_length, args.truncation_mode,
                                               args.pad_to_multiple_of, with_weights=self._prompt_aware)

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
        """Fail before any training step if a column the loss needs is missing; turn groups into lists."""
        if dataset is None:
            return None
        if not isinstance(dataset, Dataset):
            raise TypeError(f"{name}: expected a datasets.Dataset, got {type(dataset).__name__}")
        columns = set(dataset.column_names)
        needed = {"pairs": {"prompt", "chosen", "rejected"}, "groups": {"prompt", "chosen", "rejected"},
                  "lists": {"prompt", "completions", "labels"}}[self._format]
        needed |= set(EXTRA_PAIR_COLUMNS.get(args.loss, ())) - {"head_id", "objective_labels"}
        if args.loss == "mah" or args.loss == "per_objective" and "objective_labels" not in columns:
            needed.add("objective")
        missing = sorted(needed - columns)
        if missing:
            raise ValueError(f"{name}: loss '{args.loss}' needs column(s) {missing}; the dataset has {sorted(columns)}")
        if args.loss == "modpo":
            width = len(dataset[0]["chosen_margins"])
            if width != len(self.objective_names) - 1:
                raise ValueError(f"{name}: rows carry {width} margin rewards; objectives {self.objective_names} need "
                                 f"{len(self.objective_names) - 1} (one per objective after the trained one)")
        if args.loss == "mah":
            unknown = sorted(set(dataset["objective"]) - set(self.objective_names))
            if unknown:
                raise ValueError(f"{name}: objective(s) {unknown} have no head; heads are {self.objective_names}")
            names = list(self.objective_names)
            dataset = dataset.map(lambda row: {"head_id": names.index(row["objective"])})
        if args.loss == "per_objective":
            dataset = self._objective_labels(dataset, name)
        if self._prompt_aware:
            dataset = self._with_prompt_weights(dataset, args, name)
        if self._format == "groups":
            if not isinstance(dataset[0]["chosen"], list) or not isinstance(dataset[0]["chosen"][0], (list, str)):
                raise ValueError(f"{name}: loss '{args.loss}' needs groups: 'chosen' and 'rejected' as lists of responses")
            dataset = dataset.map(
                lambda row: {"completions": row["chosen"] + row["rejected"],
                             "labels": [1.0] * len(row["chosen"]) + [0.0] * len(row["rejected"])},
                remove_columns=["chosen", "rejected"],
            )
        return dataset

    def _objective_labels(self, dataset, name: str):
        """Every pair's `objective_labels` [K] in objective order (+1 chosen better, -1 rejected better, 0 no label);
        a pair labelled for one `objective` gets +1 there and 0 elsewhere."""
        names = list(self.objective_names)
        if "objective_labels" not in dataset.column_names:
            unknown = sorted(set(dataset["objective"]) - set(names))
            if unknown:
                raise ValueError(f"{name}: objective(s) {unknown} are not among objectives {names}")
            return dataset.map(lambda row: {"objective_labels": [float(row["objective"] == n) for n in names]})
        for index, labels in enumerate(dataset["objective_labels"]):
            if not isinstance(labels, list) or len(labels) != len(names) or any(v not in (-1, 0, 1) for v in labels):
                raise ValueError(f"{name}, row {index + 1}: objective_labels must be {len(names)} values in "
                                 f"{{-1, 0, 1}} (one per objective {names}), got {labels!r:.80}")
            if not any(labels):
                raise ValueError(f"{name}, row {index + 1}: objective_labels are all 0; the pair states no preference")
        return dataset

    def _with_prompt_weights(self, dataset, args: MultiObjectiveDPOConfig, name: str):
        """Each row's `preference_weights` [K] (objective order): kept when the recipe attached them (LiPO's labels
        were scalarized under them), else asked of the orchestrator, once per distinct prompt."""
        if PROMPT_WEIGHTS_COLUMN in dataset.column_names:
            width = len(dataset[0][PROMPT_WEIGHTS_COLUMN])
            if width != len(self.objective_names):
                raise ValueError(f"{name}: rows carry {width} preference_weights; objectives {self.objective_names} "
                                 f"need {len(self.objective_names)}")
            return dataset
        from alignment.orchestrator import PreferenceOrchestrator, weights_in_order

        if self._orchestrator is None:
            self._orchestrator = PreferenceOrchestrator.from_pretrained(args.orchestrator_name_or_path)
        weights = weights_in_order(self._orchestrator, dataset["prompt"], args.orchestrator_objective_names)
        return dataset.add_column(PROMPT_WEIGHTS_COLUMN, weights.tolist())

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        if self._format == "pairs":
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if "prompt_ids" in dataset.column_names:
            return dataset

        eos = self._tokenizer.eos_token

        def tokenize_list(row):
            # As TRL does for a pair: the completion starts where the tokenized prompt and prompt+completion diverge.
            if is_conversational(row):
                prompt_ids = _tokenize(processing_class, row["prompt"], add_generation_prompt=True)["input_ids"]
                full = [_tokenize(processing_class, row["prompt"] + c)["input_ids"] for c in row["completions"]]
            else:
                prompt_ids = _tokenize(processing_class, row["prompt"])["input_ids"]
                full = [_tokenize(processing_class, row["prompt"] + (c if c.endswith(eos) else c + eos))["input_ids"]
                        for c in row["completions"]]
            prompt_len = min(common_prefix_length(prompt_ids, ids) for ids in full)
            return {"prompt_ids": prompt_ids[:prompt_len], "completion_ids": [ids[prompt_len:] for ids in full],
                    "list_labels": [float(v) for v in row["labels"]],
                    **({PROMPT_WEIGHTS_COLUMN: row[PROMPT_WEIGHTS_COLUMN]} if PROMPT_WEIGHTS_COLUMN in row else {})}

        dataset = dataset.map(tokenize_list, remove_columns=dataset.column_names, num_proc=args.dataset_num_proc,
                              desc=f"Tokenizing {dataset_name} lists")
        if args.max_length is not None and args.truncation_mode == "keep_start":
            dataset = dataset.filter(lambda row: len(row["prompt_ids"]) < args.max_length)
        return dataset

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            if self._format == "pairs":
                super()._set_signature_columns_if_needed()
                self._signature_columns = self._signature_columns + list(self._extra_columns)
            else:
                self._signature_columns = ["prompt_ids", "completion_ids", "list_labels", PROMPT_WEIGHTS_COLUMN]

    # ------------------------------------------------------------------------------------------ loss

    def _sequence_logps(self, model, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed completion log-probs of every sequence under the policy, and under the reference."""
        completion_mask = inputs["completion_mask"]
        model_inputs = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
        labels = inputs["input_ids"].masked_fill(completion_mask == 0, -100)
        seq_len = completion_mask.size(1) - 1
        if self._policy_is_reference:  # see evaluation_loop: FSDP, before train()
            ref_logps = torch.cat(self.compute_ref_log_probs(self.ref_model, {**model_inputs,
                                                                                "completion_mask": completion_mask}))
            return ref_logps, ref_logps
        if self.args.loss == "mah":
            # Each pair is scored by its objective's head; the batch is [chosen; rejected].
            head_ids = inputs["head_id"].repeat(2)
            outputs = model(**model_inputs, labels=labels, head_ids=head_ids, use_cache=False)
        else:
            outputs = model(**model_inputs, labels=labels, fused_lm_head=True, use_cache=False)
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
        if self.args.loss == "per_objective":
            inputs = {**inputs, "preference_weights": self._pair_weights(inputs, mode)}
        elif PROMPT_WEIGHTS_COLUMN in inputs:  # prompt_aware: the weights in use, per objective
            self._log_objective_means("weights/", inputs[PROMPT_WEIGHTS_COLUMN], mode)
        if self.args.uses_preference_adapter:  # lambda of each pair for its chosen and its rejected row
            with preference_weights(model, inputs["preference_weights"].repeat(2, 1)):
                logps, ref_logps = self._sequence_logps(model, inputs)
        else:
            logps, ref_logps = self._sequence_logps(model, inputs)
        logratios = logps - ref_logps
        if self._format == "pairs":
            loss = self._pair_loss(logratios, inputs, mode)
        else:
            loss = self._list_loss(logratios, inputs, mode)
        self._metrics[mode]["logps/policy"].append(self.accelerator.gather(logps.detach()).mean().item())
        return loss

    def _pair_loss(self, logratios: torch.Tensor, inputs: dict, mode: str) -> torch.Tensor:
        chosen, rejected = logratios.chunk(2)
        loss_name = self.args.loss
        if loss_name == "modpo":
            # prompt_aware: each pair's own weights [B, K]; else one vector for all
            weights = inputs.get(PROMPT_WEIGHTS_COLUMN, self.preference_weights)
            objective_margin = modpo_objective_margin(chosen, rejected, inputs["chosen_margins"],
                                                      inputs["rejected_margins"], weights, self.beta)
            loss = -F.logsigmoid(objective_margin).mean()  # = modpo_loss, whose logit we also log
            self._metrics[mode][f"rewards/margins_{self.objective_names[0]}"].append(
                self.accelerator.gather(objective_margin.detach()).mean().item())
        elif loss_name == "cardinal":
            losses = cardinal_dpo_loss(chosen, rejected, inputs["score_gap"], self.beta,
                                       self.args.cardinal_mode, self.args.cardinal_scale)
            loss = losses.mean()
        elif loss_name == "per_objective":
            labels, weights = inputs["objective_labels"], inputs["preference_weights"]
            per_objective = per_objective_dpo_losses(chosen, rejected, labels, self.beta)  # [N, K], NaN: no label
            if self.args.weights_mode == "fixed" or self.args.weights_per == "batch":
                # one lambda for the batch: each objective's mean loss, then one scalarization across objectives
                loss = scalarized_dpo_loss(per_objective.nanmean(dim=0, keepdim=True), weights[:1], self.args.scalarization)
            else:  # each pair under its own lambda
                loss = scalarized_dpo_loss(per_objective, weights, self.args.scalarization)
            loss = loss.nanmean()  # an objective no pair of the batch is labelled for takes no part
            margins = self.beta * (chosen - rejected).detach().unsqueeze(-1) * labels
            self._log_objective_means("rewards/margins_", margins.masked_fill(labels == 0, float("nan")), mode)
            self._log_objective_means("weights/", weights, mode)
        else:
            loss, _ = mah_dpo_loss(chosen, rejected, inputs["head_id"], self.beta)
            margins = self.beta * (chosen - rejected).detach()
            heads = inputs["head_id"].unsqueeze(-1) == torch.arange(len(self.objective_names), device=margins.device)
            self._log_objective_means("rewards/margins_", margins.unsqueeze(-1).masked_fill(~heads, float("nan")), mode)
        self._log_pair_metrics(self.beta * chosen.detach(), self.beta * rejected.detach(), mode)
        return loss

    def _log_objective_means(self, prefix: str, values: torch.Tensor, mode: str) -> None:
        """`<prefix><objective>`: the mean of each column of values [N, K] over its non-NaN rows, on every process.
        A process that saw no row of an objective contributes NaN, which the gathered nanmean ignores."""
        local = values.float().nanmean(dim=0)
        gathered = self.accelerator.gather(local.unsqueeze(0))
        for column, name in enumerate(self.objective_names):
            if not torch.isnan(gathered[:, column]).all():
                self._metrics[mode][f"{prefix}{name}"].append(gathered[:, column].nanmean().item())

    def _pair_weights(self, inputs: dict, mode: str) -> torch.Tensor:
        """[N, K] lambda of each pair: the fixed weights, or Dirichlet draws keyed by (step, the pair's tokens)
        (per row) or by the step (per batch), so every process and a resumed run draw the same lambda."""
        rows = inputs["objective_labels"].shape[0]
        device = inputs["objective_labels"].device
        if mode == "eval" and self.evaluation_weights is not None:
            return self.evaluation_weights.to(device).expand(rows, -1)
        if self.args.weights_mode == "fixed":
            return self.preference_weights.to(device).expand(rows, -1)
        step = f"{mode}:{self.state.global_step if mode == 'train' else 'eval'}"
        if self.args.weights_per == "batch":
            return sample_dirichlet_weights(self.dirichlet_alpha, [step], self.args.seed).to(device).expand(rows, -1)
        tokens = [ids[mask.bool()].cpu().numpy().tobytes()  # without padding: the key is the pair's, not the batch's
                  for ids, mask in zip(inputs["input_ids"][:rows], inputs["attention_mask"][:rows])]
        keys = [f"{step}:{hashlib.sha256(t).hexdigest()[:16]}" for t in tokens]
        return sample_dirichlet_weights(self.dirichlet_alpha, keys, self.args.seed).to(device)

    def _list_loss(self, logratios: torch.Tensor, inputs: dict, mode: str) -> torch.Tensor:
        labels, mask = inputs["list_labels"], inputs["list_mask"]
        logratios = logratios.view(labels.shape)
        if self.args.loss == "lipo":
            loss = lipo_lambda_loss(logratios, labels, self.beta, mask, reduction=self.args.lipo_reduction).mean()
            scores = self.beta * logratios.detach()
            better = (labels.unsqueeze(-1) > labels.unsqueeze(-2)) & mask.bool().unsqueeze(-1) & mask.bool().unsqueeze(-2)
            gaps = (scores.unsqueeze(-1) - scores.unsqueeze(-2))[better]
            self._metrics[mode]["rewards/margins"].append(self.accelerator.gather(gaps.mean().reshape(1)).mean().item())
            self._metrics[mode]["rewards/accuracies"].append(
                self.accelerator.gather((gaps > 0).float().mean().reshape(1)).mean().item())
            return loss
        chosen_mask = mask * (labels > 0.5)
        rejected_mask = mask * (labels <= 0.5)
        if self.args.loss == "mdpo":
            loss = mdpo_loss(logratios, logratios, self.beta, chosen_mask, rejected_mask).mean()
        else:
            # Like TRL's IPO, the log-ratios are per token, so the target 1/(2 beta) does not depend on length.
            lengths = inputs["completion_mask"].sum(dim=1).clamp(min=1).view(labels.shape)
            loss = mipo_loss(logratios / lengths, logratios / lengths, self.beta, chosen_mask, rejected_mask).mean()
        scores = self.beta * logratios.detach()
        chosen_mean = (scores * chosen_mask).sum(-1) / chosen_mask.sum(-1)
        rejected_mean = (scores * rejected_mask).sum(-1) / rejected_mask.sum(-1)
        self._log_pair_metrics(chosen_mean, rejected_mean, mode)
        return loss

    def _log_pair_metrics(self, chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, mode: str) -> None:
        """TRL's reward metrics: the implicit rewards s = beta * logratio of chosen and rejected, their gap, accuracy."""
        chosen_rewards = self.accelerator.gather(chosen_rewards)
        rejected_rewards = self.accelerator.gather(rejected_rewards)
        self._metrics[mode]["rewards/chosen"].append(chosen_rewards.mean().item())
        self._metrics[mode]["rewards/rejected"].append(rejected_rewards.mean().item())
        self._metrics[mode]["rewards/margins"].append((chosen_rewards - rejected_rewards).mean().item())
        self._metrics[mode]["rewards/accuracies"].append((chosen_rewards > rejected_rewards).float().mean().item())

    # ------------------------------------------------------------------------------------------ evaluation

    _policy_is_reference = False

    def evaluation_loop(self, *args, **kwargs):
        if self.is_fsdp_enabled and not model_has_dtensor(self.model):
            return self._evaluate_untrained_policy_under_fsdp(*args, **kwargs)
        if not (self.is_deepspeed_enabled and self.deepspeed is None):
            return super().evaluation_loop(*args, **kwargs)
        # Evaluation before train() (the recipes' "before" numbers) under DeepSpeed: transformers would wrap the
        # policy in a ZeRO inference engine, which ZeRO-2 refuses and which, under ZeRO-3, leaves train() without the
        # training engine it then needs. Evaluate the plain module instead, its ZeRO-3 shards gathered for the pass
        # (as TRL gathers them to generate); the reference model is TRL's, prepared for the backend in __init__.
        prepared = list(self.accelerator._models)
        self.is_deepspeed_enabled = False
        try:
            with DistributedBackend(self.accelerator).gather_params(list(self.model.parameters())):
                return super().evaluation_loop(*args, **kwargs)
        finally:
            self.is_deepspeed_enabled = True
            self.accelerator._models[:] = prepared  # the plain module must not sit beside the engine train() builds

    def _evaluate_untrained_policy_under_fsdp(self, *args, **kwargs):
        """Evaluation before train() under FSDP2. The policy is sharded only together with its optimizer, in train(),
        so transformers cannot prepare it for evaluation here, and with `fsdp_cpu_ram_efficient_loading` only the
        first process holds its weights. Before any step the policy is its reference, though: TRL loaded the
        reference from the policy's own weights, and every extra head of a multi-head policy is a copy of the base
        head. So the reference, which TRL prepared for FSDP, scores for both (every implicit reward is then 0)."""
        if self.state.global_step > 0 or self.ref_model is None or not self._reference_is_initial_policy:
            raise ValueError("under FSDP the policy can be evaluated only after train() has prepared it, or before it "
                             "when the reference model is the policy's own initial weights (no ref_model, no PEFT)")
        prepared = list(self.accelerator._models)
        self.accelerator._models.append(self.ref_model)  # transformers prepares the policy only if nothing is
        self._policy_is_reference = True
        try:
            return super().evaluation_loop(*args, **kwargs)
        finally:
            self._policy_is_reference = False
            self.accelerator._models[:] = prepared

    # ------------------------------------------------------------------------------------------ checkpoints

    def objectives_record(self) -> dict:
        """What this checkpoint was trained for (alignment.hub.record): objectives, weights, loss, heads."""
        source = f"preference_{self._format}"
        if self.args.loss == "modpo":
            margin_objectives, _, _ = parse_objective_specs(self.args.objectives[1:]) if len(self.args.objectives) > 1 else ([], [], {})
            objectives = [Objective(self.objective_names[0], source), *margin_objectives]
        else:
            objectives = [Objective(name, source) for name in self.objective_names]
        extra = {"loss": self.args.loss, "beta": self.beta}
        if self.args.loss == "cardinal":
            extra.update(cardinal_mode=self.args.cardinal_mode, cardinal_scale=self.args.cardinal_scale)
        if self.args.loss == "mah":
            extra["heads"] = dict(self.accelerator.unwrap_model(self.model).config.multi_head)
        if self.args.loss == "lipo":
            extra.update(list_scalarization=self.args.list_scalarization, lipo_reduction=self.args.lipo_reduction)
        args = self.args
        adapter = args.uses_preference_adapter
        if adapter:
            extra["preference_adapter"] = args.preference_adapter_record(base_trained=False)
        if args.loss == "per_objective" and args.weights_mode == "dirichlet":
            extra["weights_per"] = args.weights_per
        weighted = args.loss in WEIGHTED_LOSSES and args.weights_mode == "fixed"
        return build_record(
            trainer=f"dpo:{args.loss}",
            base_model=getattr(self.accelerator.unwrap_model(self.model).config, "_name_or_path", None) or "unknown",
            objectives=objectives_to_dict(objectives),
            weights={n: round(w, 6) for n, w in zip(self.objective_names, self.preference_weights.tolist())} if weighted else None,
            weight_distribution=args.weight_distribution_record(),
            scalarization=args.scalarization if args.loss == "per_objective" else None,
            steering="heads" if args.loss == "mah" else "adapter" if adapter else "none",
            datasets=self.dataset_names,
            extra=extra,
        )

    def _save_policy(self, output_dir: str, state_dict: dict | None) -> None:
        if self.args.loss != "mah":
            super()._save_policy(output_dir, state_dict)
        elif self.args.should_save:
            # Every head beside a plain checkpoint whose lm_head is the chosen head (alignment.models.multi_head)
            os.makedirs(output_dir, exist_ok=True)
            save_multi_head_model(self.accelerator.unwrap_model(self.model), output_dir, state_dict=state_dict)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(output_dir)

    def _load_policy(self, resume_from_checkpoint: str, model=None) -> None:
        super()._load_policy(resume_from_checkpoint, model)
        # DeepSpeed and FSDP restore the whole module from their own checkpoint files, extra heads included.
        if self.args.loss == "mah" and not (self.is_deepspeed_enabled or self.is_fsdp_enabled):
            load_lm_heads(self.accelerator.unwrap_model(model if model is not None else self.model), resume_from_checkpoint)


class _PairCollatorWithExtras:
    """TRL's pair collator, plus the per-pair float columns a multi-objective loss reads (head ids as integers)."""

    def __init__(self, collator, fields: tuple[str, ...]):
        self.collator = collator
        self.fields = fields

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(examples)
        for name in self.fields:
            dtype = torch.long if name == "head_id" else torch.float32
            batch[name] = torch.tensor([example[name] for example in examples], dtype=dtype)
        return batch


class _ListCollator:
    """K sequences per prompt, flattened row-major to [B * K_max, L] (TRL's pair layout generalised); lists shorter
    than K_max are padded with prompt-only rows that `list_mask` leaves out of every loss."""

    def __init__(self, pad_token_id: int, max_length: int | None, truncation_mode: str, pad_to_multiple_of: int | None,
                 with_weights: bool = False):
        self.with_weights = with_weights  # prompt_aware: pass each list's preference_weights on (logged)
        self.pad_token_id = pad_token_id
        self.max_length = max_length
        self.truncation_mode = truncation_mode
        self.pad_to_multiple_of = pad_to_multiple_of

    def _truncate(self, values: list) -> list:
        if self.max_length is None:
            return values
        return values[: self.max_length] if self.truncation_mode == "keep_start" else values[-self.max_length:]

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        width = max(len(example["completion_ids"]) for example in examples)
        input_ids, completion_masks, labels, list_mask = [], [], [], []
        for example in examples:
            completions = example["completion_ids"]
            for index in range(width):
                completion = completions[index] if index < len(completions) else []
                input_ids.append(torch.tensor(self._truncate(example["prompt_ids"] + completion)))
                completion_masks.append(torch.tensor(self._truncate([0] * len(example["prompt_ids"]) + [1] * len(completion))))
            padding = width - len(completions)
            labels.append(example["list_labels"] + [0.0] * padding)
            list_mask.append([1.0] * len(completions) + [0.0] * padding)
        attention = [torch.ones_like(ids) for ids in input_ids]
        weights = {PROMPT_WEIGHTS_COLUMN: torch.tensor([e[PROMPT_WEIGHTS_COLUMN] for e in examples], dtype=torch.float32)
                   } if self.with_weights else {}
        return {
            **weights,
            "input_ids": pad(input_ids, self.pad_token_id, "right", self.pad_to_multiple_of),
            "attention_mask": pad(attention, 0, "right", self.pad_to_multiple_of),
            "completion_mask": pad(completion_masks, 0, "right", self.pad_to_multiple_of),
            "list_labels": torch.tensor(labels, dtype=torch.float32),
            "list_mask": torch.tensor(list_mask, dtype=torch.float32),
        }
