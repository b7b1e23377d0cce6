"""Preference data for the DPO family: pairs labelled per objective, ranked lists, and chosen/rejected groups.

Three row formats, all conversational (TRL's prompt / completion message lists) or all plain text:
- pairs:  {"prompt", "chosen", "rejected", "objective"} (+ "score_gap" for cardinal margins,
          + "chosen_margins"/"rejected_margins" for MODPO, added by `add_margin_rewards`; or, for per-objective DPO,
          "objective_labels": [num_objectives] in {-1, 0, 1}, given or added by `label_pairs_per_objective`)
- lists:  {"prompt", "completions": [K], and one of "labels": [K] (higher is better), "ranks": [K] (1 = best) or
          "reward_vector": [K][num_objectives] (turned into labels under preference weights)}
- groups: {"prompt", "chosen": [k], "rejected": [k]}

Loaders for the packaged real data (`alignment.data`): HH-RLHF helpful / harmless pairs (one objective each), UltraFeedback pairs with
their GPT-4 score gap (a cardinal signal), and qa-feedback lists of 4 predictions ranked by 6 human pairwise labels.
Every validator raises `PreferenceDataError` naming the file, the row (1-based line) and the field, before any model
is touched.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from alignment.data import DataSourceError, data_display_name, resolve_data
from alignment.data.jsonl import iter_jsonl
from alignment.objectives.scalarize import labels_from_ranks, labels_from_reward_vector
from alignment.objectives.reward_vector import RewardVectorBuilder

logger = logging.getLogger(__name__)
HH_FILES = {
    "helpful": {"train": "hh-helpful", "dev": "hh-helpful-dev"},
    "harmless": {"train": "hh-harmless", "dev": "hh-harmless-dev"},
}
FORMATS = ("pairs", "lists", "groups")


class PreferenceDataError(ValueError):
    """A preference file or row is missing a field or holds a malformed value; the message says where."""


def _where(source: str, row: int, field: str | None = None) -> str:
    return f"{source}, row {row}" + (f", field '{field}'" if field else "")


def read_jsonl(path: str | Path, limit: int | None = None) -> list[dict]:
    """Rows of a JSON-lines file, each with its 1-based line number under `_row`; bad lines name file and line."""
    rows = []
    for line_number, row in iter_jsonl(path, PreferenceDataError):
        rows.append({**row, "_row": line_number})
        if limit and len(rows) >= limit:
            break
    return rows


# ---------------------------------------------------------------------------------------------- validation

def _is_messages(value) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)


def _check_text(value, where: str, conversational: bool) -> None:
    if not conversational:
        if not isinstance(value, str) or not value.strip():
            raise PreferenceDataError(f"{where}: expected a non-empty string, got {value!r:.80}")
        return
    if not isinstance(value, list) or not value:
        raise PreferenceDataError(f"{where}: expected a non-empty list of {{'role', 'content'}} messages, got {value!r:.80}")
    for i, message in enumerate(value):
        # The chat template reads role and content as text: anything else fails later inside the tokenizer.
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) or not isinstance(message.get("content"), str):
            raise PreferenceDataError(f"{where}: message {i} must be {{'role': str, 'content': str}}, got {message!r:.80}")
    if not any(message["content"].strip() for message in value):
        raise PreferenceDataError(f"{where}: every message is empty")


def _check_number(value, where: str) -> float:
    # float() first: a JSON integer too large for a float (10**400) must be reported, not raise OverflowError.
    try:
        number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise PreferenceDataError(f"{where}: expected a finite number, got {value!r:.80}")
    return number


def _check_list(row: dict, field: str, source: str, row_number: int, length: int | None = None) -> list:
    value = row.get(field)
    if not isinstance(value, list) or not value:
        raise PreferenceDataError(f"{_where(source, row_number, field)}: expected a non-empty list, got {value!r:.80}")
    if length is not None and len(value) != length:
        raise PreferenceDataError(f"{_where(source, row_number, field)}: has {len(value)} entries; expected {length}")
    return value


def _missing(source: str, number: int, field: str, row: dict) -> PreferenceDataError:
    # Listing the fields that are there makes a misnamed column ("response" for "chosen") obvious.
    present = sorted(k for k in row if k != "_row")
    return PreferenceDataError(f"{_where(source, number, field)}: missing (the row has {present})")


def _same(a, b) -> bool:
    return a == b or (isinstance(a, str) and isinstance(b, str) and a.strip() == b.strip())


def validate_rows(rows: Sequence[dict], format: str, source: str, objective_names: Sequence[str] | None = None,
                  required: Sequence[str] = ()) -> None:
    """Check every row of a `pairs`, `lists` or `groups` dataset.

    `objective_names`: what a pair's `objective` (when present) and a list's `reward_vector` columns must match.
    `required` names extra fields every row must have: `objective` (one of `objective_names`, for multi-head DPO)
    or numeric ones such as `score_gap` (>= 0, for cardinal margins).
    """
    if format not in FORMATS:
        raise PreferenceDataError(f"{source}: unknown preference format '{format}'; expected one of {FORMATS}")
    if not rows:
        raise PreferenceDataError(f"{source}: no rows")
    # The first row decides text vs messages; a list prompt with bad messages is then reported as such.
    conversational = isinstance(rows[0].get("prompt"), list)
    for index, row in enumerate(rows, start=1):
        number = row.get("_row", index)
        if "prompt" not in row:
            raise _missing(source, number, "prompt", row)
        _check_text(row["prompt"], _where(source, number, "prompt"), conversational)
        if format == "pairs":
            for field in ("chosen", "rejected"):
                if field not in row:
                    raise _missing(source, number, field, row)
                _check_text(row[field], _where(source, number, field), conversational)
            if _same(row["chosen"], row["rejected"]):
                raise PreferenceDataError(f"{_where(source, number, 'rejected')}: identical to 'chosen'; the pair states "
                                          "no preference (remove the row)")
            if "objective" in required and "objective" not in row:
                raise _missing(source, number, "objective", row)
            if "objective_labels" in row:
                labels = row["objective_labels"]
                if (not isinstance(labels, list) or objective_names is not None and len(labels) != len(objective_names)
                        or any(isinstance(v, bool) or v not in (-1, 0, 1) for v in labels) or not any(labels)):
                    raise PreferenceDataError(f"{_where(source, number, 'objective_labels')}: expected one of -1 "
                                              f"(rejected better), 0 (no label), 1 (chosen better) per objective "
                                              f"{list(objective_names or [])}, not all 0; got {labels!r:.80}")
            objective = row.get("objective")
            if "objective" in row and (not isinstance(objective, str)
                                       or objective_names is not None and objective not in objective_names):
                raise PreferenceDataError(f"{_where(source, number, 'objective')}: {objective!r:.80} is not one of "
                                          f"{list(objective_names or [])}")
        elif format == "groups":
            chosen = _check_list(row, "chosen", source, number)
            rejected = _check_list(row, "rejected", source, number)
            for field, items in (("chosen", chosen), ("rejected", rejected)):
                for i, item in enumerate(items):
                    _check_text(item, _where(source, number, f"{field}[{i}]"), conversational)
            for i, item in enumerate(rejected):
                if any(_same(item, other) for other in chosen):
                    raise PreferenceDataError(f"{_where(source, number, f'rejected[{i}]')}: also in 'chosen'; a response "
                                              "cannot be both preferred and dispreferred")
        else:
            _validate_list(row, source, number, conversational, objective_names)
        # Numeric fields: required ones, and a score_gap whenever present (it would reach the Dataset either way).
        numeric = (set(required) - {"objective"}) | ({"score_gap"} & set(row))
        for field in sorted(numeric):
            if field not in row:
                raise _missing(source, number, field, row)
            row[field] = _check_number(row[field], _where(source, number, field))  # as float: Arrow holds no 10**30 int
            if field == "score_gap" and row[field] < 0:
                raise PreferenceDataError(f"{_where(source, number, field)}: is {row[field]}; chosen must score >= rejected")


def _validate_list(row: dict, source: str, number: int, conversational: bool, objective_names) -> None:
    completions = _check_list(row, "completions", source, number)
    if len(completions) < 2:
        raise PreferenceDataError(f"{_where(source, number, 'completions')}: a list needs at least 2 responses")
    for i, item in enumerate(completions):
        _check_text(item, _where(source, number, f"completions[{i}]"), conversational)
    given = [f for f in ("labels", "ranks", "reward_vector") if f in row]
    if len(given) != 1:
        present = sorted(k for k in row if k != "_row")
        raise PreferenceDataError(
            f"{_where(source, number)}: a list needs exactly one of 'labels', 'ranks', 'reward_vector'; got {given} "
            f"(the row has {present})"
        )
    field = given[0]
    values = _check_list(row, field, source, number, length=len(completions))
    scores = []
    for i, value in enumerate(values):
        where = _where(source, number, f"{field}[{i}]")
        if field == "reward_vector":
            if not isinstance(value, list) or not value:
                raise PreferenceDataError(f"{where}: expected a list of scores, got {value!r:.80}")
            # Its columns are the objectives the weights scalarize: a wrong width would fail inside torch later.
            if objective_names is not None and len(value) != len(objective_names):
                raise PreferenceDataError(f"{where}: {len(value)} scores; expected one per objective {list(objective_names)}")
            if len(value) != len(values[0]):
                raise PreferenceDataError(f"{where}: {len(value)} scores, but reward_vector[0] has {len(values[0])}")
            scores.append(tuple(_check_number(v, where) for v in value))
        else:
            scores.append(_check_number(value, where))
    if field == "ranks":
        for i, rank in enumerate(scores):
            if rank != int(rank) or not 1 <= rank <= len(completions):
                raise PreferenceDataError(f"{_where(source, number, f'ranks[{i}]')}: is {values[i]!r}; ranks are whole "
                                          f"numbers from 1 (best) to {len(completions)}")
    for i in range(len(completions)):
        for j in range(i):
            if _same(completions[i], completions[j]) and scores[i] != scores[j]:
                raise PreferenceDataError(f"{_where(source, number, f'completions[{i}]')}: repeats completions[{j}] "
                                          f"with a different {field} entry")
    # Stored as floats: Arrow and torch cannot hold a JSON integer beyond 64 bits (10**30 is a finite label).
    row[field] = [list(score) if isinstance(score, tuple) else score for score in scores]


# Columns the trainers read (see alignment.trainers.mo_dpo); any other field of a file stays out of the Dataset,
# where an id that is a number in one row and a string in another would stop Arrow with no file or row.
PAIR_COLUMNS = ("prompt", "chosen", "rejected", "objective", "score_gap", "chosen_margins", "rejected_margins",
                "objective_labels")
LIST_COLUMNS = ("prompt", "completions", "labels")


def to_dataset(rows: Sequence[dict]):
    """A `datasets.Dataset` of validated rows (pairs or groups; lists with labels): the columns the trainers read."""
    from datasets import Dataset

    columns = LIST_COLUMNS if rows and "completions" in rows[0] else PAIR_COLUMNS
    return Dataset.from_list([{k: v for k, v in row.items() if k in columns} for row in rows])


# ---------------------------------------------------------------------------------------------- real data loaders

def hh_dialogue_to_messages(text: str, where: str) -> list[dict]:
    """'\\n\\nHuman: ...\\n\\nAssistant: ...' -> chat messages; raises if it is not an HH dialogue ending on the assistant."""
    if not isinstance(text, str) or "\n\nHuman:" not in text:
        raise PreferenceDataError(f"{where}: expected an HH dialogue starting with '\\n\\nHuman:', got {str(text)[:60]!r}")
    messages = []
    for block in text.split("\n\nHuman:")[1:]:
        human, separator, assistant_part = block.partition("\n\nAssistant:")
        messages.append({"role": "user", "content": human.strip()})
        if separator:
            for turn in assistant_part.split("\n\nAssistant:"):
                messages.append({"role": "assistant", "content": turn.strip()})
    if messages[-1]["role"] != "assistant":
        raise PreferenceDataError(f"{where}: the dialogue does not end with an Assistant turn")
    return messages


def load_hh_pairs(path: str | Path, objective: str, limit: int | None = None) -> list[dict]:
    """HH-RLHF pairs as conversational rows for one objective: shared history as prompt, the last replies differ."""
    path = Path(path)
    rows, skipped = [], 0
    for raw in read_jsonl(path, limit):
        number = raw["_row"]
        for field in ("chosen", "rejected"):
            if field not in raw:
                raise PreferenceDataError(f"{_where(str(path), number, field)}: missing")
        chosen = hh_dialogue_to_messages(raw["chosen"], _where(str(path), number, "chosen"))
        rejected = hh_dialogue_to_messages(raw["rejected"], _where(str(path), number, "rejected"))
        if chosen[:-1] != rejected[:-1] or chosen[-1] == rejected[-1] or not chosen[-1]["content"] or not rejected[-1]["content"]:
            # Upstream quirks, not malformed rows: a few dialogues diverge before the last reply, a few pairs are
            # identical or empty. They carry no clean preference on one reply, so they are counted and left out.
            skipped += 1
            continue
        rows.append({"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:],
                     "objective": objective, "_row": number})
    if skipped:
        logger.info(f"{path}: left out {skipped} pairs whose histories diverge or whose replies are identical/empty")
    validate_rows(rows, "pairs", str(path), objective_names=[objective])
    return rows


def load_objective_pairs(files: Mapping[str, str | Path], limit_per_objective: int | None = None) -> list[dict]:
    """Pairs from one HH-style file per objective, interleaved so every batch sees every objective."""
    per_objective = [load_hh_pairs(path, name, limit_per_objective) for name, path in files.items()]
    interleaved = []
    for index in range(max(len(rows) for rows in per_objective)):
        interleaved += [rows[index] for rows in per_objective if index < len(rows)]
    return interleaved


def hh_files(split: str, objectives: Sequence[str] = ("helpful", "harmless")) -> dict[str, Path]:
    unknown = [o for o in objectives if o not in HH_FILES]
    if unknown:
        raise PreferenceDataError(f"HH-RLHF has no objective(s) {unknown}; it has {list(HH_FILES)}")
    return {o: resolve_data(HH_FILES[o][split]) for o in objectives}


def _blank(messages: list[dict]) -> bool:
    return not any(str(m["content"]).strip() for m in messages)


def _last_assistant_turn(value):
    """A reply given as text, or as a message list (prompt + reply): the reply as a one-message completion."""
    if isinstance(value, str):
        return [{"role": "assistant", "content": value}]
    if _is_messages(value):
        return [m for m in value if m["role"] == "assistant"][-1:]
    return value  # left for validate_rows to report


def load_ultrafeedback_pairs(path: str | Path, limit: int | None = None) -> list[dict]:
    """UltraFeedback binarized pairs with `score_gap = score_chosen - score_rejected` (GPT-4 overall, 1-10)."""
    path = Path(path)
    rows, skipped = [], 0
    for raw in read_jsonl(path, limit):
        number = raw["_row"]
        metadata = raw.get("metadata")
        if not isinstance(metadata, dict):
            raise PreferenceDataError(f"{_where(str(path), number, 'metadata')}: expected an object with score_chosen, score_rejected")
        scores = [_check_number(metadata.get(f), _where(str(path), number, f"metadata.{f}")) for f in ("score_chosen", "score_rejected")]
        prompt = raw.get("prompt")
        chosen, rejected = _last_assistant_turn(raw.get("chosen")), _last_assistant_turn(raw.get("rejected"))
        if _is_messages(chosen) and _is_messages(rejected) and (chosen == rejected or _blank(chosen) or _blank(rejected)):
            skipped += 1  # upstream noise (6 rows of the shared files): no clean preference, as for HH-RLHF
            continue
        rows.append({
            "prompt": [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt,
            "chosen": chosen, "rejected": rejected,
            "objective": "overall", "score_gap": scores[0] - scores[1], "_row": number,
        })
    if skipped:
        logger.info(f"{path}: left out {skipped} pairs whose chosen and rejected replies are identical or empty")
    validate_rows(rows, "pairs", str(path), required=("score_gap",))
    return rows


def load_qa_feedback_lists(path: str | Path, limit: int | None = None) -> list[dict]:
    """qa-feedback: each question with its 4 predictions, labelled by the share of human pairwise comparisons won.

    `preference` holds 6 labels for the pairs (1,2) (1,3) (1,4) (2,3) (2,4) (3,4): 1 first wins, 2 second wins,
    0 tie (half a win each). Labels = wins / 3, in [0, 1].
    """
    path = Path(path)
    pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    rows = []
    for raw in read_jsonl(path, limit):
        number = raw["_row"]
        preference = raw.get("preference")
        if not isinstance(preference, list) or len(preference) != 6 or any(isinstance(p, bool) or p not in (0, 1, 2) for p in preference):
            raise PreferenceDataError(f"{_where(str(path), number, 'preference')}: expected 6 labels in {{0, 1, 2}}")
        predictions = []
        for i in range(1, 5):
            text = raw.get(f"prediction {i}")
            _check_text(text, _where(str(path), number, f"prediction {i}"), conversational=False)
            predictions.append([{"role": "assistant", "content": text}])
        _check_text(raw.get("question"), _where(str(path), number, "question"), conversational=False)
        wins = [0.0] * 4
        for (a, b), label in zip(pairs, preference):
            wins[a] += 1.0 if label == 1 else 0.5 if label == 0 else 0.0
            wins[b] += 1.0 if label == 2 else 0.5 if label == 0 else 0.0
        rows.append({"prompt": [{"role": "user", "content": raw["question"]}], "completions": predictions,
                     "labels": [w / 3.0 for w in wins], "_row": number})
    validate_rows(rows, "lists", str(path))
    return rows


def lists_to_groups(rows: Sequence[dict], group_size: int) -> list[dict]:
    """Groups for mDPO/mIPO: the `group_size` best-labelled responses of each list vs its `group_size` worst.

    Lists whose top and bottom groups tie on every label carry no preference and are skipped.
    """
    if not isinstance(group_size, int) or group_size < 1:
        raise PreferenceDataError(f"group_size must be a whole number >= 1, got {group_size!r}")
    groups = []
    for row in rows:
        if len(row["completions"]) < 2 * group_size:
            raise PreferenceDataError(f"row {row.get('_row')}: {len(row['completions'])} responses cannot make two groups of {group_size}")
        order = sorted(range(len(row["labels"])), key=lambda i: -row["labels"][i])
        best, worst = order[:group_size], order[-group_size:]
        if min(row["labels"][i] for i in best) <= max(row["labels"][i] for i in worst):
            continue
        groups.append({"prompt": row["prompt"], "chosen": [row["completions"][i] for i in best],
                       "rejected": [row["completions"][i] for i in worst], "_row": row.get("_row")})
    return groups


def attach_list_labels(rows: Sequence[dict], objective_names: Sequence[str] | None = None,
                       weights: torch.Tensor | None = None, scalarization: str = "linear") -> list[dict]:
    """Give every list row `labels`: kept as given, from `ranks`, or scalarized from `reward_vector` under `weights`."""
    out = []
    for row in rows:
        row = dict(row)
        if "ranks" in row:
            row["labels"] = labels_from_ranks(torch.tensor(row.pop("ranks"))).tolist()
        elif "reward_vector" in row:
            if weights is None:
                raise PreferenceDataError(f"row {row.get('_row')}: lists with 'reward_vector' need preference weights")
            row["labels"] = labels_from_reward_vector(torch.tensor(row.pop("reward_vector")), weights, scalarization).tolist()
        out.append(row)
    return out


# ---------------------------------------------------------------------------------------------- MODPO margins


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
        gaps = dict(zip(scored, (c - r for c, r in zip(row.pop("chosen_margins", []), row.pop("rejected_margins", [])))))
        labels = [(gaps[n] > 0) - (gaps[n] < 0) if n in gaps else int(row.get("objective") == n) for n in objective_names]
        if any(labels):
            out.append({**row, "objective_labels": labels})
    if len(out) < len(rows):
        logger.info(f"per-objective labels: left out {len(rows) - len(out)} of {len(rows)} pairs that tie on every objective")
    return out


# ---------------------------------------------------------------------------------------------- recipe entry point

BUILTIN_DATASETS = ("hh", "ultrafeedback", "qa-feedback")


def _prompt_chars(row: dict) -> int:
    prompt = row["prompt"]
    return len(prompt) if isinstance(prompt, str) else sum(len(str(m.get("content", ""))) for m in prompt)


def load_preference_splits(dataset: str, data_format: str, objectives: Sequence[str], num_train_rows: int | None = None,
                           num_eval_rows: int = 64, eval_dataset: str | None = None, max_prompt_chars: int | None = None,
                           group_size: int = 2, required: Sequence[str] = ()) -> tuple[list[dict], list[dict], list[str]]:
    """(train rows, eval rows, dataset names) in `data_format`, validated, for a built-in dataset or a JSONL path.

    Built-ins (packaged, `alignment.data`): 'hh' (HH-RLHF pairs, `hh-helpful` / `hh-harmless` and their dev splits,
    one per objective among helpful/harmless), 'ultrafeedback' (pairs with score_gap), 'qa-feedback' (lists of 4
    ranked predictions; groups of `group_size` best vs worst). Anything else is a data name for
    `alignment.data.resolve_data` (a local JSONL file or a hub dataset id) read as rows of `data_format` (see the
    module docstring); `eval_dataset` is its held-out file (else the last rows).
    """
    if data_format not in FORMATS:
        raise PreferenceDataError(f"unknown data format '{data_format}'; expected one of {FORMATS}")
    if num_eval_rows < 0:
        raise PreferenceDataError(f"num_eval_rows must be >= 0, got {num_eval_rows}")
    train, evaluation, names = _load_splits(dataset, data_format, objectives, num_train_rows, num_eval_rows, eval_dataset,
                                            max_prompt_chars, group_size, required)
    if not train:  # the trainer would fail on an empty dataset without saying why
        raise PreferenceDataError(f"{', '.join(names)}: no training rows left (num_train_rows={num_train_rows}, "
                                  f"max_prompt_chars={max_prompt_chars}, num_eval_rows={num_eval_rows})")
    return train, evaluation, names


def _load_splits(dataset, data_format, objectives, num_train_rows, num_eval_rows, eval_dataset, max_prompt_chars,
                 group_size, required):
    limit = None if num_train_rows is None or max_prompt_chars else num_train_rows

    def trim(rows: list[dict], count: int | None) -> list[dict]:
        if max_prompt_chars:
            rows = [row for row in rows if _prompt_chars(row) <= max_prompt_chars]
        return rows if count is None else rows[:count]

    if dataset == "hh":
        if data_format != "pairs":
            raise PreferenceDataError(f"dataset 'hh' holds pairs; the loss needs {data_format}")
        # MODPO trains on its first objective's pairs (the others are margins); multi-head DPO on all of them.
        names = [o for o in objectives if o in HH_FILES] or list(objectives[:1])
        train_files, eval_files = hh_files("train", names), hh_files("dev", names)
        train = load_objective_pairs(train_files, None if max_prompt_chars else limit)
        evaluation = load_objective_pairs(eval_files, None if max_prompt_chars else num_eval_rows)
        return trim(train, num_train_rows), trim(evaluation, num_eval_rows), [HH_FILES[n]["train"] for n in names]
    if dataset == "ultrafeedback":
        if data_format != "pairs":
            raise PreferenceDataError(f"dataset 'ultrafeedback' holds pairs; the loss needs {data_format}")
        train_path, eval_path = resolve_data("ultrafeedback"), resolve_data("ultrafeedback-dev")
        train, evaluation = load_ultrafeedback_pairs(train_path, limit), load_ultrafeedback_pairs(eval_path)
        return trim(train, num_train_rows), trim(evaluation, num_eval_rows), ["ultrafeedback"]
    if dataset == "qa-feedback":
        if data_format == "pairs":
            raise PreferenceDataError("dataset 'qa-feedback' holds ranked lists (or groups made from them), not pairs")
        path = resolve_data("qa-feedback")
        rows = trim(load_qa_feedback_lists(path), None)
        if data_format == "groups":
            rows = lists_to_groups(rows, group_size)
        cut = max(len(rows) - num_eval_rows, 1)
        return trim(rows[:cut], num_train_rows), rows[cut:], ["qa-feedback"]

    try:
        path = resolve_data(dataset)
        eval_path = resolve_data(eval_dataset) if eval_dataset else None
    except DataSourceError as error:
        raise PreferenceDataError(f"dataset: {error}; the built-in preference sets are {BUILTIN_DATASETS}") from None
    rows = read_jsonl(path)
    validate_rows(rows, data_format, str(path), objective_names=objectives, required=required)
    if eval_path:
        evaluation = read_jsonl(eval_path)
        validate_rows(evaluation, data_format, str(eval_path), objective_names=objectives, required=required)
    elif num_eval_rows >= len(rows):
        raise PreferenceDataError(f"{path}: has {len(rows)} rows and num_eval_rows={num_eval_rows} would hold them all "
                                  "out for evaluation; set num_eval_rows lower or give eval_dataset")
    else:
        rows, evaluation = (rows[:-num_eval_rows], rows[-num_eval_rows:]) if num_eval_rows else (rows, [])
    return trim(rows, num_train_rows), trim(evaluation, num_eval_rows), [data_display_name(dataset)]
