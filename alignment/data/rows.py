"""Parsers for the row formats several loaders read: HH-RLHF dialogues, the sides of a pairwise row, TRL's implicit
prompt, rated replies, and the fine-grained QA feedback file.

The reward model (`reward_models.data`) trains on pairwise and rated rows and the orchestrator
(`alignment.orchestrator`) takes its targets from the same rows, so both parse them here and accept and refuse the
same rows. Every parser raises the `error` class its caller passes (its own `DataError` subclass) with a message
naming the place `where` (`FILE, row N`) and the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from alignment.data.validation import DataError, conversation_field, number_field, present_fields

HH_HUMAN, HH_ASSISTANT = "\n\nHuman:", "\n\nAssistant:"

# A rated source given as `qa_feedback:PATH` is the fine-grained QA feedback file, read with `qa_feedback_ratings`.
QA_FEEDBACK_PREFIX = "qa_feedback:"
# Fine-grained QA feedback (Wu et al. 2023): error categories -> the aspect they count against.
QA_FEEDBACK_ASPECTS = {
    "relevance": ("Irrelevant", "Redundant", "Incoherent"),
    "factuality": ("Unverifiable", "Wrong-Grounding"),
    "completeness": ("Missing-Answer", "Missing-Major-Auxiliary", "Missing-Minor-Auxiliary"),
}


def parse_hh_dialogue(text: str) -> list[dict[str, str]]:
    """Split an HH-RLHF dialogue string ('\\n\\nHuman: ...\\n\\nAssistant: ...') into chat messages; an empty list
    when it is not in that format."""
    if HH_HUMAN not in text:
        return []
    messages = []
    for block in text.split(HH_HUMAN)[1:]:
        human, has_reply, rest = block.partition(HH_ASSISTANT)
        messages.append({"role": "user", "content": human.strip()})
        if has_reply:
            # Rarely, several "Assistant:" markers follow one human turn: they are consecutive assistant turns.
            messages += [{"role": "assistant", "content": reply.strip()} for reply in rest.split(HH_ASSISTANT)]
    return messages


def is_hh_row(row: dict) -> bool:
    """A row in HH-RLHF's hub schema: no `prompt`, and `chosen` and `rejected` each a whole dialogue
    ('\\n\\nHuman: ...\\n\\nAssistant: ...')."""
    return "prompt" not in row and all(isinstance(row.get(side), str) and row[side].startswith(HH_HUMAN)
                                       for side in ("chosen", "rejected"))


def explicit_prompt(row: dict, where: str, error: type[Exception] = DataError) -> dict:
    """A preference row in one of TRL's formats, with its prompt made explicit (`trl.data_utils.maybe_extract_prompt`).

    A row without `prompt` (TRL's implicit prompt), or with a plain-text prompt beside conversational replies, gets
    the beginning `chosen` and `rejected` share as its `prompt` and keeps what follows as its replies; HH-RLHF rows
    (`is_hh_row`) are read as chat messages first. Any other row is returned as it is. Where the two replies share
    no beginning there is no prompt to extract: `error` says so, naming `where`.
    """
    chosen, rejected = row.get("chosen"), row.get("rejected")
    if row.get("prompt") == [] or not all(isinstance(side, (str, list)) and side for side in (chosen, rejected)):
        # nothing to extract from (TRL's helper would fail on an empty message list): the caller's validation names
        # what is missing or malformed
        return row
    if is_hh_row(row):
        chosen, rejected = parse_hh_dialogue(chosen), parse_hh_dialogue(rejected)
    from trl.data_utils import maybe_extract_prompt  # lazy: importing TRL takes seconds; validation alone needs none

    given = {**row, "chosen": chosen, "rejected": rejected}
    try:
        extracted = maybe_extract_prompt(given)  # `given` itself when the row's prompt is already explicit
    except (IndexError, KeyError, TypeError, AttributeError):  # malformed messages: validation names what is wrong
        return row
    if extracted is not given and not extracted["prompt"]:
        raise error(f"{where}: 'chosen' and 'rejected' share no beginning to take as the prompt (TRL's implicit "
                    "prompt); give the row a 'prompt' field in the format of its replies (text, or messages)")
    return {**row, **extracted}


def pair_fields(row: dict, where: str, error: type[Exception] = DataError, *,
                sides: Sequence[str] = ("chosen", "rejected"), allow_blank: bool = False,
                blank_hint: str = "") -> tuple[str | list | None, list[str | list]]:
    """(prompt or None, [reply of each of `sides`]) of a pairwise row, each a string or a message list.

    The prompt is optional (HH rows hold whole dialogues in `chosen` and `rejected`); a side that is blank is refused
    unless `allow_blank` (a caller that counts and leaves out empty replies).
    """
    prompt = conversation_field(row, "prompt", where, error) if "prompt" in row else None
    replies = [conversation_field(row, side, where, error, allow_blank=allow_blank, blank_hint=blank_hint)
               for side in sides]
    return prompt, replies


@dataclass(frozen=True)
class RatedRow:
    """One rated reply: the optional prompt and the reply (strings or message lists), and its ratings as given."""

    prompt: str | list | None
    completion: str | list
    ratings: dict[str, float]


def parse_rated_row(row: dict, where: str, error: type[Exception] = DataError, *, heads: Sequence[str] | None = None,
                    drop_other_objectives: bool = False, rating_range: Sequence[float] | None = None,
                    allow_blank_completion: bool = False) -> RatedRow:
    """A rated row (`completion` or `text`, optional `prompt`, `ratings`: {objective: number}), validated.

    Every rating must be a finite number within `rating_range` [min, max] (when given). With `heads`, the objectives
    a model has heads for, a rating of any other objective is refused, or, with `drop_other_objectives`, checked
    and left out of the returned ratings (which may then be empty).
    """
    prompt = conversation_field(row, "prompt", where, error) if "prompt" in row else None
    if "completion" not in row and "text" not in row:
        raise error(f"{where}: missing field 'completion' (or 'text') (present: {present_fields(row)})")
    completion = conversation_field(row, "completion" if "completion" in row else "text", where, error,
                                    allow_blank=allow_blank_completion)
    ratings = row.get("ratings")
    if not isinstance(ratings, dict) or not ratings:
        raise error(f"{where}: field 'ratings' must be a non-empty {{objective: number}} object")
    for objective, value in ratings.items():
        if heads is not None and objective not in heads and not drop_other_objectives:
            raise error(f"{where}: field 'ratings.{objective}' rates an objective with no head; heads: {list(heads)}")
        number_field(value, where, f"ratings.{objective}", error, rating_range)
    kept = {objective: value for objective, value in ratings.items() if heads is None or objective in heads}
    return RatedRow(prompt=prompt, completion=completion, ratings=kept)


def qa_feedback_ratings(row: dict, where: str, error: type[Exception] = DataError) -> tuple[str, str, dict[str, float]]:
    """(question, answer, ratings) derived from one fine-grained QA feedback row.

    The human annotations (errors[], missing-info[]) are about `prediction 1`, the response the annotators
    corrected (its error spans index into that text). Each aspect's rating is minus the number of annotated
    errors of its categories (QA_FEEDBACK_ASPECTS): 0 is a flawless answer on that aspect, -3 three errors.
    Counting spans keeps the unit the paper's fine-grained reward uses (one penalty per error segment).
    The passages are left out: they are longer than a small encoder's context, and the aspects are judged
    on the answer to the question.
    """
    question = conversation_field(row, "question", where, error)
    answer = conversation_field(row, "prediction 1", where, error)
    feedback = row.get("feedback")
    if not isinstance(feedback, dict):
        raise error(f"{where}: missing field 'feedback' (an object with 'errors' and 'missing-info')")
    annotations = []
    for key in ("errors", "missing-info"):
        if not isinstance(feedback.get(key), list):
            raise error(f"{where}: field 'feedback.{key}' must be a list")
        for index, item in enumerate(feedback[key]):
            if not isinstance(item, dict) or not isinstance(item.get("error type"), str):
                raise error(f"{where}: field 'feedback.{key}[{index}]' has no 'error type' name")
            annotations.append(item["error type"])
    known = {category for categories in QA_FEEDBACK_ASPECTS.values() for category in categories}
    unknown = sorted(set(annotations) - known)
    if unknown:
        raise error(f"{where}: field 'feedback' has unknown error type(s) {unknown}; known: {sorted(known)}")
    ratings = {
        aspect: -float(sum(annotation in categories for annotation in annotations))
        for aspect, categories in QA_FEEDBACK_ASPECTS.items()
    }
    return question, answer, ratings
