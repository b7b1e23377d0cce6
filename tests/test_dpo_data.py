"""Preference data: real files load into the three formats; malformed input names the file, the row and the field."""


import pytest
import torch

from alignment import PreferenceDataError, load_preference_splits
from alignment.data import resolve_data
from alignment.data.preferences import (
    attach_list_labels,
    hh_files,
    lists_to_groups,
    load_objective_pairs,
    load_qa_feedback_lists,
    load_ultrafeedback_pairs,
    read_jsonl,
    validate_rows,
)
from tests.helpers import write_jsonl


def test_hh_pairs_per_objective_are_conversational_and_interleaved():
    rows = load_objective_pairs(hh_files("train"), limit_per_objective=20)
    assert {row["objective"] for row in rows[:2]} == {"helpful", "harmless"}
    first = rows[0]
    assert first["prompt"][0]["role"] == "user" and first["chosen"][0]["role"] == "assistant"
    assert first["chosen"] != first["rejected"]


def test_ultrafeedback_pairs_carry_the_cardinal_score_gap():
    rows = load_ultrafeedback_pairs(resolve_data("ultrafeedback-dev"), limit=50)
    gaps = [row["score_gap"] for row in rows]
    assert min(gaps) >= 0 and max(gaps) > 1  # a real spread of gap sizes, not just signs


def test_qa_feedback_lists_are_labelled_by_pairwise_wins_and_split_into_groups():
    lists = load_qa_feedback_lists(resolve_data("qa-feedback"), limit=30)
    assert all(len(row["completions"]) == 4 and sum(row["labels"]) == pytest.approx(2.0) for row in lists)
    groups = lists_to_groups(lists, group_size=1)
    assert groups and all(len(g["chosen"]) == 1 and len(g["rejected"]) == 1 for g in groups)


def test_list_labels_come_from_weighted_reward_vectors_or_ranks():
    rows = [{"prompt": "q", "completions": ["a", "b"], "reward_vector": [[1.0, 0.0], [0.0, 1.0]]},
            {"prompt": "q", "completions": ["a", "b", "c"], "ranks": [3, 1, 2]}]
    labelled = attach_list_labels(rows, ["helpful", "harmless"], torch.tensor([0.2, 0.8]))
    assert labelled[0]["labels"] == [0.0, 1.0]
    assert labelled[1]["labels"] == [0.0, 1.0, 0.5]


def test_bad_json_line_names_file_and_row(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{not json\n')
    with pytest.raises(PreferenceDataError, match=r"pairs.jsonl, row 2: not valid JSON"):
        read_jsonl(path)


@pytest.mark.parametrize("row, fmt, message", [
    ({"prompt": "p", "chosen": "c"}, "pairs", r"row 1, field 'rejected': missing"),
    ({"prompt": "p", "chosen": "", "rejected": "r"}, "pairs", r"row 1, field 'chosen': expected a non-empty string"),
    ({"prompt": "p", "completions": ["a", "b"], "labels": [1.0]}, "lists",
     r"row 1, field 'labels': has 1 entries; expected 2"),
    ({"prompt": "p", "completions": ["a", "b"], "labels": [1.0, "x"]}, "lists",
     r"field 'labels\[1\]': expected a finite number"),
    ({"prompt": "p", "completions": ["a", "b"]}, "lists", r"exactly one of 'labels', 'ranks', 'reward_vector'"),
    ({"prompt": "p", "chosen": ["a"], "rejected": "b"}, "groups", r"field 'rejected': expected a non-empty list"),
])
def test_malformed_rows_are_reported_with_file_row_and_field(tmp_path, row, fmt, message):
    path = write_jsonl(tmp_path / "data.jsonl", [row])
    with pytest.raises(PreferenceDataError, match=message) as error:
        validate_rows(read_jsonl(path), fmt, str(path))
    assert "data.jsonl" in str(error.value)


def test_negative_score_gap_is_rejected_before_training(tmp_path):
    path = write_jsonl(tmp_path / "uf.jsonl", [{"prompt": "p", "chosen": "c", "rejected": "r", "score_gap": -1.0}])
    with pytest.raises(PreferenceDataError, match=r"uf.jsonl, row 1, field 'score_gap'"):
        load_preference_splits(str(path), "pairs", ["overall"], num_eval_rows=0, required=("score_gap",))
    rows = read_jsonl(path)
    with pytest.raises(PreferenceDataError, match="chosen must score >= rejected"):
        validate_rows(rows, "pairs", str(path), required=("score_gap",))


def test_dataset_that_cannot_serve_the_loss_format_is_refused():
    with pytest.raises(PreferenceDataError, match="holds pairs"):
        load_preference_splits("hh", "lists", ["helpful"])
    with pytest.raises(PreferenceDataError, match="not pairs"):
        load_preference_splits("qa-feedback", "pairs", ["overall"])
