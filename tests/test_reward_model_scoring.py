"""The K-head reward model as a plain transformers checkpoint, and the scoring API the GRPO trainer calls."""

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from alignment import RewardSource, RewardVectorBuilder
from alignment.models.packaged import PACKAGED_MINILM
from reward_models.modeling import (
    add_lora,
    build_reward_model,
    head_statistics,
    load_reward_tokenizer,
    merge_lora,
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
                          [short, "Once upon a time there was a dragon who lived in a castle by the sea."],
                          normalize=False)
    assert torch.allclose(alone[0], padded[0], atol=1e-5)


def test_normalized_scores_use_the_statistics_stored_in_the_config(decoder_reward_model):
    scorer = MultiHeadRewardScorer.from_pretrained(str(decoder_reward_model), device="cpu", batch_size=2)
    prompts, completions = ["Hi", "How are you?", "Bye"], ["Hello!", "Fine, thanks.", "Goodbye."]
    raw = scorer.score(prompts, completions, normalize=False)
    assert raw.shape == (3, len(HEADS)) and not raw.requires_grad
    assert torch.allclose(scorer.score(prompts, completions), (raw - MEAN) / STD, atol=1e-6)


def test_placeholder_statistics_are_recorded_as_unmeasured_and_scoring_with_them_warns(tiny_policy_path, tmp_path,
                                                                                         caplog):
    import logging

    tokenizer = load_reward_tokenizer(str(tiny_policy_path))
    model = build_reward_model(str(tiny_policy_path), HEADS, tokenizer, max_length=64)
    assert model.config.reward_head_stats_measured is False and head_statistics(model.config) is None
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    scorer = MultiHeadRewardScorer.from_pretrained(str(tmp_path), device="cpu")
    with caplog.at_level(logging.WARNING, logger="reward_models.scoring"):
        normalized = scorer.score(["Hi"], ["Hello!"])
    assert "placeholders 0/1 and were never measured" in caplog.text and "RAW head scores" in caplog.text
    assert torch.equal(normalized, scorer.score(["Hi"], ["Hello!"], normalize=False))
    set_head_statistics(model.config, MEAN, STD)  # measured: recorded, and used
    assert model.config.reward_head_stats_measured is True and head_statistics(model.config) is not None


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


def test_each_column_is_its_named_head_whatever_the_models_head_order(decoder_reward_model, tmp_path):
    """The same heads saved in another order (score rows and id2label permuted): every objective reads the same
    values, so columns follow names, never positions."""
    model = AutoModelForSequenceClassification.from_pretrained(decoder_reward_model)
    order = [2, 0, 1]
    with torch.no_grad():
        model.score.weight.copy_(model.score.weight[order].clone())
    model.config.id2label = {i: HEADS[k] for i, k in enumerate(order)}
    model.config.label2id = {name: i for i, name in model.config.id2label.items()}
    set_head_statistics(model.config, MEAN[order], STD[order])
    model.save_pretrained(tmp_path)
    load_reward_tokenizer(str(decoder_reward_model)).save_pretrained(tmp_path)
    objectives = {"a": "harmless", "b": "factuality", "c": "helpful"}
    prompts, completions = ["Hi", "Why?"], ["Hello there!", "Because."]
    original = load_reward_model_source(str(decoder_reward_model), objectives, device="cpu")(prompts, completions)
    permuted = load_reward_model_source(str(tmp_path), objectives, device="cpu")(prompts, completions)
    torch.testing.assert_close(permuted, original, atol=1e-5, rtol=1e-5)
    assert (original[:, 0] - original[:, 1]).abs().max() > 1e-3  # the heads differ, so a mix-up would show


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


def test_lora_reward_model_merges_into_a_plain_checkpoint_with_the_same_scores(tiny_policy_path, tmp_path):
    from trl import ModelConfig

    tokenizer = load_reward_tokenizer(str(tiny_policy_path))
    torch.manual_seed(0)
    model = build_reward_model(str(tiny_policy_path), HEADS, tokenizer, max_length=64)
    lora = add_lora(model, ModelConfig(use_peft=True, lora_r=4, lora_alpha=8, lora_target_modules=["q_proj", "v_proj"]))
    trainable = {name for name, parameter in lora.named_parameters() if parameter.requires_grad}
    assert any("lora_" in name for name in trainable) and any("score" in name for name in trainable)
    texts = ["Human: hi\n\nAssistant: hello there", "Human: help me\n\nAssistant: no"]
    inputs = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        base_scores = lora.eval()(**inputs).logits
        for name, parameter in lora.named_parameters():  # a trained adapter, not a fresh one (B = 0 is a no-op)
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
        adapted_scores = lora(**inputs).logits
    assert (adapted_scores - base_scores).abs().max() > 1e-2
    merge_lora(lora).save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert not any("lora" in name for name, _ in reloaded.named_parameters())
    assert reloaded.config.num_labels == len(HEADS)
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**inputs).logits, adapted_scores, atol=1e-4, rtol=1e-4)


def test_evaluation_script_metrics_match_hand_computed_values_on_a_fixed_scorer(decoder_reward_model, tmp_path):
    """A scorer whose every head scores a text by its number of '§': accuracy, Spearman and MSE are known by hand.
    The same `per_head_metrics` computes the reward-model trainer's evaluation metrics."""
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    from evaluate_reward_model import evaluate_source

    from reward_models.data import load_pairwise_source, load_rated_source

    scorer = MultiHeadRewardScorer.from_pretrained(str(decoder_reward_model), device="cpu")
    scorer.score = lambda prompts, texts, normalize=True: torch.tensor(  # noqa: E731
        [[float(text.count("§"))] * len(HEADS) for text in texts])
    pairs, rated = tmp_path / "pairs.jsonl", tmp_path / "rated.jsonl"
    # chosen wins, wins, loses, ties (ties count half): accuracy (1 + 1 + 0 + 0.5) / 4
    pairs.write_text("".join(json.dumps({"prompt": "Hi", "chosen": c, "rejected": r}) + "\n" for c, r in
                             [("§§", "§"), ("§§§", "§"), ("§", "§§"), ("§a", "§b")]))
    # scores 1, 2, 3, 4 against ratings 0, -1, -2, -3: Spearman -1, MSE mean(1, 9, 25, 49) = 21
    rated.write_text("".join(json.dumps({"completion": "§" * (i + 1), "ratings": {"factuality": -i}}) + "\n"
                             for i in range(4)))
    pair_metrics = evaluate_source(scorer, "pairs", load_pairwise_source(f"harmless={pairs}", scorer.head_names))
    rated_metrics = evaluate_source(scorer, "rated", load_rated_source(str(rated), scorer.head_names, [-10, 0]))
    import math

    import numpy as np

    spread = np.std([2, 3, 1, 1, 1, 1, 2, 1], ddof=1)  # every text once: chosen (2, 3, 1, 1), rejected (1, 1, 2, 1)
    softplus = lambda x: math.log1p(math.exp(x))  # noqa: E731  -log sigmoid(gap) = softplus(-gap); gaps 1, 2, -1, 0
    assert pair_metrics == pytest.approx({
        "accuracy_harmless": 0.625, "accuracy_se_harmless": math.sqrt(0.625 * 0.375 / 4), "pairs_harmless": 4,
        "bt_loss_harmless": (softplus(-1) + softplus(-2) + softplus(1) + softplus(0)) / 4,
        **{f"score_std_{head}": spread for head in HEADS}})
    assert rated_metrics == pytest.approx({"spearman_factuality": -1.0, "mse_factuality": 21.0, "rated_factuality": 4,
                                           **{f"score_std_{head}": np.std([1, 2, 3, 4], ddof=1) for head in HEADS}})


def test_per_head_metrics_match_hand_computed_values():
    import math

    import numpy as np

    from reward_models.metrics import per_head_metrics

    # Head 0: pairs with gaps +1, -2, 0, +3 -> accuracy (1 + 0 + 0.5 + 1) / 4; head 1: two rated rows.
    predictions = np.array([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [2.0, 0.0]], [[1.0, 0.0], [1.0, 0.0]],
                            [[3.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]], [[0.0, 3.0], [0.0, 3.0]]])
    labels = np.zeros((6, 3, 2))
    labels[:4, 0, 0] = 1
    labels[4:, 1, 1], labels[4:, 2, 1] = [-1.0, 0.0], 1
    metrics = per_head_metrics(predictions, labels, ["helpful", "factuality"])
    assert metrics["accuracy_helpful"] == 0.625
    assert metrics["accuracy_se_helpful"] == pytest.approx(math.sqrt(0.625 * 0.375 / 4))
    softplus = lambda x: math.log1p(math.exp(x))  # noqa: E731  -log sigmoid(g) = softplus(-g)
    assert metrics["bt_loss_helpful"] == pytest.approx((softplus(-1) + softplus(2) + softplus(0) + softplus(-3)) / 4)
    assert metrics["spearman_factuality"] == pytest.approx(1.0)
    assert metrics["mse_factuality"] == pytest.approx(((1 + 1) ** 2 + 3 ** 2) / 2)
    # score spread over every text scored once: firsts of all rows, seconds of the pairs
    head_0_texts = [1, 0, 1, 3, 0, 0, 0, 2, 1, 0]
    assert metrics["score_std_helpful"] == pytest.approx(np.std(head_0_texts, ddof=1))


def test_evaluation_compares_joint_and_single_head_models_with_paired_errors(decoder_reward_model, tiny_policy_path,
                                                                              tmp_path):
    """main() on a saved joint model and saved single-head models (reused, not trained): numbers match a direct
    scoring of the same pairs, the paired SE is the SE of the per-pair difference, and JSON + PNG are written."""
    import json
    import sys

    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import evaluate_reward_model

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": f"Question {i}?", "chosen": f"Answer {i} " * (i % 3 + 1),
                                         "rejected": f"No {i}."}) + "\n" for i in range(12)))
    singles = tmp_path / "singles"
    for seed, head in enumerate(HEADS):
        torch.manual_seed(10 + seed)
        tokenizer = load_reward_tokenizer(str(tiny_policy_path))
        single = build_reward_model(str(tiny_policy_path), [head], tokenizer, max_length=64)
        single.save_pretrained(singles / head)
        tokenizer.save_pretrained(singles / head)
    config = tmp_path / "recipe.yaml"  # the recipe config: its evaluation files are the defaults
    config.write_text(f"heads: {HEADS}\npairwise_eval_files: ['harmless={pairs}']\n")
    output = tmp_path / "eval" / "eval.json"
    results = evaluate_reward_model.main(["--model", str(decoder_reward_model), "--config", str(config),
                                          "--train_single_heads", "--single_dir", str(singles),
                                          "--output", str(output)])
    assert json.loads(output.read_text())["comparison"] == results["comparison"]
    assert output.with_suffix(".png").stat().st_size > 1000

    def outcomes(path, head):
        scorer = MultiHeadRewardScorer.from_pretrained(str(path), device="cpu")
        prompts = [f"Question {i}?" for i in range(12)]
        chosen = scorer.score(prompts, [f"Answer {i} " * (i % 3 + 1) for i in range(12)], normalize=False)
        rejected = scorer.score(prompts, [f"No {i}." for i in range(12)], normalize=False)
        gap = (chosen - rejected)[:, scorer.head_names.index(head)].numpy()
        return (gap > 0) + 0.5 * (gap == 0)

    joint, single = outcomes(decoder_reward_model, "harmless"), outcomes(singles / "harmless", "harmless")
    assert results["joint"]["harmless"]["accuracy"] == pytest.approx(joint.mean())
    assert results["single"]["harmless"]["accuracy"] == pytest.approx(single.mean())
    assert "accuracy" not in results["joint"]["helpful"]  # no helpful pairs were given
    row = results["comparison"]["harmless"]
    assert row["accuracy_difference"] == pytest.approx((joint - single).mean())
    assert row["accuracy_difference_se"] == pytest.approx(np.std(joint - single, ddof=1) / np.sqrt(12))
    assert row["joint_within_one_se"] == (joint.mean()
                                          >= single.mean() - np.sqrt(joint.mean() * (1 - joint.mean()) / 12))
