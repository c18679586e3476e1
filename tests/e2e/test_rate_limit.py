"""The adaptive rate limiter against the loopback server's own limiter (429s + headers)."""

import time

from embedguard import EmbeddingClient, profiles
from embedguard.testing import EmbeddingServer

from .conftest import KEY, fast

SERVER_TPM = 60_000  # 1,000 tokens/s, a bucket of 60,000


def test_job_runs_near_the_limit_with_few_429s() -> None:
    """A client configured at twice the server's TPM learns the real limit from the headers."""
    texts = [" ".join(f"w{i}x{j}" for j in range(10)) for i in range(6_600)]  # 10 tokens each
    with EmbeddingServer(dimensions=16, rate_limit_tpm=SERVER_TPM) as server:
        profile = fast(
            profiles.openai(
                base_url=server.base_url("openai"), dimensions=16,
                rate_limit={"requests_per_minute": None, "tokens_per_minute": 2 * SERVER_TPM},
                retry={"max_retries": 10, "budget_min": 100},
            )
        )  # fmt: skip
        with EmbeddingClient(profile, api_key=KEY, coalesce_window=0) as client:
            start = time.monotonic()
            for _ in client.embed_iter(texts, chunk_size=100, window=1):
                pass
            elapsed = time.monotonic() - start
            snap = client.metrics()
    served = sum(server.count_tokens(t) for r in server.requests if r.status == 200
                 for t in r.inputs)  # fmt: skip
    rejected = sum(1 for r in server.requests if r.status == 429)
    steady = (served - SERVER_TPM) / (elapsed * SERVER_TPM / 60)  # after the initial full bucket
    print(f"achieved {steady:.1%} of the limit over {elapsed:.1f} s; "
          f"429s: {rejected} of {len(server.requests)} requests")  # fmt: skip
    assert served == 66_000
    assert steady >= 0.6
    assert rejected <= 0.1 * len(server.requests)
    assert snap.errors_by_kind.get("rate_limit", 0) == rejected
