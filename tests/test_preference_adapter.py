"""Preference adapters (alignment/models/preference_adapter.py): the SVD-LoRA update against its formula,
lambda per row, peft save/load and merging, and (slow) a GRPO-trained adapter that follows its weights on the tiny
policy."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from alignment import add_preference_adapter, merge_preference, preference_weights
from alignment.models.preference_adapter import (
    PreferenceLoraLinear,
    load_steerable_model,
    parameter_groups,
    save_steerable_checkpoint,
)
from tests.helpers import random_preference_adapter

NAMES = ["conciseness", "sentiment"]


@pytest.fixture
def adapted(tiny_policy_path, one_thread):
    """A preference adapter with random U, sigma and s (LoRA init has U = 0, which would hide every mistake)."""
    return random_preference_adapter(tiny_policy_path, NAMES)


def tokens(rows=3, length=7):
    return torch.randint(10, 1000, (rows, length), generator=torch.Generator().manual_seed(1))


def test_layer_update_is_u_diag_sigma_s_lambda_v(adapted):
    layer = next(m for m in adapted.modules() if isinstance(m, PreferenceLoraLinear))
    x = torch.randn(2, 5, layer.in_features)
    weights = torch.tensor([[0.8, 0.2], [0.0, 1.0]])
    sigma, scale = layer.lora_sigma["default"], layer.lora_preference_scale["default"]
    u, v_t = layer.lora_B["default"].weight, layer.lora_A["default"].weight
    with torch.no_grad(), preference_weights(adapted, weights):
        got = layer(x)
        for row in range(2):
            diagonal = torch.cat([sigma, 16.0 * scale * weights[row]])
            expected = layer.base_layer(x[row]) + x[row] @ (u @ torch.diag(diagonal) @ v_t).T * layer.scaling["default"]
            torch.testing.assert_close(got[row], expected, atol=1e-5, rtol=1e-5)
    assert layer.r["default"] == 4 + len(NAMES) and sigma.shape == (4,) and scale.shape == (1,)


def test_each_row_follows_its_own_weights(adapted):
    ids = tokens()
    weights = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    with torch.no_grad():
        with preference_weights(adapted, weights):
            batched = adapted(input_ids=ids).logits
        for row in range(3):
            with preference_weights(adapted, weights[row]):
                alone = adapted(input_ids=ids[row:row + 1]).logits
            torch.testing.assert_close(batched[row:row + 1], alone, atol=1e-5, rtol=0)
    assert (batched[0] - batched[1]).abs().max() > 0.1  # the weights reach the logits


def test_the_no_grad_diagonal_cache_follows_new_weights_and_parameter_updates(adapted):
    """Without autograd each layer reuses its diagonal while lambda and its parameters stay the same; a new lambda,
    an in-place update (an optimizer step) or a new batch size must each give what the autograd path computes."""
    ids = tokens()
    layer = next(m for m in adapted.modules() if isinstance(m, PreferenceLoraLinear))

    def cached_and_fresh(rows=ids):
        with torch.no_grad():
            cached = adapted(input_ids=rows).logits
        with torch.enable_grad():
            fresh = adapted(input_ids=rows).logits.detach()
        torch.testing.assert_close(cached, fresh, atol=1e-6, rtol=0)
        return cached

    with preference_weights(adapted, "0.9,0.1"):
        first = cached_and_fresh()
        with torch.no_grad():  # in place, within one lambda setting: what an optimizer step does between rollouts
            layer.lora_sigma["default"].mul_(3.0)
        second = cached_and_fresh()
        with torch.no_grad():
            layer.lora_preference_scale["default"].add_(1.0)
        third = cached_and_fresh()
    assert (first - second).abs().max() > 1e-3 and (second - third).abs().max() > 1e-3
    with preference_weights(adapted, "0.1,0.9"):
        assert (cached_and_fresh() - third).abs().max() > 1e-3
    with preference_weights(adapted, torch.tensor([[0.2, 0.8]])):
        cached_and_fresh(ids[:1])


def test_missing_or_malformed_weights_are_refused(adapted):
    ids = tokens()
    with pytest.raises(RuntimeError, match="without preference weights"):
        adapted(input_ids=ids)
    with pytest.raises(RuntimeError, match="2 rows but the batch has 3"):
        with preference_weights(adapted, torch.tensor([[1.0, 0.0], [0.0, 1.0]])):
            adapted(input_ids=ids)
    with pytest.raises(ValueError, match="3 columns for 2 objectives"):
        with preference_weights(adapted, torch.ones(3, 3)):
            pass
    with pytest.raises(ValueError, match="unknown objective"):
        with preference_weights(adapted, "helpful=1"):
            pass
    with pytest.raises(ValueError, match="nothing_here"):
        add_preference_adapter(AutoModelForCausalLM.from_pretrained(adapted.peft_config["default"].base_model_name_or_path),
                               NAMES, target_modules=["nothing_here"])


def test_save_load_and_bake_one_preference(adapted, tmp_path):
    ids = tokens()
    save_steerable_checkpoint(adapted, tmp_path / "steerable")
    loaded = load_steerable_model(tmp_path / "steerable")
    with torch.no_grad():
        for weights in ("conciseness=0.9,sentiment=0.1", "conciseness=0.2,sentiment=0.8"):
            with preference_weights(adapted, weights):
                expected = adapted(input_ids=ids).logits
            with preference_weights(loaded, weights):
                torch.testing.assert_close(loaded(input_ids=ids).logits, expected, atol=1e-6, rtol=0)
        baked = merge_preference(loaded, "conciseness=0.2,sentiment=0.8")
        baked.save_pretrained(tmp_path / "baked")
        plain = AutoModelForCausalLM.from_pretrained(tmp_path / "baked")  # no custom code, no peft
        assert not any("lora_" in name for name in plain.state_dict())
        torch.testing.assert_close(plain(input_ids=ids).logits, expected, atol=1e-4, rtol=0)


def test_adapter_and_base_get_their_own_learning_rates(tiny_policy_path):
    model = add_preference_adapter(AutoModelForCausalLM.from_pretrained(tiny_policy_path), NAMES, train_base=True)
    adapter_group, base_group = parameter_groups(model, 2e-3, 2e-4)
    names = {id(p): n for n, p in model.named_parameters()}
    assert adapter_group["lr"] == 2e-3 and base_group["lr"] == 2e-4
    assert all("lora_" in names[id(p)] for p in adapter_group["params"])
    assert not any("lora_" in names[id(p)] for p in base_group["params"])
    assert any("lora_sigma" in names[id(p)] for p in adapter_group["params"])
    assert any("lora_preference_scale" in names[id(p)] for p in adapter_group["params"])
    frozen = add_preference_adapter(AutoModelForCausalLM.from_pretrained(tiny_policy_path), NAMES)
    assert all("lora_" in n for n, p in frozen.named_parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="no base learning rate"):
        parameter_groups(model, 2e-3, None)


# ------------------------------------------------------------------------------------------------ GRPO end to end

def train_steerable(policy_path, output_dir, seed, train_prompts):
    """The recipe of recipes/configs/grpo_steerable_tiny_cpu.yaml: Dirichlet(2, 2) weights per prompt fed to the
    adapter, KL beta 0.2, 2 prompts x 8 completions, 67 steps."""
    from transformers import AutoTokenizer

    from alignment.trainers.grpo import MultiObjectiveGRPOConfig, MultiObjectiveGRPOTrainer

    args = MultiObjectiveGRPOConfig(
        output_dir=str(output_dir), objectives=NAMES, weights_mode="dirichlet", dirichlet_alpha="2.0",
        conditioning="adapter", preference_adapter_rank=4, multi_objective_aggregation="normalize_then_sum",
        loss_type="grpo", beta=0.2,
        num_generations=8, per_device_train_batch_size=16, max_completion_length=48, max_steps=67,
        learning_rate=2e-3, lr_scheduler_type="constant", use_cpu=True, bf16=False, gradient_checkpointing=False,
        save_strategy="no", report_to="none", seed=seed, disable_tqdm=True, logging_steps=10,
    )
    trainer = MultiObjectiveGRPOTrainer(model=AutoModelForCausalLM.from_pretrained(policy_path), args=args,
                                        train_dataset=train_prompts,
                                        processing_class=AutoTokenizer.from_pretrained(policy_path))
    trainer.train()
    trainer.save_model(str(output_dir))
    return output_dir


def mean_reply_lengths(steerable, prompts, sentiment_weights):
    """Mean reply length (chars) when steered at each sentiment weight (conciseness = 1 - weight), same seed."""
    lengths = []
    for weight in sentiment_weights:
        replies = steerable.generate(prompts, [1 - weight, weight], max_new_tokens=48, seed=0)
        lengths.append(sum(map(len, replies)) / len(replies))
    return lengths


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_adapter_conditioned_grpo_follows_its_weights(tiny_policy_path, tmp_path, one_thread, seed):
    from scipy.stats import spearmanr

    from alignment.data import resolve_data
    from alignment.data.prompts import load_prompt_dataset
    from alignment.steering import PreferenceAdapterSteerable, load_steerable

    prompts = load_prompt_dataset(resolve_data("hh-prompts"))
    held_out = [row["prompt"] for row in prompts.select(range(len(prompts) - 32, len(prompts)))]
    path = train_steerable(tiny_policy_path, tmp_path / "steerable", seed, prompts.select(range(len(prompts) - 64)))

    record = json.loads((path / "objectives.json").read_text())
    assert record["steering"] == "adapter" and record["preference_adapter"]["rank"] == 4
    steerable = load_steerable(str(path))  # method read from the record
    assert isinstance(steerable, PreferenceAdapterSteerable)
    sentiment_weights = [0.0, 0.25, 0.5, 0.75, 1.0]
    lengths = mean_reply_lengths(steerable, held_out, sentiment_weights)
    print(f"seed {seed}: mean reply length (chars) at sentiment weight {sentiment_weights}: "
          + ", ".join(f"{x:.1f}" for x in lengths))
    assert lengths[-1] > 3 * lengths[0] + 10  # conciseness=1 vs sentiment=1: a clear gap
    # the order holds along the 5 weights: never shorter by more than sampling noise (2 chars) as sentiment weight rises
    assert all(later > earlier - 2.0 for earlier, later in zip(lengths, lengths[1:])), lengths
    assert spearmanr(sentiment_weights, lengths)[0] >= 0.8


# ------------------------------------------------------------------------------------------------ steer and bake

@pytest.fixture
def steerable_checkpoint(adapted, tiny_policy_path, tmp_path):
    """A preference-adapter checkpoint as the GRPO trainer writes it (random adapter: the tests are about plumbing)."""
    from transformers import AutoTokenizer

    from alignment.hub.record import build_record, save_record

    path = tmp_path / "steerable"
    save_steerable_checkpoint(adapted, path, AutoTokenizer.from_pretrained(tiny_policy_path))
    save_record(path, build_record(trainer="grpo", base_model=str(tiny_policy_path), steering="adapter",
                                   objectives=[{"name": n, "source": f"builtin:{n}", "threshold": None} for n in NAMES],
                                   weight_distribution={"type": "dirichlet", "alpha": {n: 1.0 for n in NAMES}}))
    return path


def test_generate_cli_sets_lambda_per_request(steerable_checkpoint, adapted, capsys):
    from alignment.steering import load_steerable
    from scripts.generate import main

    steerable = load_steerable(str(steerable_checkpoint))
    inputs = steerable.encode(["Hi there"])
    with torch.no_grad(), preference_weights(adapted, "conciseness=0.9,sentiment=0.1"):
        greedy = adapted.generate(**inputs, max_new_tokens=8, do_sample=False,
                                  pad_token_id=steerable.tokenizer.pad_token_id)
    expected = steerable.decode(greedy[:, inputs["input_ids"].shape[1]:])[0]
    assert main(["--model", str(steerable_checkpoint), "--prompt", "Hi there", "--max_new_tokens", "8",
                 "--weights", "conciseness=0.9,sentiment=0.1", "--greedy"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["method"] == "adapter" and row["completion"] == expected
    with pytest.raises(SystemExit, match="unknown objective"):
        main(["--model", str(steerable_checkpoint), "--prompt", "Hi", "--weights", "helpful=1"])


def test_publish_bakes_one_preference_into_a_plain_checkpoint(steerable_checkpoint, adapted, tmp_path):
    from scripts.publish import main

    assert main(["--output_dir", str(steerable_checkpoint), "--target_dir", str(tmp_path / "hub"),
                 "--weights", "conciseness=0.3,sentiment=0.7"]) == 0
    hub = tmp_path / "hub"
    assert not (hub / "preference_adapter").exists() and not (hub / "adapter_config.json").exists()
    plain = AutoModelForCausalLM.from_pretrained(hub).eval()  # transformers alone
    base = AutoModelForCausalLM.from_pretrained(adapted.peft_config["default"].base_model_name_or_path)
    # the very architecture of the base (class, tensor names and shapes): it generates at the plain model's speed
    assert type(plain) is type(base)
    assert {k: v.shape for k, v in plain.state_dict().items()} == {k: v.shape for k, v in base.state_dict().items()}
    ids = tokens()
    with torch.no_grad(), preference_weights(adapted, "conciseness=0.3,sentiment=0.7"):
        torch.testing.assert_close(plain(input_ids=ids).logits, adapted(input_ids=ids).logits, atol=1e-4, rtol=0)
    record = json.loads((hub / "objectives.json").read_text())
    assert record["baked_weights"] == {"conciseness": 0.3, "sentiment": 0.7} and record["steering"] == "none"
    assert "Baked at preference weights conciseness=0.3, sentiment=0.7" in (hub / "README.md").read_text()
    with pytest.raises(SystemExit, match="unknown objective"):
        main(["--output_dir", str(steerable_checkpoint), "--target_dir", str(tmp_path / "bad"),
              "--weights", "helpful=1"])
    assert not (tmp_path / "bad").exists()
    # unbaked, the steerable folder is published with its adapter
    assert main(["--output_dir", str(steerable_checkpoint), "--target_dir", str(tmp_path / "steer")]) == 0
    assert (tmp_path / "steer" / "preference_adapter" / "preference_adapter.json").exists()


def test_a_baked_both_checkpoint_card_gives_the_header_it_expects(steerable_checkpoint, tmp_path):
    """Trained with the weights in the adapter AND the prompt (`conditioning: both`): baked, the model still expects
    the header of its baked weights; the card must say which weights and which header, in the recorded format."""
    from alignment.objectives.conditioning import FORMAT_VERSION, PROMPT_FORMAT, preference_header
    from scripts.publish import main

    record_path = steerable_checkpoint / "objectives.json"
    record = json.loads(record_path.read_text())
    record_path.write_text(json.dumps({**record, "prompt_format": PROMPT_FORMAT,
                                       "prompt_format_version": FORMAT_VERSION}))
    assert main(["--output_dir", str(steerable_checkpoint), "--target_dir", str(tmp_path / "hub"),
                 "--weights", "conciseness=0.8,sentiment=0.2"]) == 0
    card = (tmp_path / "hub" / "README.md").read_text()
    header = preference_header("conciseness=0.8,sentiment=0.2", NAMES, FORMAT_VERSION)
    assert header == "Priorities: conciseness 80%, sentiment 20%"
    assert "Baked at preference weights conciseness=0.8, sentiment=0.2" in card
    assert f"    {header}\n" in card and f"prompt format version {FORMAT_VERSION}" in card
    assert "Fixed preference weights" not in card  # it was trained under sampled weights, baked afterwards
    assert json.loads((tmp_path / "hub" / "objectives.json").read_text())["baked_prompt_header"] == header
    # an adapter-only checkpoint baked: no header to expect
    record_path.write_text(json.dumps(record))
    assert main(["--output_dir", str(steerable_checkpoint), "--target_dir", str(tmp_path / "plain"),
                 "--weights", "0.5,0.5"]) == 0
    assert "Priorities:" not in (tmp_path / "plain" / "README.md").read_text()


def test_resume_restores_base_and_adapter_weights(adapted, tiny_policy_path, tmp_path):
    from alignment.models.preference_adapter import load_checkpoint_weights

    with torch.no_grad():  # a trained base too: resuming must bring back both
        next(p for n, p in adapted.named_parameters() if "lora_" not in n and p.dim() == 2).add_(0.1)
    save_steerable_checkpoint(adapted, tmp_path / "checkpoint-2")
    fresh = add_preference_adapter(AutoModelForCausalLM.from_pretrained(tiny_policy_path), NAMES, rank=4).eval()
    load_checkpoint_weights(fresh, tmp_path / "checkpoint-2")
    ids = tokens()
    with torch.no_grad(), preference_weights(adapted, "0.6,0.4"), preference_weights(fresh, "0.6,0.4"):
        torch.testing.assert_close(fresh(input_ids=ids).logits, adapted(input_ids=ids).logits, atol=1e-6, rtol=0)
    other = add_preference_adapter(AutoModelForCausalLM.from_pretrained(tiny_policy_path), NAMES, rank=2)
    with pytest.raises(Exception, match="size mismatch|shape"):
        load_checkpoint_weights(other, tmp_path / "checkpoint-2")


# ------------------------------------------------------------------------------------------------ DPO end to end

def train_steerable_dpo(policy_path, output_dir, seed, train_rows, scalarization="linear"):
    """Per-objective DPO with Dirichlet(1, 1) weights per pair fed to a preference adapter: the recipe of
    recipes/configs/dpo_steerable_tiny_cpu.yaml, shortened."""
    from transformers import AutoTokenizer

    from alignment.data.preferences import to_dataset
    from alignment.trainers.mo_dpo import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer

    args = MultiObjectiveDPOConfig(
        output_dir=str(output_dir), loss="per_objective", objectives=NAMES, scalarization=scalarization,
        conditioning="adapter", weights_mode="dirichlet", preference_adapter_rank=4, beta=0.1, max_length=96,
        per_device_train_batch_size=8, max_steps=DPO_STEPS, learning_rate=2e-3, lr_scheduler_type="constant",
        use_cpu=True, bf16=False, gradient_checkpointing=False, save_strategy="no", report_to="none", seed=seed,
        disable_tqdm=True, logging_steps=10,
    )
    trainer = MultiObjectiveDPOTrainer(model=AutoModelForCausalLM.from_pretrained(policy_path), args=args,
                                       train_dataset=to_dataset(train_rows),
                                       processing_class=AutoTokenizer.from_pretrained(policy_path))
    trainer.train()
    trainer.save_model(str(output_dir))
    return output_dir


DPO_STEPS = 30


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_adapter_conditioned_dpo_follows_its_weights(tiny_policy_path, tmp_path, one_thread, seed):
    """HH helpful pairs labelled per objective by the rewards themselves (shorter reply wins on conciseness, warmer
    one on sentiment; they disagree on ~60% of pairs): the steered replies get longer as the sentiment weight rises."""
    from alignment.data import resolve_data
    from alignment.data.preferences import label_pairs_per_objective, load_preference_splits
    from alignment.data.prompts import load_prompt_dataset
    from alignment.objectives.reward_vector import RewardVectorBuilder
    from alignment.steering import PreferenceAdapterSteerable, load_steerable
    from reward_models.scoring import objective_reward_sources

    train, _, _ = load_preference_splits("hh", "pairs", ["helpful"], num_train_rows=DPO_STEPS * 8, num_eval_rows=0,
                                         max_prompt_chars=160)
    labeller = RewardVectorBuilder(NAMES, objective_reward_sources(NAMES)[1])
    path = train_steerable_dpo(tiny_policy_path, tmp_path / "dpo", seed,
                               label_pairs_per_objective(train, NAMES, labeller))

    record = json.loads((path / "objectives.json").read_text())
    assert record["trainer"] == "dpo:per_objective" and record["steering"] == "adapter"
    assert record["weight_distribution"]["type"] == "dirichlet" and record["preference_adapter"]["rank"] == 4
    steerable = load_steerable(str(path))
    assert isinstance(steerable, PreferenceAdapterSteerable)
    prompts = load_prompt_dataset(resolve_data("hh-prompts"))
    held_out = [row["prompt"] for row in prompts.select(range(len(prompts) - 32, len(prompts)))]
    sentiment_weights = [0.0, 0.25, 0.5, 0.75, 1.0]
    lengths = mean_reply_lengths(steerable, held_out, sentiment_weights)
    print(f"DPO seed {seed}: mean reply length (chars) at sentiment weight {sentiment_weights}: "
          + ", ".join(f"{x:.1f}" for x in lengths))
    # conciseness=1 vs sentiment=1: a clear gap (with lambda ignored the same seed would give identical replies)
    assert lengths[-1] > 1.5 * lengths[0] + 10
    assert all(later > earlier - 2.0 for earlier, later in zip(lengths, lengths[1:])), lengths

    from scripts.publish import main  # and it bakes like a GRPO-trained one

    assert main(["--output_dir", str(path), "--target_dir", str(tmp_path / "baked"), "--weights", "0.9,0.1"]) == 0
    baked = AutoModelForCausalLM.from_pretrained(tmp_path / "baked")
    assert not any("lora_" in name for name in baked.state_dict())
    assert ("Baked at preference weights conciseness=0.9, sentiment=0.1"
            in (tmp_path / "baked" / "README.md").read_text())


@pytest.mark.parametrize("weights_per", ["row", "batch"])
def test_dpo_sets_lambda_for_the_policy_and_scores_the_reference_without_the_adapter(tiny_policy_path, tmp_path,
                                                                                       one_thread, weights_per):
    """One batch of per-objective DPO: each pair's lambda (its own, or the batch's) is set for the policy's chosen
    and rejected rows; the reference is the base model alone, so it does not move with lambda."""
    from transformers import AutoTokenizer

    from alignment.data.preferences import to_dataset
    from alignment.trainers.mo_dpo import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer

    pairs = [{"prompt": [{"role": "user", "content": f"Question {i}?"}],
              "chosen": [{"role": "assistant", "content": "Sure."}],
              "rejected": [{"role": "assistant", "content": f"Well, let me think about question {i} for a while."}],
              "objective_labels": [1, -1]} for i in range(4)]
    args = MultiObjectiveDPOConfig(output_dir=str(tmp_path), loss="per_objective", objectives=NAMES,
                                   conditioning="adapter", weights_mode="dirichlet", weights_per=weights_per,
                                   max_length=48, per_device_train_batch_size=4, use_cpu=True, report_to="none",
                                   gradient_checkpointing=False, bf16=False, seed=0)
    trainer = MultiObjectiveDPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_policy_path), args=args,
                                       train_dataset=to_dataset(pairs),
                                       processing_class=AutoTokenizer.from_pretrained(tiny_policy_path))
    with torch.no_grad():  # a trained adapter (U = 0 would hide lambda)
        for name, parameter in trainer.model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
    batch = next(iter(trainer.get_train_dataloader()))
    weights = trainer._pair_weights(batch, "train")
    assert weights.shape == (4, 2) and torch.allclose(weights.sum(dim=1), torch.ones(4))
    assert (weights == weights[:1]).all() == (weights_per == "batch")
    assert torch.equal(trainer._pair_weights(batch, "train"), weights)  # keyed, not drawn afresh

    trainer.model.eval()
    with torch.no_grad(), preference_weights(trainer.model, weights.repeat(2, 1)):
        logps, ref_logps = trainer._sequence_logps(trainer.model, batch)
        with preference_weights(trainer.model, (1 - weights).repeat(2, 1)):
            other_logps, other_ref = trainer._sequence_logps(trainer.model, batch)
    with torch.no_grad():  # the base alone: the adapter's update back at 0
        for name, parameter in trainer.model.named_parameters():
            if "lora_B" in name:
                parameter.zero_()
        with preference_weights(trainer.model, weights.repeat(2, 1)):
            base_logps, _ = trainer._sequence_logps(trainer.model, batch)
    torch.testing.assert_close(ref_logps, base_logps, atol=1e-5, rtol=0)
    torch.testing.assert_close(other_ref, ref_logps)
    assert (logps - other_logps).abs().max() > 1e-3  # lambda reaches the policy
    assert torch.isfinite(trainer.compute_loss(trainer.model, batch))
    assert (logps - ref_logps).abs().max() > 1e-3  # and the trained policy is not its reference


def test_dpo_with_the_adapter_resumes_base_and_adapter_from_its_checkpoint(tiny_policy_path, tmp_path, one_thread):
    """A steerable DPO checkpoint folder (base + preference_adapter/) is what resume_from_checkpoint reads back."""
    from transformers import AutoTokenizer

    from alignment.data.preferences import to_dataset
    from alignment.trainers.mo_dpo import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer

    pairs = [{"prompt": f"Question {i}?", "chosen": "Sure.", "rejected": f"Let me think about question {i} a while.",
              "objective_labels": [1, -1]} for i in range(8)]

    def trainer():
        args = MultiObjectiveDPOConfig(output_dir=str(tmp_path / "run"), loss="per_objective", objectives=NAMES,
                                       conditioning="adapter", weights_mode="dirichlet", max_length=32, max_steps=2,
                                       per_device_train_batch_size=4, learning_rate=1e-2, save_strategy="steps",
                                       save_steps=2, use_cpu=True, bf16=False, report_to="none", disable_tqdm=True,
                                       gradient_checkpointing=False, seed=0)
        return MultiObjectiveDPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_policy_path), args=args,
                                        train_dataset=to_dataset(pairs),
                                        processing_class=AutoTokenizer.from_pretrained(tiny_policy_path))

    first = trainer()
    first.train()
    checkpoint = tmp_path / "run" / "checkpoint-2"
    assert (checkpoint / "preference_adapter" / "preference_adapter.json").exists()
    assert not (checkpoint / "adapter_config.json").exists()  # never mistaken for a plain LoRA folder
    trained = {n: p.detach().clone() for n, p in first.model.named_parameters() if "lora_" in n}
    assert any(p.abs().max() > 0 for n, p in trained.items() if "lora_B" in n)
    second = trainer()
    second.train(resume_from_checkpoint=str(checkpoint))  # already at max_steps: loads and stops
    for name, parameter in second.model.named_parameters():
        if "lora_" in name:
            torch.testing.assert_close(parameter, trained[name], atol=0, rtol=0)


@pytest.mark.parametrize("enable_before_wrapping", [False, True])
def test_activation_checkpointing_recomputes_with_the_forwards_weights(adapted, enable_before_wrapping):
    """Checkpointing on gives the loss and gradients of checkpointing off: the backward recompute runs after
    `preference_weights` has put lambda back (None), so it must replay the lambda of its own forward. Two forwards at
    different weights before one backward check that each recompute gets its own forward's lambda, not the last."""
    from alignment.models.preference_adapter import keep_preference_under_checkpointing

    adapted.train()
    ids = tokens(rows=3, length=9)
    first, second = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.3, 0.7]]), torch.tensor([[0.5, 0.5]] * 3)

    def loss_and_grads():
        adapted.zero_grad(set_to_none=True)
        with preference_weights(adapted, first):
            loss = adapted(input_ids=ids, labels=ids).loss
        with preference_weights(adapted, second):
            loss = loss + 0.5 * adapted(input_ids=ids, labels=ids).loss
        loss.backward()  # outside both blocks, as a Trainer's training_step does
        return loss.detach(), {n: p.grad.clone() for n, p in adapted.named_parameters() if p.grad is not None}

    plain_loss, plain_grads = loss_and_grads()
    if enable_before_wrapping:  # checkpointing turned on by someone before the adapter's hook was installed
        del adapted.get_base_model()._set_gradient_checkpointing  # back to transformers' own
        adapted.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        keep_preference_under_checkpointing(adapted)
    else:
        adapted.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert adapted.is_gradient_checkpointing
    checkpointed_loss, checkpointed_grads = loss_and_grads()
    torch.testing.assert_close(checkpointed_loss, plain_loss, atol=1e-5, rtol=1e-5)
    assert plain_grads.keys() == checkpointed_grads.keys() and any("lora_B" in n for n in plain_grads)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(checkpointed_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_reentrant_checkpointing_is_refused_with_the_fix(adapted):
    with pytest.raises(ValueError, match="use_reentrant"):
        adapted.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})


def adapter_weights_after_two_steps(trainer_name, policy_path, output_dir, checkpointing: bool):
    """The preference adapter's parameters after 2 steps of GRPO (Dirichlet weights per prompt) or per-objective DPO
    (weights per pair) on the tiny policy, with activation checkpointing on or off; same seed, same data."""
    from transformers import AutoTokenizer

    from alignment.data.preferences import to_dataset
    from alignment.trainers.grpo import MultiObjectiveGRPOConfig, MultiObjectiveGRPOTrainer
    from alignment.trainers.mo_dpo import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer

    common = dict(output_dir=str(output_dir), objectives=NAMES, conditioning="adapter", weights_mode="dirichlet",
                  preference_adapter_rank=4, max_steps=2, learning_rate=5e-3, lr_scheduler_type="constant",
                  use_cpu=True, bf16=False, gradient_checkpointing=checkpointing, save_strategy="no",
                  report_to="none", seed=0, disable_tqdm=True)
    tokenizer = AutoTokenizer.from_pretrained(policy_path)
    model = AutoModelForCausalLM.from_pretrained(policy_path)
    torch.manual_seed(0)  # the adapter's random init (lora_A) is drawn before the Trainer seeds
    if trainer_name == "grpo":
        prompts = [{"prompt": [{"role": "user", "content": f"Tell me about topic {i}."}]} for i in range(4)]
        args = MultiObjectiveGRPOConfig(num_generations=4, per_device_train_batch_size=8, max_completion_length=12,
                                        beta=0.1, **common)
        from datasets import Dataset
        trainer = MultiObjectiveGRPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(prompts),
                                            processing_class=tokenizer)
    else:
        pairs = [{"prompt": [{"role": "user", "content": f"Question {i}?"}],
                  "chosen": [{"role": "assistant", "content": "Sure, gladly."}],
                  "rejected": [{"role": "assistant", "content": f"Well, let me think about question {i}."}],
                  "objective_labels": [1, -1]} for i in range(8)]
        args = MultiObjectiveDPOConfig(loss="per_objective", max_length=48, per_device_train_batch_size=4, **common)
        trainer = MultiObjectiveDPOTrainer(model=model, args=args, train_dataset=to_dataset(pairs),
                                           processing_class=tokenizer)
    trainer.train()
    assert trainer.model.is_gradient_checkpointing == checkpointing
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_" in n}


@pytest.mark.slow
@pytest.mark.parametrize("trainer_name", ["grpo", "dpo"])
def test_trainers_with_the_adapter_train_alike_with_activation_checkpointing(trainer_name, tiny_policy_path,
                                                                               tmp_path, one_thread):
    """2 steps with checkpointing on end at the parameters of 2 steps with it off (before the fix: a crash in the
    first backward, 'a preference adapter ran without preference weights')."""
    plain = adapter_weights_after_two_steps(trainer_name, tiny_policy_path, tmp_path / "off", checkpointing=False)
    checkpointed = adapter_weights_after_two_steps(trainer_name, tiny_policy_path, tmp_path / "on", checkpointing=True)
    assert plain.keys() == checkpointed.keys() and plain
    moved = [n for n, p in plain.items() if "lora_B" in n and p.abs().max() > 0]
    assert moved  # the steps trained the adapter (U starts at 0)
    for name, value in plain.items():
        torch.testing.assert_close(checkpointed[name], value, atol=1e-5, rtol=1e-4, msg=name)
