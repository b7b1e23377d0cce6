"""Command-line parsing shared by the recipes: TRL's TrlParser with an embedded default YAML."""

from __future__ import annotations

import sys
from pathlib import Path

from trl import TrlParser


def parse_recipe_args(dataclass_types, default_config: str | Path, argv=None):
    """Parse `--config FILE` + CLI overrides into the dataclasses; without `--config` the recipe's embedded default
    YAML is used, so `accelerate launch recipes/<task>.py` with no arguments runs it (CLI flags still override)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--config" not in argv:
        argv = ["--config", str(default_config)] + argv
    return TrlParser(dataclass_types).parse_args_and_config(args=argv)
