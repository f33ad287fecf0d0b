"""The metadata file of a dataset users bring: which clips, with which captions.

Metadata is JSONL (one object per line) or CSV, with columns
    video        path of the clip, relative to the metadata file's folder or absolute
    caption      the prompt
    loser_video  optional: a worse clip for the same caption (paired, DPO-style data)
Other columns are kept in ``Record.extra`` and otherwise ignored.

Rows that cannot be used (not valid UTF-8, no caption, a caption that is a JSON list or object, no video, a
path that is no regular file: missing, a symlink loop, a FIFO, a device) are skipped when the metadata loads,
with one warning giving the counts and the rows' line numbers. Reading the clips: `videosspo.data`.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from videosspo.errors import DataError, PathError
from videosspo.video import file_problem

log = logging.getLogger("videosspo.metadata")

METADATA_NAMES = ("metadata.jsonl", "metadata.csv")


@dataclass(frozen=True)
class Record:
    """One usable metadata row."""

    index: int  # position in the loaded list (= dataset index); skipped rows leave no gaps
    video: Path  # absolute path
    caption: str
    loser_video: Path | None = None  # absolute path, or None for unpaired data
    extra: dict = field(default_factory=dict)  # the row's other columns, untouched


def _metadata_file(path: Path) -> Path:
    if path.is_dir():
        for name in METADATA_NAMES:
            if (path / name).is_file():
                return path / name
        raise PathError(f"{path} contains none of {METADATA_NAMES}")
    if not path.is_file():
        raise PathError(f"data.path: metadata file {path} does not exist")
    return path


def _is_utf8(text: str) -> bool:
    """False for text decoded with ``errors="surrogateescape"`` from bytes that are not UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _read_rows(path: Path) -> list[tuple[int, dict | None]]:
    """``(line number, row)`` of a .jsonl or .csv metadata file; the row is None where it is not valid UTF-8."""
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".csv"):
        raise DataError(f"metadata file {path} must end in .jsonl or .csv")
    # undecodable bytes become lone surrogates, so one bad row is found and skipped, not a crash for the file
    text = path.read_bytes().decode("utf-8-sig", errors="surrogateescape")
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        columns = reader.fieldnames or []
        missing = [c for c in ("video", "caption") if c not in columns]
        if missing:
            raise DataError(f"{path} has no {' or '.join(missing)} column; its columns are {columns}")
        rows, line = [], reader.line_num + 1
        for row in reader:  # a quoted field may span lines: a row starts on the line after the previous one ended
            rows.append((line, row if all(_is_utf8(str(v)) for v in row.values()) else None))
            line = reader.line_num + 1
        return rows
    rows = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if not _is_utf8(line):
            rows.append((line_no, None))
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}, line {line_no}: not valid JSON ({e})") from e
        if not isinstance(row, dict):
            raise DataError(f"{path}, line {line_no}: expected a JSON object, got {type(row).__name__}")
        rows.append((line_no, row))
    return rows


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def _skip_reason(row: dict | None, paths: dict) -> str | None:
    """Why a metadata row cannot be used, or None when it can."""
    if row is None:
        return "not valid UTF-8 (save the file as UTF-8)"
    if isinstance(row.get("caption"), (list, dict)):
        return "caption is a JSON list or object, not text (write it as one string)"
    if not _text(row.get("caption")):
        return "missing caption"
    if paths["video"] is None:
        return "missing video"
    for key in ("video", "loser_video"):
        problem = None if paths[key] is None else file_problem(paths[key])
        if problem:
            return f"{key} {problem}" if problem == "file not found" else f"{key} is {problem}"
    return None


def load_metadata(path: str | os.PathLike) -> list[Record]:
    """Usable rows of a metadata file, or of the ``metadata.jsonl``/``metadata.csv`` in a folder.

    Skipped rows are counted by reason and reported in one warning naming their first lines; no usable row at
    all is a ValueError.
    """
    path = _metadata_file(Path(path))
    root = path.parent.resolve()
    records: list[Record] = []
    skipped: dict[str, list[int]] = {}  # reason -> line numbers
    rows = _read_rows(path)
    for line, row in rows:
        video, loser = (_text(row.get(k)) if row else "" for k in ("video", "loser_video"))
        paths = {"video": root / video if video else None, "loser_video": root / loser if loser else None}
        reason = _skip_reason(row, paths)
        if reason is None:
            extra = {k: v for k, v in row.items() if k not in ("video", "caption", "loser_video")}
            records.append(Record(len(records), paths["video"], _text(row["caption"]), paths["loser_video"], extra))
        else:
            skipped.setdefault(reason, []).append(line)
    summary = ", ".join(f"{len(lines)} {reason} ({_lines(lines)})" for reason, lines in skipped.items())
    if skipped:
        log.warning("%s: skipped %d of %d rows: %s", path, sum(map(len, skipped.values())), len(rows), summary)
    if not records:
        raise DataError(f"{path}: no usable rows ({summary or 'the file has no rows'})")
    return records


def _lines(lines: list[int], shown: int = 3) -> str:
    """``line 4`` / ``lines 4, 9, 12, ...``."""
    more = ", ..." if len(lines) > shown else ""
    return f"line{'s' if len(lines) > 1 else ''} {', '.join(map(str, lines[:shown]))}{more}"
