"""Labels and margins added to validated preference rows: list labels (from ranks or reward vectors), groups made
from lists, MODPO's frozen margin rewards, and per-objective pair labels."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch

from alignment.data.preferences.formats import PreferenceDataError
from alignment.data.validation import ROW_NUMBER
from alignment.objectives.reward_vector import RewardVectorBuilder
from alignment.objectives.scalarize import labels_from_ranks, labels_from_reward_vector

logger = logging.getLogger(__name__)


def lists_to_groups(rows: Sequence[dict], group_size: int) -> list[dict]:
    """Groups for mDPO/mIPO: the `group_size` best-labelled responses of each list vs its `group_size` worst.

    Lists whose top and bottom groups tie on every label carry no preference and are skipped.
    """
    if not isinstance(group_size, int) or group_size < 1:
        raise PreferenceDataError(f"group_size must be a whole number >= 1, got {group_size!r}")
    groups = []
    for row in rows:
        if len(row["completions"]) < 2 * group_size:
            raise PreferenceDataError(f"row {row.get(ROW_NUMBER)}: {len(row['completions'])} responses cannot make "
                                      f"two groups of {group_size}")
        order = sorted(range(len(row["labels"])), key=lambda i: -row["labels"][i])
        best, worst = order[:group_size], order[-group_size:]
        if min(row["labels"][i] for i in best) <= max(row["labels"][i] for i in worst):
            continue
        groups.append({"prompt": row["prompt"], "chosen": [row["completions"][i] for i in best],
                       "rejected": [row["completions"][i] for i in worst], ROW_NUMBER: row.get(ROW_NUMBER)})
    return groups


def attach_list_labels(rows: Sequence[dict], objective_names: Sequence[str] | None = None,
                       weights: torch.Tensor | None = None, scalarization: str = "linear") -> list[dict]:
    """Give every list row `labels`: kept as given, from `ranks`, or scalarized from `reward_vector` under `weights`
    (or under the row's own `preference_weights`, prompt-aware weights, when it has them)."""
    out = []
    for row in rows:
        row = dict(row)
        if "ranks" in row:
            row["labels"] = labels_from_ranks(torch.tensor(row.pop("ranks"))).tolist()
        elif "reward_vector" in row:
            row_weights = torch.tensor(row["preference_weights"]) if "preference_weights" in row else weights
            if row_weights is None:
                raise PreferenceDataError(f"row {row.get(ROW_NUMBER)}: lists with 'reward_vector' need preference "
                                          "weights")
            row["labels"] = labels_from_reward_vector(torch.tensor(row.pop("reward_vector")), row_weights,
                                                      scalarization).tolist()
        out.append(row)
    return out


def add_margin_rewards(rows: Sequence[dict], margin_builder: RewardVectorBuilder, batch_size: int = 64) -> list[dict]:
    """Score chosen and rejected of every pair once on the margin objectives (frozen): MODPO's m(y_w), m(y_l).

    `margin_builder` runs every reward source (reward functions, or all reward-model heads in one forward pass) on
    a batch; a NaN or failing source stops here, before training, naming the objective.
    """
    out = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        prompts = [row["prompt"] for row in batch]
        chosen, _ = margin_builder(prompts, [row["chosen"] for row in batch])
        rejected, _ = margin_builder(prompts, [row["rejected"] for row in batch])
        for row, c, r in zip(batch, chosen.tolist(), rejected.tolist()):
            out.append({**row, "chosen_margins": c, "rejected_margins": r})
    return out


def label_pairs_per_objective(rows: Sequence[dict], objective_names: Sequence[str],
                              reward_builder: RewardVectorBuilder | None = None) -> list[dict]:
    """`objective_labels` for per-objective DPO: per objective, +1 if chosen is the better reply, -1 if rejected is,
    0 if the pair says nothing about it.

    The objectives `reward_builder` scores (reward functions, reward-model heads) label every pair by the sign of
    their score gap, scored once here (a tie gives 0). Any other objective is a dataset label: +1 on the pairs whose
    `objective` it is. Pairs that end up with no label at all are left out.
    """
    scored = list(reward_builder.objective_names) if reward_builder is not None else []
    for name in objective_names:
        if name not in scored and not any(row.get("objective") == name for row in rows):
            raise PreferenceDataError(f"objective '{name}' is neither a reward objective nor the 'objective' of any "
                                      "pair; per-objective DPO cannot label pairs for it")
    if scored:
        rows = add_margin_rewards(rows, reward_builder)
    out = []
    for row in rows:
        row = dict(row)
        margins = zip(row.pop("chosen_margins", []), row.pop("rejected_margins", []))
        gaps = dict(zip(scored, (chosen - rejected for chosen, rejected in margins)))
        labels = [(gaps[n] > 0) - (gaps[n] < 0) if n in gaps else int(row.get("objective") == n)
                  for n in objective_names]
        if any(labels):
            out.append({**row, "objective_labels": labels})
    if len(out) < len(rows):
        logger.info(f"per-objective labels: left out {len(rows) - len(out)} of {len(rows)} pairs that tie on every "
                    "objective")
    return out
