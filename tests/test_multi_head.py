"""Multi-head policy: head mixing is exact at the corners and linear in between; checkpoints round-trip."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignment import add_lm_heads, generate_with_weights, load_multi_head_model
from alignment.models.multi_head import HeadMixingLogitsProcessor, head_modules, mixed_heads, save_multi_head_model


@pytest.fixture()
def two_head_model(tiny_policy_path):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_policy_path).eval()
    add_lm_heads(model, ["helpful", "harmless"])
    with torch.no_grad():  # make the heads differ, as after training
        head_modules(model)[1].weight.add_(0.05 * torch.randn_like(head_modules(model)[1].weight))
    return model


@pytest.fixture()
def prompt_ids(tiny_policy_path):
    tokenizer = AutoTokenizer.from_pretrained(tiny_policy_path)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "How do I bake bread?"}],
                                         tokenize=False, add_generation_prompt=True)
    return tokenizer(text, return_tensors="pt")


def per_head_logits(model, inputs):
    with torch.no_grad():
        hidden = model.base_model(**inputs).last_hidden_state
        return [head(hidden) for head in head_modules(model)]


def test_a_deep_copy_scores_with_its_own_heads(two_head_model, prompt_ids):
    """TRL may deepcopy a policy into its reference model: the copy's per-head forward must read the copy's heads."""
    import copy

    inputs = {**prompt_ids, "labels": prompt_ids["input_ids"], "head_ids": torch.tensor([1])}
    copied = copy.deepcopy(two_head_model)
    with torch.no_grad():
        before = two_head_model(**inputs).log_probs
        torch.testing.assert_close(copied(**inputs).log_probs, before)
        head_modules(copied)[1].weight.mul_(3.0)  # change only the copy
        changed = copied(**inputs).log_probs
        after = two_head_model(**inputs).log_probs
    assert (changed - before).abs().max() > 1e-3 and torch.equal(after, before)
    assert type(copied).__name__ == type(two_head_model).__name__ == "Qwen2ForCausalLM"
    assert "forward" not in vars(two_head_model)  # no instance-level patch left over


def test_adding_heads_unties_them_from_the_input_embedding(two_head_model):
    heads = head_modules(two_head_model)
    embedding = two_head_model.get_input_embeddings().weight
    assert all(head.weight is not embedding for head in heads)
    assert not two_head_model.config.tie_word_embeddings


def test_weight_one_on_a_head_reproduces_that_heads_logits_exactly(two_head_model, prompt_ids):
    expected = per_head_logits(two_head_model, prompt_ids)
    assert not torch.equal(expected[0], expected[1])
    for index, weights in enumerate(["helpful=1,harmless=0", "helpful=0,harmless=1"]):
        with torch.no_grad(), mixed_heads(two_head_model, weights):
            mixed = two_head_model(**prompt_ids).logits
        assert torch.equal(mixed, expected[index])


def test_intermediate_weights_interpolate_the_heads_logits(two_head_model, prompt_ids):
    z0, z1 = per_head_logits(two_head_model, prompt_ids)
    with torch.no_grad(), mixed_heads(two_head_model, [0.3, 0.7]):
        mixed = two_head_model(**prompt_ids).logits
    assert torch.allclose(mixed, 0.3 * z0 + 0.7 * z1, atol=1e-5)
    assert not torch.allclose(mixed, z0, atol=1e-3) and not torch.allclose(mixed, z1, atol=1e-3)


def test_per_row_weights_mix_each_row_with_its_own_weights(two_head_model, prompt_ids):
    batch = {k: v.repeat(2, 1) for k, v in prompt_ids.items()}
    z0, z1 = per_head_logits(two_head_model, batch)
    weights = torch.tensor([[1.0, 0.0], [0.25, 0.75]])
    with torch.no_grad(), mixed_heads(two_head_model, weights):
        mixed = two_head_model(**batch).logits
    assert torch.allclose(mixed[0], z0[0], atol=1e-6)
    assert torch.allclose(mixed[1], 0.25 * z0[1] + 0.75 * z1[1], atol=1e-5)


def test_processor_outside_its_with_block_fails_loudly(two_head_model, prompt_ids):
    processor = HeadMixingLogitsProcessor(two_head_model, "helpful=0.5,harmless=0.5")
    with pytest.raises(RuntimeError, match="not active"):
        two_head_model.generate(**prompt_ids, max_new_tokens=2, do_sample=False, logits_processor=[processor])


def test_unknown_head_weights_are_rejected_by_the_weights_parser(two_head_model):
    from alignment.objectives.weights import PreferenceWeightsError

    with pytest.raises(PreferenceWeightsError, match="unknown objective"):
        HeadMixingLogitsProcessor(two_head_model, "helpful=0.5,concise=0.5")


def test_save_load_round_trips_every_head_and_plain_transformers_loads_the_chosen_head(two_head_model, prompt_ids,
                                                                                      tmp_path):
    expected = per_head_logits(two_head_model, prompt_ids)
    save_multi_head_model(two_head_model, tmp_path / "mah", plain_head="harmless")

    reloaded = load_multi_head_model(tmp_path / "mah").eval()
    for before, after in zip(expected, per_head_logits(reloaded, prompt_ids)):
        assert torch.equal(before, after)

    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "mah").eval()
    assert not hasattr(plain, "extra_lm_heads")
    with torch.no_grad():
        assert torch.equal(plain(**prompt_ids).logits, expected[1])

    # greedy generation mixed with weight 1 on 'harmless' is the plain checkpoint's own generation
    mixed = generate_with_weights(reloaded, "harmless=1", **prompt_ids, max_new_tokens=12, do_sample=False)
    assert torch.equal(mixed, plain.generate(**prompt_ids, max_new_tokens=12, do_sample=False))
