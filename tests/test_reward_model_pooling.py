"""The mean-pooling layer: a plain BERT checkpoint whose [CLS] reads the mean of the token states, and whose scores
after training are the same whether they come from the trainer or from a plain `from_pretrained` reload."""

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification

from alignment.models.packaged import PACKAGED_MINILM
from reward_models.modeling import (
    append_mean_pooling_layer,
    freeze_lower_layers,
    load_reward_tokenizer,
    supports_mean_pooling_layer,
)

TEXTS = ["Human: How do I bake bread?\n\nAssistant: Mix flour, water and yeast, knead, let it rise, then bake.",
         "Human: Hi\n\nAssistant: Hello!"]  # different lengths: the short one is padded


@pytest.fixture(scope="module")
def tokenizer():
    return load_reward_tokenizer(PACKAGED_MINILM)


def tiny_bert(tokenizer, seed: int, heads=("helpful", "harmless")) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=128, num_labels=len(heads),
                        id2label=dict(enumerate(heads)), label2id={h: i for i, h in enumerate(heads)},
                        problem_type="regression", pad_token_id=tokenizer.pad_token_id)
    return BertForSequenceClassification(config).eval()


@pytest.mark.parametrize("seed", [0, 1])
def test_cls_of_the_appended_layer_is_the_layer_norm_of_the_mean_of_real_tokens(tokenizer, seed):
    model = tiny_bert(tokenizer, seed)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        states = model.bert(**batch).last_hidden_state  # the encoder's own output, before the new layer
        mask = batch["attention_mask"].unsqueeze(-1).float()
        expected = F.layer_norm((states * mask).sum(1) / mask.sum(1), (32,))  # padding excluded, as in mean pooling
        append_mean_pooling_layer(model, residual_scale=1000.0)
        cls = model.bert(**batch).last_hidden_state[:, 0]
    assert model.config.num_hidden_layers == 3
    assert torch.allclose(cls, expected, atol=5e-3)
    # the short text's [CLS] must not see its padding: averaging over the padded length would move it far
    padded_mean = F.layer_norm(states.mean(1), (32,))
    assert (cls[1] - padded_mean[1]).abs().max() > 0.05


def test_pooler_reads_the_mean_and_heads_stay_distinct(tokenizer):
    model = tiny_bert(tokenizer, 0)
    append_mean_pooling_layer(model, pooler_scale=0.5)
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        cls = model.bert(**batch).last_hidden_state[:, 0]
        pooled = model.bert(**batch).pooler_output
    assert torch.allclose(pooled, torch.tanh(0.5 * cls), atol=1e-6)


def test_decoders_are_not_given_a_pooling_layer(tiny_policy_path, tokenizer):
    decoder = AutoModelForSequenceClassification.from_pretrained(tiny_policy_path, num_labels=2)
    assert supports_mean_pooling_layer(tiny_bert(tokenizer, 0)) and not supports_mean_pooling_layer(decoder)
    with pytest.raises(ValueError, match="BERT-style encoder"):
        append_mean_pooling_layer(decoder)


def test_freeze_lower_layers_leaves_only_the_top_trainable(tokenizer):
    model = tiny_bert(tokenizer, 0)
    append_mean_pooling_layer(model)
    freeze_lower_layers(model, 2)
    trainable = {name.split(".")[3] if ".layer." in name else name.split(".")[1]
                 for name, p in model.named_parameters() if p.requires_grad and name.startswith("bert.")}
    assert trainable == {"2", "pooler"}  # the appended layer (index 2) and the pooler; embeddings and 0-1 frozen
    assert model.classifier.weight.requires_grad
    with pytest.raises(ValueError, match="freeze_layers=9"):
        freeze_lower_layers(model, 9)


def test_trained_checkpoint_scores_the_same_through_plain_from_pretrained(tokenizer, tmp_path):
    """Train a few steps with the trainer, save, reload with the plain auto class: identical scores and head names."""
    from datasets import Dataset

    from reward_models.scoring import score_texts
    from reward_models.trainer import MultiHeadRewardConfig, MultiHeadRewardTrainer

    model = tiny_bert(tokenizer, 0)
    append_mean_pooling_layer(model)
    rows = {"first": ["Assistant: sure, here is how", "Assistant: thanks"] * 4,
            "second": ["Assistant: no", "Assistant: go away"] * 4,
            "pair_mask": [[1.0, 0.0], [0.0, 1.0]] * 4, "pair_margin": [1.0] * 8,
            "rating": [[0.0, 0.0]] * 8, "rating_mask": [[0.0, 0.0]] * 8, "length": [30] * 8}
    args = MultiHeadRewardConfig(output_dir=str(tmp_path / "run"), max_length=32, per_device_train_batch_size=4,
                                 learning_rate=1e-2, num_train_epochs=2, save_strategy="no", report_to="none",
                                 use_cpu=True, disable_tqdm=True, normalization_samples=8)
    trainer = MultiHeadRewardTrainer(model=model, args=args, train_dataset=Dataset.from_dict(rows),
                                     processing_class=tokenizer)
    before = model.bert.encoder.layer[-1].attention.self.query.weight.detach().clone()
    trainer.train()
    assert not torch.equal(before, model.bert.encoder.layer[-1].attention.self.query.weight)  # it trains
    trainer.save_model(str(tmp_path / "saved"))
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved")
    assert reloaded.config.id2label == {0: "helpful", 1: "harmless"} and reloaded.config.num_hidden_layers == 3
    expected = score_texts(trainer.model, tokenizer, TEXTS, max_length=32)
    assert torch.allclose(score_texts(reloaded, tokenizer, TEXTS, max_length=32), expected, atol=1e-5)
