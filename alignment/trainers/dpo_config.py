"""`MultiObjectiveDPOConfig`: the settings of the DPO family's trainer (`alignment.trainers.mo_dpo`)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from trl import DPOConfig

from alignment.trainers.arguments import WEIGHTS_MODES, PreferenceAdapterArguments, PreferenceWeightsArguments
from alignment.trainers.dpo_losses import LOSSES, PreferenceLoss, losses_where

WEIGHTS_PER = ("row", "batch")
# Text headers are GRPO's: DPO tokenizes prompts once, before any weights are drawn.
DPO_CONDITIONING = ("none", "adapter")


def _loss_help() -> str:
    """The `loss` field's help, listing the registered losses by the data they train on."""
    by_format: dict[str, list[str]] = {}
    for name, component in LOSSES.items():
        by_format.setdefault(component.data_format, []).append(name)
    formats = {"pairs": "pairs", "groups": "groups of k chosen vs k rejected", "lists": "ranked lists"}
    listed = ", ".join(f"{' | '.join(names)} ({formats[data_format]})" for data_format, names in by_format.items())
    return (f"Which preference loss: {listed}; see alignment.trainers.dpo_losses. per_objective: pairs labelled per "
            "objective (`objective_labels`, or one `objective`), one DPO loss per objective combined under the "
            "weights (`scalarization`).")


@dataclass
class MultiObjectiveDPOConfig(PreferenceWeightsArguments, PreferenceAdapterArguments, DPOConfig):
    """DPOConfig plus the multi-objective settings.

    Loss: `loss` (a name of `alignment.trainers.dpo_losses.LOSSES`; `loss_component` is its component) and `beta`.
    Objectives and weights: `objectives`, `preference_weights`.
    Cardinal margins: `cardinal_mode`, `cardinal_scale`. Lists: `list_scalarization`, `lipo_reduction`.
    Multi-head: `plain_head`.
    Per-objective DPO and steerable checkpoints: `scalarization`, `conditioning`, `weights_mode`, `dirichlet_alpha`,
    `weights_per`, `preference_adapter_rank`, `preference_adapter_target_modules`, `preference_adapter_alpha`,
    `preference_adapter_lambda_scale`.
    Prompt-aware weights (modpo, lipo): `weights_mode: prompt_aware`, `orchestrator_name_or_path`.
    Weights that move during training (the losses whose weights enter the loss at every step: modpo, per_objective):
    `weights_schedule`, `weights_schedule_interpolation`, `weights_schedule_unit`.
    Per-row data: `pair_weight_column` (each pair's, group's or list's weight on its loss); a `preference_weights`
    column gives a row its own weight vector (the losses that take weights per row).
    """

    loss: str = field(default="modpo", metadata={"help": _loss_help()})
    objectives: list[str] = field(
        default_factory=lambda: ["helpful", "conciseness"],
        metadata={"help": "Objectives in weight order. modpo: the trained objective (its pairs) first, then the "
                          "margin objectives as specs (built-in name, 'name=python:mod:fn', 'name=rm:HEAD', each "
                          "optionally gated on another margin objective, '@OBJECTIVE OP THRESHOLD[:floor=F]'). mah: "
                          "one head per objective. lipo: the columns of the lists' reward vectors."},
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
        metadata={"help": "lipo: how a list's reward vectors become labels under the weights "
                          "(alignment.objectives.scalarize: linear, tchebycheff, worst_case); ignored for lists that "
                          "carry labels or ranks."},
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
                          "(sum_k lambda_k L_k) or 'tchebycheff' (max_k lambda_k L_k; ideal point 0, "
                          "alignment.objectives.scalarize)."},
    )
    conditioning: str = field(
        default="none",
        metadata={"help": "per_objective: 'adapter' feeds each row's weights as numbers to a preference adapter "
                          "(Panacea-style SVD-LoRA on the policy; the reference is the base with the adapter "
                          "disabled), so the checkpoint can be steered by new weights at inference; 'none' trains one "
                          "fixed preference. (Text headers are GRPO's: DPO tokenizes prompts once, before the weights "
                          "are drawn.)"},
    )
    pair_weight_column: str = field(
        default="pair_weight",
        metadata={"help": "The data column whose value (a finite number >= 0) scales each pair's, group's or list's "
                          "loss: the batch's loss is sum_i p_i l_i / sum_i p_i, so a row of weight 0 takes no part. "
                          "Rows without the column weigh 1 (the column must then be absent from every row)."},
    )
    weights_per: str = field(
        default="row",
        metadata={"help": "dirichlet: 'row' draws lambda per pair (each pair's loss under its own weights); 'batch' "
                          "draws one lambda per optimizer step, shared by every pair, micro-batch and process, so the "
                          "per-objective losses are batch means scalarized once (Tchebycheff then compares objectives "
                          "across pairs)."},
    )

    @property
    def loss_component(self) -> PreferenceLoss:
        """The component of `loss` (alignment.trainers.dpo_losses), reading its settings from this config."""
        return LOSSES[self.loss](self)

    def __post_init__(self):
        super().__post_init__()
        if self.loss not in LOSSES:
            raise ValueError(f"loss: unknown loss '{self.loss}'; expected one of {tuple(LOSSES)}")
        for component in LOSSES.values():  # every loss's own settings, so a typo is caught whichever loss runs
            component.check_settings(self)
        if isinstance(self.objectives, str):
            self.objectives = [s.strip() for s in self.objectives.split(",") if s.strip()]
        self._check_choices()
        loss = self.loss_component
        loss.check_config()
        self._check_preference_conditioning(loss)
        self._refuse_trl_loss_options()
        # Weights are checked when the config is parsed, before a recipe loads any data or model.
        if self.weights_mode == "prompt_aware" and not loss.takes_prompt_weights:
            raise ValueError(f"weights_mode 'prompt_aware': loss '{self.loss}' takes no weights per row; only "
                             f"{losses_where('takes_prompt_weights')} do")
        self.check_preference_weights()
        weights = self.fixed_weight_vector()
        if self.preference_weights and not loss.uses_weights:
            warnings.warn(f"preference_weights are ignored by loss '{self.loss}': only {losses_where('uses_weights')} "
                          "use them", UserWarning, stacklevel=2)
        loss.check_weights(weights)
        if self.weights_schedule and not loss.schedulable:
            raise ValueError(f"weights_schedule: loss '{self.loss}' does not take its weights at every step (they are "
                             "baked into margins, labels or heads before training, or it takes none); only "
                             f"{losses_where('schedulable')} do")

    def _refuse_trl_loss_options(self) -> None:
        """TRL's own loss options: this trainer computes its loss from `loss` (a component of
        `alignment.trainers.dpo_losses`), so a TRL loss setting would silently do nothing; each is refused, naming the
        field and the loss that runs."""
        loss_type = [self.loss_type] if isinstance(self.loss_type, str) else list(self.loss_type or ["sigmoid"])
        if loss_type != ["sigmoid"]:
            ours = [name for name in loss_type if name in LOSSES]
            hint = f"set `loss: {ours[0]}`" if len(ours) == 1 and len(loss_type) == 1 else \
                f"set `loss` to one of {tuple(LOSSES)}"
            raise ValueError(f"loss_type {loss_type}: TRL's loss switch is not used by MultiObjectiveDPOTrainer, whose "
                             f"loss is `loss` (now '{self.loss}'); {hint}")
        non_default = {"loss_weights": self.loss_weights is not None,
                       "label_smoothing": self.label_smoothing != 0.0,
                       "ld_alpha": self.ld_alpha is not None,
                       "f_divergence_type": self.f_divergence_type != "reverse_kl",
                       "f_alpha_divergence_coef": self.f_alpha_divergence_coef != 0.5,
                       "use_weighting": bool(self.use_weighting),
                       "discopop_tau": self.discopop_tau != 0.05}
        given = [name for name, changed in non_default.items() if changed]
        if given:
            raise ValueError(f"{', '.join(given)}: TRL loss option(s) that loss '{self.loss}' does not use "
                             "(MultiObjectiveDPOTrainer computes its own loss; see `loss`); remove them")

    def _check_choices(self) -> None:
        for name, value, allowed in (("conditioning", self.conditioning, DPO_CONDITIONING),
                                     ("weights_mode", self.weights_mode, WEIGHTS_MODES),
                                     ("weights_per", self.weights_per, WEIGHTS_PER)):
            if value not in allowed:
                raise ValueError(f"{name}: unknown value '{value}'; expected one of {allowed}")

    def _check_preference_conditioning(self, loss: PreferenceLoss) -> None:
        if not loss.weights_per_pair and (self.uses_preference_adapter or self.weights_mode == "dirichlet"):
            raise ValueError(f"conditioning '{self.conditioning}' / weights_mode '{self.weights_mode}': a "
                             "preference adapter learns lambda from a loss that is a function of lambda, one loss per "
                             f"objective weighted by it; loss '{self.loss}' has no per-objective losses (modpo and "
                             "lipo bake fixed weights into margins or list labels before training, cardinal / mdpo / "
                             "mipo have one objective, mah one head per objective). Use loss 'per_objective' on pairs "
                             "labelled per objective")
        if self.weights_mode == "dirichlet":
            if not self.uses_preference_adapter:
                raise ValueError("weights_mode 'dirichlet' without conditioning 'adapter': the policy would never see "
                                 "the weights it is trained under; set conditioning: adapter")
        self.check_preference_adapter()
