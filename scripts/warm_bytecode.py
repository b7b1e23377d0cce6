"""Write the bytecode of what the recipes and tests import, once, at install (`scripts/setup.sh` runs this last).

`setup.sh` installs with `pip --no-compile`: pip would byte-compile every module of every package, most of which
nothing here imports. Importing the suite's modules in one process compiles the ones that are used instead; run it
with bytecode writing allowed (setup.sh unsets PYTHONDONTWRITEBYTECODE for it), so that later processes read them.

    python scripts/warm_bytecode.py          # the library and recipes
    python scripts/warm_bytecode.py test     # plus the test tools
    python scripts/warm_bytecode.py vllm     # plus vLLM
"""

import importlib
import pkgutil
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OWN_PACKAGES = ("alignment", "reward_models")
# Imported by name or lazily at run time, so not reached by importing our modules: the two architectures the CPU
# recipes and tests load (SmolLM2 is a Llama, the tiny test policy a Qwen2) and the TRL trainers we subclass.
RUNTIME_MODULES = ("transformers.models.llama.modeling_llama", "transformers.models.qwen2.modeling_qwen2",
                   "transformers.modeling_gguf_pytorch_utils", "trl.trainer.grpo_trainer", "trl.trainer.dpo_trainer",
                   "trl.trainer.reward_trainer", "peft.tuners.lora", "accelerate.commands.launch")
EXTRA_MODULES = {"test": ("pytest",), "vllm": ("pytest", "vllm", "vllm.entrypoints.llm")}


def own_modules() -> list[str]:
    """Every module of our packages, and the recipes and scripts as the tests load them."""
    names = []
    for package in OWN_PACKAGES:
        path = ROOT / package
        names += [package] + [info.name for info in pkgutil.walk_packages([str(path)], prefix=f"{package}.")]
    for folder in ("recipes", "scripts"):
        names += [f"{folder}.{file.stem}" for file in sorted((ROOT / folder).glob("*.py"))
                  if file.stem != Path(__file__).stem]
    return names


def main(extra: str = "") -> None:
    if extra and extra not in EXTRA_MODULES:
        sys.exit(f"usage: python scripts/warm_bytecode.py [{'|'.join(EXTRA_MODULES)}]")
    sys.path.insert(0, str(ROOT))
    sys.dont_write_bytecode = False
    warnings.simplefilter("ignore")
    skipped = []
    for name in own_modules() + list(RUNTIME_MODULES) + list(EXTRA_MODULES.get(extra, ())):
        try:
            importlib.import_module(name)
        except Exception as error:  # noqa: BLE001 - an optional dependency missing here (vllm, deepspeed...)
            skipped.append(f"{name} ({error})")
    print(f"bytecode written for {len(sys.modules)} imported modules"
          + (f"; not importable here: {'; '.join(skipped)}" if skipped else ""))


if __name__ == "__main__":
    main(*sys.argv[1:2])
