"""Embed a list in request-sized chunks, concurrently, yielding each chunk in order.

For the places a framework wants to see progress per batch (LangChain's ``show_progress_bar``,
LlamaIndex's progress bar) without sending the batches one after another:
every chunk is one ``client.embed`` call, all of them in flight at once under the client's own
bound (``pool_size``), and each is yielded, with its usage, as soon as it and those before it are
done. Worker threads run in a copy of the caller's context, so usage blocks and tracing follow.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncGenerator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import copy_context
from typing import Any

import numpy as np

from embedguard.core.client import EmbeddingClient
from embedguard.core.errors import ConfigurationError, EmbedGuardError
from embedguard.core.usage import Usage, track_usage

__all__ = ["Chunk", "Rows", "aembed_chunks", "embed_chunks", "progress_bar", "sliced"]

Chunk = tuple[Sequence[str], np.ndarray, Usage | None]
"""A chunk's texts, their vectors (float32, one row per text) and what embedding them used."""

Rows = tuple[Sequence[str], np.ndarray | list[list[float]], Usage | None]
"""A :data:`Chunk` whose vectors may already be Python lists (see :func:`sliced`)."""


def _split(texts: Sequence[str], size: int) -> list[Sequence[str]]:
    return [texts[i : i + size] for i in range(0, len(texts), size)]


def _one(client: EmbeddingClient, texts: Sequence[str]) -> tuple[np.ndarray, Usage]:
    with track_usage() as usage:
        vectors = client.embed(texts)
    return vectors, usage


async def _aone(client: EmbeddingClient, texts: Sequence[str]) -> tuple[np.ndarray, Usage]:
    with track_usage() as usage:
        vectors = await client.aembed(texts)
    return vectors, usage


def sliced(
    texts: Sequence[str], vectors: np.ndarray | list[list[float]], usage: Usage, size: int
) -> Iterator[Rows]:
    """One call's result (an array, or its rows as lists) cut into chunks of ``size`` (its usage
    goes with the first)."""
    for start in range(0, len(texts), size):
        end = start + size
        yield texts[start:end], vectors[start:end], usage if start == 0 else None


def embed_chunks(client: EmbeddingClient, texts: Sequence[str], size: int) -> Iterator[Chunk]:
    """Yield ``(texts, vectors, usage)`` per chunk of ``size`` texts, in order.

    Raises:
        EmbedGuardError: the first failed chunk's error, positions counted in ``texts``.
    """
    chunks = _split(texts, size)
    if len(chunks) <= 1:
        for chunk in chunks:
            yield (chunk, *_one(client, chunk))
        return
    workers = min(len(chunks), client.profile.pool_size)
    with ThreadPoolExecutor(workers, thread_name_prefix="embedguard-adapter") as pool:
        futures = [pool.submit(copy_context().run, _one, client, chunk) for chunk in chunks]
        try:
            for i, (chunk, future) in enumerate(zip(chunks, futures, strict=True)):
                try:
                    yield (chunk, *future.result())
                except EmbedGuardError as error:
                    raise error.shifted(i * size) from error.__cause__
        finally:
            for future in futures:
                future.cancel()


async def aembed_chunks(
    client: EmbeddingClient, texts: Sequence[str], size: int
) -> AsyncGenerator[Chunk, None]:
    """Async :func:`embed_chunks`: one task per chunk, all started at once."""
    chunks = _split(texts, size)
    tasks = [asyncio.ensure_future(_aone(client, chunk)) for chunk in chunks]
    try:
        for i, (chunk, task) in enumerate(zip(chunks, tasks, strict=True)):
            try:
                yield (chunk, *await task)
            except EmbedGuardError as error:
                raise error.shifted(i * size) from error.__cause__
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


@contextmanager
def progress_bar(show: bool, total: int, desc: str) -> Iterator[Any]:
    """A tqdm bar of ``total`` texts (``None`` when not ``show``)."""
    if not show:
        yield None
        return
    try:
        tqdm = importlib.import_module("tqdm.auto").tqdm
    except ImportError:
        raise ConfigurationError("a progress bar needs tqdm: pip install tqdm") from None
    with tqdm(total=total, desc=desc, unit="text") as bar:
        yield bar
