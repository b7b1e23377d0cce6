"""Loaders for the packaged real preference data (`alignment.data`), each into one of the row formats.

- HH-RLHF helpful / harmless: conversational pairs, one objective each (`hh_pairs` reads any file in HH's schema);
- UltraFeedback binarized: pairs with their GPT-4 score gap (a cardinal signal);
- qa-feedback: lists of 4 predictions labelled by 6 human pairwise comparisons.

Upstream rows that state no clean preference are counted in the log and left out; malformed rows raise
`PreferenceDataError` naming the file, the row and the field.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

from alignment.data.preferences.formats import PreferenceDataError, check_number, check_text, read_jsonl, validate_rows
from alignment.data.rows import HH_HUMAN, parse_hh_dialogue
from alignment.data.sources import resolve_data
from alignment.data.validation import ROW_NUMBER, is_blank, is_message_list, location

logger = logging.getLogger(__name__)
# The packaged data name of each HH-RLHF objective's train and dev split.
HH_FILES = {
    "helpful": {"train": "hh-helpful", "dev": "hh-helpful-dev"},
    "harmless": {"train": "hh-harmless", "dev": "hh-harmless-dev"},
}
# qa-feedback's 6 `preference` labels compare these predictions (0-based), in this order.
QA_FEEDBACK_COMPARED = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]


def hh_dialogue_to_messages(text: str, where: str) -> list[dict]:
    """'\\n\\nHuman: ...\\n\\nAssistant: ...' -> chat messages; raises if it is not an HH dialogue ending on the
    assistant."""
    if not isinstance(text, str) or HH_HUMAN not in text:
        raise PreferenceDataError(f"{where}: expected an HH dialogue starting with '\\n\\nHuman:', "
                                  f"got {str(text)[:60]!r}")
    messages = parse_hh_dialogue(text)
    if messages[-1]["role"] != "assistant":
        raise PreferenceDataError(f"{where}: the dialogue does not end with an Assistant turn")
    return messages


def hh_pairs(raw_rows: Sequence[dict], source: str) -> list[dict]:
    """HH-RLHF rows (whole dialogues in `chosen` and `rejected`, each row with its `_row` number) as conversational
    pairs: the shared history as prompt, the last replies as chosen and rejected; the row's other fields are kept."""
    rows, skipped = [], 0
    for raw in raw_rows:
        number = raw[ROW_NUMBER]
        for field in ("chosen", "rejected"):
            if field not in raw:
                raise PreferenceDataError(f"{location(source, number, field)}: missing")
        chosen = hh_dialogue_to_messages(raw["chosen"], location(source, number, "chosen"))
        rejected = hh_dialogue_to_messages(raw["rejected"], location(source, number, "rejected"))
        if (chosen[:-1] != rejected[:-1] or chosen[-1] == rejected[-1] or not chosen[-1]["content"]
                or not rejected[-1]["content"]):
            # Upstream quirks, not malformed rows: a few dialogues diverge before the last reply, a few pairs are
            # identical or empty. They carry no clean preference on one reply, so they are counted and left out.
            skipped += 1
            continue
        rows.append({**raw, "prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]})
    if skipped:
        logger.info(f"{source}: left out {skipped} pairs whose histories diverge or whose replies are identical/empty")
    return rows


def load_hh_pairs(path: str | Path, objective: str, limit: int | None = None) -> list[dict]:
    """HH-RLHF pairs as conversational rows for one objective (`hh_pairs`)."""
    rows = [{**row, "objective": objective} for row in hh_pairs(read_jsonl(path, limit), str(path))]
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
    """The packaged HH-RLHF file of `split` ('train' or 'dev') for each objective."""
    unknown = [o for o in objectives if o not in HH_FILES]
    if unknown:
        raise PreferenceDataError(f"HH-RLHF has no objective(s) {unknown}; it has {list(HH_FILES)}")
    return {o: resolve_data(HH_FILES[o][split]) for o in objectives}


def _last_assistant_turn(value):
    """A reply given as text, or as a message list (prompt + reply): the reply as a one-message completion."""
    if isinstance(value, str):
        return [{"role": "assistant", "content": value}]
    if is_message_list(value):
        return [m for m in value if m["role"] == "assistant"][-1:]
    return value  # left for validate_rows to report


def load_ultrafeedback_pairs(path: str | Path, limit: int | None = None) -> list[dict]:
    """UltraFeedback binarized pairs with `score_gap = score_chosen - score_rejected` (GPT-4 overall, 1-10)."""
    path = Path(path)
    rows, skipped = [], 0
    for raw in read_jsonl(path, limit):
        number = raw[ROW_NUMBER]
        metadata = raw.get("metadata")
        if not isinstance(metadata, dict):
            raise PreferenceDataError(f"{location(str(path), number, 'metadata')}: expected an object with "
                                      "score_chosen, score_rejected")
        scores = [check_number(metadata.get(f), location(str(path), number, f"metadata.{f}"))
                  for f in ("score_chosen", "score_rejected")]
        prompt = raw.get("prompt")
        chosen, rejected = _last_assistant_turn(raw.get("chosen")), _last_assistant_turn(raw.get("rejected"))
        if (is_message_list(chosen) and is_message_list(rejected)
                and (chosen == rejected or is_blank(chosen) or is_blank(rejected))):
            skipped += 1  # upstream noise (6 rows of the shared files): no clean preference, as for HH-RLHF
            continue
        rows.append({
            "prompt": [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt,
            "chosen": chosen, "rejected": rejected,
            "objective": "overall", "score_gap": scores[0] - scores[1], ROW_NUMBER: number,
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
    rows = []
    for raw in read_jsonl(path, limit):
        number = raw[ROW_NUMBER]
        preference = raw.get("preference")
        if (not isinstance(preference, list) or len(preference) != len(QA_FEEDBACK_COMPARED)
                or any(isinstance(p, bool) or p not in (0, 1, 2) for p in preference)):
            raise PreferenceDataError(f"{location(str(path), number, 'preference')}: expected 6 labels in {{0, 1, 2}}")
        predictions = []
        for i in range(1, 5):
            text = raw.get(f"prediction {i}")
            check_text(text, location(str(path), number, f"prediction {i}"), conversational=False)
            predictions.append([{"role": "assistant", "content": text}])
        check_text(raw.get("question"), location(str(path), number, "question"), conversational=False)
        wins = [0.0] * 4
        for (a, b), label in zip(QA_FEEDBACK_COMPARED, preference):
            wins[a] += 1.0 if label == 1 else 0.5 if label == 0 else 0.0
            wins[b] += 1.0 if label == 2 else 0.5 if label == 0 else 0.0
        rows.append({"prompt": [{"role": "user", "content": raw["question"]}], "completions": predictions,
                     "labels": [w / 3.0 for w in wins], ROW_NUMBER: number})
    validate_rows(rows, "lists", str(path))
    return rows
