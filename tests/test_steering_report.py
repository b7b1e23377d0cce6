"""The end of a steerable run: the steering table (hand-computed), front.png, the card, and the CPU scoring cut."""

import json
import math
from pathlib import Path

import pytest
import torch
import transformers

from alignment.evaluation import HeldOutReplies
from alignment.hub.model_card import render_model_card
from alignment.steering.report import format_steering_table, plot_steering_front, steering_report, steering_weights
from tests.helpers import load_recipe

NAMES = ["conciseness", "sentiment"]
CONFIGS = Path(__file__).resolve().parent.parent / "recipes" / "configs"


def replies(rewards, completions=None):
    rewards = torch.tensor(rewards, dtype=torch.float32)
    completions = completions or [f"reply {i}" for i in range(len(rewards))]
    return HeldOutReplies([[{"role": "user", "content": f"prompt {i}"}] for i in range(len(rewards))], completions,
                          NAMES, rewards, torch.tensor([float(len(c.split())) for c in completions]))


def test_the_weights_run_corner_to_corner_for_two_objectives_and_add_the_centre_for_more():
    assert steering_weights(2) == [[1.0, 0.0], [0.75, 0.25], [0.5, 0.5], [0.25, 0.75], [0.0, 1.0]]
    assert steering_weights(3) == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1 / 3] * 3]


def test_the_report_gives_means_standard_errors_health_and_spearman():
    weights = steering_weights(2)
    # conciseness falls as its weight falls at every step; sentiment rises except between the last two points
    points = [replies([[-1.0 - 0.1 * i, 0.1 * i], [-1.2 - 0.1 * i, 0.3 * i], [-0.8 - 0.1 * i, 0.2 * i]])
              for i in range(4)]
    points.append(replies([[-1.5, 0.6], [-1.7, 0.5], [-1.3, 0.4]], completions=["", "same", "same"]))
    base = replies([[-2.0, 0.0], [-2.0, 0.0], [-2.0, 0.0]])
    report = steering_report(weights, points, base)
    first, last = report["points"][0], report["points"][-1]
    assert first["weights"] == {"conciseness": 1.0, "sentiment": 0.0}
    assert first["means"]["conciseness"] == pytest.approx(-1.0)
    # sample standard deviation of (-1.0, -1.2, -0.8) is 0.2; over sqrt(3) prompts
    assert first["standard_errors"]["conciseness"] == pytest.approx(0.2 / math.sqrt(3))
    assert last["means"]["sentiment"] == pytest.approx(0.5)
    assert last["empty_replies"] == pytest.approx(1 / 3) and last["distinct_replies"] == pytest.approx(2 / 3)
    assert report["base"]["weights"] is None and report["base"]["means"]["conciseness"] == pytest.approx(-2.0)
    # conciseness: -1.0, -1.1, -1.2, -1.3, -1.5 against weights 1 .. 0: +1. Sentiment: 0, .2, .4, .6, .5: ranks
    # 1, 2, 3, 5, 4 against 1 .. 5, so rho = 1 - 6 * (1 + 1) / (5 * 24) = 0.9
    assert report["spearman"]["conciseness"] == pytest.approx(1.0)
    assert report["spearman"]["sentiment"] == pytest.approx(0.9)
    assert report["examples"][0]["prompt"] == "prompt 0"
    assert report["examples"][0]["weights_b"] == {"conciseness": 0.0, "sentiment": 1.0}
    assert report["examples"][0]["reply_b"] == ""
    table = format_steering_table(report)
    assert table.splitlines()[1].startswith("base model")
    assert "conciseness +1.00, sentiment +0.90" in table.splitlines()[-1]
    json.dumps(report)  # it goes into objectives.json as is


def test_the_plot_and_the_card_show_the_table_and_the_two_replies(tmp_path):
    weights = steering_weights(2)
    points = [replies([[-1.0 - 0.1 * i, 0.1 * i], [-1.2 - 0.1 * i, 0.3 * i]],
                      completions=[f"corner {i}", "x"]) for i in range(5)]
    report = steering_report(weights, points, replies([[-2.0, 0.0], [-2.0, 0.1]]))
    plot_steering_front(report, tmp_path / "front.png")
    assert (tmp_path / "front.png").read_bytes()[:4] == b"\x89PNG"
    card = render_model_card({"trainer": "grpo", "objective_names": NAMES, "steering": "adapter",
                              "steering_table": report, "front_plot": "front.png"})
    assert "## Steering on held-out prompts" in card and "![Steering front](front.png)" in card
    assert "| conciseness=0.75, sentiment=0.25 | -1.200 ± 0.100 | 0.200 ± 0.100 |" in card
    assert "| base model |" in card
    assert "| conciseness=1.00, sentiment=0.00 | corner 0 |" in card
    assert "| conciseness=0.00, sentiment=1.00 | corner 4 |" in card
    assert "Spearman's rho between each objective's weight and its mean: conciseness +1.00, sentiment +1.00" in card


def test_cpu_scoring_projects_only_the_completion_tokens_and_gives_the_same_log_probs(tiny_policy_path, one_thread,
                                                                                        monkeypatch):
    from transformers import AutoModelForCausalLM
    from trl.trainer import utils as trl_utils
    from trl.trainer.utils import add_fused_lm_head

    from alignment.trainers.lm_head_scoring import compact_lm_head_scoring

    model = AutoModelForCausalLM.from_pretrained(tiny_policy_path)
    add_fused_lm_head(model, outputs=("log_probs", "entropy"))
    projected = []
    original_apply = trl_utils._ChunkedLogProbFunction.apply
    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply",
                        lambda hidden, *rest: projected.append(hidden.shape[0]) or original_apply(hidden, *rest))
    torch.manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (3, 12))
    labels = ids.clone()
    labels[:, :8] = -100  # 8 prompt tokens, 4 completion tokens

    def score():
        output = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels, fused_lm_head=True)
        (output.log_probs.sum() + output.entropy.sum()).backward()
        grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        return output.log_probs.detach(), output.entropy.detach(), grads

    predicate = trl_utils._use_triton
    every_position = score()
    with compact_lm_head_scoring(torch.device("cpu")):
        completions_only = score()
    assert trl_utils._use_triton is predicate  # restored: TRL's own trainers are untouched
    assert projected == [3 * 11, 3 * 4]  # every shifted position, then the 4 labelled ones per row
    torch.testing.assert_close(completions_only[0], every_position[0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(completions_only[1], every_position[1], atol=1e-6, rtol=1e-5)
    for compact, full in zip(completions_only[2], every_position[2]):
        torch.testing.assert_close(compact, full, atol=1e-6, rtol=1e-4)


@pytest.mark.slow
def test_a_steerable_run_ends_with_its_steering_table_plot_and_card(tmp_path, one_thread, capsys, monkeypatch):
    recipe = load_recipe("grpo")
    evaluated = []  # the weights of every generation pass over the held-out prompts
    evaluate_policy = recipe.evaluate_policy
    generated_rows = []  # rows of every model.generate call
    generate = transformers.GenerationMixin.generate
    monkeypatch.setattr(transformers.GenerationMixin, "generate", lambda model, *args, **kwargs: generated_rows.append(
        len(kwargs.get("input_ids", args[0] if args else []))) or generate(model, *args, **kwargs))
    monkeypatch.setattr(recipe, "evaluate_policy", lambda trainer, prompts, weights, generation: evaluated.append(
        weights) or evaluate_policy(trainer, prompts, weights, generation))
    args = recipe.parse_args(["--config", str(CONFIGS / "grpo_steerable_tiny_cpu.yaml"), "--output_dir",
                              str(tmp_path / "out"), "--max_steps", "2", "--num_eval_prompts", "8",
                              "--eval_batch_size", "3", "--save_strategy", "no", "--disable_tqdm", "true"])
    recipe.main(*args)
    printed = capsys.readouterr().out
    assert "Steering: one checkpoint at 5 weight settings on 8 held-out prompts" in printed
    assert "Spearman rho (weight on the objective vs its mean): conciseness" in printed
    out = tmp_path / "out"
    assert (out / "front.png").read_bytes()[:4] == b"\x89PNG"
    record = json.loads((out / "objectives.json").read_text())
    table = record["steering_table"]
    assert [p["weights"]["conciseness"] for p in table["points"]] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert table["num_prompts"] == 8 and table["base"] is not None and record["steering"] == "adapter"
    # the middle point is the after-training evaluation (mean weights 0.5, 0.5), reused rather than generated again:
    # before, after, then only the 4 other points
    assert record["evaluation"]["conciseness/after"] == pytest.approx(table["points"][2]["means"]["conciseness"])
    assert [list(w) for w in evaluated[2:]] == [[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]]
    assert len(evaluated) == 6
    # --eval_batch_size is honoured: 8 held-out prompts go through generate in batches of 3, 3 and 2
    assert table["settings"]["batch_size"] == 3 and generated_rows[:3] == generated_rows[-3:] == [3, 3, 2]
    card = (out / "README.md").read_text()
    assert "## Steering on held-out prompts" in card and "![Steering front](front.png)" in card
