"""Wall time of 10,000 texts through EmbeddingClient against the loopback server (sync and async).

Run: ``.venv/bin/python bench/pipeline_10k.py``. Prints medians of several runs; asserts nothing.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from embedguard import EmbeddingClient, profiles
from embedguard.testing import EmbeddingServer


def main(n: int = 10_000, repeats: int = 5) -> None:
    texts = [f"passage {i}: " + "lorem ipsum dolor sit amet " * 6 for i in range(n)]
    with EmbeddingServer(dimensions=1536, latency=0.03, latency_per_input=0.0002) as server:
        profile = profiles.openai(base_url=server.base_url("openai"), rate_limit={
            "enabled": False})  # fmt: skip
        sync_times, async_times = [], []
        for _ in range(repeats):
            with EmbeddingClient(profile, api_key="bench") as client:
                start = time.perf_counter()
                client.embed(texts)
                sync_times.append(time.perf_counter() - start)

            async def run() -> float:
                async with EmbeddingClient(profile, api_key="bench") as client:
                    start = time.perf_counter()
                    await client.aembed(texts)
                    return time.perf_counter() - start

            async_times.append(asyncio.run(run()))
        print(f"{n} texts, 1536-d base64, server 30 ms + 0.2 ms/input, pool 20")
        print(f"sync  median {statistics.median(sync_times):.3f} s  {sorted(sync_times)}")
        print(f"async median {statistics.median(async_times):.3f} s  {sorted(async_times)}")


if __name__ == "__main__":
    main()
