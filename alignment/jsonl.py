"""Reading JSON-lines data files with errors that name the file and the line, shared by every data loader."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path


def iter_jsonl(path: str | Path, error: type[Exception] = ValueError) -> Iterator[tuple[int, dict]]:
    """Yield (1-based line number, row) for each non-blank line; a missing file, bad JSON or a non-object row
    raises `error` naming the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: file not found")
    with open(path) as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as decode_error:
                raise error(f"{path}, row {line_number}: not valid JSON ({decode_error.msg})") from None
            if not isinstance(row, dict):
                raise error(f"{path}, row {line_number}: expected a JSON object, got {type(row).__name__}")
            yield line_number, row
