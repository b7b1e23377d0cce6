"""The recipe entry point: train and eval rows of a built-in preference dataset, or of any JSONL data, in the format
the loss needs.

Built-in datasets are the entries of `DATASETS`: a name and a function `SplitRequest -> (train, eval, names)` that
loads its train and dev splits and refuses a format it cannot give. Adding a dataset is adding one entry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from alignment.data.preferences.formats import (
    FORMATS,
    PAIR_WEIGHT_FIELD,
    PreferenceDataError,
    read_jsonl,
    validate_rows,
)
from alignment.data.preferences.labels import lists_to_groups
from alignment.data.preferences.loaders import (
    HH_FILES,
    hh_files,
    hh_pairs,
    load_objective_pairs,
    load_qa_feedback_lists,
    load_ultrafeedback_pairs,
)
from alignment.data.rows import explicit_prompt, is_hh_row
from alignment.data.sources import DataSourceError, data_display_name, resolve_data
from alignment.data.validation import ROW_NUMBER, location

logger = logging.getLogger(__name__)
# (train rows, eval rows, the dataset names a record lists)
Splits = tuple[list[dict], list[dict], list[str]]


@dataclass(frozen=True)
class SplitRequest:
    """What a recipe asks of a dataset: the row format, the objectives, how many rows, and which to keep.

    See `load_preference_splits` for the meaning of each field.
    """

    data_format: str
    objectives: Sequence[str]
    num_train_rows: int | None = None
    num_eval_rows: int = 64
    eval_dataset: str | None = None
    max_prompt_chars: int | None = None
    group_size: int = 2
    required: Sequence[str] = ()
    pair_weight_field: str = PAIR_WEIGHT_FIELD
    weight_objectives: Sequence[str] | None = None

    @property
    def read_limit(self) -> int | None:
        """Training rows to read from a file: all of them when prompts are filtered by length, since the filter
        decides which rows are kept."""
        return None if self.num_train_rows is None or self.max_prompt_chars else self.num_train_rows

    def trim(self, rows: list[dict], count: int | None) -> list[dict]:
        """`rows` without those whose prompt is over `max_prompt_chars`, then the first `count` (all when None)."""
        if self.max_prompt_chars:
            rows = [row for row in rows if _prompt_chars(row) <= self.max_prompt_chars]
        return rows if count is None else rows[:count]


def _prompt_chars(row: dict) -> int:
    prompt = row["prompt"]
    return len(prompt) if isinstance(prompt, str) else sum(len(str(m.get("content", ""))) for m in prompt)


def hh_splits(request: SplitRequest) -> Splits:
    """HH-RLHF pairs, one packaged file per objective among helpful/harmless, and their dev splits."""
    if request.data_format != "pairs":
        raise PreferenceDataError(f"dataset 'hh' holds pairs; the loss needs {request.data_format}")
    # MODPO trains on its first objective's pairs (the others are margins); multi-head DPO on all of them.
    names = [o for o in request.objectives if o in HH_FILES] or list(request.objectives[:1])
    train = load_objective_pairs(hh_files("train", names), request.read_limit)
    eval_limit = None if request.max_prompt_chars else request.num_eval_rows
    evaluation = load_objective_pairs(hh_files("dev", names), eval_limit)
    return (request.trim(train, request.num_train_rows), request.trim(evaluation, request.num_eval_rows),
            [HH_FILES[n]["train"] for n in names])


def ultrafeedback_splits(request: SplitRequest) -> Splits:
    """UltraFeedback pairs with their score gap, and the packaged dev split."""
    if request.data_format != "pairs":
        raise PreferenceDataError(f"dataset 'ultrafeedback' holds pairs; the loss needs {request.data_format}")
    train = load_ultrafeedback_pairs(resolve_data("ultrafeedback"), request.read_limit)
    evaluation = load_ultrafeedback_pairs(resolve_data("ultrafeedback-dev"))
    return (request.trim(train, request.num_train_rows), request.trim(evaluation, request.num_eval_rows),
            ["ultrafeedback"])


def qa_feedback_splits(request: SplitRequest) -> Splits:
    """qa-feedback lists of 4 ranked predictions (or groups of `group_size` best vs worst); the last
    `num_eval_rows` are held out."""
    if request.data_format == "pairs":
        raise PreferenceDataError("dataset 'qa-feedback' holds ranked lists (or groups made from them), not pairs")
    rows = request.trim(load_qa_feedback_lists(resolve_data("qa-feedback")), None)
    if request.data_format == "groups":
        rows = lists_to_groups(rows, request.group_size)
    cut = max(len(rows) - request.num_eval_rows, 1)
    return request.trim(rows[:cut], request.num_train_rows), rows[cut:], ["qa-feedback"]


# Built-in preference datasets by name: each loads its train and eval splits for a SplitRequest.
DATASETS: dict[str, Callable[[SplitRequest], Splits]] = {
    "hh": hh_splits,
    "ultrafeedback": ultrafeedback_splits,
    "qa-feedback": qa_feedback_splits,
}
BUILTIN_DATASETS = tuple(DATASETS)


def load_preference_splits(dataset: str, data_format: str, objectives: Sequence[str],
                           num_train_rows: int | None = None, num_eval_rows: int = 64, eval_dataset: str | None = None,
                           max_prompt_chars: int | None = None, group_size: int = 2,
                           required: Sequence[str] = (), pair_weight_field: str = PAIR_WEIGHT_FIELD,
                           weight_objectives: Sequence[str] | None = None) -> Splits:
    """(train rows, eval rows, dataset names) in `data_format`, validated, for a built-in dataset or a JSONL path.

    Built-ins (packaged, `alignment.data`; the entries of `DATASETS`): 'hh' (HH-RLHF pairs, `hh-helpful` /
    `hh-harmless` and their dev splits, one per objective among helpful/harmless), 'ultrafeedback' (pairs with
    score_gap), 'qa-feedback' (lists of 4 ranked predictions; groups of `group_size` best vs worst). Anything else
    is a data name for `alignment.data.resolve_data` (a local JSONL file or a hub dataset id) read as rows of
    `data_format` (see `alignment.data.preferences`), each with the `required` fields; `eval_dataset` is its
    held-out file (else its last `num_eval_rows` rows). `num_train_rows` / `num_eval_rows` cut the splits after
    rows whose prompt is longer than `max_prompt_chars` characters are left out. A file's rows may carry a
    `pair_weight_field` (each row's weight on its loss) and `preference_weights` (the row's own weights over
    `weight_objectives`, the run's objectives); both are checked on every row (`validate_rows`).
    """
    if data_format not in FORMATS:
        raise PreferenceDataError(f"unknown data format '{data_format}'; expected one of {FORMATS}")
    if num_eval_rows < 0:
        raise PreferenceDataError(f"num_eval_rows must be >= 0, got {num_eval_rows}")
    request = SplitRequest(data_format, objectives, num_train_rows, num_eval_rows, eval_dataset, max_prompt_chars,
                           group_size, required, pair_weight_field, weight_objectives)
    load_splits = DATASETS.get(dataset)
    train, evaluation, names = load_splits(request) if load_splits else _file_splits(dataset, request)
    if not train:  # the trainer would fail on an empty dataset without saying why
        raise PreferenceDataError(f"{', '.join(names)}: no training rows left (num_train_rows={num_train_rows}, "
                                  f"max_prompt_chars={max_prompt_chars}, num_eval_rows={num_eval_rows})")
    return train, evaluation, names


def _file_splits(dataset: str, request: SplitRequest) -> Splits:
    """Rows of any data name in the requested format; the eval rows from `eval_dataset` or the end of the file."""
    try:
        path = resolve_data(dataset)
        eval_path = resolve_data(request.eval_dataset) if request.eval_dataset else None
    except DataSourceError as error:
        raise PreferenceDataError(f"dataset: {error}; the built-in preference sets are {BUILTIN_DATASETS}") from None
    rows = _read_rows(path, request)
    num_eval_rows = request.num_eval_rows
    if eval_path:
        evaluation = _read_rows(eval_path, request)
    elif num_eval_rows >= len(rows):
        raise PreferenceDataError(f"{path}: has {len(rows)} rows and num_eval_rows={num_eval_rows} would hold them all "
                                  "out for evaluation; set num_eval_rows lower or give eval_dataset")
    else:
        rows, evaluation = (rows[:-num_eval_rows], rows[-num_eval_rows:]) if num_eval_rows else (rows, [])
    return (request.trim(rows, request.num_train_rows), request.trim(evaluation, num_eval_rows),
            [data_display_name(dataset)])


def _read_rows(path: Path, request: SplitRequest) -> list[dict]:
    """A file's rows, validated as `request.data_format`. Pairs may also come in TRL's preference formats, the prompt
    explicit or implicit in `chosen` and `rejected` (`explicit_prompt`), or in HH-RLHF's hub schema (`hh_pairs`)."""
    rows = read_jsonl(path)
    if request.data_format == "pairs" and rows and is_hh_row(rows[0]):
        logger.info(f"{path}: HH-RLHF dialogues in 'chosen' / 'rejected': each pair's shared history is its prompt")
        rows = hh_pairs(rows, str(path))
    elif request.data_format == "pairs":
        rows = [explicit_prompt(row, location(str(path), row[ROW_NUMBER]), PreferenceDataError) for row in rows]
    validate_rows(rows, request.data_format, str(path), objective_names=request.objectives,
                  required=request.required, pair_weight_field=request.pair_weight_field,
                  weight_objectives=request.weight_objectives)
    return rows
