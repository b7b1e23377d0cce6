"""Small helpers shared by the tests (fixtures live in conftest.py)."""

import hashlib
import importlib.util
import json
import math
import os
import signal
import subprocess
from pathlib import Path

RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def write_jsonl(path: Path, rows: list[dict]) -> str:
    """Write `rows` as JSON lines; returns the path as a string (what the loaders and recipes take)."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def load_recipe(name: str):
    """recipes/<name>.py as a module (the recipes are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_recipe", RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def file_hashes(folder: Path) -> dict[str, str]:
    """{path relative to `folder`: sha256} of every file under it: what a test compares to say nothing changed."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def grpo_trainer(policy_path, output_dir, **overrides):
    """A GRPO trainer on the tiny policy, as cheap as one can be (for tests of saving and pushing, not training)."""
    # Lazy: TRL and transformers take seconds to import, and most tests that use these helpers need neither.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alignment import MultiObjectiveGRPOConfig, MultiObjectiveGRPOTrainer
    from alignment.data import resolve_data
    from alignment.data.prompts import load_prompt_dataset

    args = MultiObjectiveGRPOConfig(
        output_dir=str(output_dir), objectives=["conciseness", "sentiment"], num_generations=4,
        per_device_train_batch_size=4, max_completion_length=8, max_steps=1, use_cpu=True,
        gradient_checkpointing=False, save_strategy="no", report_to="none", disable_tqdm=True, bf16=False,
        **overrides)
    return MultiObjectiveGRPOTrainer(model=AutoModelForCausalLM.from_pretrained(policy_path), args=args,
                                     processing_class=AutoTokenizer.from_pretrained(policy_path),
                                     train_dataset=load_prompt_dataset(resolve_data("hh-prompts"), limit=8))


def random_preference_adapter(policy_path, objective_names):
    """The policy with a preference adapter whose U, sigma and s are random (LoRA init has U = 0, which would hide
    every mistake), in eval mode."""
    # Lazy, like grpo_trainer's: transformers takes seconds to import, and most tests that use these helpers need none
    import torch
    from transformers import AutoModelForCausalLM

    from alignment.models.preference_adapter import add_preference_adapter

    torch.manual_seed(0)
    model = add_preference_adapter(AutoModelForCausalLM.from_pretrained(policy_path), objective_names, rank=4)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.05)
            elif "lora_sigma" in name or "lora_preference_scale" in name:
                parameter.uniform_(0.5, 1.5)
    return model.eval()


def neg_log_sigmoid(x: float) -> float:
    """-log sigmoid(x) = log(1 + exp(-x)), the pairwise loss the hand-computed expectations use."""
    return math.log(1.0 + math.exp(-x))


def run_process(command: list[str], timeout: float, **popen_kwargs) -> subprocess.CompletedProcess:
    """`subprocess.run(command, capture_output=True, text=True)` with a hang guard for launched processes: past
    `timeout` seconds every process of the launch (launcher and ranks, one session) is sent SIGABRT, which makes
    Python's faulthandler print each thread's stack, and the test fails with those stacks instead of stalling CI."""
    env = {**popen_kwargs.pop("env", os.environ), "PYTHONFAULTHANDLER": "1"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               start_new_session=True, **popen_kwargs)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGABRT)
        try:
            stdout, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
        raise AssertionError(f"{' '.join(command[:6])} ... still running after {timeout:.0f} s; the stacks of its "
                             f"processes:\n{stdout[-4000:]}\n{stderr[-12000:]}") from None
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
