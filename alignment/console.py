"""The `moalign` command that `pip install` puts on the PATH, on the pattern of TRL's `trl grpo --config x.yaml`.

The training subcommands run their recipe under `accelerate launch`, as `trl grpo` does: the recipe's own parser
takes the options it knows, and the rest (`--num_processes 2`, `--config_file zero2.yaml`, ...) go to accelerate.
Without `--config` the recipe runs its embedded default, as `accelerate launch recipes/grpo.py` does. The other
subcommands launch nothing, so they run their script in this process.

`--config` takes a YAML path or the name of a packaged config (`moalign configs` lists them): an installed copy
carries recipes/ (with its configs and their data) and scripts/ as `alignment/recipes` and `alignment/scripts`
(setup.py maps them there, so site-packages gets no generic top-level `recipes` or `scripts`); in a source checkout
they are the folders beside the package.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
from pathlib import Path

TRAINING = "recipes"
# name: (folder, module, one line for `moalign --help`)
COMMANDS = {
    "grpo": (TRAINING, "grpo", "Train a policy with multi-objective GRPO."),
    "dpo": (TRAINING, "dpo", "Train a policy with the multi-objective DPO family."),
    "reward-model": (TRAINING, "reward_model", "Train a multi-head reward model."),
    "orchestrator": (TRAINING, "orchestrator", "Train a Preference Orchestrator (prompt-aware weights)."),
    "generate": ("scripts", "generate", "Generate from a checkpoint at weights chosen now."),
    "publish": ("scripts", "publish", "Check a training output for the hub; upload it."),
    "sweep": ("scripts", "pareto_sweep", "Measure and draw the Pareto front of trained policies."),
}


def source_folder(name: str) -> Path:
    """recipes/ or scripts/: inside the package in an installed copy, beside it in a source checkout."""
    package = Path(__file__).resolve().parent
    for folder in (package / name, package.parent / name):
        if folder.is_dir():
            return folder
    raise FileNotFoundError(f"moalign: no {name}/ folder in {package} or beside it")


def packaged_configs() -> dict[str, Path]:
    """The YAML configs shipped with the recipes, by name (file name without .yaml)."""
    return {path.stem: path for path in sorted((source_folder(TRAINING) / "configs").glob("*.yaml"))}


def resolve_config(value: str) -> str:
    """`--config`'s value: a YAML file as given, else the packaged config of that name (with or without .yaml)."""
    if Path(value).is_file():
        return value
    found = packaged_configs().get(value.removesuffix(".yaml"))
    if found is None:
        raise SystemExit(f"moalign: --config {value}: no such file, and no packaged config of that name "
                         "(`moalign configs` lists them)")
    return str(found)


def load(folder: str, module: str):
    """A recipe or script as a module, from its file: its package name differs between a checkout and an install."""
    path = source_folder(folder) / f"{module}.py"
    spec = importlib.util.spec_from_file_location(f"moalign_{folder}_{module}", path)
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def without(tokens: list[str], subsequence: list[str]) -> list[str]:
    """`tokens` less `subsequence` (the tokens the recipe's parser did not know, in order), as TRL's CLI does it."""
    remaining, rest = iter(subsequence), []
    pending = next(remaining, None)
    for token in tokens:
        if pending is not None and token == pending:
            pending = next(remaining, None)
        else:
            rest.append(token)
    return rest


def launch_recipe(command: str, argv: list[str]) -> int:
    """Split `argv` between the recipe and `accelerate launch` as `trl grpo` does, then launch the recipe."""
    from accelerate.commands.launch import launch_command, launch_command_parser  # heavy: not for `moalign --help`
    from trl import TrlParser

    _, module, _ = COMMANDS[command]
    if "--config" in argv:
        at = argv.index("--config") + 1
        if at == len(argv):
            raise SystemExit("moalign: --config needs a YAML path or a packaged config name")
        argv = [*argv[:at], resolve_config(argv[at]), *argv[at + 1:]]
    recipe = load(TRAINING, module)
    names = ", ".join(name for name in packaged_configs() if name.startswith(f"{module}_"))
    # No abbreviations: accelerate's `--cpu` or `--num_proc...` must never be read as the start of a recipe option.
    parser = TrlParser(recipe.ARGUMENTS, prog=f"moalign {command}", allow_abbrev=False,
                       epilog=f"--config takes a YAML path or a packaged config: {names}. Options the recipe does not "
                              "know (--num_processes, --config_file, --mixed_precision, ...) go to accelerate launch.")
    with_config = argv if "--config" in argv else ["--config", str(recipe.DEFAULT_CONFIG), *argv]
    *_, for_accelerate = parser.parse_args_and_config(with_config, return_remaining_strings=True,
                                                      separate_remaining_strings=True)
    script = source_folder(TRAINING) / f"{module}.py"
    try:
        launch_command(launch_command_parser().parse_args([*for_accelerate, str(script),
                                                           *without(argv, for_accelerate)]))
    except subprocess.CalledProcessError as error:  # the recipe has printed its own traceback
        return error.returncode
    return 0


def run_script(command: str, argv: list[str]) -> int:
    """Run a script's `main(argv)` in this process (argparse names the program after sys.argv[0])."""
    _, module, _ = COMMANDS[command]
    sys.argv = [f"moalign {command}", *argv]
    return load("scripts", module).main(argv) or 0


def list_configs() -> int:
    """Print each packaged config with the first line of its own comment."""
    configs = packaged_configs()
    width = max(map(len, configs), default=0)
    for name, path in configs.items():
        first = next(iter(path.read_text().splitlines()), "").lstrip("# ")
        print(f"{name:<{width}}  {first}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser; its help lists the commands one line each (argparse's own list wraps long names)."""
    lines = {name: line for name, (_, _, line) in COMMANDS.items()}
    lines["configs"] = "List the packaged YAML configs: the names --config takes."
    parser = argparse.ArgumentParser(
        prog="moalign", allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Multi-objective alignment of LLMs. The training commands run their recipe under accelerate\n"
                    "launch; `moalign COMMAND --help` shows a command's options.",
        epilog="commands:\n" + "\n".join(f"  {name:<14}{line}" for name, line in lines.items()))
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", help=argparse.SUPPRESS)
    for name in lines:
        commands.add_parser(name, add_help=False)  # a recipe's or script's own parser shows its --help
    return parser


def main(argv: list[str] | None = None) -> int:
    """`moalign COMMAND ...`: the entry point of the console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    command = parser.parse_known_args(argv)[0].command
    if command is None:
        parser.print_help()
        return 0
    rest = argv[argv.index(command) + 1:]
    if command == "configs":
        return list_configs()
    if COMMANDS[command][0] == TRAINING:
        return launch_recipe(command, rest)
    return run_script(command, rest)


if __name__ == "__main__":
    sys.exit(main())
