"""Per-row weights in the DPO family: a pair-weight column scaling each row's loss, and a preference_weights column
giving a row its own weight vector. The weighted mean by hand, the losses that use it, the data checks that name
the row (in the recipe before any model loads, in the trainer otherwise), and the trainer's batch."""

import json
import math

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignment import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer
from alignment.data.preferences import PreferenceDataError, to_dataset, validate_rows
from alignment.trainers.dpo_losses.base import PreferenceLoss
from alignment.trainers.preference_losses import (
    dpo_loss,
    lipo_lambda_loss,
    mah_dpo_loss,
    modpo_objective_margin,
    weighted_mean,
)
from tests.helpers import load_recipe, write_jsonl

pytestmark = pytest.mark.usefixtures("one_thread")


def test_weighted_mean_by_hand():
    values = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert weighted_mean(values, torch.tensor([1.0, 0.0, 2.0, 1.0])).item() == pytest.approx((1 + 6 + 4) / 4)
    assert weighted_mean(values).item() == 2.5  # no weights: the mean
    # the weights' scale does not matter; a NaN row is left out, and [N, K] averages each column
    assert weighted_mean(values, torch.tensor([10.0, 0.0, 20.0, 10.0])).item() == pytest.approx(2.75)
    columns = torch.tensor([[1.0, math.nan], [3.0, 4.0], [5.0, 8.0]])
    assert weighted_mean(columns, torch.tensor([1.0, 1.0, 2.0])).tolist() == [3.5, pytest.approx(20 / 3)]
    assert math.isnan(weighted_mean(values, torch.zeros(4)))  # nothing to average


def test_rows_of_weight_zero_get_no_gradient_and_an_all_zero_batch_moves_nothing():
    values = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    PreferenceLoss.mean_of(values * values, torch.tensor([1.0, 0.0, 1.0])).backward()
    assert values.grad.tolist() == [1.0, 0.0, 3.0]  # d/dv of (v0^2 + v2^2) / 2
    zero = PreferenceLoss.mean_of(values * 2, torch.zeros(3))
    assert zero.item() == 0.0 and zero.requires_grad


def test_multi_head_and_lipo_losses_take_row_weights():
    chosen, rejected = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 1.0, 0.0])
    per_pair = dpo_loss(chosen, rejected, 0.1)
    heads = torch.tensor([0, 0, 1])
    loss, per_head = mah_dpo_loss(chosen, rejected, heads, 0.1, torch.tensor([3.0, 1.0, 0.0]))
    # head 1's only pair weighs 0: head 1 is absent; head 0 averages its pairs 3:1
    assert list(per_head) == [0] and loss.item() == pytest.approx((3 * per_pair[0] + per_pair[1]).item() / 4)
    logratios = torch.tensor([[1.0, 0.5, -0.5], [0.3, -0.2, 0.0]])
    labels = torch.tensor([[1.0, 0.5, 0.0], [0.0, 1.0, 0.5]])
    first_alone = lipo_lambda_loss(logratios[:1], labels[:1], 0.5)
    assert lipo_lambda_loss(logratios, labels, 0.5, list_weights=torch.tensor([1.0, 0.0])).item() == pytest.approx(
        first_alone.item())
    assert lipo_lambda_loss(logratios, labels, 0.5, list_weights=torch.ones(2)).item() == pytest.approx(
        lipo_lambda_loss(logratios, labels, 0.5).item())


# ---- the data checks ----

def pair(**fields):
    return {"prompt": "p", "chosen": "good", "rejected": "bad", **fields}


@pytest.mark.parametrize(("rows", "message"), [
    ([pair(pair_weight=1.0), pair()], r"row 2, field 'pair_weight': missing \(other rows carry 'pair_weight'"),
    ([pair(pair_weight=-0.5)], "row 1, field 'pair_weight': is -0.5; a pair weight must be >= 0"),
    ([pair(pair_weight=float("nan"))], "row 1, field 'pair_weight': expected a finite number"),
    ([pair(pair_weight=float("inf"))], "row 1, field 'pair_weight': expected a finite number"),
    ([pair(pair_weight="2")], "row 1, field 'pair_weight': expected a finite number"),
    ([pair(pair_weight=None)], r"row 1, field 'pair_weight': missing \(null\)"),
    ([pair(preference_weights=[0.5, 0.5]), pair()], "row 2, field 'preference_weights': missing"),
    ([pair(preference_weights="helpful=1,speed=1")], r"row 1, field 'preference_weights': .*unknown objective"),
    ([pair(preference_weights=[1.0, -1.0])], "row 1, field 'preference_weights': .*must be >= 0"),
    ([pair(preference_weights=[1.0, 0.0, 0.0])], "row 1, field 'preference_weights': .*got 3 weights"),
])
def test_bad_row_weights_name_the_row(rows, message):
    with pytest.raises(PreferenceDataError, match=message):
        validate_rows(rows, "pairs", "data.jsonl", weight_objectives=["helpful", "conciseness"])


def test_row_weights_are_stored_clean_and_reach_the_dataset():
    rows = [pair(pair_weight=2, preference_weights="helpful=3,conciseness=1"),
            pair(pair_weight=0, preference_weights={"conciseness": 1})]
    validate_rows(rows, "pairs", "data.jsonl", weight_objectives=["helpful", "conciseness"])
    assert [row["pair_weight"] for row in rows] == [2.0, 0.0]
    assert [row["preference_weights"] for row in rows] == [[0.75, 0.25], [0.0, 1.0]]
    dataset = to_dataset(rows)
    assert dataset["pair_weight"] == [2.0, 0.0] and dataset["preference_weights"] == [[0.75, 0.25], [0.0, 1.0]]
    # a renamed column, for lists too
    lists = [{"prompt": "p", "completions": ["a", "b"], "labels": [1.0, 0.0], "w": 0.5}]
    validate_rows(lists, "lists", "lists.jsonl", pair_weight_field="w")
    assert to_dataset(lists, extra_columns=("w",))["w"] == [0.5]


def test_the_recipe_refuses_a_bad_pair_weight_before_loading_any_model(tmp_path):
    recipe = load_recipe("dpo")
    rows = [pair(pair_weight=1.0, objective="helpful") for _ in range(3)] + [pair(pair_weight=-1, objective="helpful")]
    data = write_jsonl(tmp_path / "pairs.jsonl", rows)
    args = recipe.parse_args(["--dataset", data, "--num_eval_rows", "0", "--output_dir", str(tmp_path / "out"),
                              "--model_name_or_path", "does/not-exist"])
    with pytest.raises(PreferenceDataError, match=r"pairs.jsonl, row 4, field 'pair_weight': is -1.0"):
        recipe.main(*args)
    assert not (tmp_path / "out").exists()


# ---- the trainer ----

def modpo_rows(count: int) -> list[dict]:
    rows = []
    for i in range(count):
        rows.append({"prompt": f"Question {i}?", "chosen": "A short reply.", "rejected": "A much longer reply here.",
                     "chosen_margins": [-0.1 * i], "rejected_margins": [-0.3], "pair_weight": [1.0, 0.0, 2.0][i % 3],
                     "preference_weights": [[0.9, 0.1], [0.5, 0.5]][i % 2]})
    return rows


def make_dpo_trainer(policy_path, tmp_path, rows, **overrides):
    settings = dict(output_dir=str(tmp_path), loss="modpo", objectives=["helpful", "conciseness"], use_cpu=True,
                    gradient_checkpointing=False, max_length=32, per_device_train_batch_size=len(rows), max_steps=1,
                    report_to="none", save_strategy="no", disable_tqdm=True, seed=0)
    args = MultiObjectiveDPOConfig(**{**settings, **overrides})
    return MultiObjectiveDPOTrainer(model=AutoModelForCausalLM.from_pretrained(policy_path), args=args,
                                    train_dataset=Dataset.from_list(rows),
                                    processing_class=AutoTokenizer.from_pretrained(policy_path))


@pytest.mark.parametrize(("column", "value", "message"), [
    ("pair_weight", -1.0, r"train_dataset, row 2, field 'pair_weight': is -1.0"),
    ("pair_weight", None, r"train_dataset, row 2, field 'pair_weight': missing \(null\)"),
    ("preference_weights", [0.5, -0.5], r"train_dataset, row 2, field 'preference_weights': .*must be >= 0"),
    ("preference_weights", [1.0], r"train_dataset, row 2, field 'preference_weights': .*got 1 weights"),
])
def test_the_trainer_names_the_row_of_a_bad_weight(tiny_policy_path, tmp_path, column, value, message):
    rows = modpo_rows(3)
    rows[1][column] = value
    with pytest.raises(ValueError, match=message):
        make_dpo_trainer(tiny_policy_path, tmp_path, rows)


def test_a_loss_without_weights_per_row_refuses_a_preference_weights_column(tiny_policy_path, tmp_path):
    rows = [{**row, "score_gap": 1.0} for row in modpo_rows(2)]
    with pytest.raises(ValueError, match="loss 'cardinal' with weights_mode 'fixed' takes no weights per row"):
        make_dpo_trainer(tiny_policy_path, tmp_path, rows, loss="cardinal", objectives=["overall"])


def test_each_pair_trains_under_its_own_weights_scaled_by_its_pair_weight(tiny_policy_path, tmp_path):
    rows = modpo_rows(6)
    trainer = make_dpo_trainer(tiny_policy_path, tmp_path, rows,
                               weights_schedule="0:helpful=0.5,conciseness=0.5;1:helpful=0.8,conciseness=0.2")
    batch = next(iter(trainer.get_train_dataloader()))
    assert sorted(batch["pair_weight"].tolist()) == [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]
    # at step 0 the schedule is at its first point: each row's own weights, untilted
    weights = trainer._batch_weights(batch, "train")
    assert torch.allclose(weights, batch["preference_weights"])
    trainer.state.global_step, trainer.state.max_steps = 1, 1  # the schedule's end: (0.8, 0.2) / (0.5, 0.5)
    tilted = trainer._batch_weights(batch, "train")
    expected = batch["preference_weights"] * torch.tensor([1.6, 0.4])
    assert torch.allclose(tilted, expected / expected.sum(dim=1, keepdim=True))
    # the loss is sum_i p_i l_i / sum_i p_i of each pair's MODPO loss under its own weights
    logratios = torch.randn(12)
    loss, _ = trainer.loss_component.compute(logratios, batch, weights)
    chosen, rejected = logratios.chunk(2)
    margins = modpo_objective_margin(chosen, rejected, batch["chosen_margins"], batch["rejected_margins"], weights,
                                     0.1)
    per_pair = -torch.nn.functional.logsigmoid(margins)
    p = batch["pair_weight"]
    assert loss.item() == pytest.approx(((p * per_pair).sum() / p.sum()).item())


def test_a_schedule_is_logged_and_recorded_by_the_dpo_trainer(tiny_policy_path, tmp_path):
    rows = [{key: value for key, value in row.items() if key != "preference_weights"} for row in modpo_rows(4)]
    trainer = make_dpo_trainer(tiny_policy_path, tmp_path, rows, max_steps=2, logging_steps=1,
                               weights_schedule="0:helpful=0.9,conciseness=0.1;1:helpful=0.5,conciseness=0.5")
    trainer.train()
    logged = [entry["weights/conciseness"] for entry in trainer.state.log_history if "weights/conciseness" in entry]
    assert logged == pytest.approx([0.1, 0.3])  # the schedule at steps 0 and 1 of 2
    trainer.save_model(str(tmp_path / "final"))
    record = json.loads((tmp_path / "final" / "objectives.json").read_text())
    assert record["weights"] == {"helpful": 0.5, "conciseness": 0.5}  # in force from the saved step (2) on
    assert record["weights_schedule"]["spec"] == "0:helpful=0.9,conciseness=0.1;1:helpful=0.5,conciseness=0.5"
    assert "Preference weights scheduled over training" in (tmp_path / "final" / "README.md").read_text()


def test_per_objective_dpo_weighs_its_pairs_and_takes_each_pairs_own_weights():
    loss = MultiObjectiveDPOConfig(output_dir="/tmp/unused", loss="per_objective", objectives=["a", "b"],
                                   use_cpu=True, report_to="none").loss_component
    chosen, rejected = torch.tensor([1.0, 0.5, -0.5]), torch.zeros(3)
    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
    per = -torch.nn.functional.logsigmoid(0.1 * (chosen - rejected).unsqueeze(1) * labels)  # DPO loss per objective
    inputs = {"objective_labels": labels, "pair_weight": torch.tensor([1.0, 0.0, 2.0])}
    # fixed weights: each objective's weighted mean (a: rows 0-1 weigh 1 and 0; b: rows 1-2 weigh 0 and 2), then
    # one linear scalarization (the trainer hands a loss with weights per pair one row of weights per pair)
    value, _ = loss.compute(torch.cat([chosen, rejected]), inputs, torch.tensor([[0.3, 0.7]]).expand(3, -1))
    assert value.item() == pytest.approx((0.3 * per[0, 0] + 0.7 * per[2, 1]).item())
    # each pair's own weights: every pair scalarized under its own, then the weighted mean over pairs
    own = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    value, _ = loss.compute(torch.cat([chosen, rejected]), {**inputs, "preference_weights": own}, own)
    assert value.item() == pytest.approx(((per[0, 0] + 2 * per[2, 1]) / 3).item())
