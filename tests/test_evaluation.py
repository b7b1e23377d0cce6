"""The held-out summary: objective means plus the figures that expose a collapsed policy (empty, identical or short
replies), the weighted objective, and the paired standard error of each change, all against hand-computed values."""

import math

import pytest
import torch

from alignment.evaluation import HeldOutReplies, paired_standard_errors


def replies(completions, rewards, tokens):
    return HeldOutReplies(prompts=[[{"role": "user", "content": f"q{i}"}] for i in range(len(completions))],
                          completions=completions, objective_names=["conciseness", "sentiment"],
                          rewards=torch.tensor(rewards), tokens=torch.tensor(tokens))


def test_summary_counts_empty_and_repeated_replies_and_weights_the_objectives():
    held_out = replies(["", "  ", "Sure.", "Sure. "], [[0.0, 0.0], [0.0, 0.0], [-1.0, 0.5], [-1.0, 0.3]],
                       [0.0, 0.0, 2.0, 2.0])
    means = held_out.means(weights=[0.75, 0.25])
    assert means["empty_replies"] == 0.5
    assert means["distinct_replies"] == 0.5  # "" and "  " are one empty reply, "Sure." twice one reply
    assert means["completion_tokens"] == 1.0
    assert means["conciseness"] == -0.5 and means["sentiment"] == pytest.approx(0.2)
    assert means["weighted_objective"] == pytest.approx((0 + 0 + (-0.75 + 0.125) + (-0.75 + 0.075)) / 4)
    assert "weighted_objective" not in held_out.means()


def test_paired_standard_error_of_a_change():
    before = {"sentiment": torch.tensor([0.0, 0.0, 0.0, 0.0])}
    after = {"sentiment": torch.tensor([1.0, 3.0, 2.0, float("nan")])}  # unscored rows are left out
    change_std = torch.tensor([1.0, 3.0, 2.0]).std().item()  # 1.0
    assert paired_standard_errors(before, after)["sentiment"] == pytest.approx(change_std / math.sqrt(3))
