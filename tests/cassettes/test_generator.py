"""The committed cassettes are exactly what tools/make_cassettes.py writes, and stay small."""

import gzip
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from .conftest import CASSETTES, ROOT

PROVIDERS = {"openai", "azure", "mistral", "ollama", "openai_compatible"}
"""The folders tools/make_cassettes.py writes (newer providers have their own generators)."""


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "make_cassettes", ROOT / "tools" / "make_cassettes.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _decoded(text: str) -> Any:
    """The cassette with gzip bodies decompressed (deflate bytes may differ between zlib builds)."""
    doc = yaml.safe_load(text)
    for interaction in doc["interactions"]:
        body = interaction["response"]["body"]
        if isinstance(body["string"], bytes):
            body["string"] = gzip.decompress(body["string"]).decode("utf-8")
    return doc


def test_committed_cassettes_match_the_generator():
    """Regenerating gives the committed files: same set, same interactions, same bodies."""
    generated: dict[str, str] = _generator().cassettes()
    committed = {
        str(p.relative_to(CASSETTES)): p.read_text("utf-8")
        for p in CASSETTES.rglob("*.yaml")
        if p.relative_to(CASSETTES).parts[0] in PROVIDERS
    }
    assert sorted(generated) == sorted(committed)
    for name, text in generated.items():
        assert _decoded(text) == _decoded(committed[name]), name


def test_framing_headers_agree_with_the_bodies():
    """Content-Length equals the stored body's size; gzip bodies are labelled and really gzip."""
    for path in CASSETTES.rglob("*.yaml"):
        for interaction in yaml.safe_load(path.read_text("utf-8"))["interactions"]:
            response = interaction["response"]
            headers = {k.lower(): v[0] for k, v in response["headers"].items()}
            body = response["body"]["string"]
            raw = body if isinstance(body, bytes) else body.encode("utf-8")
            if "content-length" in headers:
                assert int(headers["content-length"]) == len(raw), path
            gzipped = headers.get("content-encoding") == "gzip"
            assert gzipped == (raw[:2] == b"\x1f\x8b"), path


def test_generator_is_deterministic():
    """Two runs of the generator produce byte-identical cassettes."""
    module = _generator()
    assert module.cassettes() == module.cassettes()


def test_one_folder_per_provider_and_small():
    """cassettes/ holds one folder per provider and stays under 1 MB in all."""
    folders = {p.name for p in CASSETTES.iterdir() if p.is_dir()}
    assert folders >= PROVIDERS
    total = sum(p.stat().st_size for p in CASSETTES.rglob("*") if p.is_file())
    assert total < 1_000_000, f"cassettes/ is {total} bytes"
    assert all(any((CASSETTES / f).glob("*.yaml")) for f in PROVIDERS)


def test_generator_writes_where_told(tmp_path: Path):
    """``main(["--out", DIR])`` writes every cassette under DIR, in the provider folders."""
    module = _generator()
    assert module.main(["--out", str(tmp_path)]) == 0
    written = {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.yaml")}
    assert written == set(module.cassettes())
