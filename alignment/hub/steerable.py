"""How a multi-objective trainer saves and resumes its checkpoints, in one mixin shared by GRPO and the DPO family.

Every save writes the policy and, beside it, `objectives.json` and the model card (`alignment.hub.record`). With a
preference adapter the policy is saved as a steerable checkpoint: the (trained) base as a plain checkpoint plus
the adapter in its subfolder (`alignment.models.preference_adapter`), and a resume loads both back. Held-out
results reach the record through one public call, `record_results`.
"""

from __future__ import annotations

from alignment.hub.record import save_record
from alignment.models.packaged import name_adapter_base_portably
from alignment.models.preference_adapter import load_checkpoint_weights, save_steerable_checkpoint


class SteerableCheckpointMixin:
    """Mix in before a TRL trainer. The trainer provides `objectives_record()` (what it was trained for) and its
    args provide `uses_preference_adapter`. A trainer whose policy is saved differently (multi-head DPO) overrides
    `_save_policy` / `_load_policy`."""

    held_out_results: dict | None = None  # set by record_results, written into every later record

    def record_results(self, evaluation: dict | None = None, samples: list[dict] | None = None,
                       steering_table: dict | None = None, front_plot: str | None = None) -> None:
        """Record held-out figures ({metric: value}), example replies, a steering table
        (`alignment.steering.report`) and the file name of its plot beside the checkpoint; the next save writes them
        into the record and the model card."""
        given = {"evaluation": evaluation, "samples": samples, "steering_table": steering_table,
                 "front_plot": front_plot}
        self.held_out_results = {**(self.held_out_results or {}), **{k: v for k, v in given.items() if v}}

    def create_model_card(self, *args, **kwargs):
        """Our card is rendered from the objectives record on every save; TRL's generic draft would hide it."""

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if self.args.uses_preference_adapter:
            if self.args.should_save:
                save_steerable_checkpoint(self.accelerator.unwrap_model(self.model), output_dir, self.processing_class)
        else:
            self._save_policy(output_dir, state_dict)
        if self.args.should_save:
            name_adapter_base_portably(output_dir)  # a LoRA adapter names its base without this machine's path
            results = dict(self.held_out_results or {})
            evaluation = results.pop("evaluation", None)
            save_record(output_dir, {**self.objectives_record(), **results}, evaluation=evaluation)

    def _save_policy(self, output_dir: str, state_dict: dict | None) -> None:
        """The policy without a preference adapter: the parent trainer's save (full model or LoRA adapter)."""
        super()._save(output_dir, state_dict)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        if self.args.uses_preference_adapter:
            load_checkpoint_weights(self.accelerator.unwrap_model(model if model is not None else self.model),
                                    resume_from_checkpoint)
        else:
            self._load_policy(resume_from_checkpoint, model)

    def _load_policy(self, resume_from_checkpoint: str, model=None) -> None:
        """The policy without a preference adapter: the parent trainer's load."""
        super()._load_from_checkpoint(resume_from_checkpoint, model)
