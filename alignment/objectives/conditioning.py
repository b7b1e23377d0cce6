"""Preference-conditioned prompts (RiC / DPA style): the weights are written into the prompt.

The header is one line, in one of these formats (objective order of the checkpoint):
- version 1: `Preference weights: helpful=0.70,harmless=0.30` (two decimals);
- version 2: `<helpful> 0.7 <harmless> 0.3` (fixed-order tags with one value each, as Rewards-in-Context; one decimal);
- version 3: `Priorities: helpful 70%, harmless 30%`, objectives listed from the largest weight down (ties in
  checkpoint order), so that opposite weights also differ in which name comes first, not only in the digits.
For chat prompts the header is the content of a system message placed first (an existing system message keeps
its text after that line); for plain-text prompts it is the first line. A checkpoint records the version it was
trained with (`prompt_format_version` in objectives.json; a record without it is version 1) and is steered by
writing other weights in the same format: `condition_prompt(prompt, weights, names, format_version=v)`.
`benchmarks/prompt_header_read.py` measures how much each format moves a real model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from alignment.objectives.weights import format_preference_weights, parse_preference_weights

FORMAT_VERSION = 3  # what new checkpoints are trained with
_NAME = r"[A-Za-z_][\w.-]*"
FORMATS = {
    1: "system message 'Preference weights: name=0.70,name=0.30'",
    2: "system message '<name> 0.7 <name> 0.3' (fixed order)",
    3: "system message 'Priorities: name 70%, name 30%' (largest weight first)",
}
_HEADER_LINES = {
    1: re.compile(r"^Preference weights: ([^\n]*)\n?"),
    2: re.compile(rf"^((?:<{_NAME}> [0-9.]+ ?)+)\n?"),
    3: re.compile(r"^Priorities: ([^\n]*)\n?"),
}
PROMPT_FORMAT = FORMATS[FORMAT_VERSION]  # the description written into records


def _check_version(format_version: int) -> int:
    if format_version not in FORMATS:
        raise ValueError(f"unknown prompt format version {format_version}; known: {sorted(FORMATS)}")
    return format_version


def preference_header(weights, objective_names: Sequence[str], format_version: int = FORMAT_VERSION) -> str:
    weights = parse_preference_weights(weights, objective_names)
    version = _check_version(format_version)
    if version == 1:
        return "Preference weights: " + format_preference_weights(weights, objective_names)
    if version == 2:
        return " ".join(f"<{name}> {value:.1f}" for name, value in zip(objective_names, weights.tolist()))
    order = sorted(range(len(objective_names)), key=lambda i: -weights[i].item())  # stable: ties keep the order
    return "Priorities: " + ", ".join(f"{objective_names[i]} {round(100 * weights[i].item())}%" for i in order)


def _strip_header(text: str) -> str:
    for pattern in _HEADER_LINES.values():
        text = pattern.sub("", text, count=1)
    return text


def condition_prompt(prompt, weights: torch.Tensor | Sequence[float] | str, objective_names: Sequence[str],
                     format_version: int = FORMAT_VERSION):
    """Return a copy of `prompt` (str or list of chat messages) with the weights written in; never mutates."""
    header = preference_header(weights, objective_names, format_version)
    if isinstance(prompt, str):
        return header + "\n" + _strip_header(prompt)
    if isinstance(prompt, list):
        messages = [dict(m) for m in prompt]
        if messages and messages[0].get("role") == "system":
            rest = _strip_header(messages[0]["content"])
            messages[0]["content"] = header + ("\n" + rest if rest else "")
        else:
            messages.insert(0, {"role": "system", "content": header})
        return messages
    raise TypeError(f"prompt must be a string or a list of chat messages, got {type(prompt).__name__}")


def read_prompt_weights(prompt, objective_names: Sequence[str],
                        format_version: int | None = None) -> torch.Tensor | None:
    """The weights written in a conditioned prompt (any known format, or the one given), or None when it carries
    none."""
    if isinstance(prompt, str):
        text = prompt
    else:
        text = prompt[0].get("content", "") if prompt and prompt[0].get("role") == "system" else ""
    versions = [_check_version(format_version)] if format_version is not None else sorted(FORMATS)
    for version in versions:
        match = _HEADER_LINES[version].match(text)
        if not match:
            continue
        body = match.group(1).strip()
        if version == 2:
            pairs = re.findall(rf"<({_NAME})> ([0-9.]+)", body)
            return parse_preference_weights({n: float(v) for n, v in pairs}, objective_names)
        if version == 3:
            pairs = [item.strip().rsplit(" ", 1) for item in body.split(",")]
            return parse_preference_weights({n: float(v.rstrip("%")) for n, v in pairs}, objective_names)
        return parse_preference_weights(body, objective_names)
    return None


def record_format_version(record: dict | None) -> int:
    """The prompt format a checkpoint was trained with (records from before versioning are version 1)."""
    return int((record or {}).get("prompt_format_version") or 1)
