"""Where the suite keeps what it builds or downloads once (the tiny policy, converted models, hub datasets).

`$MOALIGN_CACHE`, else `~/.cache/moalign`: a user cache, never the repository or the installed package. One folder
per build, built once even by several processes (`build_once`): a build writes into a staging folder that is
renamed into place when complete, so a killed build leaves nothing that looks finished; an exclusive file lock
around check-then-build makes a second process (e.g. the other rank of `accelerate launch --num_processes 2`) wait
for the first one's result instead of building it again. A build never runs inside a distributed context: under a
DeepSpeed ZeRO-3 launch transformers would build models inside `zero.Init`, whose collectives the other ranks (waiting
on the lock) never join, so both would hang; the build runs with ZeRO-3 model init switched off instead.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import torch


def default_cache_dir() -> Path:
    """$MOALIGN_CACHE, else ~/.cache/moalign."""
    return Path(os.environ.get("MOALIGN_CACHE", Path.home() / ".cache" / "moalign"))


@contextmanager
def outside_zero3_init():
    """Build plain models (files in the cache, loaded later by every rank) without DeepSpeed's `zero.Init`: transformers
    enters it for every model it creates while a ZeRO-3 config is registered (`is_deepspeed_zero3_enabled`)."""
    from transformers.integrations import deepspeed

    registered = deepspeed._hf_deepspeed_config_weak_ref
    deepspeed.unset_hf_deepspeed_config()
    try:
        yield
    finally:
        deepspeed._hf_deepspeed_config_weak_ref = registered


def save_model_from_any_process(model, output_dir: Path) -> None:
    """`model.save_pretrained(output_dir)` (safetensors) from whichever process builds. transformers (5.x) writes a
    model only on torch.distributed rank 0, and a cache build runs on the rank that took the lock first: on rank 1 it
    would write nothing and say nothing. The build's files are this process's own, so it writes them."""
    model.should_save_on_this_rank = lambda is_main_process: is_main_process  # shadows transformers' method
    try:
        model.save_pretrained(output_dir, safe_serialization=True)
    finally:
        del model.should_save_on_this_rank
    if not (Path(output_dir) / "config.json").exists():
        raise RuntimeError(f"saving the built model wrote no config.json in {output_dir}")


@contextmanager
def exclusive_lock(lock_path: Path):
    """Hold an exclusive flock on `lock_path` (released by the OS if the holder dies, so a crash never deadlocks)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_once(target: Path, build: Callable[[Path], None], done_marker: str = "config.json") -> Path:
    """Return `target`, first calling `build(staging_dir)` if no complete build (one with `done_marker`) is there.

    Concurrent callers serialize on `<target>.lock`: the first builds, the others find the finished folder. The
    caller's torch random state is the same after the call whether it built or not.
    """
    target = Path(target)
    if (target / done_marker).exists():
        return target
    with exclusive_lock(target.parent / f"{target.name}.lock"):
        if (target / done_marker).exists():  # built by another process while we waited
            return target
        staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.tmp-", dir=target.parent))
        try:
            # A build may seed or draw from torch's global generator (random init before the converted weights are
            # loaded, the tiny policy's own seed). It must not move the caller's: a first run, which builds, and a
            # later run, which finds the build, then sample the same with the same seed.
            with torch.random.fork_rng(devices=[]), outside_zero3_init():
                build(staging)
            if not (staging / done_marker).exists():
                raise RuntimeError(f"building {target.name} wrote no {done_marker}")
            if target.exists():  # a leftover without the marker: not a usable build
                shutil.rmtree(target)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target
