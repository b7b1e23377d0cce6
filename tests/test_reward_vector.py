import math

import pytest
import torch

from alignment import (
    FunctionSource,
    ObjectiveSpecError,
    RewardVectorBuilder,
    condition_prompt,
    parse_objective_specs,
    read_prompt_weights,
)
from alignment.objectives.reward_vector import RewardFunctionError
from alignment.objectives.scalarize import drop_partial_rows
from reward_models.verifiable import conciseness, format_ok, profanity_free, sentiment


class TwoHeadSource:
    """Scores two objectives per call, counting calls (stands in for a multi-head reward model)."""

    objective_names = ["helpful", "harmless"]

    def __init__(self):
        self.calls = 0

    def __call__(self, prompts, completions, **kwargs):
        self.calls += 1
        return torch.tensor([[float(len(c)), -float(len(c))] for c in completions])


def test_builtin_rewards_score_text_and_chat_completions():
    completions = ["I love this, great idea!", [{"role": "assistant", "content": "damn it."}], "no end"]
    assert conciseness(None, completions) == [-0.24, -0.08, -0.06]
    scores = sentiment(None, completions)
    assert scores[0] > 0.5 and scores[1] < 0
    assert profanity_free(None, completions) == [1.0, 0.0, 1.0]
    assert format_ok(None, completions) == [1.0, 1.0, 0.0]


def test_reward_vector_columns_follow_objective_order_and_a_multi_head_source_runs_once():
    heads = TwoHeadSource()
    objectives, sources, _ = parse_objective_specs(["brevity=conciseness"])
    builder = RewardVectorBuilder(["harmless", "brevity", "helpful"], sources + [heads])
    reward_vector, dropped = builder(["p", "p"], ["abc", "abcdef"])
    assert heads.calls == 1
    assert torch.allclose(reward_vector, torch.tensor([[-3.0, -0.03, 3.0], [-6.0, -0.06, 6.0]]))
    assert not dropped.any()


def _raises(prompts, completions, **kwargs):
    raise KeyError("label")


def _short(prompts, completions, **kwargs):
    return [1.0]


def _nan(prompts, completions, **kwargs):
    return [1.0, math.nan]


def _none(prompts, completions, **kwargs):
    return [None, 2.0]


@pytest.mark.parametrize("function, message", [
    (_raises, "reward for objective 'judge' failed at step 7: KeyError"),
    (_short, "returned 1 rewards for 2 completions"),
    (_nan, "reward for objective 'judge' is nan for completion 1 at step 7"),
    (_none, "reward for objective 'judge' is nan for completion 0 at step 7"),
])
def test_a_bad_reward_function_stops_with_the_objective_name_and_step(function, message):
    builder = RewardVectorBuilder(["judge"], [FunctionSource("judge", function)])
    with pytest.raises(RewardFunctionError) as error:
        builder(["p", "q"], ["a", "b"], step=7)
    assert message in str(error.value)


def test_opting_in_leaves_invalid_rewards_out_instead_of_stopping():
    builder = RewardVectorBuilder(["judge", "brevity"],
                                  [FunctionSource("judge", _nan), FunctionSource("brevity", conciseness)],
                                  on_invalid="drop")
    reward_vector, incomplete = builder(["p", "q"], ["a", "b"])
    assert incomplete.tolist() == [False, True]
    # only the invalid reward is missing; partial_rewards decides what the row is worth (alignment.objectives.scalarize)
    assert (torch.isnan(reward_vector[1, 0]) and not torch.isnan(reward_vector[1, 1])
            and not torch.isnan(reward_vector[0]).any())
    assert torch.isnan(drop_partial_rows(reward_vector)[1]).all()


def test_an_objective_no_source_provides_is_rejected_up_front():
    with pytest.raises(ValueError, match=r"no reward source provides objective\(s\) \['helpful'\]"):
        RewardVectorBuilder(["helpful"], [FunctionSource("brevity", conciseness)])


@pytest.mark.parametrize("specs, message", [
    (["funny"], "unknown source 'funny'"),
    (["a=python:nonexistent_module_xyz:f"], "cannot import"),
    (["a=python:nocolon"], "must look like"),
    (["conciseness", "conciseness"], "defined twice"),
    (["bad name=conciseness"], "must be an identifier"),
    ([], "no objectives given"),
])
def test_bad_objective_specs_get_clear_errors(specs, message):
    with pytest.raises(ObjectiveSpecError, match=message):
        parse_objective_specs(specs)


def test_objective_specs_resolve_builtins_python_functions_and_reward_model_heads():
    objectives, sources, heads = parse_objective_specs(
        ["conciseness", "polite=python:reward_models.verifiable:sentiment", "helpful=rm:helpfulness"])
    assert [o.name for o in objectives] == ["conciseness", "polite", "helpful"]
    assert [o.source for o in objectives] == ["builtin:conciseness", "python:reward_models.verifiable:sentiment",
                                              "reward_model_head:helpfulness"]
    assert [s.name for s in sources] == ["conciseness", "polite"]
    assert heads == {"helpful": "helpfulness"}


def test_weights_written_into_a_prompt_can_be_read_back_and_replaced():
    """Format version 1 (`Preference weights: ...`), which older checkpoints were trained with."""
    names = ["conciseness", "sentiment"]
    chat = [{"role": "user", "content": "Hi"}]
    conditioned = condition_prompt(chat, [0.25, 0.75], names, format_version=1)
    assert conditioned[0] == {"role": "system", "content": "Preference weights: conciseness=0.25,sentiment=0.75"}
    assert chat == [{"role": "user", "content": "Hi"}]  # not mutated
    assert read_prompt_weights(conditioned, names).tolist() == [0.25, 0.75]
    again = condition_prompt(conditioned, "conciseness=1", names, format_version=1)
    assert again[0]["content"] == "Preference weights: conciseness=1.00,sentiment=0.00" and len(again) == 2
    with_system = condition_prompt([{"role": "system", "content": "Be kind."}] + chat, [1, 1], names, format_version=1)
    assert with_system[0]["content"] == "Preference weights: conciseness=0.50,sentiment=0.50\nBe kind."
    text = condition_prompt("Question?", [1, 0], names, format_version=1)
    assert text == "Preference weights: conciseness=1.00,sentiment=0.00\nQuestion?"
    assert read_prompt_weights("Question?", names) is None


def test_conciseness_counts_characters_or_utf8_bytes_from_a_floor_of_100():
    from reward_models.verifiable import conciseness_bytes, conciseness_floored

    ascii_reply, emoji_reply = "a" * 150, "\u2764" * 60  # 60 characters of 3 bytes each
    assert conciseness_floored(None, [ascii_reply, emoji_reply, "short"]) == [-1.5, -1.0, -1.0]
    assert conciseness_bytes(None, [ascii_reply, emoji_reply, "short"]) == [-1.5, -1.8, -1.0]
    assert conciseness_bytes(None, [[{"role": "assistant", "content": "\U0001F60A" * 30}]]) == [-1.2]  # 4 bytes each
