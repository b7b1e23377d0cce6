"""Target weights: what the reward model's scores of a prompt's preferred reply say the prompt calls for, and the
KL divergence the head is trained and judged on."""

from __future__ import annotations

import torch

from alignment.orchestrator.errors import OrchestratorError

# How normalized scores become target weights: softmax(z / T), or max(z, 0) normalized.
TARGETS = ("softmax", "clip")


def target_weights(scores: torch.Tensor, target: str = "softmax", temperature: float = 1.0) -> torch.Tensor:
    """[N, K] normalized head scores of chosen replies -> [N, K] target weights on the simplex."""
    if target not in TARGETS:
        raise OrchestratorError(f"target must be one of {TARGETS}, got '{target}'")
    scores = scores.float()
    if target == "softmax":
        if not temperature > 0:
            raise OrchestratorError(f"softmax target: temperature must be > 0, got {temperature}")
        return torch.softmax(scores / temperature, dim=-1)
    clipped = scores.clamp(min=0.0)
    total = clipped.sum(dim=-1, keepdim=True)
    # A reply below the mean on every head says nothing about the balance: no preference, equal weights.
    uniform = torch.full_like(clipped, 1.0 / scores.shape[-1])
    return torch.where(total > 0, clipped / total.clamp(min=1e-12), uniform)


def kl_to_target(target: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
    """Per-row KL(target || predicted), [N]; 0 log 0 = 0 (clip targets have exact zeros)."""
    predicted = predicted.clamp(min=1e-12)
    per_objective = target * (target.clamp(min=1e-12).log() - predicted.log())
    return torch.where(target > 0, per_objective, torch.zeros_like(target)).sum(-1)
