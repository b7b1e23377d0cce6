"""Inference-time steering on tiny models: weight 1 reproduces the single-objective model exactly, and intermediate
weights move the measured reply length (the `conciseness` objective) the requested way.

Two behaviours to steer between are made cheaply and honestly: a few fine-tuning steps of the tiny policy toward the
short HH-RLHF assistant replies ("conciseness") and toward the long ones ("verbosity"). Head mixing trains two heads
of one trunk the same way. Prompt conditioning is checked for writing the trained format (see its fixture).
"""

import json
import random

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignment import (
    PreferenceWeightsError,
    SteeringError,
    add_lm_heads,
    build_record,
    condition_prompt,
    load_steerable,
    save_record,
)
from alignment.data import resolve_data
from alignment.data.jsonl import iter_jsonl
from alignment.models.multi_head import head_logits, mixed_heads, save_multi_head_model
from alignment.models.tiny_policy import hh_dialogue_turns
from alignment.steering import HeadMixing, LogProbMixture, PromptConditioned
from reward_models.verifiable import conciseness

NAMES = ["conciseness", "verbosity"]
SHORT, LONG = (0.8, 0.2), (0.2, 0.8)
# Pooled length ratios (weights on conciseness / on verbosity) the direction tests must beat; measured on seeds 0
# and 1: MOD 0.40, soup 0.34, head mixing 0.53
RATIO_MOD, RATIO_SOUP, RATIO_HEAD_MIXING = 0.6, 0.6, 0.75


pytestmark = pytest.mark.usefixtures("one_thread_per_module")


@pytest.fixture(scope="module")
def prompts():
    return [row["prompt"] for _, (_, row) in zip(range(16), iter_jsonl(resolve_data("hh-prompts")))]


@pytest.fixture(scope="module")
def replies():
    turns = hh_dialogue_turns(limit=4000)
    return {"short": [t for t in turns if len(t[1]) < 40], "long": [t for t in turns if len(t[1]) > 250]}


def chat(tokenizer, human, assistant, system=None):
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": human}, {"role": "assistant", "content": assistant}]
    return tokenizer.apply_chat_template(messages, tokenize=False)


def finetune(model, tokenizer, texts, steps=15, head_ids=None, seed=0):
    """A few language-modelling steps on `texts` (rows scored by head `head_ids[i]` when given)."""
    generator = random.Random(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    for _ in range(steps):
        rows = generator.sample(range(len(texts)), 8)
        batch = tokenizer([texts[i] for i in rows], return_tensors="pt", padding=True, truncation=True, max_length=96)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        if head_ids is None:
            loss = model(**batch, labels=labels).loss
        else:
            log_probs = model(**batch, labels=labels, head_ids=torch.tensor([head_ids[i] for i in rows])).log_probs
            loss = -log_probs.sum() / (labels[:, 1:] != -100).sum()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def mean_length(completions):
    return -sum(conciseness(None, completions)) / len(completions) * 100


@pytest.fixture(scope="module")
def policies(tiny_policy_path, replies, tmp_path_factory):
    """{objective: path} of two single-objective checkpoints: short replies and long replies."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_policy_path)
    root = tmp_path_factory.mktemp("policies")
    paths = {}
    for name, kind in zip(NAMES, ("short", "long")):
        model = AutoModelForCausalLM.from_pretrained(tiny_policy_path)
        finetune(model, tokenizer, [chat(tokenizer, h, a) for h, a in replies[kind]])
        paths[name] = root / name
        model.save_pretrained(paths[name])
        tokenizer.save_pretrained(paths[name])
        record = build_record(trainer="sft", base_model=str(tiny_policy_path),
                              objectives=[{"name": n, "source": "test", "threshold": None} for n in NAMES],
                              weights={n: float(n == name) for n in NAMES})
        save_record(paths[name], record)
    return paths


# ------------------------------------------------------------------------------------------------ weights

def test_invalid_weights_are_rejected_with_clear_errors(policies, prompts):
    steerable = load_steerable([str(p) for p in policies.values()])  # objective names read from each record
    assert steerable.objective_names == NAMES
    cases = {"helpful=1": "unknown objective", "conciseness=-1,verbosity=2": ">= 0",
             "conciseness=0,verbosity=0": "all weights are zero", "0.5,0.3,0.2": "3 weights for 2 objectives"}
    for weights, message in cases.items():
        with pytest.raises(PreferenceWeightsError, match=message):
            steerable.generate(prompts[:1], weights)


def test_unknown_method_and_unsteerable_checkpoint_are_refused(policies):
    with pytest.raises(SteeringError, match="unknown steering method"):
        load_steerable(str(policies["conciseness"]), method="magic")
    with pytest.raises(SteeringError, match="steering 'none'"):
        load_steerable(str(policies["conciseness"]))


# ------------------------------------------------------------------------------------------------ MOD

def test_mod_weight_one_reproduces_that_policy(policies, prompts):
    steerable = load_steerable(policies, method="mod")
    assert isinstance(steerable, LogProbMixture)
    model = AutoModelForCausalLM.from_pretrained(policies["verbosity"]).eval()
    inputs = steerable.encode(prompts[:4])
    with torch.no_grad():
        expected = torch.log_softmax(model(**inputs).logits[:, -1].float(), dim=-1)
        greedy = model.generate(**inputs, max_new_tokens=12, do_sample=False,
                                pad_token_id=steerable.tokenizer.pad_token_id)
    torch.testing.assert_close(steerable.next_token_log_probs(prompts[:4], "verbosity=1"), expected, atol=1e-5, rtol=0)
    # the cached decoding loop follows the same tokens as transformers' generate
    assert steerable.generate(prompts[:4], [0, 1], max_new_tokens=12, do_sample=False) == steerable.decode(
        greedy[:, inputs["input_ids"].shape[1]:])


def assert_shorter_with_weight_on_conciseness(steerable, prompts, method: str, ratio: float) -> None:
    """Direction test on 2 seeds x 16 prompts: the mean reply length (chars) with the weight on conciseness is below
    the one with the weight on verbosity for each seed, and the pooled ratio is below `ratio` (set from the
    measured ratios with room for noise, far below what a method that ignores the weights produces by chance)."""
    shorts, longs = [], []
    for seed in (0, 1):
        shorts.append(mean_length(steerable.generate(prompts, SHORT, max_new_tokens=40, seed=seed)))
        longs.append(mean_length(steerable.generate(prompts, LONG, max_new_tokens=40, seed=seed)))
    print(f"{method} mean reply length per seed: weights {SHORT} -> {shorts}, {LONG} -> {longs}; "
          f"ratio {sum(shorts) / sum(longs):.2f}")
    assert all(short < long for short, long in zip(shorts, longs))
    assert sum(shorts) < ratio * sum(longs)


def test_mod_weight_on_conciseness_shortens_replies(policies, prompts):
    assert_shorter_with_weight_on_conciseness(load_steerable(policies, method="mod"), prompts, "MOD", ratio=RATIO_MOD)


# ------------------------------------------------------------------------------------------------ soups

def test_soup_weight_one_reproduces_that_checkpoint(policies):
    steerable = load_steerable(policies, method="soup")
    reference = AutoModelForCausalLM.from_pretrained(policies["conciseness"]).state_dict()
    soup = steerable.soup_state_dict(steerable.parse_weights("conciseness=1"))
    for name, tensor in reference.items():
        assert torch.equal(soup[name], tensor), name
    other = AutoModelForCausalLM.from_pretrained(policies["verbosity"]).state_dict()
    half = steerable.soup_state_dict(steerable.parse_weights("1,1"))
    torch.testing.assert_close(half["model.norm.weight"],
                               (reference["model.norm.weight"] + other["model.norm.weight"]) / 2)


def test_soup_weight_on_conciseness_shortens_replies(policies, prompts):
    assert_shorter_with_weight_on_conciseness(load_steerable(policies, method="soup"), prompts, "soup",
                                              ratio=RATIO_SOUP)


@pytest.fixture(scope="module")
def adapters(tiny_policy_path, tmp_path_factory, random_lora):
    """Two LoRA adapters of the tiny policy (random low-rank updates: the test is about exact combination)."""
    root = tmp_path_factory.mktemp("adapters")
    paths = {}
    for seed, name in enumerate(NAMES):
        paths[name] = root / name
        random_lora(seed).save_pretrained(paths[name])
        AutoTokenizer.from_pretrained(tiny_policy_path).save_pretrained(paths[name])
    return paths


def test_lora_soup_and_mod_with_weight_one_reproduce_that_adapter(adapters, prompts, tiny_policy_path):
    from peft import PeftModel

    single = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_policy_path),
                                       str(adapters["verbosity"])).eval()
    soup = load_steerable(adapters, method="soup")
    inputs = soup.encode(prompts[:4])
    with torch.no_grad():
        expected = torch.log_softmax(single(**inputs).logits[:, -1].float(), dim=-1)
        soup.load_soup("verbosity=1")
        got = torch.log_softmax(soup.model(**inputs).logits[:, -1].float(), dim=-1)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)
    # an interior weight: exactly the interpolation 0.3 * merged(conciseness) + 0.7 * merged(verbosity)
    merged = {name: PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_policy_path), str(path))
              .merge_and_unload().state_dict() for name, path in adapters.items()}
    interpolated = AutoModelForCausalLM.from_pretrained(tiny_policy_path).eval()
    interpolated.load_state_dict({k: 0.3 * merged["conciseness"][k] + 0.7 * merged["verbosity"][k]
                                  for k in merged["conciseness"]})
    with torch.no_grad():
        soup.load_soup("conciseness=0.3,verbosity=0.7")
        interior = torch.log_softmax(soup.model(**inputs).logits[:, -1].float(), dim=-1)
        interpolation = torch.log_softmax(interpolated(**inputs).logits[:, -1].float(), dim=-1)
    torch.testing.assert_close(interior, interpolation, atol=1e-4, rtol=0)
    assert (interior - expected).abs().max() > 1e-2  # the interior point is not one of the adapters
    mod = load_steerable(adapters, method="mod")
    torch.testing.assert_close(mod.next_token_log_probs(prompts[:4], "verbosity=1"), expected, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------------ head mixing

@pytest.fixture(scope="module")
def multi_head_path(tiny_policy_path, replies, tmp_path_factory):
    """A multi-head checkpoint: head 'conciseness' trained on short replies, 'verbosity' on long ones, trunk frozen."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_policy_path)
    model = add_lm_heads(AutoModelForCausalLM.from_pretrained(tiny_policy_path), NAMES)
    for parameter in model.model.parameters():
        parameter.requires_grad_(False)
    texts = ([chat(tokenizer, h, a) for h, a in replies["short"][:200]]
             + [chat(tokenizer, h, a) for h, a in replies["long"][:200]])
    finetune(model, tokenizer, texts, steps=25, head_ids=[0] * 200 + [1] * 200)
    path = tmp_path_factory.mktemp("heads") / "mah"
    save_multi_head_model(model, path)
    tokenizer.save_pretrained(path)
    save_record(path, build_record(trainer="dpo:mah", base_model=str(tiny_policy_path), steering="heads",
                                   objectives=[{"name": n, "source": "test", "threshold": None} for n in NAMES]))
    return path


def test_head_mixing_weight_one_reproduces_that_head(multi_head_path, prompts):
    steerable = load_steerable(str(multi_head_path))  # method read from the record
    assert isinstance(steerable, HeadMixing) and steerable.objective_names == NAMES
    inputs = steerable.encode(prompts[:4])
    with torch.no_grad():
        hidden = steerable.model.model(**inputs).last_hidden_state
        per_head = head_logits(steerable.model, hidden)
        with mixed_heads(steerable.model, "verbosity=1"):
            mixed = steerable.model(**inputs).logits
    torch.testing.assert_close(mixed, per_head[1], atol=1e-5, rtol=0)


def test_head_mixing_weight_on_conciseness_shortens_replies(multi_head_path, prompts):
    assert_shorter_with_weight_on_conciseness(load_steerable(str(multi_head_path)), prompts, "head mixing",
                                              ratio=RATIO_HEAD_MIXING)


# ------------------------------------------------------------------------------------------------ prompt conditioning

@pytest.fixture(scope="module")
def conditioned_path(tiny_policy_path, tmp_path_factory):
    """A checkpoint recorded as preference-conditioned (`steering: prompt`). What is tested is that steering writes
    the trained format. There is no direction test for this method: no tiny model we can train here reads its
    weights from the header (GRPO with Dirichlet weights up to 300 steps, conditioned SFT up to 400 steps, the
    0.6M Qwen2 policy and a from-scratch GPT-2: samples identical whatever the weights). `a=1.00,b=0.00` and
    `a=0.00,b=1.00` are the same tokens in another order, so the model must learn to read by position."""
    path = tmp_path_factory.mktemp("conditioned") / "grpo"
    AutoModelForCausalLM.from_pretrained(tiny_policy_path).save_pretrained(path)
    AutoTokenizer.from_pretrained(tiny_policy_path).save_pretrained(path)
    save_record(path, build_record(trainer="grpo", base_model=str(tiny_policy_path), steering="prompt",
                                   objectives=[{"name": n, "source": "test", "threshold": None} for n in NAMES]))
    return path


def test_prompt_conditioning_writes_the_trained_format(conditioned_path, prompts):
    steerable = load_steerable(str(conditioned_path))  # its record has no prompt_format_version: format 1
    assert isinstance(steerable, PromptConditioned) and steerable.format_version == 1
    conditioned = condition_prompt([{"role": "user", "content": prompts[0]}], "conciseness=1", NAMES, format_version=1)
    assert conditioned[0]["content"] == "Preference weights: conciseness=1.00,verbosity=0.00"
    inputs = steerable.encode([conditioned])
    with torch.no_grad():
        greedy = steerable.model.generate(**inputs, max_new_tokens=12, do_sample=False,
                                          pad_token_id=steerable.tokenizer.pad_token_id)
    expected = steerable.decode(greedy[:, inputs["input_ids"].shape[1]:])
    assert steerable.generate(prompts[:1], "conciseness=1", max_new_tokens=12, do_sample=False) == expected
    record = json.loads((conditioned_path / "objectives.json").read_text())
    (conditioned_path / "objectives.json").write_text(json.dumps({**record, "prompt_format_version": 3}))
    assert load_steerable(str(conditioned_path)).format_version == 3  # newer checkpoints: the version they record


# ------------------------------------------------------------------------------------------------ the CLI

def test_generate_cli_steers_named_checkpoints_and_rejects_bad_weights(policies, capsys, tmp_path):
    from scripts.generate import main

    models = [f"{name}={path}" for name, path in policies.items()]
    args = [arg for m in models for arg in ("--model", m)] + ["--method", "soup", "--prompt", "Hi there",
                                                              "--max_new_tokens", "8",
                                                              "--output", str(tmp_path / "out.jsonl")]
    assert main(args + ["--weights", "conciseness=0.7,verbosity=0.3"]) == 0
    row = json.loads(capsys.readouterr().out.strip())
    assert (row["method"] == "soup" and row["weights"] == "conciseness=0.70,verbosity=0.30"
            and row["prompt"] == "Hi there")
    assert json.loads((tmp_path / "out.jsonl").read_text()) == row
    with pytest.raises(SystemExit, match="unknown objective"):
        main(args + ["--weights", "helpful=1"])
