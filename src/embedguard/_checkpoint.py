"""The ``embed`` command's checkpoint: finished vectors kept by content, safe to resume.

A checkpoint is a directory next to the output (``OUTPUT.partial/``):

- ``manifest.json`` holds the settings the vectors depend on (provider, model, dimensions,
  deployment, extra request fields, and the server for self-hosted models) and, for messages
  only, the hash and size of the input it was started on;
- each ``chunk-<hash>.npy`` holds one finished chunk: one record per text, the key of the text
  and its vector. It is written under a temporary name, then renamed, the moment the chunk's request
  completes: a crash or Ctrl-C never leaves half a chunk, and never loses one that completed.
  (Files are not fsynced, which would cost milliseconds per chunk: after a power cut a chunk
  may read back damaged, and a damaged chunk is skipped and embedded again.)

A text's key is a hash of the settings and the text, so a rerun reuses every text already
embedded wherever it now sits in the input: appending, inserting or reordering lines, or
changing the chunk or batch size, keeps finished work. Vectors made with other settings are
never reused: the rerun stops and names the setting that changed (``--no-resume`` discards).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .core.config import ProviderProfile

__all__ = ["Checkpoint", "CheckpointError", "checkpoint_settings"]

_FORMAT = 2
_KEY_BYTES = 16
# Self-hosted servers may serve different weights under one model name: their URL matters.
_SELF_HOSTED = frozenset({"openai_compatible", "ollama"})


class CheckpointError(Exception):
    """The checkpoint cannot be resumed (other settings, another format); says why."""


def checkpoint_settings(profile: ProviderProfile) -> dict[str, Any]:
    """The settings a job's vectors depend on (a change makes finished vectors unusable)."""
    settings: dict[str, Any] = {
        "provider": profile.provider,
        "model": profile.model,
        "dimensions": profile.dimensions,
    }
    if profile.deployment:
        settings["deployment"] = profile.deployment
    if profile.extra_body:
        settings["extra_body"] = profile.extra_body
    if profile.provider in _SELF_HOSTED and profile.base_url:
        settings["base_url"] = profile.base_url
    return settings


def _changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """``model 'a' -> 'b', dimensions 256 -> 512``: every setting that differs."""
    missing = object()
    shown = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name, missing), new.get(name, missing)
        if before != after:
            was = "unset" if before is missing else _show(before)
            now = "unset" if after is missing else _show(after)
            shown.append(f"{name} {was} -> {now}")
    return ", ".join(shown)


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else json.dumps(value)


class Checkpoint:
    """Finished vectors of one job, in ``directory``, usable for one set of settings.

    Args:
        directory: Where chunks live (``OUTPUT.partial``).
        settings: What the vectors depend on (:func:`checkpoint_settings`).
    """

    def __init__(self, directory: Path, settings: Mapping[str, Any]) -> None:
        self.directory = directory
        self._settings = json.loads(json.dumps(dict(settings), sort_keys=True))
        self._salt = json.dumps(self._settings, sort_keys=True).encode() + b"\0"

    @property
    def manifest(self) -> Path:
        """The manifest file's path."""
        return self.directory / "manifest.json"

    def open(self, *, resume: bool, input_sha256: str) -> list[str]:
        """Start, or resume with the same settings; returns notes to show the user.

        Raises:
            CheckpointError: With ``resume``, the checkpoint was made with other settings, by
                another format, or its manifest is unreadable (the message says which, and
                that ``--no-resume`` discards it).
        """
        notes: list[str] = []
        if self.directory.exists() and not resume:
            shutil.rmtree(self.directory)
            notes.append(f"discarded the checkpoint in {self.directory} (--no-resume)")
        if self.manifest.exists():
            found = self._read_manifest()
            if found.get("input_sha256") != input_sha256:
                notes.append(
                    f"the input changed since the checkpoint was saved in {self.directory}: "
                    "texts it already holds are reused, the others are embedded"
                )
        elif self.directory.exists() and any(self.directory.iterdir()):
            raise CheckpointError(
                f"{self.directory} holds files but no manifest; rerun with --no-resume to "
                "discard them"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        manifest = {"format": _FORMAT, "settings": self._settings, "input_sha256": input_sha256}
        _write_atomic(self.manifest, json.dumps(manifest, indent=2).encode())
        return notes

    def _read_manifest(self) -> dict[str, Any]:
        discard = "; rerun with --no-resume to discard it"
        try:
            found = json.loads(self.manifest.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{self.manifest} is unreadable ({exc}){discard}") from None
        if not isinstance(found, dict) or found.get("format") != _FORMAT:
            raise CheckpointError(
                f"{self.directory} holds a checkpoint from another embedguard version, which "
                f"this one cannot resume{discard}"
            )
        if found.get("settings") != self._settings:
            changed = _changes(found.get("settings") or {}, self._settings)
            raise CheckpointError(
                f"{self.directory} holds vectors made with other settings ({changed}); rerun "
                "with --no-resume to discard them, or with the old settings to resume"
            )
        return found

    def key(self, text: str) -> bytes:
        """The key of ``text``'s vector under these settings."""
        return hashlib.blake2b(self._salt + text.encode(), digest_size=_KEY_BYTES).digest()

    def load(self) -> dict[bytes, np.ndarray]:
        """Every finished vector, by key (intact chunk files only; a damaged one is skipped)."""
        found: dict[bytes, np.ndarray] = {}
        for keys, vectors in self._chunks():
            found.update(zip(keys, vectors, strict=True))
        return found

    def _chunks(self) -> Iterator[tuple[list[bytes], np.ndarray]]:
        for path in sorted(self.directory.glob("chunk-*.npy")):
            try:
                records = np.load(path, allow_pickle=False)
            except (OSError, ValueError, EOFError):
                continue
            fields = records.dtype.fields or {}
            key, vector = fields.get("key"), fields.get("vector")
            intact = (
                records.ndim == 1 and key is not None and vector is not None
                and key[0] == np.dtype(f"S{_KEY_BYTES}")
                and vector[0].base == np.float32 and len(vector[0].shape) == 1
            )  # fmt: skip
            if intact:
                yield [bytes(k) for k in records["key"]], records["vector"]

    def save(self, keys: Sequence[bytes], vectors: np.ndarray) -> None:
        """Record one finished chunk (a temporary file, then renamed: all or nothing)."""
        layout = [("key", f"S{_KEY_BYTES}"), ("vector", np.float32, (vectors.shape[1],))]
        records = np.empty(len(keys), dtype=layout)
        records["key"] = keys
        records["vector"] = vectors
        buffer = io.BytesIO()
        np.save(buffer, records, allow_pickle=False)
        name = hashlib.blake2b(records["key"].tobytes(), digest_size=_KEY_BYTES).hexdigest()
        _write_atomic(self.directory / f"chunk-{name}.npy", buffer.getvalue())

    def remove(self) -> None:
        """Delete the checkpoint (once the output is written)."""
        shutil.rmtree(self.directory, ignore_errors=True)


def _write_atomic(path: Path, data: bytes) -> None:
    # A crash mid-write must never leave a file that looks finished: write, then rename.
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
