"""Per-call usage: tokens, requests and cost of the calls made in a block (a stable public module).

::

    from embedguard.usage import track_usage

    with track_usage() as usage:
        client.embed(texts)
    print(usage.tokens, usage.requests, usage.cost)
"""

from .core.usage import Usage, track_usage

__all__ = ["Usage", "track_usage"]
