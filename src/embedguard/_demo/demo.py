"""``embedguard demo``: question answering by retrieval over a bundled corpus, offline.

The demo ingests 300 short passages on 15 topics (``passages.jsonl``, written for this project)
through the LangChain adapter into ``langchain_core``'s ``InMemoryVectorStore``, answers a few
questions with the three closest passages, then prints what embedguard recorded (requests,
latency, tokens, cost) and the circuit breaker's state.

It always embeds with the in-process ``all-MiniLM-L6-v2`` model (extra ``local``): no key, no
network, nothing billed, even when ``OPENAI_API_KEY`` is set (it only mentions the key). A
provider named with ``--provider`` is the one way to send the corpus to an API.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, TextIO

from .._embedjob import Progress, quiet_model_loading
from .._extras import require
from ..core import profiles
from ..core.client import EmbeddingClient
from ..core.config import ProviderProfile

__all__ = ["QUESTIONS", "Passage", "load_passages", "run_demo"]

QUESTIONS: tuple[tuple[str, str], ...] = (
    ("How does a vaccine protect someone from getting sick?", "medicine"),
    ("What makes bread dough rise before it is baked?", "cooking"),
    ("Which planet is the hottest, and why?", "astronomy"),
    ("How can two threads running at the same time corrupt shared data?", "programming"),
    ("What causes the sound of thunder during a storm?", "weather"),
    ("Who was the first person to walk on the Moon?", "history"),
)
"""The demo's questions, each with the topic its best passage should come from."""

_BATCH = 32
_TOP_K = 3
_WIDTH = 100


@dataclass(frozen=True)
class Passage:
    """One passage of the bundled corpus."""

    id: str
    topic: str
    text: str


def load_passages() -> list[Passage]:
    """The bundled corpus: 300 passages, 20 on each of 15 topics (Apache-2.0)."""
    text = resources.files(__package__).joinpath("passages.jsonl").read_text("utf-8")
    return [Passage(**json.loads(line)) for line in text.splitlines() if line.strip()]


def _choose(
    provider: str | None, model: str | None, environ: Mapping[str, str]
) -> tuple[ProviderProfile, str]:
    """The profile to embed with, and why it was chosen.

    Only ``--provider`` leaves the machine: a key in the environment is mentioned, never used
    on its own (the demo must not bill anyone, or wait on a network it does not have).
    """
    overrides: dict[str, Any] = {"model": model} if model else {}
    if provider is not None:
        return profiles.get(provider, **overrides), f"chosen by --provider {provider}"
    reason = "the default without --provider"
    if environ.get("OPENAI_API_KEY", "").strip():
        reason += "; OPENAI_API_KEY is set but not used; --provider openai uses it"
    return profiles.local(**overrides), reason


def run_demo(
    provider: str | None = None,
    model: str | None = None,
    *,
    out: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
    progress: bool = True,
) -> int:
    """Run the demo, printing each step to ``out``; returns the exit status (0).

    Args:
        provider: A built-in profile name; default ``local`` (offline, whatever the
            environment holds).
        model: A model name overriding the profile's.
        out: Where to print (default ``sys.stdout``); the progress bar goes to stderr.
        environ: Environment to read keys and endpoints from (default ``os.environ``).
        progress: Draw a progress bar while ingesting.

    Raises:
        EmbedGuardError: A provider failed (the command line prints it as one line).
        MissingExtraError: ``langchain-core`` (or, for the local model, the ``local`` extra)
            is not installed.
    """
    out = out or sys.stdout
    started = time.perf_counter()
    env = os.environ if environ is None else environ
    profile, reason = _choose(provider, model, env)
    store_module = require("langchain_core.vectorstores", "langchain")
    from ..adapters.langchain import GuardedEmbeddings

    # Built before anything is printed: a missing key is one error line, not half a demo.
    embeddings = GuardedEmbeddings(EmbeddingClient(profile, environ=env))
    passages = load_passages()
    topics = sorted({p.topic for p in passages})

    def say(line: str = "") -> None:
        print(line, file=out, flush=True)

    say(
        f"embedguard demo: answering questions by retrieval over {len(passages)} bundled "
        f"passages on {len(topics)} topics"
    )
    where = "in-process, offline, no key" if profile.provider == "local" else "over HTTP"
    say(f"provider: {profile.name} / {profile.model} ({where}; {reason})")
    say()
    if profile.provider == "local":
        quiet_model_loading()
        say(
            f"[1/4] Loading the local model {profile.model} (weights from an installed package) "
            "with a first query"
        )
    else:
        say(f"[1/4] Checking the {profile.name} endpoint with one short request")
    try:
        tick = time.perf_counter()
        dimensions = len(embeddings.embed_query("warm-up"))
        say(
            f"      ready in {time.perf_counter() - tick:.1f} s: {dimensions}-dimensional vectors "
            "(this first query is counted in the metrics below)"
        )
        store = store_module.InMemoryVectorStore(embeddings)
        _ingest(store, passages, say, progress)
        hits = _answer(store, say)
        say()
        say("[4/4] What embedguard recorded (a request is one batch sent to the provider)")
        say(textwrap.indent(embeddings.metrics().format(), "      "))
        say(f"      circuit breaker: {embeddings.circuit_state.value}")
    finally:
        embeddings.close()
    say()
    say(
        f"{hits} of {len(QUESTIONS)} questions got a passage from the expected topic first. "
        f"Done in {time.perf_counter() - started:.1f} s."
    )
    return 0


def _ingest(store: Any, passages: list[Passage], say: Any, progress: bool) -> None:
    batches = -(-len(passages) // _BATCH)
    say()
    say(
        f"[2/4] Ingesting {len(passages)} passages into LangChain's InMemoryVectorStore through "
        f"GuardedEmbeddings, in {batches} batches of up to {_BATCH}"
    )
    tick = time.perf_counter()
    bar = Progress(len(passages), "ingesting", unit="passage", enabled=progress)
    try:
        for start in range(0, len(passages), _BATCH):
            batch = passages[start : start + _BATCH]
            store.add_texts(
                [p.text for p in batch],
                metadatas=[{"topic": p.topic} for p in batch],
                ids=[p.id for p in batch],
            )
            bar.update(len(batch))
    finally:
        bar.close()
    seconds = time.perf_counter() - tick
    rate = len(passages) / seconds if seconds > 0 else float("inf")
    say(f"      {len(passages)} passages embedded and stored in {seconds:.1f} s ({rate:.0f}/s)")


def _answer(store: Any, say: Any) -> int:
    say()
    say(
        f"[3/4] Answering {len(QUESTIONS)} questions: the {_TOP_K} closest passages by cosine "
        "similarity (1.0 = same direction)"
    )
    hits = 0
    for number, (question, expected) in enumerate(QUESTIONS, 1):
        results = store.similarity_search_with_score(question, k=_TOP_K)
        say()
        say(f"  Q{number}. {question}")
        for document, score in results:
            topic = document.metadata.get("topic", "?")
            line = f"{score:.3f}  [{topic}] {document.page_content}"
            say(textwrap.fill(line, _WIDTH, initial_indent="      ", subsequent_indent=" " * 14))
        top = results[0][0].metadata.get("topic") if results else None
        hits += top == expected
        verdict = "as expected" if top == expected else f"expected {expected}"
        say(f"      -> best match from topic {top!r} ({verdict})")
    return hits
