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

from alignment.data import DataSourceError, data_display_name, resolve_data
from alignment.data.jsonl import iter_jsonl
from reward_models.chat_format import conversation, render_conversation

logger = logging.getLogger(__name__)
QA_FEEDBACK_PREFIX = "qa_feedback:"
_SLICE = re.compile(r"^(?P<path>.*?)\[(?P<start>-?\d*):(?P<stop>-?\d*)\]$")

# Fine-grained QA feedback (Wu et al. 2023): error categories -> the aspect they count against.
QA_FEEDBACK_ASPECTS = {
    "relevance": ("Irrelevant", "Redundant", "Incoherent"),
    "factuality": ("Unverifiable", "Wrong-Grounding"),
    "completeness": ("Missing-Answer", "Missing-Major-Auxiliary", "Missing-Minor-Auxiliary"),
}


class RewardDataError(ValueError):
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
                          "helpful=hh-helpful[:600] (packaged), helpful=pairs.jsonl (relative to the YAML recipe) or a hub "
                          "dataset id; trains that head (Bradley-Terry)."},
    )
    pairwise_eval_files: list[str] = field(
        default_factory=list,
        metadata={"help": "Pairwise evaluation sources (same format); reported as pairwise accuracy per head."},
    )
    rated_train_files: list[str] = field(
        default_factory=list,
        metadata={"help": "Rated training sources: PATH[slice] of {completion, prompt?, ratings{objective: value}} rows, "
                          "or qa_feedback:PATH[slice] for the fine-grained QA feedback file (packaged as qa_feedback:qa-feedback); "
                          "trains those heads (MSE)."},
    )
    rated_eval_files: list[str] = field(
        default_factory=list,
        metadata={"help": "Rated evaluation sources (same format); reported as Spearman correlation and MSE per head."},
    )
    rating_range: list[float] = field(
        default_factory=lambda: [-100.0, 100.0],
        metadata={"help": "Allowed [min, max] of every rating; a rating outside it is a data error, not a training signal."},
    )
    drop_other_ratings: bool = field(
        default=False,
        metadata={"help": "Leave out ratings of objectives that have no head (and rows left with none) instead of "
                          "stopping: how a single-head model trains on one aspect of a multi-aspect file."},
    )
    drop_degenerate_pairs: bool = field(
        default=False,
        metadata={"help": "Leave out (and count in the log) pairs whose chosen and rejected are the same conversation or "
                          "whose reply is empty, instead of stopping at the row; the packaged UltraFeedback train file has "
                          "four (rows 307, 479, 656, 834)."},
    )


def split_slice(spec: str) -> tuple[str, slice]:
    """'path[10:20]' -> ('path', slice(10, 20)); no suffix keeps every row."""
    match = _SLICE.match(spec.strip())
    if not match:
        return spec.strip(), slice(None)
    to_int = lambda text: int(text) if text else None  # noqa: E731
    return match["path"], slice(to_int(match["start"]), to_int(match["stop"]))


def read_jsonl(name: str | Path, rows: slice = slice(None)) -> list[tuple[int, dict]]:
    """(1-based line number, row) pairs of a data name (packaged, local file or hub id; `alignment.data`), sliced;
    unreadable lines name their line."""
    try:
        path = resolve_data(name)
    except DataSourceError as error:
        raise RewardDataError(str(error)) from None
    return list(iter_jsonl(path, RewardDataError))[rows]


def _conversation_field(row: dict, name: str, where: str):
    """A non-empty string or message list from `row[name]`, else an error naming the field."""
    if name not in row:
        raise RewardDataError(f"{where}: missing field '{name}' (present: {sorted(row)})")
    value = row[name]
    if isinstance(value, str):
        if not value.strip():
            hint = "; set drop_degenerate_pairs to leave such pairs out" if name in ("chosen", "rejected") else ""
            raise RewardDataError(f"{where}: field '{name}' is empty{hint}")
        return value
    if isinstance(value, list) and value:
        for i, m in enumerate(value):
            # The chat template reads both as text: None or a number here would fail later inside the tokenizer.
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise RewardDataError(f"{where}: field '{name}[{i}]' must be {{'role': str, 'content': str}}, got {m!r:.80}")
        if not any(m["content"].strip() for m in value):
            raise RewardDataError(f"{where}: field '{name}' has only empty messages")
        return value
    raise RewardDataError(f"{where}: field '{name}' must be a non-empty string or a list of {{role, content}} messages, "
                          f"got {value!r:.80}")


def _finite_number(value, where: str, name: str, bounds: Sequence[float] | None = None) -> float:
    try:  # a JSON integer too large for a float (10**400) is reported like inf, not raised as OverflowError
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise RewardDataError(f"{where}: field '{name}' must be a finite number, got {value!r:.80}")
    if bounds is not None and not bounds[0] <= number <= bounds[1]:
        raise RewardDataError(f"{where}: field '{name}' = {value} is out of range [{bounds[0]}, {bounds[1]}]")
    return number


def _pair_margin(row: dict, where: str) -> float:
    """The cardinal score gap of a pair (UltraFeedback's score_chosen - score_rejected), 1.0 when the row has none."""
    scores = row.get("metadata") if isinstance(row.get("metadata"), dict) else row
    if "score_chosen" not in scores and "score_rejected" not in scores:
        return 1.0
    chosen = _finite_number(scores.get("score_chosen"), where, "score_chosen")
    rejected = _finite_number(scores.get("score_rejected"), where, "score_rejected")
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


def _blank(value) -> bool:
    """An empty string, or messages without any text: a side of a pair that says nothing."""
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, list) and all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                           and not m["content"].strip() for m in value)


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
    for line_number, row in read_jsonl(path, rows):
        where = f"{path}, row {line_number}"
        if drop_degenerate and (_blank(row.get("chosen")) or _blank(row.get("rejected"))):
            dropped += 1
            continue
        prompt = _conversation_field(row, "prompt", where) if "prompt" in row else None
        chosen = conversation(prompt, _conversation_field(row, "chosen", where))
        rejected = conversation(prompt, _conversation_field(row, "rejected", where))
        margin = _pair_margin(row, where)
        if chosen == rejected:  # the Bradley-Terry gradient of a pair with itself is zero: it teaches nothing
            if not drop_degenerate:
                raise RewardDataError(f"{where}: field 'rejected' is the same conversation as 'chosen'; remove the row, "
                                      "or set drop_degenerate_pairs to leave such pairs out")
            dropped += 1
            continue
        examples.append(RewardExample(source=objective, first=chosen, second=rejected, objective=objective, margin=margin))
    if dropped:
        logger.warning("%s: left out %d pair(s) with identical sides or an empty reply", path, dropped)
    if not examples:
        raise RewardDataError(f"{path}: no rows selected for objective '{objective}'")
    return examples


def qa_feedback_ratings(row: dict, where: str) -> tuple[str, str, dict[str, float]]:
    """(question, answer, ratings) derived from one fine-grained QA feedback row.

    The human annotations (errors[], missing-info[]) are about `prediction 1`, the response the annotators
    corrected (its error spans index into that text). Each aspect's rating is minus the number of annotated
    errors of its categories (QA_FEEDBACK_ASPECTS): 0 is a flawless answer on that aspect, -3 three errors.
    Counting spans keeps the unit the paper's fine-grained reward uses (one penalty per error segment).
    The passages are left out: they are longer than a small encoder's context, and the aspects are judged
    on the answer to the question.
    """
    question = _conversation_field(row, "question", where)
    answer = _conversation_field(row, "prediction 1", where)
    feedback = row.get("feedback")
    if not isinstance(feedback, dict):
        raise RewardDataError(f"{where}: missing field 'feedback' (an object with 'errors' and 'missing-info')")
    annotations = []
    for key in ("errors", "missing-info"):
        if not isinstance(feedback.get(key), list):
            raise RewardDataError(f"{where}: field 'feedback.{key}' must be a list")
        for index, item in enumerate(feedback[key]):
            if not isinstance(item, dict) or not isinstance(item.get("error type"), str):
                raise RewardDataError(f"{where}: field 'feedback.{key}[{index}]' has no 'error type' name")
            annotations.append(item["error type"])
    known = {category for categories in QA_FEEDBACK_ASPECTS.values() for category in categories}
    unknown = sorted(set(annotations) - known)
    if unknown:
        raise RewardDataError(f"{where}: field 'feedback' has unknown error type(s) {unknown}; known: {sorted(known)}")
    ratings = {
        aspect: -float(sum(annotation in categories for annotation in annotations))
        for aspect, categories in QA_FEEDBACK_ASPECTS.items()
    }
    return question, answer, ratings


def load_rated_source(spec: str, heads: Sequence[str], rating_range: Sequence[float],
                      drop_other_objectives: bool = False) -> list[RewardExample]:
    """Rated texts of `PATH[slice]` or `qa_feedback:PATH[slice]`, validated; with `drop_other_objectives`, ratings of
    objectives without a head are left out (after validation) instead of stopping."""
    is_qa_feedback = spec.startswith(QA_FEEDBACK_PREFIX)
    path, rows = split_slice(spec[len(QA_FEEDBACK_PREFIX):] if is_qa_feedback else spec)
    examples = []
    for line_number, row in read_jsonl(path, rows):
        where = f"{path}, row {line_number}"
        if is_qa_feedback:
            prompt, completion, ratings = qa_feedback_ratings(row, where)
        else:
            prompt = _conversation_field(row, "prompt", where) if "prompt" in row else None
            if "completion" not in row and "text" not in row:
                raise RewardDataError(f"{where}: missing field 'completion' (or 'text') (present: {sorted(row)})")
            completion = _conversation_field(row, "completion" if "completion" in row else "text", where)
            ratings = row.get("ratings")
            if not isinstance(ratings, dict) or not ratings:
                raise RewardDataError(f"{where}: field 'ratings' must be a non-empty {{objective: number}} object")
        for objective, value in ratings.items():
            if objective not in heads and drop_other_objectives:
                _finite_number(value, where, f"ratings.{objective}", rating_range)
                continue
            if objective not in heads:
                raise RewardDataError(
                    f"{where}: field 'ratings.{objective}' rates an objective with no head; heads: {list(heads)}"
                )
            _finite_number(value, where, f"ratings.{objective}", rating_range)
        ratings = {objective: value for objective, value in ratings.items() if objective in heads}
        if ratings:
            examples.append(RewardExample(source=data_display_name(path), first=conversation(prompt, completion),
                                          ratings=ratings))
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
    if len(bounds) != 2 or not all(isinstance(b, (int, float)) and math.isfinite(b) for b in bounds) or bounds[0] > bounds[1]:
        raise RewardDataError(f"rating_range must be [min, max] of finite numbers, got {args.rating_range}")
    # An empty spec is skipped: it is how a YAML list is cleared from the command line (`--rated_train_files ""`).
    pairwise = [s for s in (args.pairwise_train_files if split == "train" else args.pairwise_eval_files) if s.strip()]
    rated = [s for s in (args.rated_train_files if split == "train" else args.rated_eval_files) if s.strip()]
    examples = [e for spec in pairwise for e in load_pairwise_source(spec, args.heads, args.drop_degenerate_pairs)]
    examples += [e for spec in rated for e in load_rated_source(spec, args.heads, args.rating_range, args.drop_other_ratings)]
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
    from datasets import Dataset

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
