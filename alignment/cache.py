"""Where the suite keeps what it builds or downloads once (the tiny policy, converted models, hub datasets).

`$MOALIGN_CACHE`, else `~/.cache/moalign`: a user cache, never the repository or the installed package.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    return Path(os.environ.get("MOALIGN_CACHE", Path.home() / ".cache" / "moalign"))
