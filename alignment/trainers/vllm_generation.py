"""TRL's vLLM generation as the trainers use it: TRL builds it, with a colocated weight sync that also works on vLLM's
CPU backend.

TRL's colocated sync writes each parameter into the engine's layers in place (`load_weights`). vLLM's CPU backend
has repacked those layers into its GEMM kernels' format and has nothing to write into; `push_weights`
(alignment.models.vllm_engine) goes through vLLM's reload there. Everything else (sleep mode, server mode, sampling,
log-probs) is TRL's.
"""

from __future__ import annotations

import contextlib

import trl.trainer.grpo_trainer as trl_grpo_trainer
from trl.generation.vllm_generation import VLLMGeneration

from alignment.models.vllm_engine import push_weights


class ColocatedVLLMGeneration(VLLMGeneration):
    """`VLLMGeneration` whose colocated weight sync goes through `push_weights`."""

    def sync_weights(self):
        if self.mode != "colocate" or self.enable_sleep_mode:  # sleep mode: GPU only, where TRL's sync works
            return super().sync_weights()
        push_weights(self.llm, self._iter_named_params())
        self.llm.reset_prefix_cache()


@contextlib.contextmanager
def trl_builds(generation_class):
    """Within the block, TRL's GRPOTrainer builds `generation_class` (a `VLLMGeneration`, or a partial of one) where
    it would build its own: it constructs it inside __init__, with no hook."""
    original = trl_grpo_trainer.VLLMGeneration
    trl_grpo_trainer.VLLMGeneration = generation_class
    try:
        yield
    finally:
        trl_grpo_trainer.VLLMGeneration = original
