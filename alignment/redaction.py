"""No credential reaches what we write: records, model cards, messages.

Two rules, on purpose:
- A query parameter of a data spec or model name whose name contains token, key, secret, passw or credential
  (`token`, `hf_token`, `api_key`, `Password`, ...) keeps its name and loses its value:
  `Anthropic/hh-rlhf?data_dir=x&token=<redacted>`. Hiding a value costs nothing, so the rule is broad.
- A record key that names a credential (`hub_token`, `api_key`, `secret`, ... but not `completion_tokens`) is
  dropped with its value. Dropping loses data, so the rule is narrow.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "<redacted>"
# name=value after ? & or ;; the value ends where a query or a sentence around it goes on (& # , ; : quotes, brackets)
# and never holds < or >, so an already redacted value (<redacted>) matches as empty and is left alone
_SECRET_PARAM = re.compile(r"([?&;][^=&#\s?]*(?:token|key|secret|passw|credential)[^=&#\s?]*=)"
                           r"([^&#\s'\"`,;:)\]}<>]*)", re.IGNORECASE)
_SECRET_KEY = re.compile(r"(^|_)(token|secret|password|passwd|api_key|apikey|credentials?)$", re.IGNORECASE)


def redact_secrets(text: str, spec: str | None = None) -> str:
    """`text` with the value of every secret query parameter replaced by `<redacted>` (redacting twice changes
    nothing). With `spec` (the data spec or model name an error message is about), those values are also replaced
    wherever `text` quotes them bare."""
    text = _SECRET_PARAM.sub(lambda match: match[1] + REDACTED if match[2] else match[0], text)
    for match in _SECRET_PARAM.finditer(spec or ""):
        if len(match[2]) >= 6:  # a token, not a word that would blank out the message
            text = text.replace(match[2], REDACTED)
    return text


def scrub(value: Any) -> Any:
    """A JSON-able value with credential keys dropped and secret query parameters redacted in every string."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    if isinstance(value, str):
        return redact_secrets(value)
    return value
