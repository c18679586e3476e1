"""Figures for the core features, on the loopback server (printed; nothing asserted).

Run: ``.venv/bin/python bench/features.py``. Measures tokens billed with 30% duplicate texts vs
unique tokens, the cache hit rate of a second run, and the peak memory of ``embed_iter`` over
100,000 texts against the size of the float32 result.
"""

from __future__ import annotations

import random
import resource
import subprocess
import sys

from embedguard import EmbeddingClient, profiles
from embedguard.core.cache import MemoryCache
from embedguard.testing import EmbeddingServer

_UNLIMITED = {"enabled": False}


def duplicates_and_cache() -> None:
    rng = random.Random(7)
    unique = [f"passage {i} " + "lorem ipsum dolor " * 5 for i in range(7_000)]
    texts = unique + [rng.choice(unique) for _ in range(3_000)]  # 30% duplicates
    rng.shuffle(texts)
    with EmbeddingServer(dimensions=256) as server:
        profile = profiles.openai(base_url=server.base_url("openai"), dimensions=256,
                                  rate_limit=_UNLIMITED)  # fmt: skip
        cache = MemoryCache()
        with EmbeddingClient(profile, api_key="bench", cache=cache) as client:
            client.embed(texts)
            billed = client.metrics().tokens_used
            unique_tokens = sum(server.count_tokens(t) for t in set(texts))
            print(f"30% duplicates: billed {billed} tokens, unique tokens {unique_tokens}, "
                  f"ratio {billed / unique_tokens:.2f}")  # fmt: skip
            client.reset_metrics()
            server.reset()
            client.embed(texts)
            snap = client.metrics()
            print(
                f"second run: cache hit rate {snap.cache_hit_rate:.1%}, "
                f"requests sent {len(server.requests)}, tokens billed {snap.tokens_used}"
            )


def _stream_worker(n: int) -> None:
    with EmbeddingServer(dimensions=1536) as server:
        profile = profiles.openai(base_url=server.base_url("openai"), rate_limit=_UNLIMITED)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with EmbeddingClient(profile, api_key="bench") as client:
            count = 0
            texts = (f"streamed text number {i}" for i in range(n))
            for chunk in client.embed_iter(texts):
                count += len(chunk)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result_mb = n * 1536 * 4 / 2**20
        print(f"embed_iter over {count} texts: peak RSS {peak / 1024:.0f} MiB "
              f"(grew {(peak - before) / 1024:.0f} MiB while streaming); the float32 result "
              f"would be {result_mb:.0f} MiB")  # fmt: skip


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--stream":
        _stream_worker(int(sys.argv[2]))
        return
    duplicates_and_cache()
    subprocess.run([sys.executable, __file__, "--stream", "100000"], check=True)


if __name__ == "__main__":
    main()
