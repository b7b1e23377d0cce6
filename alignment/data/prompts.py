"""Prompt datasets for on-policy trainers: a JSONL file of prompts, validated, as TRL's conversational format.

A prompt is a string (one user turn) or TRL's conversational format, a list of `{"role", "content"}` messages:
system, user and assistant turns, multi-turn included, the last a user turn for the policy to answer. Rows of
preference data give their prompt too: TRL's implicit prompt (what `chosen` and `rejected` share) and HH-RLHF's
transcripts (`alignment.data.rows.explicit_prompt`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from datasets import Dataset

from alignment.data.jsonl import iter_jsonl
from alignment.data.rows import explicit_prompt
from alignment.data.validation import DataError, check_messages, present_fields

logger = logging.getLogger(__name__)
ROLES = ("system", "user", "assistant")


class PromptDataError(DataError):
    """A prompt file is missing, malformed, or has a row without a usable prompt; the message names file and row."""


def load_prompt_dataset(path: str | Path, prompt_field: str = "prompt", limit: int | None = None,
                        system_prompt: str | None = None) -> Dataset:
    """Read prompt rows into a Dataset with a `prompt` column of chat messages.

    Each row's prompt is its `prompt_field`: a string or a message list (`chat_prompt`). A row without that field
    but with `chosen` and `rejected` (a preference row) gives the beginning the two share, as TRL extracts an implicit
    prompt; HH-RLHF rows give the dialogue before the last reply. `system_prompt` is added first where a prompt has no
    system turn. Every row is checked before anything is trained: a problem stops with the file, the row number
    (1-based) and the field.
    """
    rows, derived = [], 0
    for number, row in iter_jsonl(path, PromptDataError):
        where = f"{path}, row {number}"
        if prompt_field not in row and "chosen" in row and "rejected" in row:
            prompt = explicit_prompt(row, where, PromptDataError).get("prompt")
            if prompt is None:
                raise PromptDataError(f"{where}: no field '{prompt_field}', and 'chosen' and 'rejected' are not both "
                                      "non-empty strings or message lists to take the prompt from")
            where, derived = f"{where}, the prompt 'chosen' and 'rejected' share", derived + 1
        elif prompt_field in row:
            prompt, where = row[prompt_field], f"{where}, field '{prompt_field}'"
        else:  # the fields that are there make a misnamed column obvious (or name the prompt_field to set)
            raise PromptDataError(f"{where}: missing field '{prompt_field}' (present: {present_fields(row)}); "
                                  "set prompt_field to the column that holds the prompt")
        messages = chat_prompt(prompt, where)
        if system_prompt and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": system_prompt}] + messages
        rows.append({"prompt": messages})
        if limit and len(rows) >= limit:
            break
    if not rows:
        raise PromptDataError(f"{path}: no prompts")
    if derived:
        logger.info(f"{path}: {derived} prompt(s) taken from preference rows (what 'chosen' and 'rejected' share)")
    return Dataset.from_list(rows)


def chat_prompt(prompt, where: str) -> list[dict]:
    """A prompt as chat messages: a non-blank string becomes one user turn (stripped); a message list is checked
    (`{"role": str, "content": str}` each, roles among `ROLES`, the last a non-blank user turn) and kept as given."""
    if isinstance(prompt, str):
        if not prompt.strip():
            raise PromptDataError(f"{where}: empty prompt")
        return [{"role": "user", "content": prompt.strip()}]
    if not isinstance(prompt, list) or not prompt:
        raise PromptDataError(f"{where}: expected a string or a non-empty list of {{'role', 'content'}} messages, "
                              f"got {type(prompt).__name__} {prompt!r:.60}")
    check_messages(prompt, where, PromptDataError)
    roles = [message["role"] for message in prompt]
    unknown = next((index for index, role in enumerate(roles) if role not in ROLES), None)
    if unknown is not None:
        raise PromptDataError(f"{where}: message {unknown} has role {roles[unknown]!r}; expected one of {ROLES}")
    if roles[-1] != "user":
        raise PromptDataError(f"{where}: the last message is a '{roles[-1]}' turn; a prompt ends with the user turn "
                              "the policy answers")
    if not prompt[-1]["content"].strip():
        raise PromptDataError(f"{where}: the last user message is empty")
    return [{"role": message["role"], "content": message["content"]} for message in prompt]
