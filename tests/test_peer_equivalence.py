"""Agreement with the reference implementations, by calling them: when TRL changes its math, these tests say so.

- GRPO advantages: TRL's own GRPOTrainer and ours generate on the same batch (same tiny model, seed, reward
  functions and weights); TRL's advantages are read from its `_generate_and_score_completions` output.
- DPO family: TRL's DPOTrainer loss on the same log-probs as MODPO with one objective and cardinal DPO with gap 0.
- RMOD worst-case weights: an exact projected-gradient solution of the same convex problem.
"""

import math

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer, GRPOConfig, GRPOTrainer

from alignment import MultiObjectiveGRPOConfig, MultiObjectiveGRPOTrainer
from alignment.data.prompts import load_prompt_dataset
from alignment.steering.rmod import worst_case_weights
from tests.test_grpo_trainer import PROMPTS

GROUP, NUM_PROMPTS = 4, 4


def length_reward(prompts, completions, **kwargs):
    return [len(str(c)) / 10.0 for c in completions]


def vowel_reward(prompts, completions, **kwargs):
    return [sum(ch in "aeiou" for ch in str(c)) / 5.0 for c in completions]


def vowel_reward_or_none(prompts, completions, **kwargs):
    """Missing (None) for every other completion: TRL sums the objectives present."""
    return [None if i % 2 else value for i, value in enumerate(vowel_reward(prompts, completions))]


COMMON = dict(num_generations=GROUP, per_device_train_batch_size=GROUP * NUM_PROMPTS, max_completion_length=12,
              use_cpu=True, bf16=False, report_to="none", save_strategy="no", seed=0, disable_tqdm=True,
              logging_steps=1, max_steps=1)


@pytest.fixture(scope="module")
def grpo_pair(tiny_policy_path, tmp_path_factory):
    """make(second_reward): (TRL's GRPOTrainer, ours) on the same model, data, rewards and weights (0.3, 0.7)."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_policy_path)
    dataset = load_prompt_dataset(PROMPTS, limit=NUM_PROMPTS)
    out = tmp_path_factory.mktemp("peer")

    def make(second_reward):
        trl_trainer = GRPOTrainer(
            model=AutoModelForCausalLM.from_pretrained(tiny_policy_path), reward_funcs=[length_reward, second_reward],
            args=GRPOConfig(output_dir=str(out / "trl"), reward_weights=[0.3, 0.7], **COMMON),
            train_dataset=dataset, processing_class=tokenizer)
        ours = MultiObjectiveGRPOTrainer(
            model=AutoModelForCausalLM.from_pretrained(tiny_policy_path), processing_class=tokenizer,
            args=MultiObjectiveGRPOConfig(
                output_dir=str(out / "ours"), preference_weights="length=0.3,vowels=0.7", drop_invalid_rewards=True,
                objectives=["length=python:tests.test_peer_equivalence:length_reward",
                            f"vowels=python:tests.test_peer_equivalence:{second_reward.__name__}"], **COMMON),
            train_dataset=dataset)
        return trl_trainer, ours

    return make


def _advantages(trainer, inputs):
    torch.manual_seed(1234)  # the same sampled completions for both trainers
    output = trainer._generate_and_score_completions([dict(x) for x in inputs])
    return output["completion_ids"], output["advantages"]


@pytest.mark.parametrize("second_reward, partial", [(vowel_reward, "drop_row"), (vowel_reward_or_none, "sum_present")])
def test_linear_advantages_match_trl_grpo_trainer_for_every_aggregation_and_scale(grpo_pair, second_reward, partial):
    trl_trainer, ours = grpo_pair(second_reward)
    ours.args.partial_rewards = partial
    inputs = [{"prompt": row["prompt"]} for row in trl_trainer.train_dataset for _ in range(GROUP)]
    for aggregation in ("sum_then_normalize", "normalize_then_sum"):
        for scale in ("group", "batch", "none"):
            trl_trainer.multi_objective_aggregation, trl_trainer.scale_rewards = aggregation, scale
            ours.args.multi_objective_aggregation, ours.args.scale_rewards = aggregation, scale
            trl_ids, trl_advantages = _advantages(trl_trainer, inputs)
            our_ids, our_advantages = _advantages(ours, inputs)
            assert torch.equal(trl_ids, our_ids), "the two trainers sampled different completions"
            assert trl_advantages.abs().max() > 0.1  # a batch where the advantages say something
            torch.testing.assert_close(our_advantages, trl_advantages, atol=1e-5, rtol=1e-5,
                                       msg=f"{aggregation} / scale_rewards={scale} / {partial} differs from TRL")


# ------------------------------------------------------------------------------------------------ DPO family

PAIRS = [
    ("How do I boil an egg?", " Put it in boiling water for nine minutes.", " Eggs are birds."),
    ("Name a colour.", " Blue.", " I will not answer that question, sorry."),
    ("What is two plus two?", " Four.", " Two plus two is a hard question about numbers and sums."),
    ("Say hello.", " Hello there!", " No."),
]


def _perturbed(model, seed=0):
    """The policy moved away from its reference, so the log-ratios are not all zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return model


def _loss_on_first_rows(trainer, dataset_rows):
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(dataset_rows))])
    _perturbed(trainer.model)
    trainer.model.eval()
    with torch.no_grad():
        return trainer.compute_loss(trainer.model, batch).item()


@pytest.mark.parametrize("loss, extra, shape", [
    ("modpo", {"chosen_margins": [], "rejected_margins": []}, "pairs"),  # one objective: MODPO is DPO
    ("cardinal", {"score_gap": 0.0}, "pairs"),                            # offset mode, gap 0: DPO
    ("mdpo", {}, "groups"),                                               # groups of one: DPO
])
def test_dpo_family_reductions_match_trl_dpo_trainer_loss(tiny_policy_path, tmp_path, loss, extra, shape):
    from datasets import Dataset

    from alignment.trainers.mo_dpo import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_policy_path)
    settings = dict(use_cpu=True, beta=0.5, max_length=64, report_to="none", save_strategy="no", seed=0)
    pairs = [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in PAIRS]
    trl_trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_policy_path),
                             args=DPOConfig(output_dir=str(tmp_path / "trl"), **settings),
                             train_dataset=Dataset.from_list(pairs), processing_class=tokenizer)
    ours_rows = [{**row, **extra} if shape == "pairs" else {"prompt": row["prompt"], "chosen": [row["chosen"]],
                                                            "rejected": [row["rejected"]]} for row in pairs]
    ours = MultiObjectiveDPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_policy_path), processing_class=tokenizer,
        args=MultiObjectiveDPOConfig(output_dir=str(tmp_path / "ours"), loss=loss, objectives=["helpful"],
                                     cardinal_mode="offset", **settings),
        train_dataset=Dataset.from_list(ours_rows))
    trl_loss, our_loss = _loss_on_first_rows(trl_trainer, pairs), _loss_on_first_rows(ours, ours_rows)
    assert abs(trl_loss - math.log(2)) > 0.05  # the policy differs from its reference: a real comparison
    assert our_loss == pytest.approx(trl_loss, rel=1e-5, abs=1e-6)


def test_ipo_matches_trl_dpo_trainer_ipo_loss(tiny_policy_path, tmp_path):
    """IPO with TRL's length normalization: the same loss as TRL's DPOTrainer with loss_type 'ipo'."""
    from datasets import Dataset

    from alignment.trainers.mo_dpo import MultiObjectiveDPOConfig, MultiObjectiveDPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_policy_path)
    settings = dict(use_cpu=True, beta=0.5, max_length=64, report_to="none", save_strategy="no", seed=0)
    pairs = [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in PAIRS]
    trl_trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_policy_path),
                             args=DPOConfig(output_dir=str(tmp_path / "trl"), loss_type=["ipo"], **settings),
                             train_dataset=Dataset.from_list(pairs), processing_class=tokenizer)
    ours = MultiObjectiveDPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_policy_path), processing_class=tokenizer,
        args=MultiObjectiveDPOConfig(output_dir=str(tmp_path / "ours"), loss="ipo", objectives=["helpful"], **settings),
        train_dataset=Dataset.from_list(pairs))
    trl_loss, our_loss = _loss_on_first_rows(trl_trainer, pairs), _loss_on_first_rows(ours, pairs)
    assert abs(trl_loss - 1.0) > 0.05  # the policy differs from its reference: (0 - 1/(2 * 0.5))^2 = 1 otherwise
    assert our_loss == pytest.approx(trl_loss, rel=1e-5, abs=1e-6)


# ------------------------------------------------------------------------------------------------ RMOD

def _exact_worst_case_weights(values: np.ndarray, lam: float, iterations: int = 20000) -> np.ndarray:
    """argmin over the simplex of log mean_k exp(lam w.V_k), by projected gradient descent with the Euclidean
    projection onto the simplex (Duchi et al. 2008) and a 1/L step: an independent solver of the same problem."""
    def project(v):
        u = np.sort(v)[::-1]
        cumulative = np.cumsum(u) - 1
        rho = np.nonzero(u - cumulative / np.arange(1, len(v) + 1) > 0)[0][-1]
        return np.maximum(v - cumulative[rho] / (rho + 1), 0)

    n_obj = values.shape[1]
    w = np.full(n_obj, 1 / n_obj)
    step = 1 / (lam ** 2 * np.abs(values).max() ** 2 * n_obj + 1e-12)  # the Hessian's norm is at most this L
    for _ in range(iterations):
        scores = lam * values @ w
        p = np.exp(scores - scores.max())
        p /= p.sum()
        updated = project(w - step * lam * (p @ values))
        if np.abs(updated - w).max() < 1e-13:  # a fixed point of the projected step: the minimizer
            return updated
        w = updated
    return w


def _objective(values, w, lam):
    scores = lam * values @ w
    return np.log(np.mean(np.exp(scores - scores.max()))) + scores.max()


def test_rmod_worst_case_weights_match_an_exact_projected_gradient_solution():
    """Tolerance, at the default 200 exponentiated-gradient steps: the objective within 1e-3 of the exact minimum
    on every problem; weights within 0.05 (max abs) on every problem and within 1e-3 on the median one."""
    rng = np.random.default_rng(0)
    gaps, errors = [], []
    for _ in range(20):
        values = rng.normal(size=(int(rng.integers(3, 9)), int(rng.integers(2, 5))))
        lam = float(rng.choice([0.5, 1.0, 2.0]))
        exact = _exact_worst_case_weights(values, lam)
        ours = worst_case_weights(torch.tensor(values), torch.full((values.shape[1],), 1 / values.shape[1]),
                                  lam=lam).numpy()
        gaps.append(_objective(values, ours, lam) - _objective(values, exact, lam))
        errors.append(np.abs(ours - exact).max())
    assert max(gaps) < 1e-3 and max(errors) < 0.05 and np.median(errors) < 1e-3, (gaps, errors)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_rmod_takes_any_float_dtype_and_returns_the_same(dtype):
    from alignment.steering.rmod import rmod_selector

    values = torch.tensor([[[1.0, -1.0], [0.2, 0.1], [-1.0, 1.0]]], dtype=dtype)
    weights = worst_case_weights(values, torch.tensor([0.5, 0.5]))
    assert weights.dtype == dtype
    assert rmod_selector()(values, torch.tensor([0.5, 0.5])).tolist() == [1]  # the balanced candidate
