"""MGDA on GRPO: the classical Pareto baseline, one gradient per objective and the min-norm combination of them.

MGDA (Desideri 2012; Sener & Koltun 2018, "Multi-Task Learning as Multi-Objective Optimization"): with g_k the
gradient of objective k's loss, step along d = sum_k alpha_k g_k where alpha* = argmin over the simplex of
||sum_k alpha_k g_k||^2. d is a descent direction for every objective at once, and d = 0 exactly at a
Pareto-stationary point. No hand-set weights: the preference weights still condition the prompt (when
`condition_on_weights`), but they do not enter the update.

Per step, on each micro-batch:
1. the per-objective advantages A_k (each objective normalized within its group,
   `alignment.objectives.advantages.objective_advantages`, the same A_k that `normalize_then_sum` and PAMA start
   from) travel with the batch as `objective_advantages`;
2. K passes of TRL's own GRPO loss, pass k with advantages A_k, each followed by a backward pass on the trainable
   parameters (`torch.autograd.grad`): g_1 .. g_K;
3. alpha* from the K x K Gram matrix (`alignment.pareto.min_norm_weights`);
4. the combined gradient sum_k alpha_k g_k is handed to the Trainer's usual backward through a linear surrogate.
This is K forward and K backward passes per step, against one of each for GRPO or PAMA: the cost PAMA removes
(`benchmarks/pareto_step.py`). Logged every step: `mgda/weight/<objective>` and `mgda/combined_grad_norm`.

Data parallel (DDP): `torch.autograd.grad` bypasses DDP's gradient all-reduce, so each g_k is averaged over the
processes by hand before the Gram matrix (`alignment.pareto.mgda_combination`): every process solves the same
min-norm problem, on the gradients of the global batch, and hands the Trainer the same direction (DDP's own average
of it is a no-op).
DeepSpeed and FSDP are refused at start: under ZeRO-3 and FSDP a process holds only a shard of each parameter, so
each g_k and the Gram matrix would need a reduction over shards that is not implemented (ZeRO-2: untested, refused).
"""

from __future__ import annotations

import warnings

import torch

from alignment.objectives.advantages import objective_advantages
from alignment.pareto import mgda_combination
from alignment.trainers.grpo import MultiObjectiveGRPOTrainer
from alignment.trainers.grpo_config import MultiObjectiveGRPOConfig


class MGDAGRPOTrainer(MultiObjectiveGRPOTrainer):
    """MultiObjectiveGRPOTrainer whose update is MGDA's min-norm combination of the per-objective gradients.

    Construct exactly like `MultiObjectiveGRPOTrainer` (same `MultiObjectiveGRPOConfig`; `scalarization` and
    `preference_weights` only shape the logged scalar advantage, not the update).
    """

    pareto_method = "mgda"  # recorded, and the card says the weights were not used

    def __init__(self, model, args: MultiObjectiveGRPOConfig, **kwargs):
        if args.preference_weights:
            warnings.warn("preference_weights are ignored by MGDA: its update is the min-norm combination of the "
                          "per-objective gradients, whatever the weights", UserWarning, stacklevel=2)
        super().__init__(model=model, args=args, **kwargs)
        if self.is_deepspeed_enabled or self.is_fsdp_enabled:
            raise ValueError("MGDA (pareto_method 'mgda') runs on one process or under DDP, not DeepSpeed or FSDP: "
                             "under ZeRO-3 and FSDP a process holds only a shard of each parameter, so its "
                             "per-objective gradients and their Gram matrix would need a reduction over shards that is "
                             "not implemented (ZeRO-2 is refused too: untested); launch with "
                             "accelerate_configs/cpu_2proc.yaml or ddp.yaml")

    # ---- per-objective advantages travel with the batch ----
    def _advantage_columns(self, reward_vector, weights, group_size):
        """The scalar advantages (logged, and used in evaluation) plus each objective's own, as
        `objective_advantages`: TRL splits and shuffles them by row with the rest of the batch."""
        columns = super()._advantage_columns(reward_vector, weights, group_size)
        columns["objective_advantages"] = objective_advantages(reward_vector, group_size, self.args.scale_rewards)
        return columns

    # ---- K gradients, min-norm weights, one combined update ----
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """In training, the loss whose gradient is MGDA's combined direction (its value: the alpha-weighted loss);
        in evaluation, TRL's loss on the scalar advantages."""
        if return_outputs:
            raise ValueError("MGDAGRPOTrainer does not support returning outputs")
        if not (model.training and torch.is_grad_enabled()):  # evaluation: no update to combine
            return super().compute_loss(model, inputs)
        parameters = [p for p in model.parameters() if p.requires_grad]
        per_objective = inputs["objective_advantages"]
        losses, flat_gradients = [], []
        for column in range(per_objective.shape[1]):
            loss = self._compute_loss(model, {**inputs, "advantages": per_objective[:, column]})
            gradients = torch.autograd.grad(loss, parameters, allow_unused=True)
            flat_gradients.append(torch.cat([
                (torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(parameters, gradients)
            ]))
            losses.append(loss.detach())
        alpha, combined = mgda_combination(torch.stack(flat_gradients))

        metrics = self._metrics["train"]
        for name, weight in zip(self.objective_names, alpha.tolist()):
            metrics[f"mgda/weight/{name}"].append(weight)
        metrics["mgda/combined_grad_norm"].append(combined.norm().item())

        # A surrogate linear in the parameters, sum_p <p, d_p>, has gradient d exactly: the Trainer's backward
        # then writes the combined direction into .grad (and through its clipping and optimizer) at the cost of
        # an elementwise product, not a (K+1)-th pass through the model. Its value is the alpha-weighted loss.
        directions = combined.split([p.numel() for p in parameters])
        surrogate = sum((p * d.view_as(p)).sum() for p, d in zip(parameters, directions))
        weighted_loss = (alpha * torch.stack(losses)).sum()
        return surrogate - surrogate.detach() + weighted_loss

