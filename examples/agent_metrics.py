"""Live metrics under load: 200 concurrent agents embed queries while the provider has an outage.

Two hundred asyncio tasks embed questions through GuardedEmbeddings.aembed_query, spread over
about two seconds. A reader task prints the client's metrics and the circuit state every 100 ms.
Midway the loopback server goes down (every request gets 503) for half a second, then comes back.
The circuit breaker opens after a few failures, rejects calls at once while open instead of
letting them wait and retry, probes after its (short) open timeout, and closes once probes
succeed. The script prints the breaker's transitions and the final metrics.

    python examples/agent_metrics.py                    # offline, with the simulated outage
    python examples/agent_metrics.py --provider openai  # the real API, without an outage
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

from _common import load_passages, parse_args, target

from embedguard import (
    CircuitBreaker,
    CircuitOpenError,
    CircuitState,
    EmbeddingClient,
    ProviderError,
)
from embedguard.adapters.langchain import GuardedEmbeddings

AGENTS = 200
SPREAD = 2.0  # seconds over which the agents start
OUTAGE_AT, OUTAGE_FOR = 0.6, 0.5
# Short timeouts so the whole story (open, probe, close) fits in a few seconds.
BREAKER = {"failure_threshold": 5, "success_threshold": 2, "open_timeout": 0.4,
           "half_open_max_attempts": 2, "half_open_timeout": 2.0}  # fmt: skip
RETRY = {"max_retries": 1, "initial_delay": 0.02, "max_delay": 0.05}


async def run(provider: str | None) -> None:
    """Start the agents, the reader and the outage; print what the breaker did."""
    start = time.monotonic()
    transitions: list[tuple[float, CircuitState, CircuitState]] = []
    outcomes: Counter[str] = Counter()
    questions = [f"Tell me about {p['topic']}: {p['text'][:40]}" for p in load_passages()]
    rng = random.Random(7)

    with target(provider, latency=0.01) as (profile, api_key, server):
        profile = profile.evolve(breaker=BREAKER, retry=RETRY, pool_size=16)

        def elapsed() -> float:
            return time.monotonic() - start

        # Our own breaker, handed to the client, so we can listen to its transitions.
        breaker = CircuitBreaker(profile.breaker, name=profile.name)
        breaker.add_listener(lambda old, new: transitions.append((elapsed(), old, new)))
        embeddings = GuardedEmbeddings(EmbeddingClient(profile, api_key=api_key, breaker=breaker))

        async def agent(number: int) -> None:
            await asyncio.sleep(rng.uniform(0.0, SPREAD))
            try:
                await embeddings.aembed_query(f"{questions[number % len(questions)]} #{number}")
                outcomes["ok"] += 1
            except CircuitOpenError:
                outcomes["rejected (circuit open)"] += 1
            except ProviderError as exc:
                outcomes[f"failed ({type(exc).__name__})"] += 1

        async def reader(stop: asyncio.Event) -> None:
            while not stop.is_set():
                s, state = embeddings.metrics(), embeddings.circuit_state.value
                print(
                    f"[{elapsed():4.1f} s] circuit={state:<9} ok={s.successful_requests:<3} "
                    f"failed={s.failed_requests:<3} retries={s.retried_requests:<3} "
                    f"rejected calls={s.rejected_calls}"
                )
                await asyncio.sleep(0.1)

        async def outage() -> None:
            if server is None:
                print("(no simulated outage against a real API)")
                return
            await asyncio.sleep(OUTAGE_AT)
            server.set_down(True)
            print(f"[{elapsed():4.1f} s] --- the provider goes down (503 for every request)")
            await asyncio.sleep(OUTAGE_FOR)
            server.set_down(False)
            print(f"[{elapsed():4.1f} s] --- the provider is back")

        stop = asyncio.Event()
        watcher = asyncio.create_task(reader(stop))
        await asyncio.gather(outage(), *(agent(i) for i in range(AGENTS)))
        # Late health checks, in case the last agents finished while the breaker was still open.
        # They are calls too: the metrics count them, so they are counted here as well.
        deadline = time.monotonic() + 5.0
        while embeddings.circuit_state is not CircuitState.CLOSED and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            try:
                await embeddings.aembed_query("health check")
                outcomes["health check ok"] += 1
            except CircuitOpenError:
                outcomes["health check rejected (circuit open)"] += 1
            except ProviderError as exc:
                outcomes[f"health check failed ({type(exc).__name__})"] += 1
        stop.set()
        await watcher

        print("\nBreaker transitions:")
        for at, old, new in transitions:
            print(f"  {at:4.2f} s  {old.value} -> {new.value}")
        snap = embeddings.metrics()
        verdicts = Counter(new for _, old, new in transitions if old is CircuitState.HALF_OPEN)
        # A call is one aembed_query; calls arriving together share one batch (one request), so
        # the breaker refuses fewer batches than calls.
        print(f"Breaker: opened {snap.breaker_opens}x; rejected {snap.rejected_calls} calls "
              f"({snap.rejected_requests} batches) without sending them; "
              f"half-opened {snap.breaker_half_opens}x to probe "
              f"({verdicts[CircuitState.OPEN]} failed probe episodes reopened it, "
              f"{verdicts[CircuitState.CLOSED]} succeeded); closed {snap.breaker_closes}x; "
              f"final state {embeddings.circuit_state.value}")  # fmt: skip
        summary = ", ".join(f"{count} {what}" for what, count in sorted(outcomes.items()))
        refused = sum(n for what, n in outcomes.items() if "rejected" in what)
        print(f"Calls: {sum(outcomes.values())} finished: {summary}; {refused} rejected in all\n")
        print(snap.format())
        await embeddings.aclose()


def main() -> None:
    """Parse the arguments and run the asyncio app."""
    args = parse_args(__doc__, default="loopback")
    asyncio.run(run(args.provider))


if __name__ == "__main__":
    main()
