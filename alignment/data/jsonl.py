"""Reading JSON-lines data files with errors that name the file and the line, shared by every data loader."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path


def iter_jsonl(path: str | Path, error: type[Exception] = ValueError) -> Iterator[tuple[int, dict]]:
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


def write_jsonl(path: str | Path, rows) -> Path:
    """Write dicts as JSON lines (UTF-8, non-ASCII kept readable), replacing the file whole when complete."""
    import os
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path
