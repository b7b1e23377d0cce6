"""The orchestrator's training data: prompts and their preferred replies, from pairwise or rated rows, and the
reward model's normalized scores of those replies per distinct prompt.

Rows are read and validated as the reward model reads them (`reward_models.data`, `alignment.data.rows`): the same
data specs (`name[start:stop]`, `qa_feedback:NAME`), the same fields, the same refusals.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import torch

from alignment.data.rows import QA_FEEDBACK_PREFIX, pair_fields, parse_rated_row, qa_feedback_ratings
from alignment.data.sources import split_slice
from alignment.data.validation import ROW_NUMBER, present_fields
from alignment.orchestrator.errors import OrchestratorError
from alignment.redaction import redact_secrets
from reward_models.chat_format import conversation
from reward_models.data import read_source

logger = logging.getLogger(__name__)


def _prompt_and_reply(prompt, reply, where: str, refusal: str) -> tuple[list[dict], str] | None:
    """(prompt messages, reply text) of the conversation `prompt` + `reply`, which must end on an assistant reply
    after a prompt (else `refusal`); None when that reply is empty."""
    messages = conversation(prompt, reply)
    if len(messages) < 2 or messages[-1]["role"] != "assistant":
        raise OrchestratorError(f"{where}: {refusal}")
    if not messages[-1]["content"].strip():
        return None  # an empty preferred reply (a few real HH rows) says nothing about the balance
    return messages[:-1], messages[-1]["content"]


def prompt_and_chosen(row: dict, where: str) -> tuple[list[dict], str] | None:
    """(prompt messages, chosen reply) of a pairwise row (HH dialogue strings, message lists, or prompt + chosen);
    None when the chosen reply is empty."""
    if "chosen" not in row:
        raise OrchestratorError(f"{where}: missing field 'chosen' (present: {present_fields(row)}); the orchestrator "
                                "learns from the chosen replies of pairwise data, or the replies of rated data "
                                "('completion' and 'ratings')")
    prompt, (chosen,) = pair_fields(row, where, OrchestratorError, sides=("chosen",), allow_blank=True)
    return _prompt_and_reply(prompt, chosen, where, "'chosen' must end with an assistant reply after a prompt")


def rated_reply(row: dict, where: str) -> tuple[list[dict], str, float] | None:
    """(prompt messages, reply, mean rating) of a rated row (`prompt`, `completion` or `text`, `ratings`: {aspect:
    number}, the format `reward_models.data` trains rated heads on); None when the reply is empty."""
    rated = parse_rated_row(row, where, OrchestratorError, allow_blank_completion=True)
    refusal = "a rated row needs a 'prompt' and an assistant reply"
    if rated.prompt is None:
        raise OrchestratorError(f"{where}: {refusal}")
    prompt_and_reply = _prompt_and_reply(rated.prompt, rated.completion, where, refusal)
    if prompt_and_reply is None:
        return None
    values = [float(value) for value in rated.ratings.values()]
    return prompt_and_reply[0], prompt_and_reply[1], sum(values) / len(values)


def preferred_replies(spec: str) -> tuple[list, list[str], int]:
    """(prompts, preferred replies, rows left out) of one data spec (`name[start:stop]`), in first-seen order.

    - pairwise rows (`chosen`, optional `prompt`): each pair's chosen reply;
    - rated rows (`prompt`, `completion`/`text`, `ratings`): per prompt, the reply with the best mean rating (the
      preferred one of those rated); `qa_feedback:NAME` reads the fine-grained QA feedback file as the reward model
      does (`alignment.data.rows.qa_feedback_ratings`: the question and its one rated answer).

    An unknown name or an unreadable line raises `RewardDataError` (the file is read as the reward model reads it);
    a row that cannot be used raises `OrchestratorError`.
    """
    is_qa_feedback = spec.startswith(QA_FEEDBACK_PREFIX)
    name, rows = split_slice(spec[len(QA_FEEDBACK_PREFIX):] if is_qa_feedback else spec)
    prompts, replies, empty = [], [], 0
    best: dict[str, tuple[float, int]] = {}  # rated: prompt key -> (best mean rating, its index in prompts)
    for row in read_source(name, rows):
        where = f"{name}, row {row[ROW_NUMBER]}"
        if is_qa_feedback:
            question, answer, ratings = qa_feedback_ratings(row, where, OrchestratorError)
            row = {"prompt": question, "completion": answer, "ratings": ratings}
        if "chosen" in row or "ratings" not in row:  # pairwise; a row of neither kind is named by prompt_and_chosen
            pair = prompt_and_chosen(row, where)
            if pair is None:
                empty += 1
                continue
            prompts.append(pair[0])
            replies.append(pair[1])
            continue
        rated = rated_reply(row, where)
        if rated is None:
            empty += 1
            continue
        key = json.dumps(rated[0], sort_keys=True)
        if key not in best:
            best[key] = (rated[2], len(prompts))
            prompts.append(rated[0])
            replies.append(rated[1])
        elif rated[2] > best[key][0]:
            best[key] = (rated[2], best[key][1])
            replies[best[key][1]] = rated[1]
    return prompts, replies, empty


def load_prompt_targets(specs: Sequence[str], scorer, objective_columns: Sequence[int]) -> tuple[list, torch.Tensor]:
    """Distinct prompts of pairwise or rated sources and the RM's normalized scores of their preferred replies, [P, K].

    `specs` are data names with optional row slices (`hh-harmless[:600]`, `qa_feedback:qa-feedback[:300]`); a prompt
    that occurs more than once (in pairwise data, or across sources) gets the mean score of its preferred replies.
    """
    prompts, replies, empty = [], [], 0
    for spec in specs:
        more_prompts, more_replies, left_out = preferred_replies(spec)
        prompts += more_prompts
        replies += more_replies
        empty += left_out
    if empty:
        logger.info("left out %d rows of %s whose preferred reply is empty", empty, redact_secrets(str(list(specs))))
    if not prompts:
        raise OrchestratorError(f"no pairwise or rated rows in {list(specs)}")
    scores = scorer.score(prompts, replies, normalize=True)[:, list(objective_columns)]
    keys = [json.dumps(p, sort_keys=True) for p in prompts]
    distinct = list(dict.fromkeys(keys))
    index = {key: i for i, key in enumerate(distinct)}
    sums = torch.zeros(len(distinct), scores.shape[1]).index_add_(0, torch.tensor([index[k] for k in keys]), scores)
    counts = torch.bincount(torch.tensor([index[k] for k in keys]), minlength=len(distinct)).unsqueeze(1)
    first = {key: prompt for key, prompt in zip(reversed(keys), reversed(prompts))}
    return [first[key] for key in distinct], sums / counts
