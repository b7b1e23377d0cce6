"""Built-in verifiable rewards: cheap, offline, deterministic scores of a completion's text.

Each function has TRL's reward-function signature `f(prompts, completions, **kwargs) -> list[float]`, so it
works as a plain TRL reward function too (the GRPO overhead benchmark relies on that).
"""

from __future__ import annotations

import re
from functools import lru_cache

from better_profanity import profanity
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from alignment.objectives.sources import register_reward


def completion_text(completion) -> str:
    """The text of a completion: a string, or TRL's conversational form (a list of messages)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        return "".join(str(message.get("content", "")) for message in completion if isinstance(message, dict))
    raise TypeError(f"completion must be a string or a list of messages, got {type(completion).__name__}")


def conciseness(prompts, completions, **kwargs) -> list[float]:
    """Minus the number of characters / 100: shorter is better."""
    return [-len(completion_text(c)) / 100.0 for c in completions]


CONCISENESS_FLOOR_CHARS = 100  # about two short sentences


def conciseness_floored(prompts, completions, **kwargs) -> list[float]:
    """Minus max(characters, 100) / 100: shorter is better down to about two sentences, and no shorter reply scores
    higher. Plain `conciseness` rewards an empty reply most, which is what a policy trained on it learns; under this
    one, cutting a reply below the floor gains nothing while the other objectives (sentiment, ...) still pay for
    content."""
    return [-max(len(completion_text(c)), CONCISENESS_FLOOR_CHARS) / 100.0 for c in completions]


def conciseness_bytes(prompts, completions, **kwargs) -> list[float]:
    """Minus max(UTF-8 bytes, 100) / 100: `conciseness_floored` counted in bytes. For plain English text the two
    agree; an emoji is one character but four bytes (and several tokens), so strings of emoji are not a cheap way to
    say more in fewer characters. A SmolLM2 policy steered by characters learned exactly that at its concise corner
    (51 tokens in 118 characters of emoji); the steerable default counts bytes."""
    return [-max(len(completion_text(c).encode("utf-8")), CONCISENESS_FLOOR_CHARS) / 100.0 for c in completions]


@lru_cache(maxsize=1)
def _vader():
    return SentimentIntensityAnalyzer()


def sentiment(prompts, completions, **kwargs) -> list[float]:
    """VADER compound sentiment in [-1, 1]: positive, friendly wording scores high."""
    analyzer = _vader()
    return [analyzer.polarity_scores(completion_text(c))["compound"] for c in completions]


@lru_cache(maxsize=1)
def _profanity():
    profanity.load_censor_words()
    return profanity


def profanity_free(prompts, completions, **kwargs) -> list[float]:
    """1 when the completion contains no word of better-profanity's list, else 0."""
    checker = _profanity()
    return [0.0 if checker.contains_profanity(completion_text(c)) else 1.0 for c in completions]


_ROLE_LEAK = re.compile(r"(Human:|Assistant:|<\|im_start\|>|<\|im_end\|>)")


def format_ok(prompts, completions, **kwargs) -> list[float]:
    """1 for a well-formed reply: non-empty, ends a sentence (. ! ?), and does not speak for another role."""
    scores = []
    for c in completions:
        text = completion_text(c).strip()
        ok = bool(text) and text[-1] in ".!?" and not _ROLE_LEAK.search(text)
        scores.append(1.0 if ok else 0.0)
    return scores


BUILTIN_REWARDS = {
    "conciseness": conciseness,
    "conciseness_floored": conciseness_floored,
    "conciseness_bytes": conciseness_bytes,
    "sentiment": sentiment,
    "profanity_free": profanity_free,
    "format": format_ok,
}

for _name, _function in BUILTIN_REWARDS.items():
    register_reward(_name, _function)
