"""Real GRPO steps on the tiny policy: the weights steer what is learned, and the checkpoint says what it was trained
for."""

import json
import re

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignment import MultiObjectiveGRPOConfig, MultiObjectiveGRPOTrainer, read_prompt_weights
from alignment.data import resolve_data
from alignment.data.prompts import load_prompt_dataset
from alignment.objectives.conditioning import FORMAT_VERSION, preference_header
from alignment.objectives.reward_vector import RewardFunctionError

PROMPTS = resolve_data("hh-prompts")


def make_trainer(policy_path, output_dir, max_steps, **overrides):
    settings = dict(
        output_dir=str(output_dir), objectives=["conciseness", "sentiment"], num_generations=8,
        per_device_train_batch_size=64, max_completion_length=32, max_steps=max_steps, learning_rate=1e-3,
        lr_scheduler_type="constant", use_cpu=True, gradient_checkpointing=False, logging_steps=1,
        save_strategy="no", report_to="none", seed=0, multi_objective_aggregation="normalize_then_sum",
        disable_tqdm=True, bf16=False,  # GRPOConfig defaults to bf16; CPU autocast to bf16 makes a step ~4x slower
    )
    settings.update(overrides)
    if settings.get("scalarization") in ("pama", "lagrangian"):  # they normalize each objective themselves
        settings.pop("multi_objective_aggregation")
    args = MultiObjectiveGRPOConfig(**settings)
    tokenizer = AutoTokenizer.from_pretrained(policy_path)
    model = AutoModelForCausalLM.from_pretrained(policy_path)
    return MultiObjectiveGRPOTrainer(model=model, args=args, processing_class=tokenizer,
                                     train_dataset=load_prompt_dataset(PROMPTS, limit=512))


def preference_header_start():
    """How a logged conditioned prompt starts: the header's first word in the current format."""
    return preference_header([1, 1], ["conciseness", "sentiment"]).split()[0]


def logged_weights(logged_prompt) -> tuple:
    """The weights in the header line of a logged prompt (rendered text or a message list)."""
    text = str(logged_prompt)
    line = re.match(r"[^\n'\"]*", text[text.index(preference_header_start()):].split("<|im_end|>")[0]).group(0)
    return tuple(read_prompt_weights(line, ["conciseness", "sentiment"]).tolist())


def last_steps_mean(trainer, key, steps=5):
    values = [entry[key] for entry in trainer.state.log_history if key in entry][-steps:]
    return sum(values) / len(values)


@pytest.mark.slow
def test_weight_on_conciseness_shortens_completions(tiny_policy_path, tmp_path):
    results = {}
    for label, weights in (("concise", "conciseness=0.8,sentiment=0.2"), ("positive", "conciseness=0.2,sentiment=0.8")):
        trainer = make_trainer(tiny_policy_path, tmp_path / label, max_steps=15, preference_weights=weights,
                               max_completion_length=24)
        trainer.train()
        results[label] = {key: last_steps_mean(trainer, key) for key in
                          ("completions/mean_length", "rewards/sentiment/mean", "rewards/conciseness/mean")}
        assert last_steps_mean(trainer, "weights/conciseness") == pytest.approx(0.8 if label == "concise" else 0.2)
    print(results)
    assert results["concise"]["completions/mean_length"] < 0.7 * results["positive"]["completions/mean_length"]
    assert results["concise"]["rewards/conciseness/mean"] > results["positive"]["rewards/conciseness/mean"]
    assert results["positive"]["rewards/sentiment/mean"] > results["concise"]["rewards/sentiment/mean"]


@pytest.mark.slow
def test_sampled_weights_are_written_into_prompts_and_recorded(tiny_policy_path, tmp_path):
    trainer = make_trainer(tiny_policy_path, tmp_path, max_steps=2, weights_mode="dirichlet", dirichlet_alpha="1.0",
                           log_completions=True)
    assert trainer.args.condition_on_weights
    trainer.train()
    prompts = trainer._logs["prompt"]
    assert prompts and all(preference_header_start() in str(p) for p in prompts)
    # the 8 completions of a group share one weight vector; different prompts get different weights
    headers = [logged_weights(p) for p in prompts]
    assert all(len(set(headers[i:i + 8])) == 1 for i in range(0, len(headers), 8))
    assert len(set(headers)) > 1
    trainer.save_model(str(tmp_path / "final"))
    record = json.loads((tmp_path / "final" / "objectives.json").read_text())
    assert record["steering"] == "prompt" and record["prompt_format_version"] == FORMAT_VERSION
    assert record["weight_distribution"] == {"type": "dirichlet", "alpha": {"conciseness": 1.0, "sentiment": 1.0}}
    assert record["objective_names"] == ["conciseness", "sentiment"]
    card = (tmp_path / "final" / "README.md").read_text()
    assert "| conciseness | `builtin:conciseness` |" in card and f"Prompt format (version {FORMAT_VERSION})" in card
    assert (tmp_path / "final" / "model.safetensors").exists()


@pytest.mark.slow
def test_lagrange_multiplier_rises_while_the_constraint_is_violated(tiny_policy_path, tmp_path):
    trainer = make_trainer(tiny_policy_path, tmp_path, max_steps=3, scalarization="lagrangian",
                           main_objective="conciseness", constraint_objective="sentiment", constraint_threshold=2.0,
                           lagrange_learning_rate=0.5)
    trainer.train()
    lambdas = [entry["lagrange/lambda"] for entry in trainer.state.log_history if "lagrange/lambda" in entry]
    assert len(lambdas) == 3 and lambdas[0] == pytest.approx(1.0)
    assert lambdas[0] < lambdas[1] < lambdas[2]  # sentiment can never reach 2.0: lambda keeps growing
    trainer.save_model(str(tmp_path / "final"))
    record = json.loads((tmp_path / "final" / "objectives.json").read_text())
    assert record["objectives"][1]["threshold"] == 2.0
    assert record["lagrangian"]["final_lambda"] > 1.0
    card = (tmp_path / "final" / "README.md").read_text()
    assert ("Update: maximize `conciseness` subject to mean `sentiment` >= 2 (Lagrangian, final lambda = "
            f"{record['lagrangian']['final_lambda']:.4g}). The preference weights were not used.") in card
    assert "Fixed preference weights" not in card and record["weights"] is None


def _broken_reward(prompts, completions, **kwargs):
    return [float("nan")] * len(completions)


def test_a_nan_reward_stops_training_with_the_objective_name(tiny_policy_path, tmp_path):
    trainer = make_trainer(tiny_policy_path, tmp_path, max_steps=1,
                           objectives=["conciseness", "judge=python:tests.test_grpo_trainer:_broken_reward"])
    with pytest.raises(RewardFunctionError, match="reward for objective 'judge' is nan for completion 0 at step 0"):
        trainer.train()


def test_dropping_invalid_rewards_is_opt_in_and_counted(tiny_policy_path, tmp_path):
    trainer = make_trainer(tiny_policy_path, tmp_path, max_steps=1, drop_invalid_rewards=True,
                           objectives=["conciseness", "judge=python:tests.test_grpo_trainer:_broken_reward"])
    trainer.train()
    assert trainer.state.log_history[0]["objectives/dropped_rows"] == 64


def test_weights_a_method_ignores_are_warned_about(tiny_policy_path, tmp_path):
    with pytest.warns(UserWarning, match="preference_weights are ignored by scalarization 'lagrangian'"):
        MultiObjectiveGRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, scalarization="lagrangian",
                                 main_objective="conciseness", constraint_objective="sentiment",
                                 preference_weights="conciseness=0.9,sentiment=0.1")
    from alignment.trainers.mgda_grpo import MGDAGRPOTrainer

    with pytest.warns(UserWarning, match="preference_weights are ignored by MGDA"):
        MGDAGRPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_policy_path),
                        processing_class=AutoTokenizer.from_pretrained(tiny_policy_path),
                        args=MultiObjectiveGRPOConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False,
                                                      report_to="none",
                                                      preference_weights="conciseness=0.9,sentiment=0.1"),
                        train_dataset=load_prompt_dataset(PROMPTS, limit=8))


@pytest.mark.parametrize("overrides, message", [
    (dict(preference_weights="conciseness=0.5,helpful=0.5"), "unknown objective(s) ['helpful']"),
    (dict(preference_weights="conciseness=0,sentiment=0"), "all weights are zero"),
    (dict(objectives=["helpful=rm:helpful"]), "reward_model_name_or_path is not set"),
    (dict(scalarization="lagrangian", main_objective="conciseness", constraint_objective="harmless"),
     "constraint_objective 'harmless' is not one of the objectives"),
])
def test_bad_configuration_is_rejected_before_training(tiny_policy_path, tmp_path, overrides, message):
    with pytest.raises(ValueError) as error:
        make_trainer(tiny_policy_path, tmp_path, max_steps=1, **overrides)
    assert message in str(error.value)
    assert not any(tmp_path.iterdir())  # nothing written


def test_reward_model_heads_are_objectives_scored_in_one_forward_pass(tiny_policy_path, tmp_path):
    from reward_models.modeling import build_reward_model, load_reward_tokenizer

    reward_tokenizer = load_reward_tokenizer(str(tiny_policy_path))
    reward_model = build_reward_model(str(tiny_policy_path), ["helpful", "harmless"], reward_tokenizer, max_length=64)
    reward_model.save_pretrained(tmp_path / "rm")
    reward_tokenizer.save_pretrained(tmp_path / "rm")

    trainer = make_trainer(tiny_policy_path, tmp_path / "grpo", max_steps=1, per_device_train_batch_size=16,
                           objectives=["conciseness", "helpful=rm:helpful", "safe=rm:harmless"],
                           reward_model_name_or_path=str(tmp_path / "rm"))
    (reward_source,) = [s for s in trainer.reward_vector_builder.sources if hasattr(s, "scorer")]
    forwards = []
    reward_source.scorer.model.register_forward_hook(lambda module, inputs, output: forwards.append(1))
    trainer.train()
    assert len(forwards) == 1  # 16 completions, both heads, one batch, one forward
    logged = trainer.state.log_history[0]
    assert {"rewards/helpful/mean", "rewards/safe/mean", "rewards/conciseness/mean"} <= set(logged)
    trainer.save_model(str(tmp_path / "final"))
    record = json.loads((tmp_path / "final" / "objectives.json").read_text())
    assert [o["source"] for o in record["objectives"]] == ["builtin:conciseness", "reward_model_head:helpful",
                                                           "reward_model_head:harmless"]
    assert record["reward_model"] == "rm"  # the folder's name: the record is published, this machine's path is not


def test_reward_model_without_the_requested_head_is_rejected(tiny_policy_path, tmp_path):
    from reward_models.modeling import build_reward_model, load_reward_tokenizer

    reward_tokenizer = load_reward_tokenizer(str(tiny_policy_path))
    build_reward_model(str(tiny_policy_path), ["helpful"], reward_tokenizer).save_pretrained(tmp_path / "rm")
    reward_tokenizer.save_pretrained(tmp_path / "rm")
    with pytest.raises(ValueError, match="harmless"):
        make_trainer(tiny_policy_path, tmp_path / "grpo", max_steps=1, objectives=["harmless=rm:harmless"],
                     reward_model_name_or_path=str(tmp_path / "rm"))


def test_lora_training_through_trl_options_saves_an_adapter_with_its_record(tiny_policy_path, tmp_path):
    from peft import LoraConfig

    args = MultiObjectiveGRPOConfig(
        output_dir=str(tmp_path), objectives=["conciseness", "sentiment"], num_generations=4,
        per_device_train_batch_size=16, max_completion_length=16, max_steps=1, use_cpu=True,
        gradient_checkpointing=False, save_strategy="no", report_to="none", disable_tqdm=True, bf16=False,
        loss_type="grpo", beta=0.04,  # TRL's own loss options and KL to the (adapter-disabled) reference
    )
    trainer = MultiObjectiveGRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_policy_path), args=args,
        processing_class=AutoTokenizer.from_pretrained(tiny_policy_path),
        train_dataset=load_prompt_dataset(PROMPTS, limit=64),
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    trainer.train()
    assert "kl" in trainer.state.log_history[0]
    trainer.save_model(str(tmp_path / "final"))
    assert (tmp_path / "final" / "adapter_model.safetensors").exists()
    assert json.loads((tmp_path / "final" / "objectives.json").read_text())["objective_names"] == [
        "conciseness", "sentiment"]
    # The adapter names its base portably (no cache path of this machine), and our loader rebuilds the trained model
    adapter_base = json.loads((tmp_path / "final" / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert adapter_base == "moalign/tiny-policy"
    from peft import PeftModel

    from alignment.models.packaged import resolve_model_path

    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(resolve_model_path(adapter_base)),
                                         str(tmp_path / "final")).eval()
    inputs = trainer.processing_class(["Is it possible to download a car?"], return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, trainer.model.eval()(**inputs).logits, atol=1e-5, rtol=0)
