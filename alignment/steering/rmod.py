"""RMOD (Robust Multi-Objective Decoding, seed paper): blockwise decoding against the worst-case preference weights.

Per block of B tokens: sample K candidate continuations of every prompt, score prompt + (decoded so far + candidate)
with the reward source (values V, [K, n_obj]), solve

    w* = argmin_{w in simplex} log mean_k exp(lambda w . V_k)  (+ tau KL(w || u))

and keep the candidate argmax_k w* . V_k. The log-mean-exp is convex in w, so a few exponentiated-gradient (mirror
descent) steps on the simplex solve it; K and n_obj are small, so this costs nothing next to the sampling.

The user's weights u enter through the optional KL term: tau = 0 is the paper's robust objective over the objectives
u puts weight on (KL(w || u) is infinite outside u's support), tau -> infinity gives w* = u, which is plain best-of-K
under the user's weights. With one-hot u both reduce to best-of-K on that one objective. `best_of_k_selector` is that
baseline: the same loop, scalar = u . V_k.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

from alignment.models.policy import eos_token_ids
from alignment.objectives.reward_vector import RewardVectorBuilder
from alignment.objectives.sources import RewardSource
from alignment.steering.base import Steerable, SteeringError
from alignment.steering.checkpoints import load_causal_lm


def worst_case_weights(values: torch.Tensor, user_weights: torch.Tensor, lam: float = 1.0, tau: float = 0.0,
                       steps: int = 200, step_size: float = 0.5, tolerance: float = 1e-7) -> torch.Tensor:
    """w* on the simplex minimizing log mean_k exp(lam w.V_k) + tau KL(w || u), by exponentiated gradient.

    values: [K, n_obj] candidate values, or [N, K, n_obj] to solve N independent problems at once (one per prompt);
    user_weights u: [n_obj] on the simplex. Returns [n_obj] (or [N, n_obj]) in the dtype of `values` (float32 for
    integer values). Objectives with u_i = 0 stay at 0. With the default 200 steps the objective is within 1e-3 of
    an exact projected-gradient solution (tests/test_peer_equivalence.py).
    The arrays are tiny, so the iterations run in NumPy (per-op overhead ~10x below torch's on CPU).
    """
    V = values.detach().double().cpu().numpy()
    u = user_weights.detach().double().cpu().numpy()
    support = u > 0
    prior = np.where(support, u, 1.0)
    w = np.broadcast_to(support / support.sum(), V.shape[:-2] + u.shape).copy()  # uniform over u's support
    # The gradient of log mean exp(lam w.V) is lam * softmax(lam V w)^T V, of size ~lam * |V|, and the KL term pulls
    # with strength tau: scaling the step by both keeps the mirror step a contraction (no oscillation for large tau)
    rate = step_size / (lam * max(np.abs(V).max(initial=0.0), 1e-12) + tau)
    for _ in range(steps):
        scores = lam * np.einsum("...kn,...n->...k", V, w)
        candidate_weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
        candidate_weights /= candidate_weights.sum(axis=-1, keepdims=True)
        gradient = lam * np.einsum("...k,...kn->...n", candidate_weights, V)
        if tau > 0:
            gradient = gradient + tau * np.log(np.where(support, np.maximum(w, 1e-300), 1.0) / prior)
        step = -rate * gradient
        updated = np.where(support, w * np.exp(step - step.max(axis=-1, keepdims=True)), 0.0)
        updated /= updated.sum(axis=-1, keepdims=True)
        converged = np.abs(updated - w).max() < tolerance
        w = updated
        if converged:
            break
    dtype = values.dtype if values.is_floating_point() else torch.float32
    return torch.from_numpy(w).to(dtype)


def rmod_selector(lam: float = 1.0, tau: float = 0.0,
                  steps: int = 200) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Per prompt, pick argmax_k w*.V_k with w* the worst-case weights of its candidates.

    values: [N, K, n_obj] -> [N].
    """

    def select(values: torch.Tensor, user_weights: torch.Tensor) -> torch.Tensor:
        w = worst_case_weights(values, user_weights, lam=lam, tau=tau, steps=steps)
        return torch.argmax((values @ w.unsqueeze(-1)).squeeze(-1), dim=-1)

    return select


def best_of_k_selector(values: torch.Tensor, user_weights: torch.Tensor) -> torch.Tensor:
    """The baseline: per prompt, the candidate with the highest user-weighted sum u.V_k.

    values: [N, K, n_obj] -> [N].
    """
    return torch.argmax(values @ user_weights, dim=-1)


def _left_pad(rows: list[list[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row):] = 1
    return ids, mask


@torch.no_grad()
def blockwise_decode(model, tokenizer, prompt_ids: list[list[int]], prompts: list, reward: RewardVectorBuilder,
                     user_weights: torch.Tensor, select: Callable[[torch.Tensor, torch.Tensor], int], *,
                     num_candidates: int = 4, block_size: int = 8, max_new_tokens: int = 48,
                     temperature: float = 1.0, top_p: float = 1.0, top_k: int | None = None) -> list[list[int]]:
    """Generated token ids per prompt: blocks of `block_size` tokens, each chosen among `num_candidates` samples.

    `prompts` are what the reward source sees as prompts (text or chat messages); `prompt_ids` the tokenized model
    inputs. A row stops at the end-of-sequence token or after `max_new_tokens`.
    """
    if num_candidates < 1 or block_size < 1:
        raise ValueError(f"blockwise decoding: num_candidates ({num_candidates}) and block_size ({block_size}) "
                         "must be >= 1")
    eos_ids = eos_token_ids(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(eos_ids))
    generated = [[] for _ in prompt_ids]
    active = list(range(len(prompt_ids)))
    while active:
        rows = [prompt_ids[i] + generated[i] for i in active]
        input_ids, attention_mask = _left_pad(rows, pad_id)
        steps = min(block_size, max_new_tokens - max(len(generated[i]) for i in active))
        output = model.generate(
            input_ids=input_ids.to(model.device), attention_mask=attention_mask.to(model.device),
            max_new_tokens=steps, do_sample=True, temperature=temperature, top_p=top_p, top_k=top_k,
            num_return_sequences=num_candidates, pad_token_id=pad_id,
        )[:, input_ids.shape[1]:].cpu()
        candidates = []  # per (row, k): the candidate block, cut after its first end-of-sequence token
        for block in output.tolist():
            cut = next((j + 1 for j, t in enumerate(block) if t in eos_ids), len(block))
            candidates.append(block[:cut])
        texts = [tokenizer.decode(generated[i] + candidates[n * num_candidates + k], skip_special_tokens=True)
                 for n, i in enumerate(active) for k in range(num_candidates)]
        scored_prompts = [prompts[i] for i in active for _ in range(num_candidates)]
        values, _ = reward(scored_prompts, texts)
        choices = select(values.view(len(active), num_candidates, -1), user_weights).tolist()
        still_active = []
        for n, i in enumerate(active):
            choice = candidates[n * num_candidates + choices[n]]
            generated[i] += choice
            if not (choice and choice[-1] in eos_ids) and len(generated[i]) < max_new_tokens:
                still_active.append(i)
        active = still_active
    return generated


def reward_builder(objective_names: Sequence[str],
                   sources: RewardSource | Sequence[RewardSource]) -> RewardVectorBuilder:
    """The [N, n_obj] value function of RMOD: every source run once per block, NaN rewards raise with their name."""
    sources = [sources] if isinstance(sources, RewardSource) else list(sources)
    return RewardVectorBuilder(objective_names, sources)


class RobustDecoding(Steerable):
    """RMOD (or, with `robust=False`, its best-of-K baseline) around one policy, with a reward source as value
    function (alignment.steering.rmod)."""

    method = "rmod"
    method_arguments = ("num_candidates", "block_size", "lam", "tau")

    def __init__(self, model, tokenizer, reward_sources: RewardSource | Sequence[RewardSource], objective_names=None,
                 device="cpu", robust: bool = True, num_candidates: int = 4, block_size: int = 8,
                 lam: float = 1.0, tau: float = 0.0):
        sources = [reward_sources] if isinstance(reward_sources, RewardSource) else list(reward_sources)
        names = objective_names or [n for s in sources for n in s.objective_names]
        super().__init__(tokenizer, names, device)
        self.model = model
        self.reward = reward_builder(self.objective_names, sources)
        self.robust = robust
        self.method = "rmod" if robust else "best_of_k"
        self.select = rmod_selector(lam=lam, tau=tau) if robust else best_of_k_selector
        self.tau = tau
        self.num_candidates, self.block_size = num_candidates, block_size

    @classmethod
    def from_checkpoint(cls, path: Path, record: dict | None, *, objective_names=None,
                        reward_sources: RewardSource | Sequence[RewardSource] | None = None, device="cpu", dtype=None,
                        **method_kwargs) -> RobustDecoding:
        """Blockwise decoding of one full checkpoint (any: its record is not needed), scored by `reward_sources`.

        The objective names are `objective_names`, else those of the reward sources; `method_kwargs` are the
        method's options (num_candidates, block_size, lam, tau).
        """
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = load_causal_lm(path, dtype, device)
        if reward_sources is None:
            raise SteeringError(f"{cls.method} needs reward_sources: the value function that scores candidate blocks")
        return cls(model, tokenizer, reward_sources, objective_names, device, **method_kwargs)

    def _generate(self, prompts, weights, decoding):
        if not decoding["do_sample"]:
            raise SteeringError(f"{self.method}: candidates are sampled; do_sample=False would give K identical blocks")
        support = weights[weights > 0]
        if self.robust and self.tau == 0 and not torch.allclose(support, support.mean().expand_as(support)):
            warnings.warn("rmod at tau=0 uses only which objectives have weight > 0, not their values (the paper's "
                          "robust objective); set tau > 0 to pull the worst-case weights toward yours",
                          UserWarning, stacklevel=3)
        prompt_ids = [self.tokenizer(self.render(p), add_special_tokens=False)["input_ids"] for p in prompts]
        generated = blockwise_decode(
            self.model, self.tokenizer, prompt_ids, [self.as_messages(p) for p in prompts], self.reward, weights,
            self.select, num_candidates=self.num_candidates, block_size=self.block_size,
            max_new_tokens=decoding["max_new_tokens"], temperature=decoding["temperature"], top_p=decoding["top_p"],
            top_k=decoding["top_k"],
        )
        return self.decode(generated)


class BestOfK(RobustDecoding):
    """The best-of-K baseline of RMOD: the same blockwise loop, each block the candidate with the highest u.V_k."""

    method = "best_of_k"
    method_arguments = ("num_candidates", "block_size")

    def __init__(self, model, tokenizer, reward_sources: RewardSource | Sequence[RewardSource], objective_names=None,
                 device="cpu", **options):
        super().__init__(model, tokenizer, reward_sources, objective_names, device, robust=False, **options)
