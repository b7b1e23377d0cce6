"""Command-line parsing shared by the recipes: TRL's TrlParser with an embedded default YAML."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from trl import TrlParser

logger = logging.getLogger(__name__)


def parse_recipe_args(dataclass_types, default_config: str | Path | None, argv=None):
    """Parse `--config FILE` + CLI overrides into the dataclasses; without `--config` the recipe's embedded default
    YAML is used, so `accelerate launch recipes/<task>.py` with no arguments runs it (CLI flags still override)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" not in argv and default_config is not None:
        argv = ["--config", str(default_config)] + argv
    parsed = TrlParser(dataclass_types).parse_args_and_config(args=honour_fsdp_launch(argv))
    check_fsdp_launch()
    return parsed


def honour_fsdp_launch(argv: list[str]) -> list[str]:
    """Under an FSDP launch, `use_cpu` is turned off.

    `use_cpu: true` (every CPU config sets it) puts accelerate in its CPU mode, which has no FSDP: the run would
    silently train as plain data parallel, and `fsdp_cpu_ram_efficient_loading` would still have loaded the model
    on the meta device on every process but the first. The launch is the more specific request; on a machine
    without GPUs FSDP runs on the CPU anyway (gloo). DeepSpeed launches are honoured whatever use_cpu says.
    """
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return argv
    if int(os.environ.get("RANK", "0")) == 0:
        logger.warning("FSDP launch: use_cpu is set to false (accelerate's CPU mode has no FSDP; without GPUs FSDP "
                       "still runs on the CPU)")
    return argv + ["--use_cpu", "false"]


def check_fsdp_launch() -> None:
    """Stop an FSDP launch that accelerate would not run as FSDP.

    accelerate (1.15) builds FSDP only on a GPU-class backend: on a machine without one, the processes of an FSDP
    launch end up as plain CPU data parallel (use_cpu) or as independent single-process runs writing one output_dir.
    Neither is what was asked for, and neither says so.
    """
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return
    from accelerate import PartialState
    from accelerate.utils import DistributedType

    distributed_type = PartialState().distributed_type
    if distributed_type in (DistributedType.NO, DistributedType.MULTI_CPU):
        raise ValueError(f"FSDP launch, but accelerate set this run up as {distributed_type.value}: accelerate runs FSDP "
                         "only on GPUs (or another accelerator), not on the CPU. On CPU launch with "
                         "accelerate_configs/cpu_2proc.yaml (DDP), zero2.yaml or zero3.yaml instead.")
