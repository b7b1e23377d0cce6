"""Preference-conditioned prompts (RiC / DPA style): the weights are written into the prompt.

The documented format is one line, `Preference weights: name=0.70,name=0.30` (objective order of the checkpoint,
two decimals). For chat prompts it is the content of a system message placed first (an existing system message
keeps its text after that line); for plain-text prompts it is the first line. A checkpoint trained this way is
steered at inference by writing other weights in the same place: `condition_prompt(prompt, weights, names)`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from alignment.weights import format_preference_weights, parse_preference_weights

HEADER = "Preference weights: "
PROMPT_FORMAT = "system message 'Preference weights: name=w,...'"
_HEADER_LINE = re.compile(r"^Preference weights: ([^\n]*)\n?")


def preference_header(weights, objective_names: Sequence[str]) -> str:
    weights = parse_preference_weights(weights, objective_names)
    return HEADER + format_preference_weights(weights, objective_names)


def condition_prompt(prompt, weights: torch.Tensor | Sequence[float] | str, objective_names: Sequence[str]):
    """Return a copy of `prompt` (str or list of chat messages) with the weights written in; never mutates."""
    header = preference_header(weights, objective_names)
    if isinstance(prompt, str):
        return header + "\n" + _HEADER_LINE.sub("", prompt)
    if isinstance(prompt, list):
        messages = [dict(m) for m in prompt]
        if messages and messages[0].get("role") == "system":
            rest = _HEADER_LINE.sub("", messages[0]["content"])
            messages[0]["content"] = header + ("\n" + rest if rest else "")
        else:
            messages.insert(0, {"role": "system", "content": header})
        return messages
    raise TypeError(f"prompt must be a string or a list of chat messages, got {type(prompt).__name__}")


def read_prompt_weights(prompt, objective_names: Sequence[str]) -> torch.Tensor | None:
    """The weights written in a conditioned prompt, or None when it carries none."""
    text = prompt if isinstance(prompt, str) else (prompt[0].get("content", "") if prompt and prompt[0].get("role") == "system" else "")
    match = _HEADER_LINE.match(text)
    return parse_preference_weights(match.group(1), objective_names) if match else None
