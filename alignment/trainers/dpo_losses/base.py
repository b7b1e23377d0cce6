"""The shape of a DPO-family loss component, and the metric helpers the components share.

A component is built from the run's `MultiObjectiveDPOConfig` (it reads `beta`, the objectives and its own settings
from it) and answers every question the config, the recipe and the trainer have about its loss, so none of them
compares loss names. The maths stays in the pure functions of `alignment.trainers.preference_losses`.

Metrics: `compute` returns `(loss, metrics)`, metrics a dict {name: tensor of this process's values}. The trainer
gathers each tensor from every process and logs its mean. A name holding `PER_OBJECTIVE` ("{objective}") is a
template: its values are [N, K], one column per objective in objective order, NaN where a row says nothing about
that objective; it is logged once per objective (the placeholder replaced by the objective's name), as the mean of
each process's non-NaN mean, and not at all for an objective that no process saw.

Per-row weights: a dataset's pair-weight column (`pair_weight_column`, default `pair_weight`) scales each pair's,
group's or list's loss. Components reduce their per-unit losses with `reduce`, the weighted mean sum_i p_i l_i /
sum_i p_i over the micro-batch (`alignment.trainers.preference_losses.weighted_mean`), so a row of weight 0 is
exactly absent and the loss does not depend on the weights' scale.
"""

from __future__ import annotations

import torch
from datasets import Dataset

from alignment.objectives.reward_vector import RewardVectorBuilder
from alignment.objectives.sources import Objective
from alignment.trainers.preference_losses import weighted_mean
from reward_models.scoring import objective_reward_sources

PER_OBJECTIVE = "{objective}"
# The columns a dataset of each format needs before any loss asks for more
FORMAT_COLUMNS = {"pairs": ("prompt", "chosen", "rejected"), "groups": ("prompt", "chosen", "rejected"),
                  "lists": ("prompt", "completions", "labels")}


def reward_metrics(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> dict[str, torch.Tensor]:
    """TRL's reward metrics of the implicit rewards s = beta * logratio: chosen, rejected, their gap, accuracy."""
    return {"rewards/chosen": chosen_rewards, "rewards/rejected": rejected_rewards,
            "rewards/margins": chosen_rewards - rejected_rewards,
            "rewards/accuracies": (chosen_rewards > rejected_rewards).float()}


class PreferenceLoss:
    """One loss of the DPO family: its data, its settings' checks, its rows, its loss and its record.

    Subclasses set the class attributes below and override the hooks their loss needs; the defaults describe a
    loss on plain data that takes no preference weights and trains the policy as transformers saves it.
    """

    data_format: str = "pairs"  # "pairs" | "groups" | "lists"
    # Columns the loss reads from a collated batch beyond TRL's tokenized pair (they survive remove_unused_columns)
    batch_columns: tuple[str, ...] = ()
    # Fields every row of a data file must carry, checked when the recipe loads it (alignment.data.preferences)
    row_fields: tuple[str, ...] = ()
    uses_weights: bool = False  # its margins, list labels or per-objective losses use the preference weights
    # weights_mode 'prompt_aware': each row's weights (from a Preference Orchestrator) enter its margins / labels
    takes_prompt_weights: bool = False
    # The loss is a function of each pair's own weights lambda [N, K] (fixed, drawn per pair or per batch, or set
    # for evaluation): lambda can then be drawn from a Dirichlet and fed to a preference adapter (a steerable policy)
    weights_per_pair: bool = False
    # The weights enter the loss at every step (not baked into labels before training), so a weights_schedule can
    # move them
    schedulable: bool = False
    steering: str | None = None  # how a checkpoint is steered, when the loss decides it ("heads"); else the trainer's
    saves_policy_itself: bool = False  # True: save_policy writes the policy (transformers' save would lose parts)

    def __init__(self, args):
        self.args = args  # the run's MultiObjectiveDPOConfig

    @property
    def beta(self) -> float:
        """The KL-regularization strength beta of the implicit reward s = beta * log pi/pi_ref."""
        return self.args.beta

    @property
    def objective_names(self) -> list[str]:
        """The run's objective names, in weight order."""
        return self.args.objective_names

    # ------------------------------------------------------------------------------------------ config

    @classmethod
    def check_settings(cls, args) -> None:
        """Refuse a bad value of a setting only this loss reads. Called for every registered loss, whichever is
        chosen, so a mistyped value is reported when the config is parsed, not by the run that first uses it."""

    def check_config(self) -> None:
        """Refuse a config this loss cannot train with (called when the config is parsed, before the weights)."""

    def check_weights(self, weights: torch.Tensor) -> None:
        """Refuse fixed preference weights [K] (objective order) this loss cannot train under."""

    # ------------------------------------------------------------------------------------------ recipe

    def data_objectives(self, dataset: str) -> list[str]:
        """The objectives whose rows the recipe loads from `dataset` (a built-in name, a file or a hub id)."""
        return self.objective_names

    def complete_rows(self, train_rows: list[dict], eval_rows: list[dict],
                      reward_model_name_or_path: str | None) -> tuple[list[dict], list[dict]]:
        """The loaded rows plus what the loss reads that the data does not carry (scored or derived once, before
        training; prompt-aware weights are already attached)."""
        return train_rows, eval_rows

    def extend_policy(self, model) -> None:
        """Add to a freshly loaded policy what this loss trains beyond it (the recipe calls this)."""

    def _reward_builder(self, specs: list[str], reward_model_name_or_path: str | None) -> RewardVectorBuilder:
        """A builder scoring the objective specs (reward functions, reward-model heads) on prompts and replies."""
        objectives, sources = objective_reward_sources(specs, reward_model_name_or_path,
                                                       trust_remote_code=self.args.trust_remote_code)
        return RewardVectorBuilder.from_objectives(objectives, sources)  # with their gates

    # ------------------------------------------------------------------------------------------ trainer: data, model

    def needed_columns(self, columns: set[str]) -> set[str]:
        """The columns a dataset with `columns` must have for this loss (its format's, and the loss's own)."""
        return set(FORMAT_COLUMNS[self.data_format])

    def prepare_rows(self, dataset: Dataset, name: str) -> Dataset:
        """Check and reshape the trainer's dataset `name` (its needed columns are present) before tokenization."""
        return dataset

    def prepare_policy(self, model, peft_config) -> None:
        """Refuse a policy (or a PEFT config) this loss cannot train, and set on it what the loss needs."""

    def forward_kwargs(self, inputs: dict) -> dict:
        """Keyword arguments of the policy's forward pass over the batch, beside the tokens and labels."""
        return {"fused_lm_head": True}

    def row_weights(self, inputs: dict) -> torch.Tensor | None:
        """[N] each pair's, group's or list's weight (the dataset's pair-weight column), or None when it has none."""
        return inputs.get(self.args.pair_weight_column)

    def reduce(self, losses: torch.Tensor, inputs: dict) -> torch.Tensor:
        """The batch's loss from one loss per pair, group or list [N]: their mean, weighted by the rows' weights when
        the batch carries them."""
        return self.mean_of(losses, self.row_weights(inputs))

    @staticmethod
    def mean_of(losses: torch.Tensor, row_weights: torch.Tensor | None) -> torch.Tensor:
        """`weighted_mean` of [N] losses (NaN left out); where nothing is left (every row weighs 0, or every loss is
        NaN) a zero that keeps the graph, so such a batch moves nothing."""
        mean = weighted_mean(losses, row_weights)
        return torch.where(torch.isnan(mean), (losses.masked_fill(torch.isnan(losses), 0.0) * 0).sum(), mean)

    # ------------------------------------------------------------------------------------------ loss

    def compute(self, logratios: torch.Tensor, inputs: dict,
                weights: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(loss, metrics) of a batch.

        `logratios` [rows]: log pi(y|x) - log pi_ref(y|x) of every sequence of the collated batch, in its order;
        `inputs`: the collated batch; `weights`: the preference weights, [K] for every row or [N, K] per pair or
        list. Metrics as in this module's docstring.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------ record, checkpoints

    def record_objectives(self, source: str) -> list[Objective]:
        """The objectives a checkpoint's record names, each from `source` (e.g. 'preference_pairs') by default."""
        return [Objective(name, source) for name in self.objective_names]

    def record_extras(self, model) -> dict:
        """The loss's own settings (and, for `model`, anything it added), for the record's `extra`."""
        return {}

    @property
    def scalarization(self) -> str | None:
        """How the loss combines per-objective losses under the weights, for the record (None: it does not)."""
        return None

    def save_policy(self, model, output_dir: str, state_dict: dict | None, processing_class) -> None:
        """Write the policy (and the tokenizer) into output_dir, on the main process; only if saves_policy_itself."""
        raise NotImplementedError(f"{type(self).__name__} leaves saving to the trainer")

    def load_policy_extras(self, model, checkpoint: str) -> None:
        """After the trainer loaded the policy's weights from checkpoint: load what that left out."""


class ListwiseLoss(PreferenceLoss):
    """A loss on K sequences per prompt (lists, or groups of chosen and rejected), collated as [B * K_max] rows."""

    data_format = "lists"

    def check_config(self) -> None:
        if self.args.precompute_ref_log_probs:
            raise ValueError(f"loss '{self.args.loss}': precompute_ref_log_probs stores one chosen/rejected value per "
                             "row and does not fit lists or groups; leave it false")
