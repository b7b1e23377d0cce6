"""The `moalign` command (alignment/console.py): in the checkout, and as a user gets it from a non-editable
`pip install .`, run from `/` with the packaged configs."""

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from alignment import console

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["grpo", "dpo", "reward-model", "orchestrator", "generate", "publish", "sweep", "configs"]


def test_help_lists_every_command_one_line_each(capsys):
    with pytest.raises(SystemExit) as exit_:
        console.main(["--help"])
    assert exit_.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines if line.startswith("  ") and line.split()[0] in COMMANDS] == COMMANDS


def test_config_takes_a_path_or_a_packaged_name(tmp_path):
    packaged = str(ROOT / "recipes" / "configs" / "grpo_tiny_cpu.yaml")
    assert console.resolve_config("grpo_tiny_cpu") == console.resolve_config("grpo_tiny_cpu.yaml") == packaged
    own = tmp_path / "grpo_tiny_cpu.yaml"  # a file of that name in the current folder is the user's own
    own.write_text("max_steps: 1\n")
    assert console.resolve_config(str(own)) == str(own)
    with pytest.raises(SystemExit, match="moalign configs"):
        console.resolve_config("no_such_config")


def test_configs_lists_the_packaged_configs_with_their_first_comment_line(capsys):
    assert console.main(["configs"]) == 0
    out = capsys.readouterr().out
    assert "grpo_tiny_cpu " in out and "The 1-minute smoke run of recipes/grpo.py" in out
    assert len(out.splitlines()) == len(list((ROOT / "recipes" / "configs").glob("*.yaml")))


def test_the_recipe_takes_its_options_and_accelerate_the_rest(monkeypatch):
    """As `trl grpo` does: what the recipe's parser does not know goes to `accelerate launch`, before the script."""
    import accelerate.commands.launch

    launched = []
    monkeypatch.setattr(accelerate.commands.launch, "launch_command", launched.append)
    argv = ["grpo", "--num_processes", "2", "--config", "grpo_tiny_cpu", "--max_steps", "2",
            "--config_file", "zero2.yaml", "--output_dir", "out"]
    assert console.main(argv) == 0
    args = launched.pop()
    assert (args.num_processes, args.config_file) == (2, "zero2.yaml")
    assert args.training_script == str(ROOT / "recipes" / "grpo.py")
    assert args.training_script_args == ["--config", str(ROOT / "recipes" / "configs" / "grpo_tiny_cpu.yaml"),
                                         "--max_steps", "2", "--output_dir", "out"]

    assert console.main(["dpo", "--max_steps", "1"]) == 0  # no --config: the recipe runs its embedded default
    args = launched.pop()
    assert args.training_script == str(ROOT / "recipes" / "dpo.py")
    assert args.training_script_args == ["--max_steps", "1"]


# --- A non-editable install, run from / ------------------------------------------------------------------------------

def run(command, env, **kwargs):
    """Run `command` from `/` in the test venv's environment; fail with its output if it fails."""
    result = subprocess.run(command, cwd="/", env=env, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{command} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result.stdout


def installed_venv(tmp_path: Path) -> tuple[Path, dict]:
    """A fresh venv with a non-editable `pip install` of a copy of this checkout; returns it and its environment.

    The venv sees this environment's dependencies (torch, TRL, ...) through a .pth file of plain paths: a venv made
    from a venv's python does not inherit them with --system-site-packages, and a plain path runs none of their .pth
    files (so not the editable install of the checkout). The copy keeps pip's in-tree build (build/, egg-info) out of
    the checkout, where a stale build/lib could also ship files that packaging no longer includes.
    """
    source, venv = tmp_path / "source", tmp_path / "venv"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", "build", "*.egg-info", "__pycache__", ".pytest_cache", ".hypothesis", "outputs", "runs", "site"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "moalign_test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    # --ignore-installed: never touch the moalign this environment has installed (visible through the .pth file)
    run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", "--ignore-installed",
         str(source)], env)
    return venv, env


@pytest.mark.slow
def test_an_installed_copy_trains_from_any_folder_with_a_packaged_config(tmp_path, tiny_policy_path):
    venv, env = installed_venv(tmp_path)  # tiny_policy_path: the tiny policy is in the cache the run reads
    imported = run([str(venv / "bin" / "python"), "-c", "import alignment; print(alignment.__file__)"], env)
    package = Path(imported.strip()).parent
    assert package.is_relative_to(venv), f"alignment imported from {package}, not from the installed copy"
    assert (package / "recipes" / "configs" / "data" / "pairs_weighted_tiny.jsonl").is_file()  # data the YAMLs name
    assert not (package.parent / "recipes").exists() and not (package.parent / "scripts").exists()

    moalign = str(venv / "bin" / "moalign")
    usage, listed = run([moalign, "--help"], env), run([moalign, "configs"], env)
    assert all(f"  {command} " in usage for command in COMMANDS) and "grpo_tiny_cpu " in listed

    output_dir = tmp_path / "run"
    run([moalign, "grpo", "--config", "grpo_tiny_cpu", "--max_steps", "2", "--num_eval_prompts", "8",
         "--output_dir", str(output_dir), "--num_processes", "1", "--mixed_precision", "no"], env, timeout=900)
    record = json.loads((output_dir / "objectives.json").read_text())
    assert record["trainer"] == "grpo" and record["objective_names"] == ["conciseness", "sentiment", "profanity_free"]
    assert (output_dir / "model.safetensors").is_file() and (output_dir / "checkpoint-2").is_dir()
