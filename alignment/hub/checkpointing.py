"""Checkpoints that survive a kill, and reruns that pick up where the run stopped.

- Atomic saves. `Trainer._save_checkpoint` writes weights, optimizer, RNG states and trainer state one file after
  another straight into `checkpoint-N`; a kill in the middle leaves a `checkpoint-N` that `get_last_checkpoint`
  picks on the rerun and that then fails to load (or loads half a state). Here the Trainer writes into a staging
  folder that `get_last_checkpoint` never matches; once every rank is done it is renamed to `checkpoint-N`. A rename
  within one filesystem is atomic, so a kill at any moment leaves the previous checkpoint as the last one, intact.
- An atomic final output. The run's final save (`trainer.save_model(output_dir)` in the recipes: weights, tokenizer,
  record, card) is written into a hidden staging folder inside `output_dir` and moved into place with the record
  removed first and written last (`atomic_output`): a save that fails or is killed midway leaves the previous final
  output as it was, and a folder with a record has every file of that save.
- `push_to_hub` from the training arguments pushes that final output once it is in place, as `scripts/publish.py`
  publishes it (`alignment.hub.publishing.push_output_dir`), never the Trainer's intermediate pushes of the whole
  folder (with the pickled arguments, `hub_token` in clear).
- No pickle. The Trainer pickles its arguments to `training_args.bin` beside every save (with `hub_token` in
  clear, readable only with `torch.load(weights_only=False)`); it becomes a redacted `training_args.json`.
- Finished runs stay finished. Resuming from a checkpoint at `max_steps`, transformers' loop runs one more step
  before it checks the limit (5.24): rerunning a finished command would train past it, once per rerun.
"""

import json
import logging
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

from accelerate import PartialState
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, HubStrategy, get_last_checkpoint, rotate_checkpoints

from alignment.hub.publishing import push_output_dir
from alignment.hub.record import RECORD_FILE, write_training_args_json

STAGING_DIR = ".checkpoint-staging"  # never matches get_last_checkpoint's ^checkpoint-\d+$
FINAL_STAGING_DIR = ".final-staging"  # nor does this
logger = logging.getLogger(__name__)


def last_checkpoint(output_dir: str, objective_names: list[str] | None = None, announce: bool = True) -> str | None:
    """The checkpoint a rerun of the same command resumes from (said once, on the main process), or None.

    With `objective_names`, a checkpoint trained on other objectives (or heads) is refused: resuming it would load
    another run's weights, optimizer moments and reward scales into rows that now mean something else.
    """
    checkpoint = _last_checkpoint_or_none(output_dir)
    if checkpoint and objective_names is not None:
        saved = saved_objective_names(checkpoint)
        if saved is not None and saved != list(objective_names):
            raise ValueError(f"{checkpoint} was trained with objectives {saved}, but this run's objectives are "
                             f"{list(objective_names)}; use the same objectives in the same order, or another "
                             "output_dir")
    if checkpoint and announce and PartialState().is_main_process:
        print(f"Resuming from {checkpoint}", flush=True)
    return checkpoint


def checkpoint_to_resume(training_args, objective_names: list[str] | None = None) -> str | None:
    """The checkpoint to resume from, per `resume_from_checkpoint` (TRL's and transformers' field):

    - a path: that checkpoint (it must exist);
    - `true`: the last checkpoint in `output_dir` (there must be one);
    - `false`: none: start fresh, even in an `output_dir` that holds checkpoints (its checkpoints are overwritten as
      the new run reaches their steps);
    - unset: the last checkpoint in `output_dir` if there is one, so rerunning an interrupted command resumes it
      (alignment-handbook's behaviour), else a fresh start. Starting over in a used `output_dir` thus takes the
      explicit `false`.
    A checkpoint trained on other objectives is refused in every case (`last_checkpoint`).
    """
    value = training_args.resume_from_checkpoint
    text = str(value).strip().lower() if value is not None else None
    if text in ("false", "no", "0"):
        if _last_checkpoint_or_none(training_args.output_dir) and PartialState().is_main_process:
            print(f"Starting fresh (resume_from_checkpoint false); the checkpoints in {training_args.output_dir} "
                  "will be overwritten as this run reaches their steps", flush=True)
        return None
    if text in (None, "", "true", "yes", "1"):
        checkpoint = last_checkpoint(training_args.output_dir, objective_names)
        if checkpoint is None and text not in (None, ""):
            raise ValueError(f"resume_from_checkpoint true: no checkpoint-* folder in {training_args.output_dir} to "
                             "resume from")
        return checkpoint
    checkpoint = Path(value)
    if not checkpoint.is_dir() or not (checkpoint / "trainer_state.json").exists():
        raise ValueError(f"resume_from_checkpoint {value}: not a checkpoint folder (a checkpoint-N folder with "
                         "trainer_state.json)")
    saved = saved_objective_names(str(checkpoint)) if objective_names is not None else None
    if saved is not None and saved != list(objective_names):
        raise ValueError(f"{checkpoint} was trained with objectives {saved}, but this run's objectives are "
                         f"{list(objective_names)}")
    if PartialState().is_main_process:
        print(f"Resuming from {checkpoint}", flush=True)
    return str(checkpoint)


def _last_checkpoint_or_none(output_dir: str) -> str | None:
    return get_last_checkpoint(output_dir) if Path(output_dir).is_dir() else None


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


@contextmanager
def atomic_output(output_dir: str | Path, is_writer: bool = True, barrier=lambda: None):
    """Yield a staging folder for a run's final output; when the block ends without error, move its contents into
    `output_dir`, the record (objectives.json) removed first and written last.

    `output_dir` also holds the checkpoint-N folders and the run's logs, so it cannot be swapped as a whole; the
    staging folder lies inside it (the same filesystem: each move is a rename). A block that raises, or a process
    killed inside it, leaves `output_dir` as it was (the staging folder is deleted then, or by the next save). While
    the renames run the folder holds no record, so publishing and steering refuse it rather than read a mix of two
    saves. Under a multi-process launch every rank may write into the staging folder (ZeRO shards); only the writer
    (`is_writer`) prepares and moves it, between `barrier()`s."""
    output_dir = Path(output_dir)
    staging = output_dir / FINAL_STAGING_DIR
    if is_writer:
        shutil.rmtree(staging, ignore_errors=True)  # what a killed save left
        staging.mkdir(parents=True)
    barrier()
    try:
        yield staging
    except BaseException:
        if is_writer:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    barrier()
    if is_writer:
        (output_dir / RECORD_FILE).unlink(missing_ok=True)
        for entry in sorted(staging.iterdir(), key=lambda path: path.name == RECORD_FILE):  # the record last
            destination = output_dir / entry.name
            if destination.is_dir() and not destination.is_symlink():  # os.replace cannot replace a folder
                shutil.rmtree(destination)
            os.replace(entry, destination)
        staging.rmdir()
        _fsync_dir(str(output_dir))
    barrier()


class ResumableCheckpointsMixin:
    """Put first in the bases of a `transformers.Trainer` subclass: `class T(ResumableCheckpointsMixin, Trainer)`."""

    _staging_run_dir: str | None = None
    _final_staging: str | None = None  # set while a final save writes into its staging folder
    _warned_intermediate_push = False

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
        """A final save (the recipes' `trainer.save_model(output_dir)`) goes through `final_save`: atomic, then pushed
        when push_to_hub is set. A save inside a checkpoint (`_internal_call`) or inside `final_save` is written where
        asked, and never pushed by the Trainer."""
        output_dir = output_dir or self.args.output_dir
        if _internal_call or self._final_staging is not None:
            super().save_model(output_dir, _internal_call=True)
            if self.args.should_save:
                write_training_args_json(output_dir, self.args)
            return
        with self.final_save(output_dir) as staging:
            self.save_model(staging)

    @contextmanager
    def final_save(self, output_dir: str):
        """Yield the folder to write the run's final output into (the model through `save_model`, and anything else
        that belongs to it, such as a record); it appears in `output_dir` whole (`atomic_output`). Then, with
        push_to_hub, it is pushed to hub_model_id (default: the output folder's name) as `scripts/publish.py`
        publishes it, with hub_token (else the configured token), hub_private_repo and hub_revision."""
        with atomic_output(output_dir, self.args.should_save, self.accelerator.wait_for_everyone) as staging:
            self._final_staging = str(staging)
            try:
                yield str(staging)
            finally:
                self._final_staging = None
        if self.args.push_to_hub and self.is_world_process_zero():
            repo_id = self.hub_model_id or self.args.hub_model_id or Path(output_dir).absolute().name
            url = push_output_dir(output_dir, repo_id, token=self.args.hub_token, private=self.args.hub_private_repo,
                                  revision=self.args.hub_revision)
            logger.info("pushed %s to %s", output_dir, url)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """The Trainer's push at each save would upload output_dir as it stands mid-run (the pickled arguments with
        hub_token in clear, staging folders); only the final output is pushed (`final_save`), and the user is told."""
        strategy = HubStrategy(self.args.hub_strategy).value
        if strategy != "end" and not self._warned_intermediate_push and self.is_world_process_zero():
            logger.warning(f"push_to_hub: hub_strategy '{strategy}' asks for a push at every save; moalign pushes "
                           "the final output only, once the run has saved it")
            self._warned_intermediate_push = True

    def _run_epoch(self, *args, **kwargs):
        if 0 < self.state.max_steps <= self.state.global_step:  # resumed from the final checkpoint
            self.control.should_training_stop = True
            return None
        return super()._run_epoch(*args, **kwargs)
