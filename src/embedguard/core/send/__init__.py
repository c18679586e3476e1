"""The send path: what happens to a call between planning and the caller's array.

Read it top to bottom (``docs/architecture.md`` draws it)::

    calls.py        a call's cache hits, shared texts, batches, failover, and its answer
    groups.py       the unit of sharing: a group of texts and what came back for it
    failover.py     what a fallback may retry, and folding its answer back in
    cached.py       the client's view of the per-text cache
    drivers.py      the sync and async drivers of the attempt flow, the batch fan-out, and the
                    HTTP transport (one deadline per attempt; one in-flight bound for all)
    attempt.py      the life of one batch, written once (a sans-IO generator)
    endpoint.py     one provider endpoint: codec, transport, breaker, limiter, learned state

Everything here is private: users reach it through :class:`~embedguard.EmbeddingClient`.
"""
