"""Collators of the DPO family: pairs with the extra columns a loss reads, and lists (or groups) of K responses.

`alignment.trainers.mo_dpo` tokenizes the rows; these turn tokenized rows into padded tensors. Pairs keep TRL's
layout ([chosen; rejected] rows); lists generalise it to K rows per prompt.
"""

from __future__ import annotations

from typing import Any

import torch
from trl.trainer.utils import pad

INTEGER_COLUMNS = frozenset({"head_id"})  # indices (multi-head DPO's head of each pair); every other extra is a float


def _extra_tensors(examples: list[dict[str, Any]], fields: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The per-row columns `fields` of the examples as tensors; a field the examples do not carry (an evaluation set
    without pair weights) is left out of the batch."""
    return {name: torch.tensor([example[name] for example in examples],
                               dtype=torch.long if name in INTEGER_COLUMNS else torch.float32)
            for name in fields if name in examples[0]}


class _PairCollatorWithExtras:
    """TRL's pair collator, plus the per-pair float columns a multi-objective loss reads (head ids as integers): its
    own columns, each row's preference weights, its pair weight."""

    def __init__(self, collator, fields: tuple[str, ...]):
        self.collator = collator
        self.fields = fields

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        return {**self.collator(examples), **_extra_tensors(examples, self.fields)}


class _ListCollator:
    """K sequences per prompt, flattened row-major to [B * K_max, L] (TRL's pair layout generalised); lists shorter
    than K_max are padded with prompt-only rows that `list_mask` leaves out of every loss."""

    def __init__(self, pad_token_id: int, max_length: int | None, truncation_mode: str, pad_to_multiple_of: int | None,
                 fields: tuple[str, ...] = ()):
        self.fields = fields  # per-list columns passed on: preference_weights (logged), the list's weight
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
            prompt_length = len(example["prompt_ids"])
            for index in range(width):
                completion = completions[index] if index < len(completions) else []
                input_ids.append(torch.tensor(self._truncate(example["prompt_ids"] + completion)))
                completion_masks.append(torch.tensor(self._truncate([0] * prompt_length + [1] * len(completion))))
            padding = width - len(completions)
            labels.append(example["list_labels"] + [0.0] * padding)
            list_mask.append([1.0] * len(completions) + [0.0] * padding)
        attention = [torch.ones_like(ids) for ids in input_ids]
        return {
            **_extra_tensors(examples, self.fields),
            "input_ids": pad(input_ids, self.pad_token_id, "right", self.pad_to_multiple_of),
            "attention_mask": pad(attention, 0, "right", self.pad_to_multiple_of),
            "completion_mask": pad(completion_masks, 0, "right", self.pad_to_multiple_of),
            "list_labels": torch.tensor(labels, dtype=torch.float32),
            "list_mask": torch.tensor(list_mask, dtype=torch.float32),
        }
