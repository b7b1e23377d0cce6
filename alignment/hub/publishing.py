"""Publishing: a training output directory -> a hub-ready folder (and optionally the hub).

The folder holds safetensors weights (a LoRA adapter, or the adapter merged into its base), the tokenizer,
`objectives.json`, the front plot when there is one, and a model card (README.md) rendered from the record by
`alignment.hub.model_card.render_model_card`, never typed by hand. Nothing else is copied: optimizer states, RNG states,
`training_args.*` and intermediate `checkpoint-*` folders stay behind.

The folder is built in a temporary directory beside the target and renamed into place, so a failure leaves no
partial folder; a target that is, holds or lies inside the training output directory is refused, so `overwrite` can
never delete the run. A dry run builds and checks everything the same way (merge and card included) and then
deletes it. Uploading uses `huggingface_hub.upload_folder` with the token given (a trainer's `hub_token`) or the one
huggingface_hub finds (HF_TOKEN or `hf auth login`); we pass it through and never write or print it, and the built
folder is checked not to contain it. `push_output_dir` does both for a trainer's `push_to_hub`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import huggingface_hub  # HfApi and get_token are looked up at call time (a test stands in for HfApi)
from peft import PeftModel
from transformers import AutoModelForCausalLM

from alignment.hub.model_card import render_model_card
from alignment.hub.record import RECORD_FILE
from alignment.models.packaged import resolve_model_path
from alignment.models.policy import check_safetensors_adapter
from alignment.models.preference_adapter import ADAPTER_FILE, ADAPTER_SUBFOLDER, load_steerable_model, merge_preference
from alignment.objectives.conditioning import preference_header, record_format_version
from alignment.objectives.weights import PreferenceWeightsError, parse_preference_weights
from alignment.redaction import scrub

WEIGHT_PATTERNS = ("model*.safetensors", "model.safetensors.index.json", "adapter_model.safetensors")
# Weights in pickle formats (arbitrary code on load); other pickles such as optimizer.pt are simply not copied
UNSAFE_WEIGHTS = ("pytorch_model*.bin", "adapter_model.bin", "model*.pt", "model*.pth", "*.ckpt")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                   "vocab.json", "merges.txt", "tokenizer.model", "added_tokens.json")
MODEL_FILES = ("config.json", "generation_config.json", "adapter_config.json", "multi_head.json",
               "lm_heads.safetensors")
FRONT_PLOT_NAMES = ("front.png", "pareto_front.png")
STEERING_VALUES = ("prompt", "adapter", "heads", "none")
# The file a checkpoint must carry for the steering its record names (a steering method absent here needs none).
STEERING_FILES = {"heads": "multi_head.json", "adapter": f"{ADAPTER_SUBFOLDER}/{ADAPTER_FILE}"}


class PublishError(ValueError):
    """The output directory cannot be published as it is; the message names the file and what is wrong."""


@dataclass
class PublishPlan:
    """What a validated output directory will publish."""

    source: Path
    record: dict
    files: list[Path]
    is_adapter: bool
    front_plot: Path | None = None
    has_preference_adapter: bool = False  # a steerable checkpoint: the adapter subfolder beside the base
    notes: list[str] = field(default_factory=list)


def validate_record(record, where: Path) -> None:
    if not isinstance(record, dict):
        raise PublishError(f"{where}: expected a JSON object, got {type(record).__name__}")
    for key in ("trainer", "base_model", "objectives", "objective_names", "steering"):
        if key not in record:
            raise PublishError(f"{where}: missing field '{key}'")
    objectives = record["objectives"]
    if not isinstance(objectives, list) or not objectives:
        raise PublishError(f"{where}: 'objectives' must be a non-empty list")
    for i, objective in enumerate(objectives):
        if not isinstance(objective, dict) or not {"name", "source"} <= objective.keys():
            raise PublishError(f"{where}: objectives[{i}] must have a 'name' and a 'source'")
    names = [o["name"] for o in objectives]
    if record["objective_names"] != names:
        raise PublishError(f"{where}: objective_names {record['objective_names']} do not match the objectives {names}")
    if record["steering"] not in STEERING_VALUES:
        raise PublishError(f"{where}: steering '{record['steering']}' is not one of {list(STEERING_VALUES)}")
    weights = record.get("weights")
    if weights is not None and (not isinstance(weights, dict) or set(weights) - set(names)):
        raise PublishError(f"{where}: 'weights' must map objective names {names} to numbers, got {weights}")


def plan_publication(output_dir: str | Path, front_plot: str | Path | None = None) -> PublishPlan:
    """Check an output directory (record, safetensors weights, tokenizer) and list what will be published."""
    source = Path(output_dir)
    if not source.is_dir():
        raise PublishError(f"{source}: not a directory")
    record_path = source / RECORD_FILE
    if not record_path.exists():
        raise PublishError(f"{source}: no {RECORD_FILE}; only checkpoints written by a moalign trainer can be "
                           "published")
    try:
        record = json.loads(record_path.read_text())
    except json.JSONDecodeError as error:
        raise PublishError(f"{record_path}: not valid JSON ({error})") from None
    validate_record(record, record_path)

    unsafe = sorted(p.name for pattern in UNSAFE_WEIGHTS for p in source.glob(pattern))
    if unsafe:
        raise PublishError(f"{source}: weights in pickle formats {unsafe}; save with safe_serialization=True "
                           "(safetensors)")
    weights = sorted({p for pattern in WEIGHT_PATTERNS for p in source.glob(pattern)})
    if not weights:
        raise PublishError(f"{source}: no safetensors weights (expected model.safetensors, a sharded index, "
                           "or adapter_model.safetensors)")
    is_adapter = (source / "adapter_config.json").exists()
    if not is_adapter and not (source / "config.json").exists():
        raise PublishError(f"{source}: no config.json beside the weights")
    tokenizer = [source / name for name in TOKENIZER_FILES if (source / name).exists()]
    if not any(p.name in ("tokenizer.json", "tokenizer.model", "vocab.json") for p in tokenizer):
        raise PublishError(f"{source}: no tokenizer (tokenizer.json, tokenizer.model or vocab.json); "
                           "save the tokenizer beside the weights")
    required = STEERING_FILES.get(record["steering"])
    if required is not None and not (source / required).is_file():
        raise PublishError(f"{source}: the record says steering '{record['steering']}' but {required} is missing")

    if front_plot is not None:
        front_plot = Path(front_plot)
        if not front_plot.is_file() or front_plot.suffix.lower() != ".png":
            raise PublishError(f"front plot {front_plot}: not a PNG file")
    else:
        front_plot = next((source / n for n in FRONT_PLOT_NAMES if (source / n).is_file()), None)
    model_files = [source / name for name in MODEL_FILES if (source / name).exists()]
    return PublishPlan(source, record, weights + model_files + tokenizer, is_adapter, front_plot,
                       has_preference_adapter=(source / ADAPTER_SUBFOLDER / ADAPTER_FILE).is_file())


def _merge_adapter(plan: PublishPlan, staging: Path, base_model: str | None) -> None:
    """The adapter merged into its base (peft merge_and_unload), saved as plain safetensors."""
    adapter_config = json.loads((plan.source / "adapter_config.json").read_text())
    base = base_model or adapter_config.get("base_model_name_or_path")
    if not base:
        raise PublishError(f"{plan.source}: adapter_config.json names no base model; pass base_model to merge")
    check_safetensors_adapter(plan.source)
    base_weights = AutoModelForCausalLM.from_pretrained(resolve_model_path(base), use_safetensors=True)
    model = PeftModel.from_pretrained(base_weights, str(plan.source))
    model.merge_and_unload().save_pretrained(staging, safe_serialization=True)


def _bake_preference(plan: PublishPlan, staging: Path, weights) -> dict[str, float]:
    """The preference adapter merged at one weight vector into its base: a plain transformers checkpoint."""
    names = plan.record["objective_names"]
    try:
        vector = parse_preference_weights(weights, names)
    except PreferenceWeightsError as error:
        raise PublishError(f"--weights: {error}") from None
    merge_preference(load_steerable_model(plan.source), vector).save_pretrained(staging, safe_serialization=True)
    return {n: round(w, 6) for n, w in zip(names, vector.tolist())}


def _check_no_secret(folder: Path, secrets=(), chunk_size: int = 1 << 20) -> None:
    """Fail if a hub token (those given, HF_TOKEN / HUGGING_FACE_HUB_TOKEN, the one huggingface_hub would use) appears
    in any file we are about to publish. Each file is read once, in chunks (weights can be gigabytes), and searched for
    every token at once; each chunk is searched together with the end of the previous one, so a token cut by a chunk
    boundary is still found."""
    candidates = {*secrets, os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN"),
                  huggingface_hub.get_token()}
    needles = [secret.encode() for secret in candidates if secret and len(secret) >= 8]
    if not needles:
        return
    overlap = max(map(len, needles)) - 1  # >= 7: the longest run of a token a chunk boundary can hide
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        with open(path, "rb") as f:
            tail = b""
            while chunk := f.read(chunk_size):
                window = tail + chunk
                if any(needle in window for needle in needles):
                    raise PublishError(f"{path.name} contains the Hugging Face token (of the environment, the "
                                       "training arguments or `hf auth login`); refusing to publish it")
                tail = window[-overlap:]


def _check_apart(source: Path, target: Path) -> None:
    """The target may not be the output directory, hold it, or lie inside it: overwriting it would delete the run."""
    if target == source or source in target.parents or target in source.parents:
        where = "is" if target == source else "lies inside" if source in target.parents else "contains"
        raise PublishError(f"target folder {target} {where} the training output directory {source}; publish to a "
                           "folder outside it (replacing this one would delete the run)")


def build_folder(plan: PublishPlan, target: str | Path, *, merge_lora: bool = False, base_model: str | None = None,
                 overwrite: bool = False, dry_run: bool = False, bake_weights=None, secrets=()) -> Path:
    """Write the hub-ready folder at `target` atomically (temp dir, then rename). With dry_run, every check of the
    real run (the target-exists check included) runs and the folder is built in the system temp dir, then deleted:
    nothing is written beside the target, not even its parent folder.

    `bake_weights` (a preference-adapter checkpoint only): merge the adapter at these weights into a plain checkpoint
    that loads in transformers with no custom code; the record and card say the weights it was baked at.
    `secrets`: tokens the folder must not contain, beside those of the environment (`_check_no_secret`)."""
    target = Path(target).resolve()
    _check_apart(plan.source.resolve(), target)
    if target.exists() and not overwrite:
        raise PublishError(f"{target} exists; choose another folder or pass overwrite")
    if merge_lora and not plan.is_adapter:
        raise PublishError(f"{plan.source}: merge_lora asked for, but there is no LoRA adapter (adapter_config.json)")
    if bake_weights is not None and not plan.has_preference_adapter:
        raise PublishError(f"{plan.source}: --weights bakes a preference adapter, but the record says steering "
                           f"'{plan.record['steering']}'")
    if not dry_run:
        target.parent.mkdir(parents=True, exist_ok=True)
    # mkdir, not mkdtemp: the folder gets the usual mode (0777 less the umask), not 0700, once renamed into place
    staging = Path(tempfile.gettempdir() if dry_run else target.parent) / f".{target.name}.staging-{uuid.uuid4().hex}"
    staging.mkdir()
    try:
        record = scrub(plan.record)  # a record written by hand or by an older version may hold a secret
        if bake_weights is not None:
            baked = _bake_preference(plan, staging, bake_weights)
            record.update(steering="none", weights=baked, baked_weights=baked, baked_from_steering="adapter")
            if record.get("prompt_format"):  # trained with the header too (`both`): it still expects the header
                record["baked_prompt_header"] = preference_header(baked, list(baked), record_format_version(record))
            copied = [p for p in plan.files if p.name in TOKENIZER_FILES or p.name == "generation_config.json"]
        elif merge_lora:
            _merge_adapter(plan, staging, base_model)
            record["merged_lora"] = True
            copied = [p for p in plan.files if p.name in TOKENIZER_FILES or p.name == "generation_config.json"]
        else:
            copied = plan.files
            if plan.has_preference_adapter:
                shutil.copytree(plan.source / ADAPTER_SUBFOLDER, staging / ADAPTER_SUBFOLDER,
                                ignore=shutil.ignore_patterns("README.md"))
        for path in copied:
            shutil.copy2(path, staging / path.name)
        if plan.front_plot is not None:
            shutil.copy2(plan.front_plot, staging / "front.png")
            record["front_plot"] = "front.png"
        (staging / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")
        (staging / "README.md").write_text(render_model_card(record))
        _check_no_secret(staging, secrets)
        if dry_run:
            shutil.rmtree(staging)
            return target
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
        return target
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def push_folder(folder: str | Path, repo_id: str, *, token: str | None = None, private: bool = False,
                revision: str | None = None, commit_message: str | None = None) -> str:
    """Upload a published folder with huggingface_hub; the token is the one given, else the one huggingface_hub is
    configured with."""
    token = token or huggingface_hub.get_token()
    if not token:
        raise PublishError("no Hugging Face token configured: set HF_TOKEN or run `hf auth login`, then retry --push")
    api = huggingface_hub.HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    commit = api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision,
                               commit_message=commit_message or "Upload moalign checkpoint")
    return commit.commit_url


def push_output_dir(output_dir: str | Path, repo_id: str, *, token: str | None = None, private: bool = False,
                    revision: str | None = None, commit_message: str = "End of training") -> str:
    """A training output directory to the hub, as `scripts/publish.py --push` would publish it (weights, tokenizer,
    record, card, front plot; no optimizer states, pickles or checkpoint-N folders; checked free of the token): the
    folder is built in a temporary directory, uploaded, then deleted. What `push_to_hub` in a trainer's arguments does
    at the end of a run (`alignment.hub.checkpointing.ResumableCheckpointsMixin.final_save`)."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = build_folder(plan_publication(output_dir), Path(scratch) / "hub", secrets=[token] if token else ())
        return push_folder(folder, repo_id, token=token, private=private, revision=revision,
                           commit_message=commit_message)
