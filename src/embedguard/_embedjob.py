"""The ``embedguard embed`` job: read texts from a file, embed them in resumable chunks, write.

Finished chunks are kept in a checkpoint directory next to the output (``OUTPUT.partial/``):
``manifest.json`` says which input and settings the chunks belong to, ``chunk_00000.npy`` ...
hold the vectors of each finished chunk. A rerun with the same input and settings embeds only the
missing chunks, so an interrupted job never pays twice for the same texts. The final output is
assembled at the end and the checkpoint removed.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import io
import json
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

import numpy as np
import orjson

from .core.config import ProviderProfile

__all__ = [
    "Checkpoint",
    "InputFormat",
    "JobError",
    "Progress",
    "Records",
    "assemble",
    "checkpoint_identity",
    "finished_chunks",
    "input_format",
    "quiet_model_loading",
    "read_records",
    "run_chunks",
]

InputFormat = Literal["text", "jsonl", "csv"]
_MANIFEST_VERSION = 1


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


class Checkpoint:
    """Finished chunks of one job, in ``directory``, valid for one input and set of settings.

    Args:
        directory: Where chunks live (``OUTPUT.partial``).
        identity: What the chunks depend on (input hash, reader settings, model, chunk size);
            a checkpoint with another identity is never reused.
    """

    def __init__(self, directory: Path, identity: dict[str, Any]) -> None:
        self.directory = directory
        self._identity = {"version": _MANIFEST_VERSION, **identity}

    @property
    def manifest(self) -> Path:
        """The manifest file's path."""
        return self.directory / "manifest.json"

    def open(self, *, resume: bool) -> None:
        """Start or resume: reuse a matching checkpoint, refuse a different one.

        Raises:
            JobError: With ``resume``, a checkpoint for another input or settings is there.
        """
        if self.directory.exists() and not resume:
            shutil.rmtree(self.directory)
        if self.manifest.exists():
            try:
                found = json.loads(self.manifest.read_text("utf-8"))
            except (OSError, ValueError):
                found = None
            if found != self._identity:
                raise JobError(
                    f"{self.directory} holds a checkpoint for another input or other settings; "
                    "rerun with --no-resume to discard it"
                )
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_atomic(self.manifest, json.dumps(self._identity, indent=2).encode())

    def path(self, k: int) -> Path:
        """The file of chunk ``k``."""
        return self.directory / f"chunk_{k:05d}.npy"

    def load(self, k: int, rows: int) -> np.ndarray | None:
        """Chunk ``k`` if it was finished (and is intact, with ``rows`` rows), else ``None``."""
        try:
            vectors: np.ndarray = np.load(self.path(k), allow_pickle=False)
        except (OSError, ValueError):
            return None
        if vectors.ndim != 2 or vectors.shape[0] != rows or vectors.dtype != np.float32:
            return None
        return vectors

    def save(self, k: int, vectors: np.ndarray) -> None:
        """Record chunk ``k`` as finished (written to a temporary file, then renamed)."""
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False)
        _write_atomic(self.path(k), buffer.getvalue())

    def remove(self) -> None:
        """Delete the checkpoint (once the output is written)."""
        shutil.rmtree(self.directory, ignore_errors=True)


def _write_atomic(path: Path, data: bytes) -> None:
    # A crash mid-write must never leave a file that looks finished.
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


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


def checkpoint_identity(
    records: Records, profile: ProviderProfile, reader: dict[str, Any], chunk_size: int
) -> dict[str, Any]:
    """What a job's chunks depend on: the input, how it was read, the model, the chunking."""
    return {
        "input_sha256": records.sha256,
        "reader": reader,
        "provider": profile.provider,
        "profile": profile.name,
        "model": profile.model,
        "dimensions": profile.dimensions,
        "chunk_size": chunk_size,
    }


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
    embed: Callable[[list[str]], np.ndarray],
    texts: Sequence[str],
    checkpoint: Checkpoint,
    chunk_size: int,
    progress: Callable[[int, int], Progress],
) -> tuple[np.ndarray, int]:
    """Embed ``texts`` chunk by chunk, skipping finished chunks; returns (vectors, resumed).

    ``progress(total, initial)`` builds the bar once the finished chunks are known; ``resumed``
    is the number of chunks found finished.

    Raises:
        JobError: Chunks of different widths (the model changed under the checkpoint).
    """
    starts = range(0, len(texts), chunk_size)
    parts: list[np.ndarray | None] = [
        checkpoint.load(k, min(chunk_size, len(texts) - start)) for k, start in enumerate(starts)
    ]
    resumed = sum(part is not None for part in parts)
    done_texts = sum(len(part) for part in parts if part is not None)
    bar = progress(len(texts), done_texts)
    try:
        for k, start in enumerate(starts):
            if parts[k] is None:
                vectors = embed(list(texts[start : start + chunk_size]))
                checkpoint.save(k, vectors)
                parts[k] = vectors
                bar.update(len(vectors))
    except BaseException:
        bar.close(keep=False)
        raise
    bar.close()
    finished = [part for part in parts if part is not None]
    if len({part.shape[1] for part in finished}) != 1:
        raise JobError(f"{checkpoint.directory}: chunks of different widths; use --no-resume")
    return np.concatenate(finished), resumed


def finished_chunks(checkpoint: Checkpoint) -> int:
    """How many chunk files the checkpoint holds (for messages after a failure)."""
    return len(list(checkpoint.directory.glob("chunk_*.npy")))


def quiet_model_loading() -> None:
    """Silence the model library's own progress bar while reading weights (we report loading)."""
    try:
        logging: Any = importlib.import_module("transformers.utils.logging")
    except ImportError:
        return
    logging.disable_progress_bar()
