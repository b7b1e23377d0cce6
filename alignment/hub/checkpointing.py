"""Checkpoints that survive a kill, and reruns that pick up where the run stopped.

- Atomic saves. `Trainer._save_checkpoint` writes weights, optimizer, RNG states and trainer state one file after
  another straight into `checkpoint-N`; a kill in the middle leaves a `checkpoint-N` that `get_last_checkpoint`
  picks on the rerun and that then fails to load (or loads half a state). Here the Trainer writes into a staging
  folder that `get_last_checkpoint` never matches; once every rank is done it is renamed to `checkpoint-N`. A rename
  within one filesystem is atomic, so a kill at any moment leaves the previous checkpoint as the last one, intact.
- No pickle. The Trainer pickles its arguments to `training_args.bin` beside every save (with `hub_token` in
  clear, readable only with `torch.load(weights_only=False)`); it becomes a redacted `training_args.json`.
- Finished runs stay finished. Resuming from a checkpoint at `max_steps`, transformers' loop runs one more step
  before it checks the limit (5.24): rerunning a finished command would train past it, once per rerun.
"""

import json
import os
import re
import shutil
from pathlib import Path

from accelerate import PartialState
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint, rotate_checkpoints

from alignment.hub.record import RECORD_FILE, write_training_args_json

STAGING_DIR = ".checkpoint-staging"  # never matches get_last_checkpoint's ^checkpoint-\d+$


def last_checkpoint(output_dir: str, objective_names: list[str] | None = None, announce: bool = True) -> str | None:
    """The checkpoint a rerun of the same command resumes from (said once, on the main process), or None.

    With `objective_names`, a checkpoint trained on other objectives (or heads) is refused: resuming it would load
    another run's weights, optimizer moments and reward scales into rows that now mean something else.
    """
    checkpoint = get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None
    if checkpoint and objective_names is not None:
        saved = saved_objective_names(checkpoint)
        if saved is not None and saved != list(objective_names):
            raise ValueError(f"{checkpoint} was trained with objectives {saved}, but this run's objectives are "
                             f"{list(objective_names)}; use the same objectives in the same order, or another "
                             "output_dir")
    if checkpoint and announce and PartialState().is_main_process:
        print(f"Resuming from {checkpoint}", flush=True)
    return checkpoint


def saved_objective_names(checkpoint: str) -> list[str] | None:
    """The objectives a checkpoint was trained on: its objectives.json, else a reward model's named heads."""
    record, config = Path(checkpoint, RECORD_FILE), Path(checkpoint, "config.json")
    if record.exists():
        return json.loads(record.read_text()).get("objective_names")
    if config.exists():
        id2label = json.loads(config.read_text()).get("id2label") or {}
        labels = [id2label[key] for key in sorted(id2label, key=int)]
        if labels and not all(re.fullmatch(r"LABEL_\d+", label) for label in labels):  # not transformers' default
            return labels
    return None


def _fsync_dir(path: str) -> None:
    """Make the rename durable, not only atomic (a power loss must not undo it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ResumableCheckpointsMixin:
    """Put first in the bases of a `transformers.Trainer` subclass: `class T(ResumableCheckpointsMixin, Trainer)`."""

    _staging_run_dir: str | None = None

    def _get_output_dir(self, trial) -> str:
        # While a checkpoint is being saved, the Trainer's idea of the run folder is the staging folder.
        return self._staging_run_dir or super()._get_output_dir(trial=trial)

    def _save_checkpoint(self, model, trial) -> None:
        run_dir = super()._get_output_dir(trial=trial)
        staging_run_dir = os.path.join(run_dir, STAGING_DIR)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        final_dir = os.path.join(run_dir, name)

        if self.args.should_save:  # leftovers of a save that was killed
            shutil.rmtree(staging_run_dir, ignore_errors=True)
        self.accelerator.wait_for_everyone()

        self._staging_run_dir = staging_run_dir
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_run_dir = None
        self.accelerator.wait_for_everyone()  # every rank's files (RNG states, ZeRO shards) are in staging

        if self.args.should_save:
            if os.path.isdir(final_dir):  # the same step saved again; the older checkpoints stay intact meanwhile
                shutil.rmtree(final_dir)
            os.rename(os.path.join(staging_run_dir, name), final_dir)
            _fsync_dir(run_dir)
            shutil.rmtree(staging_run_dir, ignore_errors=True)
            best = self.state.best_model_checkpoint
            if best and best.startswith(staging_run_dir):  # the Trainer recorded the staging path
                self.state.best_model_checkpoint = os.path.join(run_dir, os.path.basename(best))
                self.state.save_to_json(os.path.join(final_dir, TRAINER_STATE_NAME))
            # The Trainer rotated inside the staging folder; rotate the real ones.
            rotate_checkpoints(output_dir=run_dir, save_total_limit=self.args.save_total_limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)
        self.accelerator.wait_for_everyone()

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        super().save_model(output_dir, _internal_call)
        if self.args.should_save:
            write_training_args_json(output_dir or self.args.output_dir, self.args)

    def _run_epoch(self, *args, **kwargs):
        if 0 < self.state.max_steps <= self.state.global_step:  # resumed from the final checkpoint
            self.control.should_training_stop = True
            return None
        return super()._run_epoch(*args, **kwargs)
