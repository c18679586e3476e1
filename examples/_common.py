"""Shared plumbing for the examples: the bundled corpus and the provider to run against.

By default the retrieval examples embed with the in-process model (all-MiniLM-L6-v2, bundled:
offline, no key). ``--provider loopback`` uses embedguard's loopback test server with lexical
vectors (texts that share words get close vectors), which the agent example uses to simulate an
outage; ``--provider openai|mistral|azure|ollama`` switches to a real API, reading keys and
endpoints from the usual environment variables.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from embedguard import ProviderProfile, profiles
from embedguard.testing import EmbeddingServer

DATA = Path(__file__).resolve().parent / "data" / "passages.jsonl"
PROVIDERS = ("local", "loopback", "openai", "mistral", "azure", "ollama")
LOOPBACK_KEY = "sk-loopback-demo"  # the loopback server accepts any key
LOOPBACK_DIMENSIONS = 256


class Target(NamedTuple):
    """What an example embeds with: a profile, a key (None: from the environment), a server."""

    profile: ProviderProfile
    api_key: str | None
    server: EmbeddingServer | None


def load_passages() -> list[dict[str, str]]:
    """The bundled corpus: dicts with ``id``, ``topic`` and ``text``."""
    with DATA.open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def parse_args(description: str | None, default: str = "local") -> argparse.Namespace:
    """Parse ``--provider``."""
    parser = argparse.ArgumentParser(description=(description or "").split("\n\n")[0])
    parser.add_argument(
        "--provider",
        choices=PROVIDERS,
        default=default,
        help="local: the in-process model (offline); loopback: the built-in test server; or a "
        "real API (key and endpoint from the environment, e.g. OPENAI_API_KEY, "
        f"AZURE_OPENAI_ENDPOINT, OLLAMA_HOST). Default: {default}",
    )
    return parser.parse_args()


@contextmanager
def target(provider: str | None, **server_options: Any) -> Iterator[Target]:
    """The in-process model, the loopback server with an OpenAI-shaped profile, or a real API."""
    if provider == "local":
        print("Using the in-process model all-MiniLM-L6-v2 (offline; see --help).")
        yield Target(profiles.local(), None, None)
        return
    if provider != "loopback":
        print(f"Using the real {provider} API (keys from the environment).")
        yield Target(profiles.get(provider), None, None)
        return
    options = {"dimensions": LOOPBACK_DIMENSIONS, "vectors": "lexical", **server_options}
    with EmbeddingServer(**options) as server:
        profile = profiles.openai(
            base_url=server.base_url("openai"), dimensions=LOOPBACK_DIMENSIONS
        )
        print(f"Using the loopback server at {server.url} (lexical vectors; see --help).")
        yield Target(profile, LOOPBACK_KEY, server)
