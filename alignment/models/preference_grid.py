"""A preference adapter at one fixed lambda is a plain LoRA: the grid that lets engines without per-row lambda
(vLLM) serve a steerable policy.

For a fixed lambda, each preference layer's update

    scaling * U . diag(sigma, lambda_scale * s * lambda) . V^T

is exactly a rank-(r + K) LoRA with lora_B = U and lora_A = diag(sigma, lambda_scale * s * lambda) . V^T. An engine
that serves per-request LoRAs (vLLM's `LoRARequest`) can therefore serve the policy at any lambda, one LoRA per
lambda. To keep the number of LoRAs bounded, the weights are snapped to a grid on the simplex (`snap_to_grid`,
steps of `resolution`); a trainer that generates on such an engine trains on the same snapped weights, so generation
and training see one policy.

    points = snap_to_grid(torch.tensor([[0.73, 0.27], [0.12, 0.88]]), 0.1)    # [[0.7, 0.3], [0.1, 0.9]]
    save_lora_at(peft_model, points[0], "lora-0.7-0.3")                         # a peft LoRA folder, any engine
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from alignment.models.preference_adapter import PreferenceLoraLinear, preference_weights


def grid_steps(resolution: float) -> int:
    """The number of grid steps between 0 and 1 (1 / resolution, which must be a whole number)."""
    if not 0 < resolution <= 1:
        raise ValueError(f"preference_grid must be in (0, 1], got {resolution}")
    steps = round(1 / resolution)
    if abs(steps * resolution - 1) > 1e-6:
        raise ValueError(f"preference_grid must divide 1 into whole steps (0.1, 0.25, 0.5, ...), got {resolution}")
    return steps


def grid_size(num_objectives: int, resolution: float) -> int:
    """How many points the grid has on the K-simplex: C(steps + K - 1, K - 1)."""
    return math.comb(grid_steps(resolution) + num_objectives - 1, num_objectives - 1)


def snap_to_grid(weights: torch.Tensor, resolution: float) -> torch.Tensor:
    """Each row of `weights` ([N, K] or [K], rows on the simplex) moved to the nearest grid point whose coordinates
    are multiples of `resolution` summing to 1 (largest remainders: floor every coordinate, then give the missing
    steps to the largest fractional parts, so a point already on the grid stays where it is)."""
    steps = grid_steps(resolution)
    rows = weights.reshape(-1, weights.shape[-1]).double()
    scaled = rows / rows.sum(dim=1, keepdim=True) * steps
    counts = scaled.floor()
    missing = (steps - counts.sum(dim=1)).round().long()
    order = (scaled - counts).argsort(dim=1, descending=True, stable=True)
    for row in range(rows.shape[0]):
        counts[row, order[row, :missing[row]]] += 1
    return (counts / steps).to(weights.dtype).reshape(weights.shape)


def grid_key(point: torch.Tensor, resolution: float) -> tuple[int, ...]:
    """A grid point as integers (its coordinates in steps): a hashable name that rounding cannot split in two."""
    return tuple(int(round(x * grid_steps(resolution))) for x in point.tolist())


def lora_at(peft_model, weights) -> dict[str, torch.Tensor]:
    """The exact LoRA of the preference adapter at lambda = `weights` (one vector), as peft's saved state dict
    ({module}.lora_A.weight, {module}.lora_B.weight). `weights` None gives the same shapes with a zero update: the
    base model as a LoRA, for engines that must give every request an adapter."""
    tensors = {}
    with preference_weights(peft_model, weights) if weights is not None else contextlib.nullcontext() as state:
        for name, module in peft_model.named_modules():
            if not isinstance(module, PreferenceLoraLinear):
                continue
            adapter = module.active_adapters[0]
            lora_a = module.lora_A[adapter].weight.detach()
            lora_b = module.lora_B[adapter].weight.detach()
            if weights is None:
                a_at = torch.zeros_like(lora_a)
            else:  # peft's lora_alpha / r scaling stays in the saved config, as in the adapter
                diagonal = state.diagonal(module.lora_sigma[adapter].detach(),
                                          module.lora_preference_scale[adapter].detach(), rows=1)[0]
                a_at = diagonal.to(lora_a.dtype).unsqueeze(1) * lora_a
            tensors[f"{name}.lora_A.weight"] = a_at.contiguous()
            tensors[f"{name}.lora_B.weight"] = lora_b.clone().contiguous()
    if not tensors:
        raise ValueError(f"{type(peft_model).__name__} has no preference adapter layers")
    return tensors


def lora_config_dict(peft_model) -> dict:
    """The adapter_config.json of a LoRA exported by `lora_at`: the preference adapter's own LoRA settings (rank
    r + K, lora_alpha, target modules), with no custom layer."""
    config = peft_model.peft_config[peft_model.active_adapter]
    return {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": config.r, "lora_alpha": config.lora_alpha,
            "target_modules": sorted(config.target_modules), "lora_dropout": 0.0, "bias": "none",
            "base_model_name_or_path": config.base_model_name_or_path, "fan_in_fan_out": False,
            "inference_mode": True}


def save_lora_at(peft_model, weights, directory: str | Path) -> Path:
    """`lora_at` written as a peft LoRA folder (adapter_config.json, adapter_model.safetensors) that vLLM, peft and
    transformers load as an ordinary LoRA (`weights` None: the zero LoRA)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(lora_at(peft_model, weights), str(directory / "adapter_model.safetensors"))
    (directory / "adapter_config.json").write_text(json.dumps(lora_config_dict(peft_model), indent=2) + "\n")
    return directory
