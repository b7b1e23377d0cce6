"""The three preference row formats (pairs, lists, groups): reading a file, validating every row, and the
`datasets.Dataset` the trainers read.

Every check raises `PreferenceDataError` naming the file, the row (1-based line) and the field, before any model
is touched.

Two optional per-row fields fit every format: a pair weight (`pair_weight`, the field name configurable), a finite
number >= 0 that scales the row's loss, and `preference_weights`, the row's own weight vector over the objectives
(validated like `preference_weights` and normalized). A field that some row carries, every row must carry.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from alignment.data import jsonl
from alignment.data.validation import (
    ROW_NUMBER,
    DataError,
    check_messages,
    finite_float,
    is_blank,
    location,
    present_fields,
)
from alignment.objectives.weights import PreferenceWeightsError, parse_preference_weights

FORMATS = ("pairs", "lists", "groups")
# A row's own weights [K] in objective order: given in the data, or a Preference Orchestrator's (prompt-aware)
PROMPT_WEIGHTS_COLUMN = "preference_weights"
# Columns the trainers read (see alignment.trainers.mo_dpo); any other field of a file stays out of the Dataset,
# where an id that is a number in one row and a string in another would stop Arrow with no file or row.
PAIR_COLUMNS = ("prompt", "chosen", "rejected", "objective", "score_gap", "chosen_margins", "rejected_margins",
                "objective_labels", PROMPT_WEIGHTS_COLUMN)
LIST_COLUMNS = ("prompt", "completions", "labels", PROMPT_WEIGHTS_COLUMN)
PAIR_WEIGHT_FIELD = "pair_weight"  # the default name of the per-row weight on the loss


class PreferenceDataError(DataError):
    """A preference file or row is missing a field or holds a malformed value; the message says where."""


def read_jsonl(path: str | Path, limit: int | None = None) -> list[dict]:
    """Rows of a JSON-lines file, each with its 1-based line number under `_row`; bad lines name file and line.

    `alignment.data.jsonl.read_jsonl` with its errors raised as `PreferenceDataError`.
    """
    return jsonl.read_jsonl(path, PreferenceDataError, limit=limit)


def check_text(value, where: str, conversational: bool) -> None:
    """A prompt or reply: a non-empty string, or (`conversational`) a list of messages not all empty."""
    if not conversational:
        if not isinstance(value, str) or not value.strip():
            raise PreferenceDataError(f"{where}: expected a non-empty string, got {value!r:.80}")
        return
    if not isinstance(value, list) or not value:
        raise PreferenceDataError(f"{where}: expected a non-empty list of {{'role', 'content'}} messages, "
                                  f"got {value!r:.80}")
    check_messages(value, where, PreferenceDataError)
    if is_blank(value):
        raise PreferenceDataError(f"{where}: every message is empty")


def check_number(value, where: str) -> float:
    """`value` as a finite float (see `alignment.data.validation.finite_float`), else an error naming `where`."""
    number = finite_float(value)
    if number is None:
        raise PreferenceDataError(f"{where}: expected a finite number, got {value!r:.80}")
    return number


def check_pair_weight(value, where: str) -> float:
    """A row's weight on its loss: a finite number >= 0 (as a float), else an error naming `where`."""
    if value is None:
        raise PreferenceDataError(f"{where}: missing (null); a pair weight is a finite number >= 0")
    weight = check_number(value, where)
    if weight < 0:
        raise PreferenceDataError(f"{where}: is {weight}; a pair weight must be >= 0 (0 leaves the row out)")
    return weight


def check_row_weights(value, objective_names: Sequence[str] | None, where: str) -> list[float]:
    """A row's own preference weights: over `objective_names` (a list in their order, 'a=0.7,b=0.3' or a mapping),
    validated and normalized like `preference_weights`; without names, a non-empty list of numbers as given."""
    if value is None:
        raise PreferenceDataError(f"{where}: missing (null); expected one weight per objective")
    if objective_names:
        names = list(objective_names)
    elif isinstance(value, list):  # the objectives are not known here: the trainer checks the width
        names = [f"position {i}" for i in range(len(value))]
    else:
        raise PreferenceDataError(f"{where}: expected a list of weights, got {value!r:.80}")
    try:
        return parse_preference_weights(value, names, normalize=bool(objective_names)).tolist()
    except PreferenceWeightsError as error:
        raise PreferenceDataError(f"{where}: {error}") from None


def _check_row_weight_fields(rows: Sequence[dict], source: str, pair_weight_field: str,
                             weight_objectives: Sequence[str] | None) -> None:
    """The pair weight and the row's preference weights, where the rows carry them: on every row, each valid."""
    for field in (pair_weight_field, PROMPT_WEIGHTS_COLUMN):
        if not any(field in row for row in rows):
            continue
        for index, row in enumerate(rows, start=1):
            number = row.get(ROW_NUMBER, index)
            if field not in row:
                raise PreferenceDataError(f"{location(source, number, field)}: missing (other rows carry "
                                          f"'{field}'; give every row one)")
            where = location(source, number, field)
            row[field] = (check_pair_weight(row[field], where) if field == pair_weight_field
                          else check_row_weights(row[field], weight_objectives, where))


def _check_list(row: dict, field: str, source: str, row_number: int, length: int | None = None) -> list:
    value = row.get(field)
    if not isinstance(value, list) or not value:
        raise PreferenceDataError(f"{location(source, row_number, field)}: expected a non-empty list, "
                                  f"got {value!r:.80}")
    if length is not None and len(value) != length:
        raise PreferenceDataError(f"{location(source, row_number, field)}: has {len(value)} entries; expected {length}")
    return value


def _missing(source: str, number: int, field: str, row: dict) -> PreferenceDataError:
    return PreferenceDataError(f"{location(source, number, field)}: missing (the row has {present_fields(row)})")


def _same(a, b) -> bool:
    return a == b or (isinstance(a, str) and isinstance(b, str) and a.strip() == b.strip())


def validate_rows(rows: Sequence[dict], format: str, source: str, objective_names: Sequence[str] | None = None,
                  required: Sequence[str] = (), pair_weight_field: str = PAIR_WEIGHT_FIELD,
                  weight_objectives: Sequence[str] | None = None) -> None:
    """Check every row of a `pairs`, `lists` or `groups` dataset.

    `objective_names`: what a pair's `objective` (when present) and a list's `reward_vector` columns must match.
    `required` names extra fields every row must have: `objective` (one of `objective_names`, for multi-head DPO)
    or numeric ones such as `score_gap` (>= 0, for cardinal margins). `pair_weight_field` and `preference_weights`,
    when any row has them, must be on every row (`check_pair_weight`, `check_row_weights` over `weight_objectives`,
    all the run's objectives); they are stored cleaned (a float; a normalized list in objective order).
    """
    if format not in FORMATS:
        raise PreferenceDataError(f"{source}: unknown preference format '{format}'; expected one of {FORMATS}")
    if not rows:
        raise PreferenceDataError(f"{source}: no rows")
    # The first row decides text vs messages; a list prompt with bad messages is then reported as such.
    conversational = isinstance(rows[0].get("prompt"), list)
    for index, row in enumerate(rows, start=1):
        number = row.get(ROW_NUMBER, index)
        if "prompt" not in row:
            raise _missing(source, number, "prompt", row)
        check_text(row["prompt"], location(source, number, "prompt"), conversational)
        if format == "pairs":
            _validate_pair(row, source, number, conversational, objective_names, required)
        elif format == "groups":
            _validate_group(row, source, number, conversational)
        else:
            _validate_list(row, source, number, conversational, objective_names)
        # Numeric fields: required ones, and a score_gap whenever present (it would reach the Dataset either way).
        numeric = (set(required) - {"objective"}) | ({"score_gap"} & set(row))
        for field in sorted(numeric):
            if field not in row:
                raise _missing(source, number, field, row)
            # Stored as a float: Arrow holds no integer beyond 64 bits (10**30 is a finite number).
            row[field] = check_number(row[field], location(source, number, field))
            if field == "score_gap" and row[field] < 0:
                raise PreferenceDataError(f"{location(source, number, field)}: is {row[field]}; chosen must score "
                                          ">= rejected")
    _check_row_weight_fields(rows, source, pair_weight_field, weight_objectives)


def _validate_pair(row: dict, source: str, number: int, conversational: bool, objective_names, required) -> None:
    for field in ("chosen", "rejected"):
        if field not in row:
            raise _missing(source, number, field, row)
        check_text(row[field], location(source, number, field), conversational)
    if _same(row["chosen"], row["rejected"]):
        raise PreferenceDataError(f"{location(source, number, 'rejected')}: identical to 'chosen'; the pair states "
                                  "no preference (remove the row)")
    if "objective" in required and "objective" not in row:
        raise _missing(source, number, "objective", row)
    if "objective_labels" in row:
        labels = row["objective_labels"]
        if (not isinstance(labels, list) or objective_names is not None and len(labels) != len(objective_names)
                or any(isinstance(v, bool) or v not in (-1, 0, 1) for v in labels) or not any(labels)):
            raise PreferenceDataError(f"{location(source, number, 'objective_labels')}: expected one of -1 "
                                      f"(rejected better), 0 (no label), 1 (chosen better) per objective "
                                      f"{list(objective_names or [])}, not all 0; got {labels!r:.80}")
    objective = row.get("objective")
    if "objective" in row and (not isinstance(objective, str)
                               or objective_names is not None and objective not in objective_names):
        raise PreferenceDataError(f"{location(source, number, 'objective')}: {objective!r:.80} is not one of "
                                  f"{list(objective_names or [])}")


def _validate_group(row: dict, source: str, number: int, conversational: bool) -> None:
    chosen = _check_list(row, "chosen", source, number)
    rejected = _check_list(row, "rejected", source, number)
    for field, items in (("chosen", chosen), ("rejected", rejected)):
        for i, item in enumerate(items):
            check_text(item, location(source, number, f"{field}[{i}]"), conversational)
    for i, item in enumerate(rejected):
        if any(_same(item, other) for other in chosen):
            raise PreferenceDataError(f"{location(source, number, f'rejected[{i}]')}: also in 'chosen'; a response "
                                      "cannot be both preferred and dispreferred")


def _validate_list(row: dict, source: str, number: int, conversational: bool, objective_names) -> None:
    completions = _check_list(row, "completions", source, number)
    if len(completions) < 2:
        raise PreferenceDataError(f"{location(source, number, 'completions')}: a list needs at least 2 responses")
    for i, item in enumerate(completions):
        check_text(item, location(source, number, f"completions[{i}]"), conversational)
    given = [f for f in ("labels", "ranks", "reward_vector") if f in row]
    if len(given) != 1:
        raise PreferenceDataError(
            f"{location(source, number)}: a list needs exactly one of 'labels', 'ranks', 'reward_vector'; got {given} "
            f"(the row has {present_fields(row)})"
        )
    field = given[0]
    values = _check_list(row, field, source, number, length=len(completions))
    scores = []
    for i, value in enumerate(values):
        where = location(source, number, f"{field}[{i}]")
        if field == "reward_vector":
            if not isinstance(value, list) or not value:
                raise PreferenceDataError(f"{where}: expected a list of scores, got {value!r:.80}")
            # Its columns are the objectives the weights scalarize: a wrong width would fail inside torch later.
            if objective_names is not None and len(value) != len(objective_names):
                raise PreferenceDataError(f"{where}: {len(value)} scores; expected one per objective "
                                          f"{list(objective_names)}")
            if len(value) != len(values[0]):
                raise PreferenceDataError(f"{where}: {len(value)} scores, but reward_vector[0] has {len(values[0])}")
            scores.append(tuple(check_number(v, where) for v in value))
        else:
            scores.append(check_number(value, where))
    if field == "ranks":
        for i, rank in enumerate(scores):
            if rank != int(rank) or not 1 <= rank <= len(completions):
                raise PreferenceDataError(f"{location(source, number, f'ranks[{i}]')}: is {values[i]!r}; ranks are "
                                          f"whole numbers from 1 (best) to {len(completions)}")
    for i in range(len(completions)):
        for j in range(i):
            if _same(completions[i], completions[j]) and scores[i] != scores[j]:
                raise PreferenceDataError(f"{location(source, number, f'completions[{i}]')}: repeats "
                                          f"completions[{j}] with a different {field} entry")
    # Stored as floats: Arrow and torch cannot hold a JSON integer beyond 64 bits (10**30 is a finite label).
    row[field] = [list(score) if isinstance(score, tuple) else score for score in scores]


def to_dataset(rows: Sequence[dict], extra_columns: Sequence[str] = (PAIR_WEIGHT_FIELD,)):
    """A `datasets.Dataset` of validated rows (pairs or groups; lists with labels): the columns the trainers read,
    and `extra_columns` (the pair-weight field) where the rows carry them."""
    from datasets import Dataset  # lazy: most of a second to import; reading and validating rows never need it

    columns = (LIST_COLUMNS if rows and "completions" in rows[0] else PAIR_COLUMNS) + tuple(extra_columns)
    return Dataset.from_list([{k: v for k, v in row.items() if k in columns} for row in rows])
