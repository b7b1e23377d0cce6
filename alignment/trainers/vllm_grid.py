"""TRL's colocated vLLM generation for a policy with a preference adapter: each row generates under its own
weights, served as its grid point's LoRA (`alignment.models.vllm_engine.GridLoRAs`).

TRL syncs a peft policy into vLLM by merging the adapter into the base (`VLLMGeneration.sync_weights`): one set of
weights for every row, so per-row lambda cannot be expressed there. Here instead:
- the engine is started with LoRA serving on (TRL builds it; it is given the LoRA arguments);
- a weight sync pushes the base's own weights only when the base trains (base_learning_rate), and marks the
  exported LoRAs stale;
- each generate call sends every row with the LoRA of its weights, which the trainer has set on the adapter
  (`preference_weights`, the channel HF generation reads too) and already snapped to the grid.
Everything else (sampling settings, prompts, returned log-probs, importance sampling) is TRL's.
"""

from __future__ import annotations

import contextlib
import functools

import trl.generation.vllm_generation as trl_vllm_generation
from trl.generation.vllm_generation import VLLMGeneration

from alignment.models.preference_adapter import base_state_dict, preference_state
from alignment.models.preference_grid import grid_size
from alignment.models.vllm_engine import (
    GridLoRAs,
    adapter_rank,
    keep_torch_threads,
    lora_engine_kwargs,
    push_weights,
    use_cpu_defaults,
)
from alignment.trainers.vllm_generation import trl_builds


class _RowLoRAs:
    """TRL's `self.llm` as TRL's generate sees it: the engine, whose generate sends each row's LoRA request."""

    def __init__(self, llm, requests_for):
        self._llm = llm
        self._requests_for = requests_for

    def generate(self, prompts, *args, **kwargs):
        return self._llm.generate(prompts, *args, lora_request=self._requests_for(len(prompts)), **kwargs)

    def __getattr__(self, name):
        return getattr(self._llm, name)


class PreferenceGridVLLMGeneration(VLLMGeneration):
    """`VLLMGeneration` whose rows each carry their grid point's LoRA. Colocate mode only (checked by the config)."""

    def __init__(self, *args, preference_grid: float, max_distinct_points: int, trains_base: bool, **kwargs):
        self.preference_grid = preference_grid
        self.max_distinct_points = max_distinct_points
        self.trains_base = trains_base
        super().__init__(*args, **kwargs)

    def _init_vllm(self):
        state = preference_state(self.model)
        max_loras = min(grid_size(state.num_objectives, self.preference_grid), self.max_distinct_points)
        engine_kwargs = lora_engine_kwargs(adapter_rank(self.model), max_loras)
        use_cpu_defaults()
        # TRL constructs the engine in this method and has no setting for LoRA serving: its LLM is given ours.
        with _llm_built_with(engine_kwargs), keep_torch_threads():
            super()._init_vllm()
        self.grid_loras = GridLoRAs(self.model, self.preference_grid)
        self.llm = _RowLoRAs(self.llm, self._row_requests)

    def _row_requests(self, num_rows: int) -> list:
        weights = preference_state(self.model).weights  # set per row by the trainer around generation
        if weights is None or weights.dim() != 2 or weights.shape[0] != num_rows:
            raise RuntimeError(f"preference grid generation: {num_rows} prompts but the adapter holds weights of "
                               f"shape {None if weights is None else tuple(weights.shape)}; generate inside "
                               "`preference_weights(model, rows)`")
        with self._dist.gather_params([p for n, p in self.model.named_parameters() if "lora_" in n]):
            return self.grid_loras.requests(self.llm._llm, weights)

    def sync_weights(self):
        """The base's own weights when they train (the adapter goes as LoRAs at generation); the LoRAs are marked
        stale either way, so each grid point is exported again from the new adapter."""
        if self.trains_base:
            with self._dist.gather_params(list(self.model.parameters())):
                push_weights(self.llm, base_state_dict(self.model).items())
        self.grid_loras.refresh()
        self.llm.reset_prefix_cache()


@contextlib.contextmanager
def _llm_built_with(engine_kwargs: dict):
    """TRL's module-level `LLM`, with `engine_kwargs` added to its construction, for the duration of the block."""
    original = trl_vllm_generation.LLM
    trl_vllm_generation.LLM = functools.partial(original, **engine_kwargs)
    try:
        yield
    finally:
        trl_vllm_generation.LLM = original


def trl_builds_grid_generation(args, generations_per_batch: int):
    """A block within which TRL's GRPOTrainer builds `PreferenceGridVLLMGeneration` where it would build its own."""
    return trl_builds(functools.partial(
        PreferenceGridVLLMGeneration, preference_grid=args.preference_grid,
        max_distinct_points=max(1, -(-generations_per_batch // args.num_generations)),  # ceil
        trains_base=args.base_learning_rate is not None))
