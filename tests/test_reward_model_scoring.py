"""The K-head reward model as a plain transformers checkpoint, and the scoring API the GRPO trainer calls."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from alignment.objectives import RewardSource
from alignment.packaged_models import PACKAGED_MINILM
from alignment.reward_vector import RewardVectorBuilder
from reward_models.modeling import (
    add_lora, build_reward_model, head_statistics, load_reward_tokenizer, merge_lora,
    set_head_statistics,
)
from reward_models.scoring import MultiHeadRewardScorer, load_reward_model_source

HEADS = ["helpful", "harmless", "factuality"]
MEAN, STD = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([2.0, 0.5, 1.0])


def save_reward_model(backbone: str, output_dir: Path) -> Path:
    torch.manual_seed(0)
    tokenizer = load_reward_tokenizer(backbone)
    model = build_reward_model(backbone, HEADS, tokenizer, head_kinds={"helpful": "pairwise"}, max_length=64)
    set_head_statistics(model.config, MEAN, STD)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


@pytest.fixture(scope="module")
def decoder_reward_model(tiny_policy_path, tmp_path_factory) -> Path:
    return save_reward_model(str(tiny_policy_path), tmp_path_factory.mktemp("decoder_rm"))


def test_decoder_checkpoint_loads_with_plain_auto_class(decoder_reward_model):
    assert (decoder_reward_model / "model.safetensors").exists()
    model = AutoModelForSequenceClassification.from_pretrained(decoder_reward_model)  # no custom code, no remote code
    assert [model.config.id2label[i] for i in range(3)] == HEADS
    mean, std = head_statistics(model.config)
    assert torch.allclose(mean, MEAN) and torch.allclose(std, STD)
    assert model.config.reward_head_kinds == {"helpful": "pairwise"} and model.config.reward_max_length == 64


def test_encoder_checkpoint_round_trips_scores_through_plain_auto_class(tmp_path):
    saved = save_reward_model(PACKAGED_MINILM, tmp_path / "encoder_rm")
    scorer = MultiHeadRewardScorer.from_pretrained(str(saved), device="cpu")
    reloaded = AutoModelForSequenceClassification.from_pretrained(saved).eval()
    texts = ["Human: How do I bake bread?\n\nAssistant: Mix flour, water, yeast; knead; bake."]
    with torch.no_grad():
        expected = reloaded(**scorer.tokenizer(texts, return_tensors="pt")).logits
    assert torch.allclose(scorer.score(None, texts, normalize=False), expected, atol=1e-5)


def test_decoder_scores_the_last_real_token_whatever_the_padding(decoder_reward_model):
    scorer = MultiHeadRewardScorer.from_pretrained(str(decoder_reward_model), device="cpu")
    short = "Thanks, that helps."
    alone = scorer.score(["Hi"], [short], normalize=False)
    padded = scorer.score(["Hi", "Tell me a long story about dragons and castles"],
                          [short, "Once upon a time there was a dragon who lived in a castle by the sea."], normalize=False)
    assert torch.allclose(alone[0], padded[0], atol=1e-5)


def test_normalized_scores_use_the_statistics_stored_in_the_config(decoder_reward_model):
    scorer = MultiHeadRewardScorer.from_pretrained(str(decoder_reward_model), device="cpu", batch_size=2)
    prompts, completions = ["Hi", "How are you?", "Bye"], ["Hello!", "Fine, thanks.", "Goodbye."]
    raw = scorer.score(prompts, completions, normalize=False)
    assert raw.shape == (3, len(HEADS)) and not raw.requires_grad
    assert torch.allclose(scorer.score(prompts, completions), (raw - MEAN) / STD, atol=1e-6)


def test_source_scores_all_requested_heads_in_one_forward_per_batch(decoder_reward_model):
    source = load_reward_model_source(str(decoder_reward_model), {"safe": "harmless", "helpful": "helpful"},
                                      device="cpu", batch_size=2)
    forward_calls = []
    source.scorer.model.register_forward_hook(lambda module, inputs, output: forward_calls.append(1))
    completions = ["a", "b", "c", "d", "e"]
    scores = source(["p"] * 5, completions)
    assert scores.shape == (5, 2) and len(forward_calls) == 3  # ceil(5 / 2) batches, not one pass per head
    full = source.scorer.score(["p"] * 5, completions)
    assert torch.allclose(scores, full[:, [1, 0]])  # columns follow the objectives, not the model's head order


def test_source_is_a_reward_source_and_feeds_the_reward_vector_builder(decoder_reward_model):
    source = load_reward_model_source(str(decoder_reward_model), {"helpful": "helpful", "harmless": "harmless"},
                                      device="cpu")
    assert isinstance(source, RewardSource) and source.objective_names == ["helpful", "harmless"]
    prompts = [[{"role": "user", "content": "Can you help me?"}]] * 2  # TRL's conversational form
    completions = [[{"role": "assistant", "content": "Sure."}], [{"role": "assistant", "content": "No."}]]
    reward_vector, dropped = RewardVectorBuilder(["harmless", "helpful"], [source])(prompts, completions)
    assert reward_vector.shape == (2, 2) and not dropped.any()


def test_unknown_head_label_error_lists_the_model_heads(decoder_reward_model):
    with pytest.raises(ValueError, match=r"\['honesty'\] not found.*\['helpful', 'harmless', 'factuality'\]"):
        load_reward_model_source(str(decoder_reward_model), {"honest": "honesty"}, device="cpu")


def test_lora_reward_model_merges_into_a_plain_checkpoint(tiny_policy_path, tmp_path):
    from trl import ModelConfig

    tokenizer = load_reward_tokenizer(str(tiny_policy_path))
    model = build_reward_model(str(tiny_policy_path), HEADS, tokenizer)
    lora = add_lora(model, ModelConfig(use_peft=True, lora_r=4, lora_alpha=8, lora_target_modules=["q_proj", "v_proj"]))
    trainable = {name for name, parameter in lora.named_parameters() if parameter.requires_grad}
    assert any("lora_" in name for name in trainable) and any("score" in name for name in trainable)
    merge_lora(lora).save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert not any("lora" in name for name, _ in reloaded.named_parameters())
    assert reloaded.config.num_labels == len(HEADS)


def test_evaluation_script_reports_accuracy_for_pairs_and_correlation_for_ratings(decoder_reward_model, tmp_path):
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    from evaluate_reward_model import evaluate_source

    from reward_models.data import load_pairwise_source, load_rated_source

    pairs, rated = tmp_path / "pairs.jsonl", tmp_path / "rated.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": "Hi", "chosen": f"Hello {i}!", "rejected": "Go away."}) + "\n"
                             for i in range(4)))
    rated.write_text("".join(json.dumps({"completion": "x" * (i + 1), "ratings": {"factuality": -i}}) + "\n"
                             for i in range(4)))
    scorer = MultiHeadRewardScorer.from_pretrained(str(decoder_reward_model), device="cpu")
    pair_metrics = evaluate_source(scorer, "pairs", load_pairwise_source(f"harmless={pairs}", scorer.head_names))
    rated_metrics = evaluate_source(scorer, "rated", load_rated_source(str(rated), scorer.head_names, [-10, 0]))
    assert set(pair_metrics) == {"accuracy_harmless", "pairs_harmless"} and pair_metrics["pairs_harmless"] == 4
    assert set(rated_metrics) == {"spearman_factuality", "mse_factuality", "rated_factuality"}
