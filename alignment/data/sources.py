"""One way to name data: a built-in name, a local file, or a hub dataset id.

- Built-in names resolve to the real data packaged with the suite (`alignment/data/files/`, see its README for
  sources and licenses): `hh-helpful`, `hh-harmless` (HH-RLHF pairs), their `-dev` splits, `hh-prompts`,
  `ultrafeedback`, `ultrafeedback-dev`, `qa-feedback`,
  `self-instruct` (instruction-following prompts).
- A local file is any name with a data suffix (`.jsonl`, `.json`, `.jsonl.gz`, ...) or that starts with `.`, `/` or
  `~`. Inside a YAML recipe a relative path is relative to that YAML file (`anchor_data_spec`, applied when the
  recipe's arguments are parsed); on the command line it is relative to the current directory.
- Anything else of the form `owner/name` is a hub dataset read with `datasets.load_dataset`, with its keyword
  arguments as a query string: `Anthropic/hh-rlhf?data_dir=helpful-base&split=train`. It is written once to a
  JSON-lines file in the user cache, so every loader reads it like a packaged file (and a second run needs no hub).
  TRL's own fields for hub data (`dataset_name`, `dataset_config`, splits) are `alignment.data.arguments`.
  A credential in the query (`token=...`, `api_key=...`) is passed to the hub and redacted wherever the spec is
  written or shown (`alignment.redaction`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from urllib.parse import parse_qsl

from alignment.cache import default_cache_dir
from alignment.redaction import redact_secrets

FILES_DIR = Path(__file__).resolve().parent / "files"
PACKAGED_DATA = {
    "hh-helpful": "hh_rlhf_helpful_base_train.jsonl.gz",
    "hh-helpful-dev": "hh_rlhf_helpful_base_dev.jsonl.gz",
    "hh-harmless": "hh_rlhf_harmless_base_train.jsonl.gz",
    "hh-harmless-dev": "hh_rlhf_harmless_base_dev.jsonl.gz",
    "hh-prompts": "hh_rlhf_single_turn_prompts.jsonl.gz",
    "ultrafeedback": "ultrafeedback_binarized_train.jsonl.gz",
    "ultrafeedback-dev": "ultrafeedback_binarized_dev.jsonl.gz",
    "qa-feedback": "finegrained_qa_feedback.jsonl.gz",
    "self-instruct": "self_instruct_seed_tasks.jsonl.gz",
}
# The hub dataset each packaged set is a copy or a subset of (provenance: files/README.md), for model-card metadata;
# None where the data came from elsewhere (a GitHub repository), so the card names it in its body only.
PACKAGED_DATA_HUB_IDS = {
    "hh-helpful": "Anthropic/hh-rlhf",
    "hh-helpful-dev": "Anthropic/hh-rlhf",
    "hh-harmless": "Anthropic/hh-rlhf",
    "hh-harmless-dev": "Anthropic/hh-rlhf",
    "hh-prompts": "Anthropic/hh-rlhf",
    "ultrafeedback": "trl-lib/ultrafeedback_binarized",
    "ultrafeedback-dev": "trl-lib/ultrafeedback_binarized",
    "qa-feedback": None,  # allenai/FineGrainedRLHF on GitHub
    "self-instruct": None,  # yizhongw/self-instruct on GitHub (its seed tasks)
}
_DATA_SUFFIXES = (".jsonl", ".json", ".gz", ".txt", ".csv", ".parquet")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(\?.*)?$")
# A spec may carry a head prefix (`helpful=`), a format prefix (`qa_feedback:`) and a row slice (`[:640]`).
_SPEC = re.compile(r"^(?P<head>[\w-]+=)?(?P<format>[a-z_]+:(?!//))?(?P<core>.*?)(?P<slice>\[-?\d*:-?\d*\])?$")
_SLICE = re.compile(r"^(?P<path>.*?)\[(?P<start>-?\d*):(?P<stop>-?\d*)\]$")


class DataSourceError(ValueError):
    """A data name that is neither built in, nor an existing local file, nor a readable hub dataset."""


def is_local_path(name: str) -> bool:
    """Whether a data name is a local file: it has a data suffix or starts with '.', '/' or '~'."""
    return name.startswith((".", "/", "~")) or name.lower().endswith(_DATA_SUFFIXES)


def resolve_data(name: str | Path, base_dir: str | Path | None = None) -> Path:
    """The local JSON-lines file behind a data name (see the module docstring); `base_dir` anchors relative paths."""
    name = str(name).strip()
    if name in PACKAGED_DATA:
        return FILES_DIR / PACKAGED_DATA[name]
    if is_local_path(name):
        path = Path(name).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        if not path.is_file():
            raise DataSourceError(f"data file {path} not found")
        return path
    if _HUB_ID.match(name):
        return _hub_dataset_as_jsonl(name)
    raise DataSourceError(f"unknown data '{redact_secrets(name)}': expected a built-in name "
                          f"({', '.join(PACKAGED_DATA)}), a local file (.jsonl, .jsonl.gz, ...), or a hub dataset id "
                          "such as 'Anthropic/hh-rlhf?data_dir=helpful-base&split=train'")


def resolve_data_or_raise(name: str | Path, error: type[Exception]) -> Path:
    """`resolve_data(name)`, a name it cannot resolve raised as the caller's own data error (same message)."""
    try:
        return resolve_data(name)
    except DataSourceError as source_error:
        raise error(str(source_error)) from None


def split_slice(spec: str) -> tuple[str, slice]:
    """'path[10:20]' -> ('path', slice(10, 20)); no suffix keeps every row."""
    match = _SLICE.match(spec.strip())
    if not match:
        return spec.strip(), slice(None)
    return match["path"], slice(_int_or_none(match["start"]), _int_or_none(match["stop"]))


def _int_or_none(text: str) -> int | None:
    return int(text) if text else None


def _hub_dataset_as_jsonl(spec: str) -> Path:
    dataset_id, _, query = spec.partition("?")
    kwargs = dict(parse_qsl(query, strict_parsing=bool(query)))
    kwargs.setdefault("split", "train")
    key = hashlib.sha256(json.dumps([dataset_id, sorted(kwargs.items())]).encode()).hexdigest()[:16]
    target = default_cache_dir() / "datasets" / f"{dataset_id.replace('/', '--')}-{key}.jsonl"
    if target.is_file():
        return target
    import datasets  # lazy: it takes most of a second to import, and only a hub name needs it

    try:
        dataset = datasets.load_dataset(dataset_id, **kwargs)
    except Exception as error:  # no hub, unknown id, bad keyword: say which spec failed (never the hub's own
        # traceback, which may quote a token of the spec)
        message = f"hub dataset '{spec}' could not be loaded: {type(error).__name__}: {error}"
        raise DataSourceError(redact_secrets(message, spec)) from None
    return write_dataset_jsonl(dataset, target)


def write_dataset_jsonl(dataset, target: Path) -> Path:
    """Write a `datasets.Dataset` to `target` as JSON lines, whole or not at all (a second process never reads half
    a file); returns `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=target.name + ".", dir=target.parent)
    os.close(fd)
    try:
        dataset.to_json(staging, lines=True, force_ascii=False)
        os.replace(staging, target)
    finally:
        Path(staging).unlink(missing_ok=True)
    return target


def anchor_data_spec(spec: str, base_dir: str | Path) -> str:
    """A data spec with its relative local path made absolute against `base_dir` (a YAML recipe's folder).

    Built-in names and hub ids pass unchanged, and so do the spec's head prefix, format prefix and row slice:
    `helpful=data/pairs.jsonl[:100]` -> `helpful=/abs/recipes/configs/data/pairs.jsonl[:100]`.
    """
    match = _SPEC.match(str(spec).strip())
    core = match["core"]
    if not is_local_path(core) or Path(core).expanduser().is_absolute():
        return str(spec)
    anchored = (Path(base_dir) / core).resolve()
    return f"{match['head'] or ''}{match['format'] or ''}{anchored}{match['slice'] or ''}"


def data_display_name(name: str | Path) -> str:
    """How a dataset is named in records and model cards: the built-in name or hub spec as given (secrets redacted),
    or only the file name of a local file (a published card never carries a local path)."""
    match = _SPEC.match(str(name).strip())
    core = match["core"]
    return Path(core).name if is_local_path(core) else redact_secrets(core)


def data_hub_id(name: str) -> str | None:
    """The hub dataset id a model card's `datasets:` metadata may carry for a recorded data name: a hub spec's id
    without its query, the hub dataset a packaged set came from, else None (a local file, or packaged data that is
    not on the hub)."""
    core = _SPEC.match(str(name).strip())["core"]
    if core in PACKAGED_DATA:
        return PACKAGED_DATA_HUB_IDS[core]
    return core.partition("?")[0] if not is_local_path(core) and _HUB_ID.match(core) else None
