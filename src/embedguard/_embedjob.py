"""The ``embedguard embed`` job: read texts from a file, embed them in resumable chunks, write.

Chunks of a request's worth of texts are sent a few at a time; each is saved to the checkpoint
(:mod:`embedguard._checkpoint`) the moment it completes, so a rerun after a failure or Ctrl-C
sends only what did not complete. The final output is assembled at the end and the checkpoint
removed.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import importlib
import io
import json
import os
import sys
from asyncio import FIRST_COMPLETED
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

import numpy as np
import orjson

from ._checkpoint import Checkpoint
from .core.errors import EmbedGuardError, InputValidationError

__all__ = [
    "InputFormat",
    "JobError",
    "Progress",
    "Records",
    "assemble",
    "input_format",
    "quiet_model_loading",
    "read_records",
    "run_chunks",
]

InputFormat = Literal["text", "jsonl", "csv"]


class JobError(Exception):
    """A problem with the job's input, output or checkpoint, worded for the command line."""


@dataclass(frozen=True)
class Records:
    """The texts read from an input file.

    Attributes:
        texts: The texts to embed, in input order.
        positions: For each text, its record's 0-based position in the input (lines for text,
            non-blank lines for JSONL, data rows for CSV); differs from ``range`` only when
            empty records were skipped.
        skipped: How many empty records were skipped.
        sha256: The hash of the input file's bytes.
    """

    texts: list[str]
    positions: list[int]
    skipped: int
    sha256: str


def input_format(path: Path, fmt: str) -> InputFormat:
    """The input format: ``fmt`` unless ``"auto"``, else chosen by the file's extension."""
    if fmt in ("text", "jsonl", "csv"):
        return fmt  # type: ignore[return-value]
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    return "text"


def read_records(
    path: Path, fmt: InputFormat, *, field: str, column: str, skip_empty: bool
) -> Records:
    """Read the texts of ``path``.

    Text: one text per line (the line ending removed). JSONL: one object per non-blank line,
    text in ``field``. CSV: a header row, text in ``column``. An empty or whitespace-only text
    is an error naming its line unless ``skip_empty``.

    Raises:
        JobError: Unreadable or malformed input, a missing field or column, an empty text.
        OSError: The file cannot be opened.
    """
    raw = path.read_bytes()
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JobError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    reader = {"text": _text_rows, "jsonl": _jsonl_rows, "csv": _csv_rows}[fmt]
    texts: list[str] = []
    positions: list[int] = []
    skipped = 0
    for position, (where, text) in enumerate(reader(content, field or column, path)):
        if not text.strip():
            if not skip_empty:
                raise JobError(f"{path}: {where} is empty (use --skip-empty to skip empty texts)")
            skipped += 1
            continue
        texts.append(text)
        positions.append(position)
    if not texts:
        raise JobError(f"{path}: no texts to embed")
    return Records(texts, positions, skipped, hashlib.sha256(raw).hexdigest())


def _text_rows(content: str, _name: str, _path: Path) -> list[tuple[str, str]]:
    lines = content.split("\n")
    if lines and lines[-1] == "":  # a final newline ends the last line; it starts no new one
        lines.pop()
    return [(f"line {n}", line.removesuffix("\r")) for n, line in enumerate(lines, 1)]


def _jsonl_rows(content: str, field: str, path: Path) -> list[tuple[str, str]]:
    rows = []
    for n, line in enumerate(content.split("\n"), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise JobError(f"{path}: line {n} is not JSON ({exc.msg})") from None
        if not isinstance(record, dict) or field not in record:
            raise JobError(f"{path}: line {n} has no field {field!r} (choose one with --field)")
        value = record[field]
        if not isinstance(value, str):
            raise JobError(f"{path}: line {n}: field {field!r} is {type(value).__name__}, not text")
        rows.append((f"line {n}", value))
    return rows


def _csv_rows(content: str, column: str, path: Path) -> list[tuple[str, str]]:
    reader = csv.DictReader(io.StringIO(content, newline=""))
    header = reader.fieldnames or []
    if column not in header:
        found = ", ".join(repr(h) for h in header) or "none"
        raise JobError(f"{path}: no column {column!r} (columns: {found}; choose with --column)")
    try:
        # Row n of the data is on line n + 1 of a file without multi-line fields.
        return [(f"row {n}", row[column] or "") for n, row in enumerate(reader, 1)]
    except csv.Error as exc:
        raise JobError(f"{path}: malformed CSV at line {reader.line_num}: {exc}") from None


def assemble(output: Path, vectors: np.ndarray, positions: Sequence[int]) -> None:
    """Write ``vectors`` to ``output``: ``.npy`` (float32 ``(n, d)``) or ``.jsonl``.

    JSONL lines are ``{"index": position, "vector": [...]}``, ``position`` being the record's
    place in the input. The file is written under a temporary name, then renamed.
    """
    temporary = output.with_name(output.name + ".tmp")
    if output.suffix.lower() == ".jsonl":
        with temporary.open("wb") as stream:
            for position, row in zip(positions, vectors, strict=True):
                line = {"index": position, "vector": row}
                stream.write(orjson.dumps(line, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
    else:
        with temporary.open("wb") as stream:
            np.save(stream, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
    os.replace(temporary, output)


class Progress:
    """A progress bar on stderr: tqdm when installed, else a plain counter.

    Args:
        total: The number of items expected.
        description: The label in front of the bar.
        unit: What is counted (``"text"``).
        initial: Items already done (a resumed job).
        enabled: ``False`` prints nothing.
        stream: Where to draw (default ``sys.stderr``).
    """

    def __init__(
        self,
        total: int,
        description: str,
        *,
        unit: str = "text",
        initial: int = 0,
        enabled: bool = True,
        stream: TextIO | None = None,
    ) -> None:
        self._stream = stream or sys.stderr
        self._total = total
        self._done = initial
        self._description = description
        self._unit = unit
        self._enabled = enabled
        self._bar: Any = None
        self._last_shown = -1
        if enabled:
            try:  # tqdm comes with the local extra; a plain counter does without it
                tqdm = importlib.import_module("tqdm").tqdm
            except ImportError:
                self._show()
            else:
                self._bar = tqdm(
                    total=total, initial=initial, desc=description, unit=unit,
                    file=self._stream, dynamic_ncols=True, leave=True,
                )  # fmt: skip

    def update(self, n: int) -> None:
        """Count ``n`` more items done."""
        self._done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._enabled:
            self._show()

    def _show(self) -> None:
        # Without tqdm: redraw on a terminal, else one line per tenth of the work.
        tenth = self._done * 10 // max(1, self._total)
        if not self._stream.isatty() and tenth == self._last_shown:
            return
        self._last_shown = tenth
        end = "\r" if self._stream.isatty() else "\n"
        shown = f"{self._description}: {self._done}/{self._total} {self._unit}s"
        print(shown, end=end, file=self._stream)

    def close(self, *, keep: bool = True) -> None:
        """Finish the bar; ``keep=False`` erases it (e.g. before an error message)."""
        if self._bar is not None:
            self._bar.leave = keep
            self._bar.close()
        elif self._enabled and self._stream.isatty():
            print(file=self._stream)


def run_chunks(
    embed: Callable[[list[str]], Awaitable[np.ndarray]],
    texts: Sequence[str],
    checkpoint: Checkpoint,
    chunk_size: int,
    concurrency: int,
    progress: Callable[[int, int], Progress],
) -> np.ndarray:
    """Embed the ``texts`` the checkpoint lacks, ``concurrency`` chunks at a time; all vectors.

    Each chunk (``chunk_size`` texts) is saved the moment its call returns, so an interrupt
    (Ctrl-C cancels the calls in flight) or a failure loses only chunks not yet completed.
    After a failure no new chunk starts, the ones in flight finish (and are kept), then the
    first error is raised. ``progress(total, initial)`` builds the bar once the finished texts
    are known.

    Raises:
        JobError: Vectors of different widths (the model changed under the checkpoint).
        KeyboardInterrupt: Interrupted; what completed is saved.
    """
    keys = [checkpoint.key(text) for text in texts]
    found = checkpoint.load()
    todo = [i for i, key in enumerate(keys) if key not in found]
    bar = progress(len(texts), len(texts) - len(todo))
    chunks = [todo[start : start + chunk_size] for start in range(0, len(todo), chunk_size)]

    async def one(rows: list[int]) -> None:
        try:
            vectors = await embed([texts[i] for i in rows])
        except EmbedGuardError as error:  # name the failed inputs by their place in the file
            raise _renumbered(error, rows) from error.__cause__
        # No await from here on: a cancelled call either saved its chunk whole or not at all.
        checkpoint.save([keys[i] for i in rows], vectors)
        found.update(zip((keys[i] for i in rows), vectors, strict=True))
        bar.update(len(rows))

    try:
        asyncio.run(_bounded(one, chunks, concurrency))
    except BaseException:
        bar.close(keep=False)
        raise
    bar.close()
    if len({found[key].shape[0] for key in keys}) != 1:
        raise JobError(f"{checkpoint.directory}: vectors of different widths; use --no-resume")
    return np.stack([found[key] for key in keys])


def _renumbered(error: EmbedGuardError, rows: list[int]) -> EmbedGuardError:
    """``error`` with the chunk's input positions replaced by the positions in the whole input."""
    clone = error.shifted(0)
    clone.failed_indices = tuple(rows[i] for i in error.failed_indices if 0 <= i < len(rows))
    index = getattr(error, "index", None)
    if isinstance(clone, InputValidationError) and index is not None and 0 <= index < len(rows):
        clone = InputValidationError(clone.reason, index=rows[index], provider=clone.provider)
        clone.failed_indices = tuple(rows[i] for i in error.failed_indices if i < len(rows))
    return clone


async def _bounded(
    run: Callable[[list[int]], Coroutine[Any, Any, None]], chunks: list[list[int]], limit: int
) -> None:
    """Run ``run(chunk)`` for each chunk, at most ``limit`` at once; stop at the first error."""
    pending: set[asyncio.Task[None]] = set()
    error: BaseException | None = None

    def settle(finished: set[asyncio.Task[None]]) -> None:
        nonlocal error
        for task in finished:
            if error is None and not task.cancelled() and task.exception() is not None:
                error = task.exception()

    try:
        for chunk in chunks:
            while len(pending) >= limit and error is None:
                finished, pending = await asyncio.wait(pending, return_when=FIRST_COMPLETED)
                settle(finished)
            if error is not None:
                break
            pending.add(asyncio.create_task(run(chunk)))
        if pending:
            finished, pending = await asyncio.wait(pending)  # in flight: paid for, so kept
            settle(finished)
    finally:
        for task in pending:  # only when interrupted: cancel what is still in flight
            task.cancel()
        if pending:
            await asyncio.wait(pending)
    if error is not None:
        raise error


def quiet_model_loading() -> None:
    """Silence the model library's own progress bar while reading weights (we report loading)."""
    try:
        logging: Any = importlib.import_module("transformers.utils.logging")
    except ImportError:
        return
    logging.disable_progress_bar()
