"""track_usage(): per-context usage, and per-owner usage counted across threads."""

import asyncio
import threading

from embedguard import EmbeddingClient, profiles
from embedguard.core.cache import MemoryCache
from embedguard.core.usage import calls_on, record, track_usage
from embedguard.testing import EmbeddingServer


def test_usage_counts_only_this_context() -> None:
    """Calls in another thread are not counted; cached texts are counted as cached."""
    with EmbeddingServer(dimensions=8) as server:
        profile = profiles.openai(base_url=server.base_url("openai"), dimensions=8)
        with EmbeddingClient(profile, api_key="k", cache=MemoryCache()) as client:
            other = threading.Thread(target=lambda: client.embed(["elsewhere words here"]))
            with track_usage() as usage:
                other.start()
                client.embed([f"mine {i}" for i in range(40)])
                client.embed(["mine 0"])  # from the cache
                other.join()
    assert usage.tokens == 80 and usage.items == 40 and usage.cached == 1
    assert usage.requests >= 1


async def test_usage_in_concurrent_tasks() -> None:
    """Each task's block counts its own call."""
    with EmbeddingServer(dimensions=8) as server:
        profile = profiles.openai(base_url=server.base_url("openai"), dimensions=8)
        async with EmbeddingClient(profile, api_key="k", coalesce_window=0) as client:

            async def one(words: int) -> int:
                with track_usage() as usage:
                    await client.aembed([" ".join(["w"] * words) + f" {words}"])
                return usage.tokens

            assert await asyncio.gather(one(2), one(5), one(9)) == [3, 6, 10]


def test_owner_blocks_count_every_thread_and_only_their_owner() -> None:
    """track_usage(owner=x) counts calls on x from any thread, and nothing recorded for y."""
    x, y = object(), object()
    with track_usage(owner=x) as usage:
        workers = [
            threading.Thread(target=lambda: record(tokens=5, items=1, owner=x)),
            threading.Thread(target=lambda: record(tokens=7, items=1, owner=y)),
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        record(tokens=1, items=1, owner=x)
    record(tokens=100, items=1, owner=x)  # after the block
    assert (usage.tokens, usage.items, usage.requests) == (6, 2, 2)


def test_calls_on_names_the_owner_for_the_context() -> None:
    """Inside calls_on(x), a record without an owner counts for x's blocks (and tasks copy it)."""
    x = object()

    async def in_a_task() -> None:
        record(tokens=3, items=1)

    async def main() -> None:
        with calls_on(x):
            await asyncio.create_task(in_a_task())
        record(tokens=50, items=1)  # no owner named: x's block does not count it

    with track_usage(owner=x) as usage:
        asyncio.run(main())
    assert usage.tokens == 3


def test_two_clients_usage_is_separate_and_plain_threads_count() -> None:
    """track_usage(owner=a) misses b's calls and counts a's calls made in a plain thread."""
    with EmbeddingServer(dimensions=8) as server:
        profile = profiles.openai(base_url=server.base_url("openai"), dimensions=8)
        with (
            EmbeddingClient(profile, api_key="k") as a,
            EmbeddingClient(profile, api_key="k") as b,
        ):

            def on_a() -> None:
                with calls_on(a):
                    a.embed(["two words"])

            with track_usage(owner=a) as usage:
                thread = threading.Thread(target=on_a)
                thread.start()
                thread.join()
                with calls_on(b):
                    b.embed(["three more words"])
    assert (usage.tokens, usage.items, usage.requests) == (2, 1, 1)
