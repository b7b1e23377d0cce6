"""Loading and validating reward-model data: clear errors naming file, row and field; masks per source."""

from pathlib import Path

import pytest

from alignment.data import resolve_data
from alignment.data.jsonl import iter_jsonl
from reward_models.chat_format import parse_hh_dialogue, render_conversation
from reward_models.data import (
    RewardDataArguments,
    RewardDataError,
    RewardMixtureCollator,
    build_mixture,
    load_examples,
    load_pairwise_source,
    load_rated_source,
    qa_feedback_ratings,
    split_slice,
)
from tests.helpers import write_jsonl

HEADS = ["helpful", "harmless", "relevance", "factuality", "completeness"]


class PlainTokenizer:
    """No chat template: conversations render in the documented plain format."""

    chat_template = None


def test_slice_suffix_selects_rows():
    assert split_slice("a/b.jsonl[10:20]") == ("a/b.jsonl", slice(10, 20))
    assert split_slice("a/b.jsonl[:5]") == ("a/b.jsonl", slice(None, 5))
    assert split_slice("a/b.jsonl") == ("a/b.jsonl", slice(None))


def test_hh_dialogue_becomes_alternating_messages_and_renders_in_plain_format():
    messages = parse_hh_dialogue("\n\nHuman: Hi there\n\nAssistant: Hello!\n\nHuman: Bye\n\nAssistant: Goodbye.")
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert render_conversation(PlainTokenizer(), messages[:2]) == "Human: Hi there\n\nAssistant: Hello!"


def test_missing_column_names_file_row_and_field(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"chosen": "a", "rejected": "b"}, {"chosen": "a"}])
    with pytest.raises(RewardDataError, match=r"pairs\.jsonl, row 2: missing field 'rejected'"):
        load_pairwise_source(f"helpful={path}", HEADS)


def test_empty_text_names_file_row_and_field(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"chosen": "   ", "rejected": "b"}])
    with pytest.raises(RewardDataError, match=r"pairs\.jsonl, row 1: field 'chosen' is empty"):
        load_pairwise_source(f"helpful={path}", HEADS)


def test_pair_for_an_objective_without_a_head_is_rejected(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"chosen": "a", "rejected": "b"}])
    with pytest.raises(RewardDataError, match=r"objective 'honest', which has no head.*'helpful'"):
        load_pairwise_source(f"honest={path}", HEADS)


def test_rating_out_of_range_names_file_row_and_field(tmp_path):
    path = write_jsonl(tmp_path / "rated.jsonl", [
        {"completion": "fine", "ratings": {"relevance": -1}},
        {"prompt": "q", "completion": "bad", "ratings": {"factuality": 7}},
    ])
    with pytest.raises(RewardDataError, match=r"rated\.jsonl, row 2: field 'ratings\.factuality' = 7 is out of range"):
        load_rated_source(path, HEADS, rating_range=[-20, 0])


def test_rating_for_an_objective_without_a_head_is_rejected(tmp_path):
    path = write_jsonl(tmp_path / "rated.jsonl", [{"completion": "x", "ratings": {"brevity": 1}}])
    with pytest.raises(RewardDataError, match=r"row 1: field 'ratings\.brevity' rates an objective with no head"):
        load_rated_source(path, HEADS, rating_range=[-20, 20])


def test_score_gap_must_not_be_negative(tmp_path):
    path = write_jsonl(tmp_path / "uf.jsonl", [{"prompt": "p", "chosen": "a", "rejected": "b",
                                                 "metadata": {"score_chosen": 3.0, "score_rejected": 8.0}}])
    with pytest.raises(RewardDataError, match=r"uf\.jsonl, row 1: field 'score_chosen' = 3.0 is below"):
        load_pairwise_source(f"helpful={path}", HEADS)


def test_ultrafeedback_pairs_carry_their_score_gap_as_margin():
    examples = load_pairwise_source("helpful=ultrafeedback-dev[:3]", HEADS)
    rows = [row for _, row in iter_jsonl(resolve_data("ultrafeedback-dev"))][:3]
    assert [e.margin for e in examples] == [r["metadata"]["score_chosen"] - r["metadata"]["score_rejected"]
                                            for r in rows]
    assert examples[0].first[0]["role"] == "user" and examples[0].first[-1]["role"] == "assistant"


def test_qa_feedback_ratings_count_annotated_errors_per_aspect():
    row = next(iter_jsonl(resolve_data("qa-feedback")))[1]
    question, answer, ratings = qa_feedback_ratings(row, "row 1")
    # Row 1: two 'Irrelevant' spans; 'Missing-Answer' and 'Missing-Minor-Auxiliary'; no factual error.
    assert ratings == {"relevance": -2.0, "factuality": 0.0, "completeness": -2.0}
    assert question == row["question"] and answer == row["prediction 1"]


def test_mixture_masks_each_row_to_the_heads_its_source_labels(tmp_path):
    pairs = write_jsonl(tmp_path / "harmless.jsonl", [{"chosen": "safe reply", "rejected": "unsafe reply"}])
    rated = write_jsonl(tmp_path / "rated.jsonl", [{"completion": "answer", "ratings": {"factuality": -1}}])
    args = RewardDataArguments(heads=HEADS, pairwise_train_files=[f"harmless={pairs}"], rated_train_files=[rated, ""])
    mixture = build_mixture(load_examples(args, "train"), HEADS, PlainTokenizer())
    assert mixture[0]["pair_mask"] == [0, 1, 0, 0, 0] and mixture[0]["rating_mask"] == [0, 0, 0, 0, 0]
    assert mixture[1]["pair_mask"] == [0, 0, 0, 0, 0] and mixture[1]["rating_mask"] == [0, 0, 0, 1, 0]
    assert mixture[1]["rating"][3] == -1.0 and mixture[1]["second"] == ""


def test_collator_puts_pairs_and_rated_texts_in_one_batch(tiny_policy_path):
    from reward_models.modeling import load_reward_tokenizer

    tokenizer = load_reward_tokenizer(str(tiny_policy_path))
    rows = [
        {"first": "a", "second": "b", "pair_mask": [1, 0], "pair_margin": 1.0, "rating": [0, 0], "rating_mask": [0, 0]},
        {"first": "c", "second": "", "pair_mask": [0, 0], "pair_margin": 1.0, "rating": [0, 2], "rating_mask": [0, 1]},
    ]
    batch = RewardMixtureCollator(tokenizer, max_length=16)(rows)
    assert batch["input_ids"].shape[0] == 3  # two texts for the pair, one for the rated row
    assert batch["first_index"].tolist() == [0, 2] and batch["second_index"].tolist() == [1, 2]


def test_prompt_and_completion_become_one_conversation_without_repeating_the_prompt():
    from reward_models.chat_format import conversation

    prompt = [{"role": "user", "content": "hi"}]
    reply = [{"role": "assistant", "content": "hello"}]
    assert conversation(prompt, reply) == prompt + reply
    assert conversation(prompt, prompt + reply) == prompt + reply  # TRL's implicit-prompt form
    assert conversation("hi", "hello") == prompt + reply


def test_spearman_correlation_handles_ties_and_constant_sides():
    import numpy as np

    from reward_models.metrics import spearman_correlation

    # Hand-computed: ranks of x = (0.5, 0.5, 2, 3), of y = (0, 1, 2, 3); Pearson of the ranks = 0.9486833.
    assert (spearman_correlation(np.array([1.0, 1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0, 4.0]))
            == pytest.approx(0.9486833))
    assert np.isnan(spearman_correlation(np.array([1.0, 1.0]), np.array([1.0, 2.0])))


def test_drop_other_ratings_keeps_one_aspect_of_a_multi_aspect_file(tmp_path):
    path = write_jsonl(tmp_path / "rated.jsonl", [
        {"completion": "a", "ratings": {"relevance": -1, "factuality": -2}},
        {"completion": "b", "ratings": {"factuality": 0}},  # nothing left for a relevance-only model: dropped
        {"completion": "c", "ratings": {"relevance": 0, "factuality": 999}},  # still validated: out of range
    ])
    with pytest.raises(RewardDataError, match=r"row 1: field 'ratings\.factuality' rates an objective with no head"):
        load_rated_source(f"{path}[:2]", ["relevance"], rating_range=[-20, 0])
    examples = load_rated_source(f"{path}[:2]", ["relevance"], rating_range=[-20, 0], drop_other_objectives=True)
    assert [e.ratings for e in examples] == [{"relevance": -1}]
    with pytest.raises(RewardDataError, match=r"row 3: field 'ratings\.factuality' = 999 is out of range"):
        load_rated_source(path, ["relevance"], rating_range=[-20, 0], drop_other_objectives=True)


def test_single_head_models_train_on_their_own_head_data_only(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    from evaluate_reward_model import single_head_recipe_args

    config = Path(__file__).resolve().parent.parent / "recipes" / "configs" / "reward_model_cpu.yaml"
    data, training, _ = single_head_recipe_args(str(config), "harmless", tmp_path / "harmless", ["--max_length", "64"])
    assert data.heads == ["harmless"] and training.output_dir == str(tmp_path / "harmless")
    assert [s.split("=")[0] for s in data.pairwise_train_files + data.pairwise_eval_files] == ["harmless", "harmless"]
    assert data.rated_train_files == [] and training.max_length == 64  # recipe overrides reach the single model
    data, _, _ = single_head_recipe_args(str(config), "factuality", tmp_path / "factuality", [])
    assert data.pairwise_train_files == [] and data.rated_train_files and data.drop_other_ratings
    assert load_examples(data, "train")[0].ratings.keys() == {"factuality"}
