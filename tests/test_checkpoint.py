"""The embed command's checkpoint: vectors kept by content and settings, written atomically."""

import json
from pathlib import Path

import numpy as np
import pytest

from embedguard import profiles
from embedguard._checkpoint import Checkpoint, CheckpointError, checkpoint_settings

SETTINGS = checkpoint_settings(profiles.openai(dimensions=4))


def _vectors(n: int) -> np.ndarray:
    return np.arange(n * 4, dtype=np.float32).reshape(n, 4)


def test_saved_vectors_are_found_by_text_wherever_it_sits(tmp_path: Path) -> None:
    """A saved chunk's vectors are found by their texts' keys, independent of chunk layout."""
    checkpoint = Checkpoint(tmp_path / "out.partial", SETTINGS)
    checkpoint.open(resume=True, input_sha256="a")
    checkpoint.save([checkpoint.key("x"), checkpoint.key("y")], _vectors(2))
    found = checkpoint.load()
    np.testing.assert_array_equal(found[checkpoint.key("y")], _vectors(2)[1])
    assert checkpoint.key("z") not in found
    assert not list((tmp_path / "out.partial").glob("*.tmp"))  # renamed into place


def test_keys_depend_on_the_settings(tmp_path: Path) -> None:
    """The same text under another model has another key: its vector is never reused."""
    other = checkpoint_settings(profiles.openai("text-embedding-3-large", dimensions=4))
    a = Checkpoint(tmp_path / "a", SETTINGS)
    b = Checkpoint(tmp_path / "b", other)
    assert a.key("same text") != b.key("same text")


def test_a_damaged_chunk_is_skipped(tmp_path: Path) -> None:
    """A chunk file cut short (e.g. copied half-way) is ignored; the others are used."""
    checkpoint = Checkpoint(tmp_path / "out.partial", SETTINGS)
    checkpoint.open(resume=True, input_sha256="a")
    checkpoint.save([checkpoint.key("x")], _vectors(1))
    checkpoint.save([checkpoint.key("y")], _vectors(1))
    first = sorted((tmp_path / "out.partial").glob("chunk-*.npy"))[0]
    first.write_bytes(first.read_bytes()[:40])
    assert len(checkpoint.load()) == 1


def test_a_checkpoint_of_another_format_is_refused_by_name(tmp_path: Path) -> None:
    """A manifest of the earlier format is not resumed; the message says why and what to do."""
    directory = tmp_path / "out.partial"
    directory.mkdir()
    (directory / "manifest.json").write_text(json.dumps({"version": 1}), "utf-8")
    with pytest.raises(CheckpointError, match=r"another embedguard version.*--no-resume"):
        Checkpoint(directory, SETTINGS).open(resume=True, input_sha256="a")
    notes = Checkpoint(directory, SETTINGS).open(resume=False, input_sha256="a")
    assert notes == [f"discarded the checkpoint in {directory} (--no-resume)"]


def test_every_changed_setting_is_named(tmp_path: Path) -> None:
    """Settings that changed are listed old -> new, including ones added or removed."""
    directory = tmp_path / "out.partial"
    Checkpoint(directory, SETTINGS).open(resume=True, input_sha256="a")
    changed = checkpoint_settings(
        profiles.ollama("nomic-embed-text", extra_body={"options": {"num_ctx": 2048}})
    )
    with pytest.raises(CheckpointError) as info:
        Checkpoint(directory, changed).open(resume=True, input_sha256="a")
    message = str(info.value)
    assert "model 'text-embedding-3-small' -> 'nomic-embed-text'" in message
    assert "provider 'openai' -> 'ollama'" in message
    assert 'extra_body unset -> {"options": {"num_ctx": 2048}}' in message
    assert "dimensions 4 -> null" in message
