"""Bulk embedding with Ray Data: a pool of actors, one resilient client each, no row lost.

Starts a local Ray cluster (2 CPUs) and embedguard's loopback server in this process, builds a
Dataset of synthetic passages (3000 by default) and embeds it with
``embedguard.integrations.ray.embed_dataset``: an actor pool where each actor owns one
EmbeddingClient built from the profile, with the key read from an environment variable inside
the actor. The server fails on purpose: 5% of requests get a 503 or a 429 (the clients retry
them by themselves), and a few passages are longer than the model's 200-token context, so the
server rejects them with a permanent 400. Those rows come back marked
(``embedding_ok == False``, the error in ``embedding_error``) instead of being dropped. The
script prints the throughput, the failed rows and the fleet-wide metrics of all actors.

    python examples/ray_bulk_ingestion.py            # 3000 passages
    python examples/ray_bulk_ingestion.py --n 500 --concurrency 2 --batch-size 100

Needs the ray extra: ``pip install 'embedguard[ray]'``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

import numpy as np
import ray
import ray.data

from embedguard import profiles
from embedguard.integrations.ray import MetricsSink, embed_dataset
from embedguard.testing import EmbeddingServer, Fault, deterministic_vectors

DIMENSIONS = 64
MAX_INPUT_TOKENS = 200  # the loopback server counts one token per word
KEY_VARIABLE = "EMBEDGUARD_DEMO_KEY"
WORDS = [
    "river",
    "stone",
    "market",
    "lantern",
    "orbit",
    "cedar",
    "signal",
    "harbor",
    "meadow",
    "copper",
    "quiet",
    "ember",
]


def passages(n: int) -> list[str]:
    """``n`` distinct synthetic passages; every 500th (from the 250th) is far too long."""
    out = []
    for i in range(n):
        words = [WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(12)]
        if i % 500 == 250:
            words = words * 30  # 360 words: over the 200-token context
        out.append(f"passage {i}: " + " ".join(words))
    return out


def parse_args() -> argparse.Namespace:
    """Parse ``--n``, ``--concurrency`` and ``--batch-size``."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--n", type=int, default=3000, help="passages to embed (default 3000)")
    parser.add_argument("--concurrency", type=int, default=2, help="actors in the pool")
    parser.add_argument("--batch-size", type=int, default=200, help="rows per actor call")
    return parser.parse_args()


def main() -> int:
    """Embed the passages on a local Ray cluster; exit 1 if a row is lost or wrong."""
    args = parse_args()
    texts = passages(args.n)
    with EmbeddingServer(dimensions=DIMENSIONS, max_input_tokens=MAX_INPUT_TOKENS) as server:
        server.chaos(0.05, [Fault.status(503), Fault.rate_limited(retry_after=0.01)], seed=7)
        profile = profiles.openai(
            base_url=server.base_url("openai"),
            dimensions=DIMENSIONS,
            api_key_env=KEY_VARIABLE,
            batching={"max_inputs": 50},
            retry={"initial_delay": 0.01, "max_delay": 0.1},
        )
        # Set before ray.init: the local cluster's workers inherit the driver's environment.
        # On a real cluster, set the variable on the nodes; it never travels in task arguments.
        os.environ.setdefault(KEY_VARIABLE, "sk-loopback-demo")
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        # Ray Data may reorder blocks between operators; keep the input order for the check.
        context.execution_options.preserve_order = True
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        try:
            ds = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(texts)])
            sink = MetricsSink()
            embedded = embed_dataset(
                ds,
                profile,
                concurrency=args.concurrency,
                batch_size=args.batch_size,
                metrics=sink,
            )
            started = time.perf_counter()
            rows = embedded.take_all()
            elapsed = time.perf_counter() - started
            return report(texts, rows, elapsed, sink, args.concurrency)
        finally:
            ray.shutdown()


def report(
    texts: list[str], rows: list[dict[str, object]], elapsed: float, sink: MetricsSink, pool: int
) -> int:
    """Print throughput, failed rows and fleet metrics; check every row against the server."""
    ok = np.array([bool(r["embedding_ok"]) for r in rows])
    rate = len(rows) / elapsed
    print(f"Embedded {int(ok.sum())} of {len(rows)} rows in {elapsed:.2f} s with {pool} actors")
    print(f"Throughput: {rate:.0f} rows/s (actor start-up included)")
    failed = [r for r in rows if not r["embedding_ok"]]
    print(f"Failed rows: {len(failed)}")
    for r in failed:
        print(f"  id {r['id']}: {str(r['embedding_error'])[:72]}")
    fleet = sink.collect()
    print(f"\nFleet-wide metrics ({len(sink.snapshots())} actors):\n{fleet.format()}")

    ids_in_order = [r["id"] for r in rows] == list(range(len(texts)))
    expected = deterministic_vectors(texts, DIMENSIONS)
    vectors = np.stack([np.asarray(r["embedding"]) for r in rows])
    exact = bool((vectors[ok] == expected[ok]).all()) and not vectors[~ok].any()
    print(f"\nEvery row kept, in order: {ids_in_order}; vectors match the server: {exact}")
    return 0 if ids_in_order and exact else 1


if __name__ == "__main__":
    sys.exit(main())
