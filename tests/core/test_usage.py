"""track_usage(): per-call usage through the client, separate for concurrent contexts."""

import asyncio
import threading

from embedguard import EmbeddingClient, profiles
from embedguard.core.cache import MemoryCache
from embedguard.core.usage import track_usage
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
