"""Data mixtures for the multi-head reward model: pairwise and rated sources, one row format, label masks.

Each source feeds some heads and not others:
- a *pairwise* source gives (chosen, rejected) pairs for ONE objective and trains that head with Bradley-Terry
  (`helpful=hh-helpful`, a packaged name, or `helpful=my_pairs.jsonl`). Rows hold `chosen` and `rejected` (HH dialogue
  strings, TRL message lists, or completions of an optional `prompt`), and, for margin weighting, the score gap
  from `score_chosen`/`score_rejected` (top level or under `metadata`, as in UltraFeedback).
- a *rated* source gives per-aspect scores of single responses and trains those heads by regression. Rows hold
  `completion` (or `text`), an optional `prompt`, and `ratings: {objective: number}`; an objective missing from a
  row leaves that head unlabelled for that row. `qa_feedback:PATH` reads the fine-grained QA feedback file
  directly (see `qa_feedback_ratings` for how the ratings are derived).

Spec strings (YAML or CLI): `OBJECTIVE=PATH` for pairwise, `PATH` or `qa_feedback:PATH` for rated; a slice such as
`PATH[:400]` or `PATH[340:]` keeps those rows. Every row of the mixture looks the same:

    first, second       rendered texts (second = "" for rated rows)
    pair_mask    [K]    1 on the head this pair trains
    pair_margin         the pair's score gap (1.0 when the source has none)
    rating, rating_mask [K]

Validation runs on every row before any training step and names the file, the row (1-based line) and the field.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch

from alignment.data import data_display_name
from alignment.data import rows as row_formats
from alignment.data.jsonl import read_jsonl
from alignment.data.rows import QA_FEEDBACK_ASPECTS, QA_FEEDBACK_PREFIX, pair_fields, parse_rated_row
from alignment.data.sources import resolve_data_or_raise, split_slice
from alignment.data.validation import ROW_NUMBER, DataError, is_blank, number_field
from alignment.redaction import redact_secrets
from reward_models.chat_format import conversation, render_conversation

logger = logging.getLogger(__name__)
# Appended to the message of an empty reply: the setting that leaves such pairs out instead.
DEGENERATE_PAIR_HINT = "; set drop_degenerate_pairs to leave such pairs out"

__all__ = [
    "QA_FEEDBACK_ASPECTS", "QA_FEEDBACK_PREFIX", "RewardDataArguments", "RewardDataError", "RewardExample",
    "RewardMixtureCollator", "build_eval_mixtures", "build_mixture", "check_heads", "load_examples",
    "load_pairwise_source", "load_rated_source", "qa_feedback_ratings", "read_source", "split_slice", "to_mixture_rows",
]


class RewardDataError(DataError):
    """Bad reward-model data; the message names the file, the row and the field."""


@dataclass
class RewardDataArguments:
    """Which data trains and evaluates which head.

    Heads:   `heads` lists the objectives, i.e. the model's outputs in order.
    Sources: `pairwise_train_files` / `pairwise_eval_files` (`OBJECTIVE=PATH[slice]`),
             `rated_train_files` / `rated_eval_files` (`PATH[slice]` or `qa_feedback:PATH[slice]`).
    Checks:  `rating_range` bounds every rating; `drop_degenerate_pairs` leaves out identical or empty pairs instead of
             stopping; `margin_mode` in the training config decides how pair margins count.
    """

    # data names, anchored to the YAML recipe that gives them (alignment.cli)
    data_fields: ClassVar[tuple[str, ...]] = ("pairwise_train_files", "pairwise_eval_files", "rated_train_files",
                                              "rated_eval_files")

    heads: list[str] = field(
        default_factory=lambda: ["helpful", "harmless"],
        metadata={"help": "Objective names, one reward-model head each, in output order (the model's id2label)."},
    )
    pairwise_train_files: list[str] = field(
        default_factory=list,
        metadata={"help": "Pairwise training sources as OBJECTIVE=PATH[start:stop], e.g. "
                          "helpful=hh-helpful[:600] (packaged), helpful=pairs.jsonl (relative to the YAML recipe) "
                          "or a hub dataset id; trains that head (Bradley-Terry)."},
    )
    pairwise_eval_files: list[str] = field(
        default_factory=list,
        metadata={"help": "Pairwise evaluation sources (same format); reported as pairwise accuracy per head."},
    )
    rated_train_files: list[str] = field(
        default_factory=list,
        metadata={"help": "Rated training sources: PATH[slice] of {completion, prompt?, ratings{objective: value}} "
                          "rows, or qa_feedback:PATH[slice] for the fine-grained QA feedback file (packaged as "
                          "qa_feedback:qa-feedback); trains those heads (MSE)."},
    )
    rated_eval_files: list[str] = field(
        default_factory=list,
        metadata={"help": "Rated evaluation sources (same format); reported as Spearman correlation and MSE per head."},
    )
    rating_range: list[float] = field(
        default_factory=lambda: [-100.0, 100.0],
        metadata={"help": "Allowed [min, max] of every rating; a rating outside it is a data error, not a training "
                          "signal."},
    )
    drop_other_ratings: bool = field(
        default=False,
        metadata={"help": "Leave out ratings of objectives that have no head (and rows left with none) instead of "
                          "stopping: how a single-head model trains on one aspect of a multi-aspect file."},
    )
    drop_degenerate_pairs: bool = field(
        default=False,
        metadata={"help": "Leave out (and count in the log) pairs whose chosen and rejected are the same "
                          "conversation or whose reply is empty, instead of stopping at the row; the packaged "
                          "UltraFeedback train file has four (rows 307, 479, 656, 834)."},
    )


def read_source(name: str | Path, rows: slice = slice(None)) -> list[dict]:
    """The rows of a data name (packaged, local file or hub id; `alignment.data`), sliced, each with its 1-based line
    number under `_row`; an unknown name or an unreadable line raises `RewardDataError`."""
    return read_jsonl(resolve_data_or_raise(name, RewardDataError), RewardDataError, rows=rows)


def _pair_margin(row: dict, where: str) -> float:
    """The cardinal score gap of a pair (UltraFeedback's score_chosen - score_rejected), 1.0 when the row has none."""
    scores = row.get("metadata") if isinstance(row.get("metadata"), dict) else row
    if "score_chosen" not in scores and "score_rejected" not in scores:
        return 1.0
    chosen = number_field(scores.get("score_chosen"), where, "score_chosen", RewardDataError)
    rejected = number_field(scores.get("score_rejected"), where, "score_rejected", RewardDataError)
    if chosen < rejected:
        raise RewardDataError(f"{where}: field 'score_chosen' = {chosen} is below 'score_rejected' = {rejected}")
    return chosen - rejected


@dataclass
class RewardExample:
    """One row of the mixture before rendering: a pair for one objective, or one text with ratings."""

    source: str
    first: list[dict]
    second: list[dict] | None = None
    objective: str | None = None
    margin: float = 1.0
    ratings: dict[str, float] = field(default_factory=dict)


def load_pairwise_source(spec: str, heads: Sequence[str], drop_degenerate: bool = False) -> list[RewardExample]:
    """Pairs of `OBJECTIVE=PATH[slice]`, validated. A pair with an empty side, or whose two sides are the same
    conversation, stops here naming the row; with `drop_degenerate` it is left out and counted instead."""
    objective, separator, path_spec = spec.partition("=")
    objective = objective.strip()
    if not separator or not objective or not path_spec.strip():
        raise RewardDataError(f"pairwise source {spec!r}: expected OBJECTIVE=PATH, e.g. helpful=data/helpful.jsonl")
    path, rows = split_slice(path_spec)
    if objective not in heads:
        raise RewardDataError(
            f"{path}: pairs for objective '{objective}', which has no head; the model's heads are {list(heads)}"
        )
    examples, dropped = [], 0
    for row in read_source(path, rows):
        where = f"{path}, row {row[ROW_NUMBER]}"
        if drop_degenerate and (is_blank(row.get("chosen")) or is_blank(row.get("rejected"))):
            dropped += 1
            continue
        prompt, (chosen, rejected) = pair_fields(row, where, RewardDataError, blank_hint=DEGENERATE_PAIR_HINT)
        chosen, rejected = conversation(prompt, chosen), conversation(prompt, rejected)
        margin = _pair_margin(row, where)
        if chosen == rejected:  # the Bradley-Terry gradient of a pair with itself is zero: it teaches nothing
            if not drop_degenerate:
                raise RewardDataError(f"{where}: field 'rejected' is the same conversation as 'chosen'; remove the "
                                      "row, or set drop_degenerate_pairs to leave such pairs out")
            dropped += 1
            continue
        examples.append(RewardExample(source=objective, first=chosen, second=rejected, objective=objective,
                                      margin=margin))
    if dropped:
        logger.warning("%s: left out %d pair(s) with identical sides or an empty reply", redact_secrets(path), dropped)
    if not examples:
        raise RewardDataError(f"{path}: no rows selected for objective '{objective}'")
    return examples


def qa_feedback_ratings(row: dict, where: str) -> tuple[str, str, dict[str, float]]:
    """(question, answer, ratings) of one fine-grained QA feedback row: `alignment.data.rows.qa_feedback_ratings`
    (see there how the ratings are derived), its errors raised as `RewardDataError`."""
    return row_formats.qa_feedback_ratings(row, where, RewardDataError)


def load_rated_source(spec: str, heads: Sequence[str], rating_range: Sequence[float],
                      drop_other_objectives: bool = False) -> list[RewardExample]:
    """Rated texts of `PATH[slice]` or `qa_feedback:PATH[slice]`, validated; with `drop_other_objectives`, ratings of
    objectives without a head are left out (after validation) instead of stopping."""
    is_qa_feedback = spec.startswith(QA_FEEDBACK_PREFIX)
    path, rows = split_slice(spec[len(QA_FEEDBACK_PREFIX):] if is_qa_feedback else spec)
    examples = []
    for row in read_source(path, rows):
        where = f"{path}, row {row[ROW_NUMBER]}"
        if is_qa_feedback:
            question, answer, ratings = qa_feedback_ratings(row, where)
            row = {"prompt": question, "completion": answer, "ratings": ratings}
        rated = parse_rated_row(row, where, RewardDataError, heads=heads, rating_range=rating_range,
                                drop_other_objectives=drop_other_objectives)
        if rated.ratings:
            examples.append(RewardExample(source=data_display_name(path),
                                          first=conversation(rated.prompt, rated.completion), ratings=rated.ratings))
    if not examples and not drop_other_objectives:  # dropping may leave none: the caller decides if a head lacks data
        raise RewardDataError(f"{path}: no rows selected")
    return examples


def check_heads(heads: Sequence[str]) -> None:
    """Head names become the model's id2label and the objectives' names: non-empty, distinct, text."""
    if not heads or any(not isinstance(h, str) or not h.strip() for h in heads) or len(set(heads)) != len(heads):
        raise RewardDataError(f"heads must be distinct non-empty names, one per objective, got {list(heads)}")


def load_examples(args: RewardDataArguments, split: str) -> list[RewardExample]:
    """Every source of one split ("train" or "eval"), validated, in the order given."""
    check_heads(args.heads)
    bounds = args.rating_range
    finite_bounds = all(isinstance(b, (int, float)) and math.isfinite(b) for b in bounds)
    if len(bounds) != 2 or not finite_bounds or bounds[0] > bounds[1]:
        raise RewardDataError(f"rating_range must be [min, max] of finite numbers, got {args.rating_range}")
    # An empty spec is skipped: it is how a YAML list is cleared from the command line (`--rated_train_files ""`).
    pairwise = [s for s in (args.pairwise_train_files if split == "train" else args.pairwise_eval_files) if s.strip()]
    rated = [s for s in (args.rated_train_files if split == "train" else args.rated_eval_files) if s.strip()]
    examples = [e for spec in pairwise for e in load_pairwise_source(spec, args.heads, args.drop_degenerate_pairs)]
    examples += [e for spec in rated
                 for e in load_rated_source(spec, args.heads, args.rating_range, args.drop_other_ratings)]
    return examples


def to_mixture_rows(examples: Sequence[RewardExample], heads: Sequence[str], tokenizer) -> dict[str, list]:
    """Columns of the mixture (rendered texts, masks, ratings), ready for `datasets.Dataset.from_dict`."""
    heads = list(heads)
    columns = {name: [] for name in ("source", "first", "second", "pair_mask", "pair_margin", "rating", "rating_mask",
                                     "length")}
    for example in examples:
        pair_mask = [float(example.objective == head) for head in heads]
        columns["source"].append(example.source)
        columns["first"].append(render_conversation(tokenizer, example.first))
        columns["second"].append(render_conversation(tokenizer, example.second) if example.second else "")
        columns["pair_mask"].append(pair_mask)
        columns["pair_margin"].append(example.margin)
        columns["rating"].append([float(example.ratings.get(head, 0.0)) for head in heads])
        columns["rating_mask"].append([float(head in example.ratings) for head in heads])
        # characters of the longer text: what train_sampling_strategy=group_by_length sorts by (less padding)
        columns["length"].append(max(len(columns["first"][-1]), len(columns["second"][-1])))
    return columns


def build_mixture(examples: Sequence[RewardExample], heads: Sequence[str], tokenizer):
    """A `datasets.Dataset` with one row per example (see the module docstring for the columns)."""
    from datasets import Dataset  # lazy: most of a second to import; loading and validating sources never need it

    return Dataset.from_dict(to_mixture_rows(examples, heads, tokenizer))


def build_eval_mixtures(examples: Sequence[RewardExample], heads: Sequence[str], tokenizer) -> dict:
    """One evaluation dataset per source (pairs: their objective; rated: their file), reported under its own prefix."""
    by_source: dict[str, list[RewardExample]] = {}
    for example in examples:
        by_source.setdefault(re.sub(r"\W+", "_", example.source.split(".")[0]).strip("_"), []).append(example)
    return {name: build_mixture(group, heads, tokenizer) for name, group in by_source.items()}


class RewardMixtureCollator:
    """Tokenizes a batch of mixture rows into ONE padded tensor of texts plus the indices and masks of the loss.

    Pairs contribute two texts (chosen, rejected), rated rows one, so a batch is scored by one forward pass;
    `first_index`/`second_index` say where each row's texts landed (rated rows point `second_index` at their
    own text, and their pair mask is 0).
    """

    def __init__(self, tokenizer, max_length: int | None):
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        texts, first_index, second_index = [], [], []
        for row in rows:
            first_index.append(len(texts))
            texts.append(row["first"])
            if row["second"]:
                texts.append(row["second"])
            second_index.append(len(texts) - 1)
        batch = dict(self.tokenizer(
            texts, padding=True, truncation=self.max_length is not None, max_length=self.max_length, return_tensors="pt"
        ))
        batch["first_index"] = torch.tensor(first_index)
        batch["second_index"] = torch.tensor(second_index)
        for name in ("pair_mask", "pair_margin", "rating", "rating_mask"):
            batch[name] = torch.tensor([row[name] for row in rows], dtype=torch.float32)
        return batch
