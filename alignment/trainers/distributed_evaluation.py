"""Evaluation before `train()` under DeepSpeed and FSDP2, where transformers cannot prepare the policy for it.

The recipes evaluate held-out pairs before training (the "before" numbers). Under DeepSpeed, transformers would
wrap the policy in a ZeRO inference engine; under FSDP2 the policy is sharded only together with its optimizer, in
`train()`. `DistributedEvaluationMixin` evaluates the plain module (DeepSpeed) or scores with the reference (FSDP2,
where the untrained policy is its reference). Everything else goes to the parent trainer's evaluation loop.
"""

from __future__ import annotations

from accelerate.utils import model_has_dtensor
from trl.distributed import DistributedBackend


class DistributedEvaluationMixin:
    """Mix in before TRL's DPOTrainer. The trainer sets `_reference_is_initial_policy` (no ref_model, no PEFT: TRL
    loaded the reference from the policy's own weights), and its scoring reads `_policy_is_reference`: while it is
    True, the reference scores for the policy too (every implicit reward is then 0)."""

    _policy_is_reference = False  # True only inside _evaluate_untrained_policy_under_fsdp
    _reference_is_initial_policy = False

    def evaluation_loop(self, *args, **kwargs):
        if self.is_fsdp_enabled and not model_has_dtensor(self.model):
            return self._evaluate_untrained_policy_under_fsdp(*args, **kwargs)
        if not (self.is_deepspeed_enabled and self.deepspeed is None):
            return super().evaluation_loop(*args, **kwargs)
        # Evaluation before train() (the recipes' "before" numbers) under DeepSpeed: transformers would wrap the
        # policy in a ZeRO inference engine, which ZeRO-2 refuses and which, under ZeRO-3, leaves train() without the
        # training engine it then needs. Evaluate the plain module instead, its ZeRO-3 shards gathered for the pass
        # (as TRL gathers them to generate); the reference model is TRL's, prepared for the backend in __init__.
        prepared = list(self.accelerator._models)
        self.is_deepspeed_enabled = False
        try:
            with DistributedBackend(self.accelerator).gather_params(list(self.model.parameters())):
                return super().evaluation_loop(*args, **kwargs)
        finally:
            self.is_deepspeed_enabled = True
            self.accelerator._models[:] = prepared  # the plain module must not sit beside the engine train() builds

    def _evaluate_untrained_policy_under_fsdp(self, *args, **kwargs):
        """Evaluation before train() under FSDP2. The policy is sharded only together with its optimizer, in train(),
        so transformers cannot prepare it for evaluation here, and with `fsdp_cpu_ram_efficient_loading` only the
        first process holds its weights. Before any step the policy is its reference, though: TRL loaded the
        reference from the policy's own weights, and every extra head of a multi-head policy is a copy of the base
        head. So the reference, which TRL prepared for FSDP, scores for both (every implicit reward is then 0)."""
        if self.state.global_step > 0 or self.ref_model is None or not self._reference_is_initial_policy:
            raise ValueError("under FSDP the policy can be evaluated only after train() has prepared it, or before it "
                             "when the reference model is the policy's own initial weights (no ref_model, no PEFT)")
        prepared = list(self.accelerator._models)
        self.accelerator._models.append(self.ref_model)  # transformers prepares the policy only if nothing is
        self._policy_is_reference = True
        try:
            return super().evaluation_loop(*args, **kwargs)
        finally:
            self._policy_is_reference = False
            self.accelerator._models[:] = prepared
