"""Reading JSON-lines data files, with errors that name the file and the line: the one reader every loader uses.

`iter_jsonl` streams (line number, row) pairs; `read_jsonl` collects the rows with their line numbers under `_row`,
which the validators put in their messages.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from alignment.data.validation import ROW_NUMBER, DataError


def iter_jsonl(path: str | Path, error: type[Exception] = DataError) -> Iterator[tuple[int, dict]]:
    """Yield (1-based line number, row) for each non-blank line; a missing file, bad JSON or a non-object row
    raises `error` naming the file and the line. A `.gz` file is decompressed as it is read (the packaged data)."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: file not found")
    # Bytes, decoded line by line: a bad byte is reported at its line instead of as a bare UnicodeDecodeError,
    # and a UTF-8 byte-order mark (common in files saved on Windows) is ignored.
    with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
        for line_number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8-sig")
            except UnicodeDecodeError as decode_error:
                raise error(f"{path}, row {line_number}: not UTF-8 text ({decode_error.reason} at byte "
                            f"{decode_error.start})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as decode_error:
                raise error(f"{path}, row {line_number}: not valid JSON ({decode_error.msg})") from None
            except RecursionError:  # json's decoder recurses per nesting level
                raise error(f"{path}, row {line_number}: JSON nested too deeply to read") from None
            if not isinstance(row, dict):
                raise error(f"{path}, row {line_number}: expected a JSON object, got {type(row).__name__}")
            yield line_number, row


def read_jsonl(path: str | Path, error: type[Exception] = DataError, *, limit: int | None = None,
               rows: slice = slice(None)) -> list[dict]:
    """The rows of a JSON-lines file, each with its 1-based line number under `_row`; bad lines raise `error`.

    `limit` stops reading after that many rows (the lines after it are not read, so not checked); `rows` selects
    rows by position after the whole file is read (a data spec's `[start:stop]`, negative indices included).
    """
    selected = []
    for line_number, row in iter_jsonl(path, error):
        selected.append({**row, ROW_NUMBER: line_number})
        if limit and len(selected) >= limit:
            break
    return selected[rows]


def write_jsonl(path: str | Path, rows) -> Path:
    """Write dicts as JSON lines (UTF-8, non-ASCII kept readable), replacing the file whole when complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path
