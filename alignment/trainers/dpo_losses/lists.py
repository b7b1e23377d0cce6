"""The DPO family's losses on K responses per prompt: groups (mDPO, mIPO, ...) and ranked lists (LiPO-lambda).

A group {prompt, chosen: [k], rejected: [k]} becomes a list whose chosen responses are labelled 1 and rejected 0,
so both are collated as [B * K_max] rows (`alignment.data.collators._ListCollator`) with `list_labels` and
`list_mask` [B, K_max].
"""

from __future__ import annotations

import torch

from alignment.data.preferences import attach_list_labels
from alignment.trainers.dpo_losses.base import ListwiseLoss, reward_metrics
from alignment.trainers.preference_losses import LIPO_REDUCTIONS, lipo_lambda_loss, mdpo_loss, mipo_loss


class GroupLoss(ListwiseLoss):
    """A loss on groups of k chosen vs k rejected responses. Subclasses implement `group_loss`; the reward metrics
    (TRL's, on each group's mean implicit reward of chosen and of rejected) are added here."""

    data_format = "groups"

    def prepare_rows(self, dataset, name):
        if not isinstance(dataset[0]["chosen"], list) or not isinstance(dataset[0]["chosen"][0], (list, str)):
            raise ValueError(f"{name}: loss '{self.args.loss}' needs groups: 'chosen' and 'rejected' as lists of "
                             "responses")
        return dataset.map(
            lambda row: {"completions": row["chosen"] + row["rejected"],
                         "labels": [1.0] * len(row["chosen"]) + [0.0] * len(row["rejected"])},
            remove_columns=["chosen", "rejected"],
        )

    def compute(self, logratios, inputs, weights):
        labels, mask = inputs["list_labels"], inputs["list_mask"]
        logratios = logratios.view(labels.shape)
        chosen_mask = mask * (labels > 0.5)
        rejected_mask = mask * (labels <= 0.5)
        loss = self.group_loss(logratios, chosen_mask, rejected_mask, inputs)
        scores = self.beta * logratios.detach()
        chosen_mean = (scores * chosen_mask).sum(-1) / chosen_mask.sum(-1)
        rejected_mean = (scores * rejected_mask).sum(-1) / rejected_mask.sum(-1)
        return loss, reward_metrics(chosen_mean, rejected_mean)

    def group_loss(self, logratios: torch.Tensor, chosen_mask: torch.Tensor, rejected_mask: torch.Tensor,
                   inputs: dict) -> torch.Tensor:
        """The batch's loss from the log-ratios [B, K_max] of its groups and their chosen / rejected masks."""
        raise NotImplementedError


class MdpoLoss(GroupLoss):
    """mDPO: DPO on the mean log-ratio of each group's chosen vs its rejected responses."""

    def group_loss(self, logratios, chosen_mask, rejected_mask, inputs):
        return self.reduce(mdpo_loss(logratios, logratios, self.beta, chosen_mask, rejected_mask), inputs)


class MipoLoss(GroupLoss):
    """mIPO: IPO's squared loss on the group means, on log-ratios per completion token."""

    def group_loss(self, logratios, chosen_mask, rejected_mask, inputs):
        # Like TRL's IPO, the log-ratios are per token, so the target 1/(2 beta) does not depend on length.
        lengths = inputs["completion_mask"].sum(dim=1).clamp(min=1).view(logratios.shape)
        per_token = logratios / lengths
        return self.reduce(mipo_loss(per_token, per_token, self.beta, chosen_mask, rejected_mask), inputs)


class LipoLoss(ListwiseLoss):
    """LiPO-lambda on ranked lists {prompt, completions: [K], labels: [K]}; labels come from ranks, or from reward
    vectors scalarized under the weights (`list_scalarization`; prompt-aware: each list's own weights). Logs the
    implicit-reward gap and accuracy over the label-ordered pairs."""

    uses_weights = True
    takes_prompt_weights = True  # each list's labels scalarized under its own prompt's weights

    @classmethod
    def check_settings(cls, args):
        if args.lipo_reduction not in LIPO_REDUCTIONS:
            raise ValueError(f"lipo_reduction: unknown reduction '{args.lipo_reduction}'; expected one of "
                             f"{LIPO_REDUCTIONS}")

    def complete_rows(self, train_rows, eval_rows, reward_model_name_or_path):
        names, weights = self.objective_names, self.args.fixed_weight_vector()
        scalarization = self.args.list_scalarization
        return (attach_list_labels(train_rows, names, weights, scalarization),
                attach_list_labels(eval_rows, names, weights, scalarization))

    def compute(self, logratios, inputs, weights):
        labels, mask = inputs["list_labels"], inputs["list_mask"]
        logratios = logratios.view(labels.shape)
        # RAX's batch mean over pairs counts each list's pairs as often as its weight says; the 'sum' reduction
        # returns one loss per list, averaged here under the lists' weights
        losses = lipo_lambda_loss(logratios, labels, self.beta, mask, reduction=self.args.lipo_reduction,
                                  list_weights=self.row_weights(inputs))
        loss = losses if losses.dim() == 0 else self.reduce(losses, inputs)
        scores = self.beta * logratios.detach()
        valid = mask.bool().unsqueeze(-1) & mask.bool().unsqueeze(-2)
        better = (labels.unsqueeze(-1) > labels.unsqueeze(-2)) & valid
        gaps = (scores.unsqueeze(-1) - scores.unsqueeze(-2))[better]
        # one mean per process (the processes' pair counts differ), averaged over the processes
        return loss, {"rewards/margins": gaps.mean().reshape(1),
                      "rewards/accuracies": (gaps > 0).float().mean().reshape(1)}

    def record_extras(self, model):
        return {"list_scalarization": self.args.list_scalarization, "lipo_reduction": self.args.lipo_reduction}
