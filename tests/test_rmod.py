"""RMOD: the worst-case weights solve the log-mean-exp problem, the robust pick differs from best-of-K where it
should, and blockwise decoding on the tiny policy follows the weights."""


import pytest
import torch

from alignment import FunctionSource, SteeringError, load_steerable
from alignment.data import resolve_data
from alignment.data.jsonl import iter_jsonl
from alignment.steering import RobustDecoding
from alignment.steering.rmod import best_of_k_selector, rmod_selector, worst_case_weights
from reward_models.verifiable import conciseness, sentiment

# Two one-sided candidates and one balanced candidate.
VALUES = torch.tensor([[[1.0, -1.0], [-1.0, 1.0], [0.3, 0.3]]])  # one prompt, K = 3 candidates, 2 objectives


def log_mean_exp(values, w, lam=1.0):
    return torch.logsumexp(lam * values @ w, 0) - torch.log(torch.tensor(float(len(values))))


def test_worst_case_weights_minimize_log_mean_exp_on_the_simplex():
    # one problem alone, and the same problem solved in a batch beside another, give the grid minimum
    values = torch.tensor([[2.0, -0.5], [0.1, 0.4], [-1.0, 1.5], [0.7, 0.2]])
    w = worst_case_weights(values, torch.tensor([0.5, 0.5]), lam=2.0)
    batched = worst_case_weights(torch.stack([values, -values]), torch.tensor([0.5, 0.5]), lam=2.0)
    torch.testing.assert_close(batched[0], w)
    grid = [torch.tensor([a, 1 - a]) for a in torch.linspace(0, 1, 1001).tolist()]
    best = min(log_mean_exp(values, g, 2.0).item() for g in grid)
    assert w.sum().item() == pytest.approx(1.0) and (w >= 0).all()
    assert log_mean_exp(values, w, 2.0).item() == pytest.approx(best, abs=1e-4)


def test_rmod_keeps_the_balanced_candidate_where_best_of_k_follows_the_weights():
    user = torch.tensor([0.9, 0.1])
    assert best_of_k_selector(VALUES, user).tolist() == [0]  # 0.9 * 1 - 0.1 * 1 = 0.8 is the best weighted sum
    w = worst_case_weights(VALUES, user)
    assert w[0].tolist() == pytest.approx([0.5, 0.5], abs=1e-3)  # by symmetry, the worst case balances the objectives
    assert rmod_selector()(VALUES, user).tolist() == [2]  # w*.V = (0, 0, 0.3)


def test_rmod_with_weight_one_is_best_of_k_on_that_objective():
    one_hot = torch.tensor([0.0, 1.0])
    assert worst_case_weights(VALUES, one_hot).tolist() == [[0.0, 1.0]]
    assert rmod_selector()(VALUES, one_hot).tolist() == best_of_k_selector(VALUES, one_hot).tolist() == [1]


def test_strong_pull_toward_the_user_weights_recovers_best_of_k():
    user = torch.tensor([0.9, 0.1])
    w = worst_case_weights(VALUES, user, tau=100.0)
    assert w[0].tolist() == pytest.approx(user.tolist(), abs=0.02)
    assert rmod_selector(tau=100.0)(VALUES, user).tolist() == best_of_k_selector(VALUES, user).tolist()


@pytest.fixture(scope="module")
def prompts():
    return [row["prompt"] for _, (_, row) in zip(range(8), iter_jsonl(resolve_data("hh-prompts")))]


@pytest.fixture(scope="module")
def sources():
    return [FunctionSource("conciseness", conciseness), FunctionSource("sentiment", sentiment)]


def test_rmod_needs_a_reward_source(tiny_policy_path):
    with pytest.raises(SteeringError, match="needs reward_sources"):
        load_steerable(str(tiny_policy_path), method="rmod")


def test_rmod_decoding_with_weight_one_matches_best_of_k_and_differs_from_it_otherwise(tiny_policy_path, sources,
                                                                                       prompts):
    torch.set_num_threads(1)
    rmod = load_steerable(str(tiny_policy_path), method="rmod", reward_sources=sources, num_candidates=4, block_size=8)
    best_of_k = load_steerable(str(tiny_policy_path), method="best_of_k", reward_sources=sources, num_candidates=4,
                               block_size=8)
    assert isinstance(rmod, RobustDecoding) and rmod.objective_names == ["conciseness", "sentiment"]
    robust = rmod.generate(prompts, "conciseness=1", max_new_tokens=24, seed=0)
    baseline = best_of_k.generate(prompts, "conciseness=1", max_new_tokens=24, seed=0)
    assert robust == baseline  # one objective: the worst case is that objective
    # two objectives: the same sampled candidates, but the worst-case pick is not the weighted-sum pick (measured:
    # 8 of 8 replies differ for seeds 0 and 1); at least half must
    for seed in (0, 1):
        robust = rmod.generate(prompts, "conciseness=0.5,sentiment=0.5", max_new_tokens=24, seed=seed)
        baseline = best_of_k.generate(prompts, "conciseness=0.5,sentiment=0.5", max_new_tokens=24, seed=seed)
        assert sum(r != b for r, b in zip(robust, baseline)) >= len(prompts) // 2


def test_rmod_at_tau_zero_warns_that_only_the_support_of_the_weights_counts(tiny_policy_path, sources, prompts):
    rmod = load_steerable(str(tiny_policy_path), method="rmod", reward_sources=sources, num_candidates=2, block_size=4)
    with pytest.warns(UserWarning, match="rmod at tau=0 uses only which objectives have weight > 0"):
        rmod.generate(prompts[:1], "conciseness=0.9,sentiment=0.1", max_new_tokens=4, seed=0)


def test_rmod_weights_pulled_toward_conciseness_shorten_replies(tiny_policy_path, sources, prompts):
    """Direction, 3 seeds x 8 prompts. Measured mean lengths (chars): 45.6/70.3, 41.1/74.6, 45.1/75.3; each seed must
    go the right way and the pooled ratio must stay under 0.8 (chance differences are ~10 chars per seed)."""
    torch.set_num_threads(1)
    rmod = load_steerable(str(tiny_policy_path), method="rmod", reward_sources=sources, num_candidates=4, block_size=8,
                          tau=5.0)
    length = lambda completions: sum(len(c) for c in completions) / len(completions)  # noqa: E731
    shorts, longs = [], []
    for seed in (0, 1, 2):
        shorts.append(length(rmod.generate(prompts, "conciseness=0.9,sentiment=0.1", max_new_tokens=24, seed=seed)))
        longs.append(length(rmod.generate(prompts, "conciseness=0.1,sentiment=0.9", max_new_tokens=24, seed=seed)))
    print(f"RMOD (tau=5) mean length per seed: conciseness=0.9 -> {shorts}, conciseness=0.1 -> {longs}")
    assert all(short < long for short, long in zip(shorts, longs))
    assert sum(shorts) < 0.8 * sum(longs)
