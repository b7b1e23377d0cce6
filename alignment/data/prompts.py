"""Prompt datasets for on-policy trainers: a JSONL file of prompts, validated, as TRL's conversational format."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset

from alignment.data.jsonl import iter_jsonl
from alignment.data.validation import DataError


class PromptDataError(DataError):
    """A prompt file is missing, malformed, or has a row without a usable prompt; the message names file and row."""


def load_prompt_dataset(path: str | Path, prompt_field: str = "prompt", limit: int | None = None,
                        system_prompt: str | None = None) -> Dataset:
    """Read `{prompt_field: "..."}` rows into a Dataset with a `prompt` column of chat messages.

    Every row is checked before anything is trained: a missing field, a non-string or an empty prompt stops with
    the file, the row number (1-based) and the field.
    """
    rows = []
    for number, row in iter_jsonl(path, PromptDataError):
        if prompt_field not in row:
            # The fields that are there make a misnamed column obvious (or name the prompt_field to set).
            raise PromptDataError(f"{path}, row {number}: missing field '{prompt_field}' (present: {sorted(row)}); "
                                  "set prompt_field to the column that holds the prompt")
        text = row[prompt_field]
        if not isinstance(text, str):
            raise PromptDataError(f"{path}, row {number}, field '{prompt_field}': expected a string, "
                                  f"got {type(text).__name__} {text!r:.60}")
        if not text.strip():
            raise PromptDataError(f"{path}, row {number}, field '{prompt_field}': empty prompt")
        messages = ([{"role": "system", "content": system_prompt}] if system_prompt else [])
        rows.append({"prompt": messages + [{"role": "user", "content": text.strip()}]})
        if limit and len(rows) >= limit:
            break
    if not rows:
        raise PromptDataError(f"{path}: no prompts")
    return Dataset.from_list(rows)
