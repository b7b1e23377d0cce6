"""Short real training runs of every loss on the tiny policy: the trained objective's implicit reward margin
(beta * (log-ratio chosen - log-ratio rejected)) on held-out rows rises; checkpoints carry their record."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignment import (
    MultiObjectiveDPOConfig,
    MultiObjectiveDPOTrainer,
    add_lm_heads,
    load_multi_head_model,
    load_preference_splits,
)
from alignment.data.preferences import to_dataset
from alignment.models.multi_head import head_modules

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]




def config(tmp_path, loss, **overrides):
    settings = dict(
        output_dir=str(tmp_path / loss), loss=loss, use_cpu=True, gradient_checkpointing=False, max_length=64,
        per_device_train_batch_size=8, per_device_eval_batch_size=16, max_steps=12, learning_rate=5e-4, beta=0.1,
        lr_scheduler_type="constant", report_to="none", save_strategy="no", logging_steps=4, disable_tqdm=True, seed=0,
    )
    return MultiObjectiveDPOConfig(**{**settings, **overrides})


def train_and_measure(model, tokenizer, args, train_rows, eval_rows, **kwargs):
    trainer = MultiObjectiveDPOTrainer(model=model, args=args, train_dataset=to_dataset(train_rows),
                                       eval_dataset=to_dataset(eval_rows), processing_class=tokenizer, **kwargs)
    before = trainer.evaluate()
    trainer.train()
    after = trainer.evaluate()
    return trainer, before, after


@pytest.fixture()
def policy(tiny_policy_path):
    return AutoModelForCausalLM.from_pretrained(tiny_policy_path), AutoTokenizer.from_pretrained(tiny_policy_path)


def test_cardinal_margins_raise_held_out_ultrafeedback_margin(policy, tmp_path):
    # MODPO's run is the recipe's default (tests/test_dpo_recipe.py); the offset mode's values are unit-tested.
    mode = "weight"
    train, held_out, _ = load_preference_splits("ultrafeedback", "pairs", ["overall"], num_train_rows=128,
                                                num_eval_rows=32, max_prompt_chars=100, required=("score_gap",))
    args = config(tmp_path, "cardinal", objectives=["overall"], cardinal_mode=mode, cardinal_scale=0.25, max_steps=16)
    _, before, after = train_and_measure(*policy, args, train, held_out)
    print(f"cardinal/{mode} held-out margin {before['eval_rewards/margins']:+.4f} -> "
          f"{after['eval_rewards/margins']:+.4f}")
    assert after["eval_rewards/margins"] > before["eval_rewards/margins"]


def test_multi_head_dpo_raises_each_heads_margin_and_saves_every_head(policy, tmp_path):
    model, tokenizer = policy
    objectives = ["helpful", "harmless"]
    add_lm_heads(model, objectives)
    train, held_out, _ = load_preference_splits("hh", "pairs", objectives, num_train_rows=128, num_eval_rows=48,
                                                max_prompt_chars=160)
    args = config(tmp_path, "mah", objectives=objectives, plain_head="harmless", max_steps=16)
    trainer, before, after = train_and_measure(model, tokenizer, args, train, held_out)
    for name in objectives:
        key = f"eval_rewards/margins_{name}"
        print(f"mah head {name} held-out margin {before[key]:+.4f} -> {after[key]:+.4f}")
        assert after[key] > before[key]
    assert not torch.equal(head_modules(model)[0].weight, head_modules(model)[1].weight)

    trainer.save_model(args.output_dir)
    record = json.loads((tmp_path / "mah" / "objectives.json").read_text())
    assert record["trainer"] == "dpo:mah" and record["steering"] == "heads"
    reloaded = load_multi_head_model(tmp_path / "mah")
    for saved, trained in zip(head_modules(reloaded), head_modules(model)):
        assert torch.equal(saved.weight, trained.weight)
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "mah")
    assert torch.equal(plain.get_output_embeddings().weight, head_modules(model)[1].weight)


@pytest.mark.parametrize("loss", ["mdpo", "mipo"])
def test_group_losses_raise_held_out_best_vs_worst_margin(policy, tmp_path, loss):
    train, held_out, _ = load_preference_splits("qa-feedback", "groups", ["overall"], num_train_rows=64,
                                                num_eval_rows=24, group_size=1)
    args = config(tmp_path, loss, objectives=["overall"], beta=0.1 if loss == "mdpo" else 0.5)
    _, before, after = train_and_measure(*policy, args, train, held_out)
    print(f"{loss} held-out margin {before['eval_rewards/margins']:+.4f} -> {after['eval_rewards/margins']:+.4f}")
    assert after["eval_rewards/margins"] > before["eval_rewards/margins"]


def test_lipo_lambda_raises_held_out_ranked_list_margin(policy, tmp_path):
    train, held_out, _ = load_preference_splits("qa-feedback", "lists", ["overall"], num_train_rows=64,
                                                num_eval_rows=16)
    args = config(tmp_path, "lipo", objectives=["overall"], per_device_train_batch_size=4, per_device_eval_batch_size=8)
    _, before, after = train_and_measure(*policy, args, train, held_out)
    print(f"lipo held-out margin {before['eval_rewards/margins']:+.4f} -> {after['eval_rewards/margins']:+.4f}")
    assert after["eval_rewards/margins"] > before["eval_rewards/margins"]


def test_ipo_raises_held_out_hh_margin(policy, tmp_path):
    train, held_out, _ = load_preference_splits("hh", "pairs", ["helpful"], num_train_rows=128, num_eval_rows=32,
                                                max_prompt_chars=160)
    args = config(tmp_path, "ipo", objectives=["helpful"], beta=0.5, max_steps=16)
    _, before, after = train_and_measure(*policy, args, train, held_out)
    print(f"ipo held-out margin {before['eval_rewards/margins']:+.4f} -> {after['eval_rewards/margins']:+.4f}")
    assert after["eval_rewards/margins"] > before["eval_rewards/margins"]
