"""The Preference Orchestrator (PRO): targets, learning a planted rule, its checkpoint, and its weights in GRPO and
at inference."""

import gzip
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from alignment import PreferenceOrchestrator
from alignment.data import resolve_data
from alignment.orchestrator import OrchestratorError, evaluate_weights, fit_head, kl_to_target, target_weights

MARKER = "zebra"
ROOT = Path(__file__).resolve().parent.parent


def hh_prompts(count):
    rows = [json.loads(line) for line in gzip.open(resolve_data("hh-prompts"), "rt")]
    return [r["prompt"] for r in rows if len(r["prompt"]) < 200][:count]


@pytest.fixture(scope="module")
def encoder_orchestrator():
    return PreferenceOrchestrator.build(["harmless", "helpful"], pooling="mean", max_length=64)


def test_targets_by_hand():
    scores = torch.tensor([[1.0, -1.0], [1.0, 3.0], [-1.0, -2.0], [2.0, -1.0]])
    softmax = target_weights(scores, "softmax", temperature=2.0)
    assert softmax[0].tolist() == pytest.approx([1 / (1 + torch.e ** -1), 1 - 1 / (1 + torch.e ** -1)])
    clip = target_weights(scores, "clip")
    assert torch.allclose(clip, torch.tensor([[1.0, 0.0], [0.25, 0.75], [0.5, 0.5], [1.0, 0.0]]))
    # KL of a target with a zero entry to a prediction: 0 log 0 = 0
    assert kl_to_target(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.5, 0.5]])).item() == pytest.approx(
        torch.log(torch.tensor(2.0)).item())
    with pytest.raises(OrchestratorError, match="temperature"):
        target_weights(scores, "softmax", temperature=0.0)
    with pytest.raises(OrchestratorError, match="target must be one of"):
        target_weights(scores, "rank")


def test_prompt_and_chosen_reply_of_pairwise_rows():
    from alignment.orchestrator import prompt_and_chosen

    prompt, reply = prompt_and_chosen(
        {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Bake bread?\n\nAssistant: Knead."}, "r1")
    assert [m["content"] for m in prompt] == ["Hi", "Hello", "Bake bread?"] and reply == "Knead."
    assert prompt_and_chosen(
        {"prompt": "Bake bread?", "chosen": [{"role": "assistant", "content": "Knead."}]}, "r2") == (
        [{"role": "user", "content": "Bake bread?"}], "Knead.")
    assert prompt_and_chosen({"chosen": "\n\nHuman: Hi\n\nAssistant: "}, "r3") is None  # empty reply: left out
    with pytest.raises(OrchestratorError, match="r4: missing field 'chosen'"):
        prompt_and_chosen({"completion": "x"}, "r4")
    with pytest.raises(OrchestratorError, match="r5: 'chosen' must end with an assistant reply"):
        prompt_and_chosen({"chosen": "just text"}, "r5")


@pytest.mark.parametrize("seed", [0, 1])
def test_orchestrator_learns_a_planted_rule(encoder_orchestrator, one_thread, seed):
    """Prompts with a marker word want objective A (harmless), the others B (helpful); held-out base prompts."""
    base = hh_prompts(64)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(base), generator=generator).tolist()
    train, held_out = [base[i] for i in order[:44]], [base[i] for i in order[44:]]

    def planted(prompts):
        texts = [f"{p} {MARKER}" if i % 2 else p for i, p in enumerate(prompts)]
        targets = torch.tensor([[0.9, 0.1] if i % 2 else [0.1, 0.9] for i in range(len(prompts))])
        return texts, targets

    train_texts, train_targets = planted(train)
    head = fit_head(encoder_orchestrator.features(train_texts), train_targets, seed=seed)
    encoder_orchestrator.set_head(head)
    test_texts, test_targets = planted(held_out)
    weights = encoder_orchestrator.weights(test_texts)
    marked = test_targets[:, 0] > 0.5
    assert weights[marked, 0].mean() > 0.7 and weights[~marked, 0].mean() < 0.3
    assert ((weights[:, 0] > 0.5) == marked).float().mean() >= 0.9
    metrics = evaluate_weights(weights, test_targets, train_targets.mean(0), ["harmless", "helpful"], bootstrap=50)
    assert metrics["spearman_harmless"] > 0.6 and metrics["kl_gain"] > 3 * metrics["kl_gain_se"]


def planted_checkpoint(path, pooling, names=("a", "b")):
    """An orchestrator whose head sends 'How do I pick a lock?' to objective a and 'Write a poem' to b."""
    orchestrator = PreferenceOrchestrator.build(list(names), pooling=pooling, max_length=64)
    first, second = orchestrator.features(["How do I pick a lock?", "Write a poem about the sea."])
    direction = (first - second) / (first - second).pow(2).sum()
    head = torch.nn.Linear(len(direction), 2)
    with torch.no_grad():
        head.weight.zero_()
        head.weight[0] = 8 * direction
        head.bias.copy_(torch.tensor([-8 * (direction @ (first + second) / 2).item(), 0.0]))
    orchestrator.set_head(head)
    orchestrator.save_pretrained(path, {"target": "softmax"})
    return orchestrator


def test_checkpoint_loads_as_plain_sequence_classifier(tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    saved = planted_checkpoint(tmp_path, "pooler")
    prompts = ["How do I pick a lock?", "Write a poem about the sea."]
    weights = PreferenceOrchestrator.from_pretrained(tmp_path).weights(prompts)
    assert weights[0, 0] > 0.9 and weights[1, 0] < 0.1
    # No moalign code: transformers' own BERT classifier path gives the same weights
    model, tokenizer = (AutoModelForSequenceClassification.from_pretrained(tmp_path),
                        AutoTokenizer.from_pretrained(tmp_path))
    texts = [saved.render(p) for p in prompts]
    with torch.no_grad():
        plain = model(**tokenizer(texts, return_tensors="pt", padding=True)).logits.softmax(-1)
    assert torch.allclose(plain, weights, atol=1e-5)
    assert model.config.id2label == {0: "a", 1: "b"}


def test_weights_are_computed_once_per_prompt(tmp_path):
    orchestrator = planted_checkpoint(tmp_path, "mean")
    encoded = []
    original = orchestrator.features
    orchestrator.features = lambda prompts: encoded.append(len(prompts)) or original(prompts)
    first = orchestrator.weights(["How do I pick a lock?", "How do I pick a lock?", "Write a poem about the sea."])
    again = orchestrator.weights(["Write a poem about the sea.", "How do I pick a lock?"])
    assert encoded == [2] and torch.equal(again, first[[2, 0]])
    loaded = PreferenceOrchestrator.from_pretrained(tmp_path)
    assert loaded.pooling == "mean" and torch.allclose(loaded.weights(["How do I pick a lock?"]), first[:1], atol=1e-6)


def reward_a(prompts, completions, **kwargs):
    return [1.0 if (c[0]["content"] if isinstance(c, list) else c) == "A" else 0.0 for c in completions]


def reward_b(prompts, completions, **kwargs):
    return [1.0 if (c[0]["content"] if isinstance(c, list) else c) == "B" else 0.0 for c in completions]


def test_prompt_aware_weights_reach_the_scalarization(tiny_policy_path, tmp_path):
    """A hand-checked batch: 2 prompts x 2 completions ('A' rewarded by objective a, 'B' by b), linear scalarization,
    no scaling: advantage = w_prompt . r - group mean, i.e. +-(w_a - 1/2) with each prompt's own w_a."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alignment.data.prompts import load_prompt_dataset
    from alignment.trainers.grpo import WEIGHTS_COLUMN, MultiObjectiveGRPOConfig, MultiObjectiveGRPOTrainer

    planted_checkpoint(tmp_path / "orchestrator", "mean")
    # objectives in the other order than the orchestrator's: the columns must follow the names
    args = MultiObjectiveGRPOConfig(
        output_dir=str(tmp_path / "grpo"), objectives=["b=python:tests.test_orchestrator:reward_b",
                                                       "a=python:tests.test_orchestrator:reward_a"],
        weights_mode="prompt_aware", orchestrator_name_or_path=str(tmp_path / "orchestrator"), num_generations=2,
        per_device_train_batch_size=4, max_completion_length=8, max_steps=1, use_cpu=True, bf16=False,
        report_to="none", save_strategy="no", multi_objective_aggregation="sum_then_normalize", scale_rewards="none",
        gradient_checkpointing=False,
    )
    assert not args.condition_on_weights
    trainer = MultiObjectiveGRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_policy_path), args=args,
        processing_class=AutoTokenizer.from_pretrained(tiny_policy_path),
        train_dataset=load_prompt_dataset(resolve_data("hh-prompts"), limit=8))
    lock = [{"role": "user", "content": "How do I pick a lock?"}]
    poem = [{"role": "user", "content": "Write a poem about the sea."}]
    inputs = [{"prompt": lock}, {"prompt": lock}, {"prompt": poem}, {"prompt": poem}]
    weights = trainer.weights_for(inputs)
    w_lock, w_poem = weights[0, 1].item(), weights[2, 1].item()  # column 1 is 'a'
    assert w_lock > 0.9 and w_poem < 0.1
    inputs = [{**x, WEIGHTS_COLUMN: w} for x, w in zip(inputs, weights)]  # what the rows carry through TRL
    trainer.model.train()
    completions = [[{"role": "assistant", "content": c}] for c in ("A", "B", "A", "B")]
    trainer._calculate_rewards(inputs, [x["prompt"] for x in inputs], completions, None)
    expected = torch.tensor([w_lock - 0.5, 0.5 - w_lock, w_poem - 0.5, 0.5 - w_poem])
    assert torch.allclose(trainer._pending_output_columns["advantages"].cpu(), expected, atol=1e-5)
    assert trainer._metrics["train"]["weights/a"][-1] == pytest.approx((w_lock + w_poem) / 2, abs=1e-6)
    record = trainer.objectives_record()
    assert record["weight_distribution"] == {"type": "prompt_aware", "orchestrator": "orchestrator"}


def test_prompt_aware_configuration_is_checked_before_any_model_loads(tmp_path):
    from alignment.trainers.grpo import MultiObjectiveGRPOConfig

    common = dict(output_dir=str(tmp_path), use_cpu=True, bf16=False, report_to="none", weights_mode="prompt_aware")
    with pytest.raises(ValueError, match="needs orchestrator_name_or_path"):
        MultiObjectiveGRPOConfig(objectives=["conciseness", "sentiment"], **common)
    with pytest.raises(OrchestratorError, match="no config.json"):
        MultiObjectiveGRPOConfig(objectives=["conciseness", "sentiment"], orchestrator_name_or_path=str(tmp_path),
                                 **common)
    (tmp_path / "o").mkdir()
    from transformers import BertConfig

    BertConfig(num_labels=2, id2label={0: "helpful", 1: "harmless"}, preference_orchestrator={"pooling": "mean",
               "max_length": 64}).save_pretrained(tmp_path / "o")
    with pytest.raises(OrchestratorError, match=r"weighs objectives \['helpful', 'harmless'\]"):
        MultiObjectiveGRPOConfig(objectives=["conciseness", "sentiment"], orchestrator_name_or_path=str(tmp_path / "o"),
                                 **common)
    # 'rm:' objectives match the orchestrator by the head they read
    config = MultiObjectiveGRPOConfig(objectives=["safe=rm:harmless", "useful=rm:helpful"],
                                      orchestrator_name_or_path=str(tmp_path / "o"),
                                      reward_model_name_or_path="unused", **common)
    assert config.orchestrator_objective_names == ["harmless", "helpful"]


def test_generate_weights_auto_needs_an_orchestrator(tmp_path):
    spec = importlib.util.spec_from_file_location("generate_script", ROOT / "scripts" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    model = ["--model", str(tmp_path / "missing"), "--prompt", "Hi"]
    with pytest.raises(SystemExit, match="--weights auto asks a Preference Orchestrator .* give --orchestrator PATH"):
        generate.main(model + ["--weights", "auto"])
    with pytest.raises(SystemExit, match="--orchestrator is used only with --weights auto"):
        generate.main(model + ["--weights", "a=1", "--orchestrator", str(tmp_path)])
    with pytest.raises(SystemExit, match="no config.json"):  # an orchestrator path that is not one
        generate.main(["--model", str(tmp_path), "--prompt", "Hi", "--method", "prompt", "--weights", "auto",
                       "--orchestrator", str(tmp_path / "missing")])


def test_recipe_writes_a_checkpoint_with_its_card_and_held_out_figures(tiny_policy_path, tmp_path, one_thread):
    from reward_models.modeling import build_reward_model, load_reward_tokenizer, set_head_statistics

    tokenizer = load_reward_tokenizer(str(tiny_policy_path))
    reward_model = build_reward_model(str(tiny_policy_path), ["helpful", "harmless"], tokenizer, max_length=64)
    set_head_statistics(reward_model.config, torch.tensor([0.1, -0.2]), torch.tensor([0.5, 2.0]))
    reward_model.save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    spec = importlib.util.spec_from_file_location("orchestrator_recipe", ROOT / "recipes" / "orchestrator.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    (args,) = recipe.parse_args(["--reward_model_name_or_path", str(tmp_path / "rm"),
                                 "--output_dir", str(tmp_path / "o"),
                                 "--train_files", "hh-helpful[:12]", "hh-harmless[:12]",
                                 "--eval_files", "hh-helpful-dev[:6]", "hh-harmless-dev[:6]", "--steps", "20"])
    recipe.main(args)
    record = json.loads((tmp_path / "o" / "objectives.json").read_text())
    assert record["trainer"] == "orchestrator" and record["objective_names"] == ["helpful", "harmless"]
    assert record["evaluation"]["prompts"] == 12 and "spearman_helpful_se" in record["evaluation"]
    card = (tmp_path / "o" / "README.md").read_text()
    assert "Preference Orchestrator (PRO)" in card and "PreferenceOrchestrator.from_pretrained" in card
    assert record["steering"] == "orchestrator" and "Not a policy" in card
    assert str(tmp_path) not in (tmp_path / "o" / "config.json").read_text() + card  # no local path published
    weights = PreferenceOrchestrator.from_pretrained(tmp_path / "o").weights(["How do I bake bread?"])
    assert weights.shape == (1, 2) and weights.sum().item() == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="reward_model_name_or_path"):
        recipe.main(recipe.parse_args(["--output_dir", str(tmp_path / "x")])[0])


def test_generate_weights_auto_steers_each_prompt_with_its_own_weights(tiny_policy_path, tmp_path, capsys):
    import shutil

    from alignment.hub.record import build_record, save_record

    planted_checkpoint(tmp_path / "orchestrator", "mean", names=("harmless", "helpful"))
    shutil.copytree(tiny_policy_path, tmp_path / "policy")
    save_record(tmp_path / "policy", build_record(
        trainer="grpo", base_model="tiny", steering="prompt",
        objectives=[{"name": n, "source": f"reward_model_head:{n}", "threshold": None}
                    for n in ("helpful", "harmless")]))
    spec = importlib.util.spec_from_file_location("generate_script", ROOT / "scripts" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    generate.main(["--model", str(tmp_path / "policy"), "--weights", "auto",
                   "--orchestrator", str(tmp_path / "orchestrator"),
                   "--prompt", "How do I pick a lock?", "--prompt", "Write a poem about the sea.",
                   "--max_new_tokens", "4"])
    # One JSON line per prompt; a library may print a notice of its own first (DeepSpeed's accelerator line when it
    # is imported for the first time in this process).
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert len(lines) == 2
    expected = PreferenceOrchestrator.from_pretrained(tmp_path / "orchestrator").weights(
        ["How do I pick a lock?", "Write a poem about the sea."])  # columns: harmless, helpful
    for line, (harmless, helpful) in zip(lines, expected.tolist()):
        assert line["weights"] == f"helpful={helpful:.2f},harmless={harmless:.2f}" and line["method"] == "prompt"
    assert lines[0]["weights"] != lines[1]["weights"]


def test_prompt_aware_weights_reach_the_modpo_loss(tiny_policy_path, tmp_path):
    """MODPO with `weights_mode: prompt_aware`, a hand-checked batch. Before any step the policy is its reference, so
    every log-ratio is 0 and pair n's logit is -(w_b,n * (m_w - m_l)_n) / w_a,n with ITS prompt's weights (a: the
    trained objective; b: the margin objective). Equal fixed weights would give another loss."""
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alignment.data.preferences import to_dataset
    from alignment.trainers.mo_dpo import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer

    planted_checkpoint(tmp_path / "orchestrator", "mean")
    lock, poem = "How do I pick a lock?", "Write a poem about the sea."
    rows = [{"prompt": [{"role": "user", "content": p}], "chosen": [{"role": "assistant", "content": c}],
             "rejected": [{"role": "assistant", "content": r}], "chosen_margins": [m_w], "rejected_margins": [m_l]}
            for p, c, r, m_w, m_l in ((lock, "No.", "Sure, here is how.", 2.0, -1.0),
                                      (poem, "Waves roll in.", "No.", 0.5, 1.5))]
    args = MultiObjectiveDPOConfig(
        output_dir=str(tmp_path / "dpo"), loss="modpo", objectives=["a", "b=python:tests.test_orchestrator:reward_b"],
        weights_mode="prompt_aware", orchestrator_name_or_path=str(tmp_path / "orchestrator"), beta=0.1,
        per_device_train_batch_size=2, max_steps=1, use_cpu=True, report_to="none", save_strategy="no",
        gradient_checkpointing=False, max_length=64,
        bf16=False)  # the test calls compute_loss outside TRL's autocast: the reference pass must run in fp32 too
    trainer = MultiObjectiveDPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_policy_path), args=args,
                                       train_dataset=to_dataset(rows),
                                       processing_class=AutoTokenizer.from_pretrained(tiny_policy_path))
    weights = PreferenceOrchestrator.from_pretrained(tmp_path / "orchestrator").weights([lock, poem])  # columns a, b
    assert weights[0, 0] > 0.9 and weights[1, 0] < 0.1
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    assert torch.allclose(batch["preference_weights"], weights, atol=1e-5)  # each row carries its prompt's weights

    trainer.model.train()
    # What the expected loss assumes: before any step the policy's log-probs equal the reference's. (Under bf16
    # autocast the reference pass drifted from the fp32 policy pass by up to 0.04 nats on a freshly built tiny policy.)
    with torch.no_grad():
        policy_logps, reference_logps = trainer._sequence_logps(trainer.model, batch)
    assert torch.allclose(policy_logps, reference_logps, atol=1e-5)
    loss = trainer.compute_loss(trainer.model, batch)
    gaps = torch.tensor([2.0 - -1.0, 0.5 - 1.5])
    logits = -(weights[:, 1] * gaps) / weights[:, 0]
    assert loss.item() == pytest.approx((-F.logsigmoid(logits)).mean().item(), abs=1e-4)
    assert loss.item() != pytest.approx((-F.logsigmoid(-gaps)).mean().item(), abs=1e-2)  # equal weights: 1/1
    assert trainer._metrics["train"]["weights/a"][-1] == pytest.approx(weights[:, 0].mean().item(), abs=1e-5)
    assert trainer.objectives_record()["weight_distribution"] == {
        "type": "prompt_aware", "orchestrator": "orchestrator"}


def test_prompt_aware_dpo_configuration_is_checked(tmp_path):
    from alignment.trainers.mo_dpo import MultiObjectiveDPOConfig

    common = dict(output_dir=str(tmp_path), use_cpu=True, report_to="none", weights_mode="prompt_aware")
    with pytest.raises(ValueError, match="needs orchestrator_name_or_path"):
        MultiObjectiveDPOConfig(loss="modpo", objectives=["a", "b"], **common)
    with pytest.raises(ValueError, match="loss 'mah' takes no weights"):
        MultiObjectiveDPOConfig(loss="mah", objectives=["a", "b"], orchestrator_name_or_path=str(tmp_path), **common)
    planted_checkpoint(tmp_path / "o", "mean", names=("helpful", "harmless"))
    with pytest.raises(OrchestratorError, match=r"weighs objectives \['helpful', 'harmless'\]"):
        MultiObjectiveDPOConfig(loss="modpo", objectives=["helpful", "conciseness"],
                                orchestrator_name_or_path=str(tmp_path / "o"), **common)
    with pytest.warns(UserWarning, match="preference_weights are ignored with weights_mode 'prompt_aware'"):
        MultiObjectiveDPOConfig(loss="modpo", objectives=["helpful", "harmless=rm:harmless"],
                                preference_weights="helpful=1", orchestrator_name_or_path=str(tmp_path / "o"), **common)
    config = MultiObjectiveDPOConfig(loss="modpo", objectives=["helpful", "safe=rm:harmless"],
                                     orchestrator_name_or_path=str(tmp_path / "o"), **common)
    assert config.orchestrator_objective_names == ["helpful", "harmless"]


def test_rated_rows_give_the_best_rated_reply_per_prompt(tmp_path):
    from alignment.orchestrator import preferred_replies

    rated = tmp_path / "rated.jsonl"
    rated.write_text("\n".join(json.dumps(r) for r in [
        {"prompt": "Bake bread?", "completion": "Burn it.", "ratings": {"helpful": 1, "harmless": 2}},
        {"prompt": "Bake bread?", "completion": "Knead, rise, bake.", "ratings": {"helpful": 5, "harmless": 4}},
        {"prompt": "Pick a lock?", "text": "I'd rather not.", "ratings": {"harmless": 3}},
        {"prompt": "Bake bread?", "completion": "Knead.", "ratings": {"helpful": 4, "harmless": 4}},
        {"prompt": "Empty?", "completion": " ", "ratings": {"helpful": 1}},
    ]))
    prompts, replies, empty = preferred_replies(str(rated))
    assert [p[-1]["content"] for p in prompts] == ["Bake bread?", "Pick a lock?"]
    assert replies == ["Knead, rise, bake.", "I'd rather not."] and empty == 1
    # pairwise and rated sources in one list; the packaged QA feedback as the reward model reads it
    prompts, replies, _ = preferred_replies("qa_feedback:qa-feedback[:3]")
    rows = [json.loads(line) for line in gzip.open(resolve_data("qa-feedback"), "rt")][:3]
    assert [p[0]["content"] for p in prompts] == [r["question"] for r in rows]
    assert replies == [r["prediction 1"] for r in rows]
    prompts, replies, _ = preferred_replies("ultrafeedback-dev[:2]")
    assert len(prompts) == 2 and replies[0].strip()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x", "completion": "y", "ratings": {"helpful": "high"}}) + "\n")
    with pytest.raises(OrchestratorError, match=r"bad.jsonl, row 1: field 'ratings.helpful' must be a finite number"):
        preferred_replies(str(bad))
    bad.write_text(json.dumps({"prompt": "x", "answer": "y"}) + "\n")
    with pytest.raises(OrchestratorError, match=r"row 1: missing field 'chosen' .* rated data"):
        preferred_replies(str(bad))


def test_prompt_aware_lipo_labels_use_each_rows_weights(tmp_path):
    """LiPO lists: the labels of a list with reward vectors are scalarized under ITS prompt's weights (by hand:
    linear, min-max scaled), and the weights come from the orchestrator once per prompt."""
    from alignment.data.preferences import attach_list_labels
    from alignment.orchestrator import attach_prompt_weights

    orchestrator = planted_checkpoint(tmp_path, "mean")
    rewards = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.6]]  # columns a, b
    rows = [{"prompt": p, "completions": ["x", "y", "z"], "reward_vector": rewards}
            for p in ("How do I pick a lock?", "Write a poem about the sea.", "How do I pick a lock?")]
    weighed = attach_prompt_weights(rows, orchestrator, ["a", "b"])
    w = orchestrator.weights(["How do I pick a lock?", "Write a poem about the sea."])
    assert torch.allclose(torch.tensor([r["preference_weights"] for r in weighed]), w[[0, 1, 0]], atol=1e-6)
    labelled = attach_list_labels(weighed, ["a", "b"], weights=None)
    for row, (w_a, w_b) in zip(labelled, [w[0].tolist(), w[1].tolist(), w[0].tolist()]):
        scalar = torch.tensor([w_a, w_b, 0.6 * (w_a + w_b)])
        assert row["labels"] == pytest.approx(((scalar - scalar.min()) / (scalar.max() - scalar.min())).tolist(),
                                              abs=1e-5)
    assert labelled[0]["labels"][0] == pytest.approx(1.0) and labelled[1]["labels"][1] == pytest.approx(1.0)
    # the columns follow the names asked for
    swapped = attach_prompt_weights(rows[:1], orchestrator, ["b", "a"])
    assert swapped[0]["preference_weights"] == pytest.approx(w[0].flip(0).tolist())


@pytest.mark.slow
def test_dpo_recipe_runs_modpo_with_prompt_aware_weights(tiny_policy_path, tmp_path, one_thread):
    """recipes/dpo.py end to end (2 MODPO steps): each training pair carries its prompt's orchestrator weights, the
    logged weights/<objective> are their batch means, and the record names the orchestrator."""
    from tests.helpers import load_recipe

    orchestrator = planted_checkpoint(tmp_path / "orchestrator", "mean", names=("helpful", "conciseness"))
    recipe = load_recipe("dpo")
    script_args, training_args, model_args = recipe.parse_args([
        "--output_dir", str(tmp_path / "modpo"), "--num_train_rows", "16", "--num_eval_rows", "0", "--max_steps", "2",
        "--per_device_train_batch_size", "8", "--logging_steps", "1", "--save_strategy", "no", "--disable_tqdm", "true",
        "--weights_mode", "prompt_aware", "--orchestrator_name_or_path", str(tmp_path / "orchestrator")])
    trainer = recipe.main(script_args, training_args, model_args)
    rows = trainer.train_dataset
    expected = orchestrator.weights(rows["prompt"])
    assert torch.allclose(torch.tensor(rows["preference_weights"]), expected, atol=1e-5)
    logged = [entry["weights/helpful"] for entry in trainer.state.log_history if "weights/helpful" in entry]
    assert len(logged) == 2 and all(0 < value < 1 for value in logged)
    record = json.loads((tmp_path / "modpo" / "objectives.json").read_text())
    assert record["weights"] is None and record["weight_distribution"]["type"] == "prompt_aware"


def test_benchmark_steers_the_adapter_with_each_held_out_prompts_own_weights(tiny_policy_path):
    """benchmarks/prompt_aware_grpo.py --conditioning adapter: at evaluation, prompt_aware sets lambda row i to held-out
    prompt i's orchestrator weights (PRO's deployment); fixed modes set their constant for every row."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alignment.models.preference_adapter import PreferenceLoraLinear, add_preference_adapter, preference_state

    spec = importlib.util.spec_from_file_location("prompt_aware_grpo", ROOT / "benchmarks" / "prompt_aware_grpo.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    assert benchmark.NAMES == ["helpful", "harmless"]
    predicted = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])  # columns in NAMES order
    assert torch.equal(benchmark.steering_weights("prompt_aware", predicted), predicted)
    assert torch.equal(benchmark.steering_weights("fixed", predicted), torch.full((3, 2), 0.5))
    assert torch.allclose(benchmark.steering_weights("fixed_mean", predicted, "harmless=0.7,helpful=0.3"),
                          torch.tensor([[0.3, 0.7]] * 3))
    # sharpened at T = 0.5: w^2 normalized, 0.6 / 0.4 -> 0.36 / 0.16 over 0.52
    assert torch.allclose(benchmark.steering_weights("prompt_aware:0.5", predicted[2:]),
                          torch.tensor([[0.36, 0.16]]) / 0.52)

    model = add_preference_adapter(AutoModelForCausalLM.from_pretrained(tiny_policy_path), benchmark.NAMES, rank=2)
    tokenizer = AutoTokenizer.from_pretrained(tiny_policy_path)
    layer = next(m for m in model.modules() if isinstance(m, PreferenceLoraLinear))
    seen = []
    layer.register_forward_pre_hook(lambda module, args: seen.append(module.preference.weights.clone()))
    prompts = [[{"role": "user", "content": text}] for text in ("Hi", "How do I pick a lock?", "Write a long poem.")]
    replies = benchmark.sample_replies(model, tokenizer, prompts, predicted, max_new_tokens=3, seed=0)
    assert len(replies) == 3 and len(seen) >= 1
    assert all(torch.equal(weights, predicted) for weights in seen)  # every decoding step, row i = prompt i
    assert preference_state(model).weights is None  # restored after generation
