"""Command-line parsing shared by the recipes: TRL's TrlParser with an embedded default YAML.

Data fields (those an argument dataclass lists in its `data_fields` class attribute) name data as `alignment.data`
resolves it; a relative local path written in the YAML recipe is anchored to the YAML file's folder, so a recipe
means the same data from any working directory (and from an installed package). A path given on the command line
stays relative to the current folder. Data named on the command line replaces data the YAML names another way
(`prefer_command_line_data`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path

import torch
import yaml
from accelerate import PartialState
from accelerate.utils import DistributedType
from trl import TrlParser

from alignment.data import anchor_data_spec
from alignment.data.arguments import DatasetArguments

logger = logging.getLogger(__name__)


def _given_on_command_line(name: str, argv: list[str]) -> bool:
    return any(arg == f"--{name}" or arg.startswith(f"--{name}=") for arg in argv)


def anchor_yaml_data_fields(parsed, config_path: str | Path, argv: list[str]) -> None:
    """Make the relative data paths that came from the YAML file absolute against its folder (in place)."""
    base_dir = Path(config_path).resolve().parent
    in_yaml = _yaml_keys(config_path)
    for instance in parsed:
        if not dataclasses.is_dataclass(instance):
            continue
        for name in getattr(instance, "data_fields", ()):
            value = getattr(instance, name)
            if value is None or name not in in_yaml or _given_on_command_line(name, argv):
                continue
            if isinstance(value, list):
                setattr(instance, name, [anchor_data_spec(v, base_dir) if v.strip() else v for v in value])
            else:
                setattr(instance, name, anchor_data_spec(value, base_dir))


def _yaml_keys(config_path: str | Path) -> set[str]:
    with open(config_path) as f:
        return set(yaml.safe_load(f) or {})


def prefer_command_line_data(parsed, config_path: str | Path, argv: list[str]) -> None:
    """Data named on the command line replaces data the YAML names the other way (in place): `--dataset_name` clears
    the recipe's own data field (`dataset_path`, `dataset`) from the YAML, and that field on the command line clears
    the YAML's TRL dataset fields (`alignment.data.arguments`). Data named both ways in one place stays, and the
    recipe refuses it."""
    in_yaml = _yaml_keys(config_path)
    for instance in parsed:
        local = getattr(instance, "local_data_field", None)
        if local is None:
            continue
        trl_fields = {f.name: f.default for f in dataclasses.fields(DatasetArguments)}
        for given, replaced in ((local, "dataset_name"), ("dataset_name", local)):
            if (_given_on_command_line(given, argv) and replaced in in_yaml
                    and not _given_on_command_line(replaced, argv)):
                cleared = {local: None} if replaced == local else {
                    name: default for name, default in trl_fields.items()
                    if name in in_yaml and not _given_on_command_line(name, argv)}
                logger.warning(f"--{given} on the command line replaces {', '.join(cleared)} from {config_path}")
                for name, default in cleared.items():
                    setattr(instance, name, default)


def parse_recipe_args(dataclass_types, default_config: str | Path, argv=None):
    """Parse `--config FILE` + CLI overrides into the dataclasses; without `--config` the recipe's embedded default
    YAML is used, so `accelerate launch recipes/<task>.py` with no arguments runs it (CLI flags still override)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" not in argv:
        argv = ["--config", str(default_config)] + argv
    parsed = TrlParser(dataclass_types).parse_args_and_config(args=honour_fsdp_launch(argv))
    check_fsdp_launch()
    config_path = argv[argv.index("--config") + 1]
    prefer_command_line_data(parsed, config_path, argv)
    anchor_yaml_data_fields(parsed, config_path, argv)
    return parsed


def honour_fsdp_launch(argv: list[str]) -> list[str]:
    """Under an FSDP launch, `use_cpu` is turned off.

    `use_cpu: true` (every CPU config sets it) puts accelerate in its CPU mode, which has no FSDP: the run would
    silently train as plain data parallel, and `fsdp_cpu_ram_efficient_loading` would still have loaded the model
    on the meta device on every process but the first. The launch is the more specific request (on a machine without
    GPUs accelerate cannot run FSDP at all: `check_fsdp_launch` stops the run). DeepSpeed launches are honoured
    whatever use_cpu says.
    """
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return argv
    if int(os.environ.get("RANK", "0")) == 0:
        logger.warning("FSDP launch: use_cpu is set to false (accelerate's CPU mode has no FSDP)")
    return argv + ["--use_cpu", "false"]


def check_fsdp_launch() -> None:
    """Stop an FSDP launch that accelerate would not run as FSDP.

    accelerate (1.15) builds FSDP only on a GPU-class backend: on a machine without one, the processes of an FSDP
    launch end up as plain CPU data parallel (use_cpu) or as independent single-process runs writing one output_dir.
    Neither is what was asked for, and neither says so.
    """
    if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() != "true":
        return
    distributed_type = PartialState().distributed_type
    if distributed_type in (DistributedType.NO, DistributedType.MULTI_CPU):
        raise ValueError(f"FSDP launch, but accelerate set this run up as {distributed_type.value}: "
                         "accelerate runs FSDP only on GPUs (or another accelerator), not on the CPU. On CPU launch "
                         "with accelerate_configs/cpu_2proc.yaml (DDP), zero2.yaml or zero3.yaml instead.")


def use_cpu_cores(training_args) -> None:
    """A CPU run uses every core, shared among the processes of this machine.

    `accelerate launch` without `--cpu` on a machine without GPUs sets OMP_NUM_THREADS=1 for the script, so a
    single-process CPU run would use one core of several (the README's main job ran about twice as slow). The
    environment variable MOALIGN_CPU_THREADS sets the count per process instead.
    """
    if not getattr(training_args, "use_cpu", False):
        return
    threads = int(os.environ.get("MOALIGN_CPU_THREADS", "0"))
    if threads <= 0:
        local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        threads = max(len(os.sched_getaffinity(0)) // local_processes, 1)
    torch.set_num_threads(threads)
