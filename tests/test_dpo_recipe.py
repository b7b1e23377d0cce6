"""recipes/dpo.py end to end from its YAML with CLI overrides, and the trainer's refusals before any training step."""

import json

import pytest
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignment import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer, PreferenceWeightsError
from tests.helpers import load_recipe

pytestmark = pytest.mark.usefixtures("one_thread")



@pytest.mark.slow
def test_default_recipe_runs_modpo_and_records_a_rising_held_out_margin(tmp_path, tiny_policy_path, capsys):
    recipe = load_recipe("dpo")
    output_dir = tmp_path / "modpo"
    script_args, training_args, model_args = recipe.parse_args([
        "--output_dir", str(output_dir), "--num_eval_rows", "32", "--save_strategy", "no", "--disable_tqdm", "true",
        "--preference_weights", "helpful=0.9,conciseness=0.1",
        "--eval_objectives", "conciseness", "sentiment", "--num_eval_prompts", "12", "--eval_max_new_tokens", "12",
    ])
    assert training_args.loss == "modpo" and model_args.model_name_or_path == "tiny"  # from the embedded YAML
    recipe.main(script_args, training_args, model_args)

    record = json.loads((output_dir / "objectives.json").read_text())
    assert record["trainer"] == "dpo:modpo"
    assert record["weights"] == {"helpful": pytest.approx(0.9), "conciseness": pytest.approx(0.1)}
    # MODPO's implied margin of the trained objective (the implicit reward minus the weighted conciseness margins)
    margins = record["evaluation"]
    before, after = margins["rewards/margins_helpful/before"], margins["rewards/margins_helpful/after"]
    # The held-out replies, scored before and after: the eval objectives and the reply-health figures
    for name in ("conciseness", "sentiment", "completion_tokens", "empty_replies", "distinct_replies"):
        assert isinstance(margins[f"{name}/before"], float) and isinstance(margins[f"{name}/after"], float)
    assert margins["completion_tokens/before"] > 0 and "weighted_objective/before" not in margins  # not the objectives
    printed = capsys.readouterr().out
    assert "Implicit reward" in printed and "12 held-out prompts" in printed and "s.e.(change)" in printed
    with capsys.disabled():
        print(f"\nrecipe modpo held-out helpful margin {before:+.4f} -> {after:+.4f}")
    assert after > before
    assert (output_dir / "README.md").read_text().count("conciseness") >= 1
    assert AutoModelForCausalLM.from_pretrained(output_dir) is not None


def test_malformed_file_fails_before_any_model_is_loaded(tmp_path):
    recipe = load_recipe("dpo")
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"prompt": "p", "chosen": "c", "rejected": "r"}\n{"prompt": "p", "chosen": "c"}\n')
    args = recipe.parse_args(["--dataset", str(data), "--num_eval_rows", "0", "--output_dir", str(tmp_path / "out"),
                              "--loss", "cardinal", "--objectives", "overall", "--preference_weights", "overall=1",
                              "--model_name_or_path", "does/not-exist"])
    with pytest.raises(ValueError, match=r"pairs.jsonl, row 1, field 'score_gap': missing"):
        recipe.main(*args)
    assert not (tmp_path / "out").exists()


def test_config_rejects_unknown_loss_and_trl_loss_options():
    with pytest.raises(ValueError, match="unknown loss 'dpo'"):
        MultiObjectiveDPOConfig(output_dir="/tmp/x", loss="dpo", use_cpu=True)
    with pytest.raises(ValueError, match="ld_alpha: TRL loss option"):
        MultiObjectiveDPOConfig(output_dir="/tmp/x", loss="modpo", use_cpu=True, ld_alpha=0.5)
    with pytest.raises(ValueError, match=r"loss_type \['ipo'\].*set `loss: ipo`"):
        MultiObjectiveDPOConfig(output_dir="/tmp/x", loss="modpo", use_cpu=True, loss_type=["ipo"])
    with pytest.raises(ValueError, match="precompute_ref_log_probs"):
        MultiObjectiveDPOConfig(output_dir="/tmp/x", loss="lipo", use_cpu=True, precompute_ref_log_probs=True)


def test_trainer_names_missing_columns_and_bad_weights_before_training(tiny_policy_path, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_policy_path)
    tokenizer = AutoTokenizer.from_pretrained(tiny_policy_path)
    pairs = Dataset.from_list([{"prompt": "p", "chosen": "c", "rejected": "r"}])
    args = MultiObjectiveDPOConfig(output_dir=str(tmp_path), loss="modpo", use_cpu=True, report_to="none")
    with pytest.raises(ValueError,
                       match=r"train_dataset: loss 'modpo' needs column\(s\) \['chosen_margins', 'rejected_margins'\]"):
        MultiObjectiveDPOTrainer(model, args=args, train_dataset=pairs, processing_class=tokenizer)
    with pytest.raises(PreferenceWeightsError, match="unknown objective"):  # refused by the config already
        MultiObjectiveDPOConfig(output_dir=str(tmp_path), loss="cardinal", use_cpu=True, report_to="none",
                                objectives=["overall"], preference_weights="helpful=1")
    args = MultiObjectiveDPOConfig(output_dir=str(tmp_path), loss="mah", use_cpu=True, report_to="none",
                                   objectives=["helpful", "harmless"])
    with pytest.raises(ValueError, match="one head per objective"):
        MultiObjectiveDPOTrainer(model, args=args, train_dataset=pairs, processing_class=tokenizer)


@pytest.mark.slow
def test_steerable_recipe_reports_each_objectives_margin_under_each_weight(tmp_path, tiny_policy_path, capsys):
    """recipes/configs/dpo_steerable_tiny_cpu.yaml, shortened: the held-out table scores every objective's margin
    with all weight on each objective (tests/test_preference_adapter.py checks that the replies follow the weights)."""
    from tests.helpers import RECIPES

    recipe = load_recipe("dpo")
    output_dir = tmp_path / "steerable"
    script_args, training_args, model_args = recipe.parse_args([
        "--config", str(RECIPES / "configs" / "dpo_steerable_tiny_cpu.yaml"), "--output_dir", str(output_dir),
        "--max_steps", "10", "--num_train_rows", "80", "--num_eval_rows", "16", "--save_strategy", "no",
        "--disable_tqdm", "true",
    ])
    recipe.main(script_args, training_args, model_args)
    record = json.loads((output_dir / "objectives.json").read_text())
    assert record["trainer"] == "dpo:per_objective" and record["steering"] == "adapter"
    margins = record["evaluation"]
    with capsys.disabled():
        print("\n" + ", ".join(f"{k} {v:+.3f}" for k, v in margins.items() if k.endswith("/after")))
    for name in ("conciseness", "sentiment"):
        for weight in ("conciseness", "sentiment"):  # the adapter starts at 0 (U = 0): no weight moves the base
            assert margins[f"rewards/margins_{name} at {weight}=1/before"] == 0.0
    for name in ("conciseness", "sentiment"):  # trained, the adapter scores under the weights it is given
        assert abs(margins[f"rewards/margins_{name} at conciseness=1/after"]
                   - margins[f"rewards/margins_{name} at sentiment=1/after"]) > 1e-3
    assert (output_dir / "preference_adapter" / "preference_adapter.json").exists()
