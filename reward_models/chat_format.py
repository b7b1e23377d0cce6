"""Turning conversations into the one string a reward model reads.

Data reaches the reward model in three shapes: HH-RLHF dialogue strings ("\n\nHuman: ...\n\nAssistant: ..."),
TRL's conversational form (lists of {"role", "content"} messages) and plain text. Everything is first made into a
list of messages, then rendered with the backbone's chat template when the tokenizer has one (decoder chat models:
Qwen, Llama, the tiny policy) so the reward model reads conversations exactly as the policy writes them.

Backbones without a chat template (encoders such as all-MiniLM-L6-v2) get the documented plain format, which is
HH-RLHF's own layout, one message per paragraph:

    Human: <user message>

    Assistant: <assistant message>

with "System:" for system messages.
"""

from __future__ import annotations

from alignment.data.rows import parse_hh_dialogue

__all__ = ["PLAIN_ROLE_NAMES", "conversation", "parse_hh_dialogue", "render_conversation", "to_messages"]
PLAIN_ROLE_NAMES = {"system": "System", "user": "Human", "assistant": "Assistant"}


def to_messages(value, role: str = "user") -> list[dict[str, str]]:
    """A message list from a message list, an HH dialogue string, or a plain string (taken as one `role` message)."""
    if isinstance(value, list):
        if not all(isinstance(m, dict) and "role" in m and "content" in m for m in value):
            raise TypeError("a conversation must be a list of {'role': ..., 'content': ...} messages")
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in value]
    if isinstance(value, str):
        return parse_hh_dialogue(value) or [{"role": role, "content": value}]
    raise TypeError(f"expected a string or a list of messages, got {type(value).__name__}")


def conversation(prompt, completion) -> list[dict[str, str]]:
    """The whole conversation: the prompt's messages (user by default) then the completion's (assistant by default)."""
    prompt_messages = [] if prompt is None else to_messages(prompt, role="user")
    completion_messages = to_messages(completion, role="assistant")
    if prompt_messages and completion_messages[: len(prompt_messages)] == prompt_messages:
        return completion_messages  # a completion that already holds its prompt (TRL's implicit-prompt pairs)
    return prompt_messages + completion_messages


def render_conversation(tokenizer, messages: list[dict[str, str]]) -> str:
    """The text the reward model scores: the chat template when the tokenizer has one, the plain format otherwise."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False)
    return "\n\n".join(f"{PLAIN_ROLE_NAMES.get(m['role'], m['role'].capitalize())}: {m['content']}" for m in messages)
