"""The DPO family's losses on pairs (MODPO, cardinal margins, multi-head DPO, per-objective DPO, ...).

A pair batch is TRL's: [chosen; rejected] rows, so the log-ratios split into chosen [N] and rejected [N]. Every
pair loss logs TRL's reward metrics of s = beta * logratio besides its own.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from alignment.data.preferences import HH_FILES, add_margin_rewards, label_pairs_per_objective
from alignment.data.preferences.formats import PROMPT_WEIGHTS_COLUMN
from alignment.models.multi_head import add_lm_heads, head_names, load_lm_heads, save_multi_head_model
from alignment.objectives.sources import Objective, ObjectiveSpecError, parse_gates, parse_objective_specs
from alignment.trainers.dpo_losses.base import PER_OBJECTIVE, PreferenceLoss, reward_metrics
from alignment.trainers.preference_losses import (
    CARDINAL_MODES,
    OBJECTIVE_SCALARIZATIONS,
    cardinal_dpo_loss,
    ipo_loss,
    mah_dpo_loss,
    modpo_objective_margin,
    per_objective_dpo_losses,
    scalarized_dpo_loss,
    weighted_mean,
)


class PairLoss(PreferenceLoss):
    """A loss on pairs. Subclasses implement `pair_loss`; the reward metrics are added here."""

    data_format = "pairs"

    def compute(self, logratios, inputs, weights):
        chosen, rejected = logratios.chunk(2)
        loss, metrics = self.pair_loss(chosen, rejected, inputs, weights)
        return loss, {**metrics, **reward_metrics(self.beta * chosen.detach(), self.beta * rejected.detach())}

    def pair_loss(self, chosen: torch.Tensor, rejected: torch.Tensor, inputs: dict,
                  weights: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, the loss's own metrics) from the log-ratios of the chosen [N] and the rejected [N] replies."""
        raise NotImplementedError


class ModpoLoss(PairLoss):
    """MODPO (Zhou et al. 2024): DPO on the first objective's pairs, the other objectives entering as frozen margin
    rewards under the weights. Logs `rewards/margins_<trained objective>`, the objective's implied reward gap."""

    batch_columns = ("chosen_margins", "rejected_margins")
    uses_weights = True
    takes_prompt_weights = True  # each pair's margin under its own prompt's weights
    schedulable = True

    def check_config(self):
        trained, gates = self.objective_names[0], parse_gates(self.args.objectives)
        if trained in gates or any(gate.objective == trained for gate in gates.values()):
            raise ValueError(f"loss 'modpo': the trained objective '{trained}' is learned from its pairs, not scored, "
                             "so it can neither be gated nor gate a margin objective; gate margin objectives on each "
                             "other")

    def check_weights(self, weights):
        schedule = self.args.weight_schedule()
        if schedule is not None and (schedule.weights[:, 0] <= 0).any():
            raise ValueError(f"loss 'modpo': the trained objective '{self.objective_names[0]}' needs a weight > 0 "
                             f"at every point of weights_schedule (MODPO divides by it); got "
                             f"{self.args.weights_schedule!r}")
        if schedule is None and self.args.weights_mode == "fixed" and weights[0] <= 0:
            raise ValueError(f"loss 'modpo': the trained objective '{self.objective_names[0]}' needs a weight > 0 "
                             f"(MODPO divides by it); got preference_weights={self.args.preference_weights!r}")

    def data_objectives(self, dataset):
        return self.objective_names[:1]  # the others enter as margins (scored by complete_rows), not as pairs

    def complete_rows(self, train_rows, eval_rows, reward_model_name_or_path):
        builder = self._reward_builder(self.args.objectives[1:], reward_model_name_or_path)  # frozen, scored once
        return add_margin_rewards(train_rows, builder), add_margin_rewards(eval_rows, builder)

    def needed_columns(self, columns):
        return super().needed_columns(columns) | set(self.batch_columns)

    def prepare_rows(self, dataset, name):
        width, names = len(dataset[0]["chosen_margins"]), self.objective_names
        if width != len(names) - 1:
            raise ValueError(f"{name}: rows carry {width} margin rewards; objectives {names} need "
                             f"{len(names) - 1} (one per objective after the trained one)")
        return dataset

    def pair_loss(self, chosen, rejected, inputs, weights):
        # weights: prompt_aware, each pair's own [N, K]; else one vector [K] for all
        objective_margin = modpo_objective_margin(chosen, rejected, inputs["chosen_margins"],
                                                  inputs["rejected_margins"], weights, self.beta)
        loss = self.reduce(-F.logsigmoid(objective_margin), inputs)  # = modpo_loss, whose logit we also log
        return loss, {f"rewards/margins_{self.objective_names[0]}": objective_margin.detach()}

    def record_objectives(self, source):
        margin_specs = self.args.objectives[1:]
        margin_objectives = parse_objective_specs(margin_specs)[0] if margin_specs else []
        return [Objective(self.objective_names[0], source), *margin_objectives]


class CardinalLoss(PairLoss):
    """Cardinal DPO: each pair's score gap weights its loss, or offsets its margin (ODPO)."""

    batch_columns = ("score_gap",)
    row_fields = ("score_gap",)

    @classmethod
    def check_settings(cls, args):
        if args.cardinal_mode not in CARDINAL_MODES:
            raise ValueError(f"cardinal_mode: unknown mode '{args.cardinal_mode}'; expected one of {CARDINAL_MODES}")

    def needed_columns(self, columns):
        return super().needed_columns(columns) | set(self.batch_columns)

    def pair_loss(self, chosen, rejected, inputs, weights):
        losses = cardinal_dpo_loss(chosen, rejected, inputs["score_gap"], self.beta, self.args.cardinal_mode,
                                   self.args.cardinal_scale)
        return self.reduce(losses, inputs), {}

    def record_extras(self, model):
        return {"cardinal_mode": self.args.cardinal_mode, "cardinal_scale": self.args.cardinal_scale}


class MultiHeadLoss(PairLoss):
    """Multi-head DPO: one language-model head per objective on a shared trunk, each trained on its objective's
    pairs (`objective` names the head). Logs `rewards/margins_<objective>` per head; saves every head."""

    batch_columns = ("head_id",)
    row_fields = ("objective",)
    steering = "heads"
    saves_policy_itself = True

    def extend_policy(self, model):
        add_lm_heads(model, self.objective_names)

    def needed_columns(self, columns):
        return super().needed_columns(columns) | {"objective"}

    def prepare_rows(self, dataset, name):
        names = list(self.objective_names)
        unknown = sorted(set(dataset["objective"]) - set(names))
        if unknown:
            raise ValueError(f"{name}: objective(s) {unknown} have no head; heads are {names}")
        return dataset.map(lambda row: {"head_id": names.index(row["objective"])})

    def prepare_policy(self, model, peft_config):
        if isinstance(model, str) or not hasattr(model, "extra_lm_heads"):
            raise ValueError("loss 'mah' needs a model with one head per objective: "
                             "alignment.models.multi_head.add_lm_heads(model, objectives)")
        if head_names(model) != self.objective_names:
            raise ValueError(f"loss 'mah': the model's heads {head_names(model)} differ from objectives "
                             f"{self.objective_names}")
        if peft_config is not None:
            raise ValueError("loss 'mah' trains full vocabulary heads; LoRA (peft_config) is not supported with it")
        if self.args.plain_head:
            model.config.multi_head["plain_head"] = self.args.plain_head

    def forward_kwargs(self, inputs):
        # each pair scored by its objective's head, for its chosen and its rejected row
        return {"head_ids": inputs["head_id"].repeat(2)}

    def pair_loss(self, chosen, rejected, inputs, weights):
        head_ids = inputs["head_id"]
        loss, _ = mah_dpo_loss(chosen, rejected, head_ids, self.beta, self.row_weights(inputs))
        margins = self.beta * (chosen - rejected).detach()
        heads = head_ids.unsqueeze(-1) == torch.arange(len(self.objective_names), device=margins.device)
        return loss, {f"rewards/margins_{PER_OBJECTIVE}": margins.unsqueeze(-1).masked_fill(~heads, float("nan"))}

    def record_extras(self, model):
        return {"heads": dict(model.config.multi_head)}

    def save_policy(self, model, output_dir, state_dict, processing_class):
        # Every head beside a plain checkpoint whose lm_head is the chosen head (alignment.models.multi_head)
        os.makedirs(output_dir, exist_ok=True)
        save_multi_head_model(model, output_dir, state_dict=state_dict)
        if processing_class is not None:
            processing_class.save_pretrained(output_dir)

    def load_policy_extras(self, model, checkpoint):
        load_lm_heads(model, checkpoint)


def _is_reward_spec(spec: str) -> bool:
    """Whether an objective spec names a reward source (a built-in, 'python:', 'rm:') rather than a data label."""
    try:
        parse_objective_specs([spec.partition("@")[0]])  # the source alone: a gate reads another spec of the list
        return True
    except ObjectiveSpecError:
        return False


class PerObjectiveLoss(PairLoss):
    """Per-objective DPO (Panacea's loss with DPO per objective): pairs labelled per objective give one DPO loss per
    objective, combined under each pair's weights lambda (`scalarization`). With conditioning 'adapter', lambda is
    drawn per pair (or per batch) and fed to a preference adapter: a steerable checkpoint.
    Logs `rewards/margins_<objective>` (beta * label * Delta over the pairs labelled for it)."""

    batch_columns = ("objective_labels",)
    uses_weights = True
    weights_per_pair = True
    schedulable = True

    def check_config(self):
        if self.args.scalarization not in OBJECTIVE_SCALARIZATIONS:
            raise ValueError(f"scalarization: per-objective DPO combines losses by {OBJECTIVE_SCALARIZATIONS}, "
                             f"got '{self.args.scalarization}'")
        if len(self.objective_names) < 2:
            raise ValueError(f"loss 'per_objective' needs at least 2 objectives, got {self.objective_names}")

    def data_objectives(self, dataset):
        if dataset == "hh":  # the HH objectives named label their own pairs; reward objectives label HH's helpful ones
            return [name for name in self.objective_names if name in HH_FILES] or ["helpful"]
        return self.objective_names

    def complete_rows(self, train_rows, eval_rows, reward_model_name_or_path):
        if "objective_labels" in train_rows[0]:
            return train_rows, eval_rows
        # reward objectives label every pair by their score gap (scored once); the others are the pairs' `objective`
        reward_specs = [spec for spec in self.args.objectives if _is_reward_spec(spec)]
        builder = self._reward_builder(reward_specs, reward_model_name_or_path) if reward_specs else None
        names = self.objective_names
        train_rows = label_pairs_per_objective(train_rows, names, builder)
        eval_rows = label_pairs_per_objective(eval_rows, names, builder) if eval_rows else eval_rows
        return train_rows, eval_rows

    def needed_columns(self, columns):
        own = set() if "objective_labels" in columns else {"objective"}
        return super().needed_columns(columns) | own

    def prepare_rows(self, dataset, name):
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

    def pair_loss(self, chosen, rejected, inputs, weights):
        labels = inputs["objective_labels"]
        per_objective = per_objective_dpo_losses(chosen, rejected, labels, self.beta)  # [N, K], NaN: no label
        method, row_weights = self.args.scalarization, self.row_weights(inputs)
        one_lambda = self.args.weights_mode == "fixed" or self.args.weights_per == "batch"
        if one_lambda and PROMPT_WEIGHTS_COLUMN not in inputs:
            # one lambda for the batch: each objective's (weighted) mean loss, then one scalarization across objectives
            # (an objective no pair of the batch is labelled for, or whose pairs all weigh 0, takes no part)
            means = weighted_mean(per_objective, row_weights).unsqueeze(0)
            loss = self.mean_of(scalarized_dpo_loss(means, weights[:1], method), None)
        else:  # each pair under its own lambda (drawn, or the pair's own preference_weights)
            loss = self.mean_of(scalarized_dpo_loss(per_objective, weights, method), row_weights)
        margins = self.beta * (chosen - rejected).detach().unsqueeze(-1) * labels
        return loss, {f"rewards/margins_{PER_OBJECTIVE}": margins.masked_fill(labels == 0, float("nan"))}

    @property
    def scalarization(self):
        return self.args.scalarization

    def record_extras(self, model):
        return {"weights_per": self.args.weights_per} if self.args.weights_mode == "dirichlet" else {}


class IpoLoss(PairLoss):
    """IPO (Azar et al. 2023, eq. 17) on one objective's pairs: each pair's per-token log-ratio margin is regressed
    onto 1/(2 beta), as TRL's DPOTrainer does with loss_type 'ipo'."""

    def pair_loss(self, chosen, rejected, inputs, weights):
        # Like TRL's IPO, the log-ratios are per completion token, so the target 1/(2 beta) does not depend on length.
        chosen_lengths, rejected_lengths = inputs["completion_mask"].sum(dim=1).clamp(min=1).chunk(2)
        return ipo_loss(chosen / chosen_lengths, rejected / rejected_lengths, self.beta).mean(), {}
