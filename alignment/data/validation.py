"""Row checks shared by every data loader: one error base class, the row number, blank replies, finite numbers,
chat messages and conversation fields.

The preference data (`alignment.data.preferences`), the reward-model data (`reward_models.data`), the prompt files
(`alignment.data.prompts`) and the orchestrator (`alignment.orchestrator`) all validate rows with these, each raising
its own subclass of `DataError`. Two message layouts are in use, and both are kept because tests and users match
on them:

- preference data: `FILE, row N, field 'F': ...` (`location`, the field is part of the place);
- reward-model and orchestrator data: `FILE, row N: field 'F' ...` (`conversation_field`, `number_field`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from alignment.redaction import redact_secrets

# The key under which `alignment.data.jsonl.read_jsonl` stores a row's 1-based line number.
ROW_NUMBER = "_row"


class DataError(ValueError):
    """A data file or row that cannot be used; the message names the file, the row (1-based line) and the field.

    Every loader raises its own subclass (`PreferenceDataError`, `RewardDataError`, `PromptDataError`,
    `OrchestratorError`), so `except DataError` catches bad data from any of them. The file is named as the user
    gave it, so a hub spec's `token=...` is redacted from the message here, once for every loader.
    """

    def __init__(self, message: str = "", *args):
        super().__init__(redact_secrets(str(message)), *args)


def location(source: str, row: int, field: str | None = None) -> str:
    """`source, row N[, field 'F']`: where a preference-data problem is."""
    return f"{source}, row {row}" + (f", field '{field}'" if field else "")


def present_fields(row: dict) -> list[str]:
    """The fields a row has, sorted, without the row number the reader added.

    Listed in "missing" messages: a misnamed column ("response" for "chosen") is then obvious.
    """
    return sorted(key for key in row if key != ROW_NUMBER)


def is_message_list(value) -> bool:
    """A list of dicts that each have a `role` and a `content` (TRL's conversational format)."""
    return isinstance(value, list) and all(isinstance(m, dict) and "role" in m and "content" in m for m in value)


def first_malformed_message(messages: list) -> int | None:
    """Index of the first entry that is not `{'role': str, 'content': str}`, None when all are.

    The chat template reads role and content as text: anything else would fail later inside the tokenizer.
    """
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) \
                or not isinstance(message.get("content"), str):
            return index
    return None


def check_messages(messages: list, where: str, error: type[Exception] = DataError) -> None:
    """Stop, naming `where` and the message's index, at the first entry of `messages` that is not
    `{'role': str, 'content': str}`."""
    malformed = first_malformed_message(messages)
    if malformed is not None:
        raise error(f"{where}: message {malformed} must be {{'role': str, 'content': str}}, "
                    f"got {messages[malformed]!r:.80}")


def is_blank(value) -> bool:
    """An empty or whitespace string, or messages without any text: a reply (or prompt) that says nothing."""
    if isinstance(value, str):
        return not value.strip()
    return isinstance(value, list) and all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                           and not m["content"].strip() for m in value)


def finite_float(value) -> float | None:
    """`value` as a float when it is a finite JSON number; None for anything else.

    Booleans, strings, null, NaN and infinities are not numbers here, and neither is a JSON integer too large for a
    float (10**400): it is reported like inf instead of raising OverflowError.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def number_field(value, where: str, name: str, error: type[Exception] = DataError,
                 bounds: Sequence[float] | None = None) -> float:
    """`value` (the row's field `name`) as a finite float within `bounds` [min, max], else `error` naming the field."""
    number = finite_float(value)
    if number is None:
        raise error(f"{where}: field '{name}' must be a finite number, got {value!r:.80}")
    if bounds is not None and not bounds[0] <= number <= bounds[1]:
        raise error(f"{where}: field '{name}' = {value} is out of range [{bounds[0]}, {bounds[1]}]")
    return number


def conversation_field(row: dict, name: str, where: str, error: type[Exception] = DataError, *,
                       allow_blank: bool = False, blank_hint: str = ""):
    """`row[name]` when it is a string or a non-empty list of `{'role': str, 'content': str}` messages.

    Else `error` naming the field: missing (with the fields that are there), another type, a malformed message, or
    blank (unless `allow_blank`: a caller that counts and leaves out empty replies; `blank_hint` is appended to
    the message of a blank string, e.g. the setting that would leave such rows out).
    """
    if name not in row:
        raise error(f"{where}: missing field '{name}' (present: {present_fields(row)})")
    value = row[name]
    if isinstance(value, str):
        if not allow_blank and not value.strip():
            raise error(f"{where}: field '{name}' is empty{blank_hint}")
        return value
    if isinstance(value, list) and value:
        malformed = first_malformed_message(value)
        if malformed is not None:
            raise error(f"{where}: field '{name}[{malformed}]' must be {{'role': str, 'content': str}}, "
                        f"got {value[malformed]!r:.80}")
        if not allow_blank and is_blank(value):
            raise error(f"{where}: field '{name}' has only empty messages")
        return value
    raise error(f"{where}: field '{name}' must be a non-empty string or a list of {{role, content}} messages, "
                f"got {value!r:.80}")
