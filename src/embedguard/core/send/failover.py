"""Failover: what a fallback endpoint may retry, and folding its answer back into the group's.

Used by :mod:`~embedguard.core.send.calls` after the primary endpoint has answered a group: the
rows whose error ``fails_over`` (see :mod:`embedguard.core.errors`) go to the next endpoint of the
chain, and every row a fallback embedded is marked with that fallback's place in the chain, so
the cache stores it under the model that produced it.
"""

from __future__ import annotations

import numpy as np

from .. import errors
from ..events import FailedOver, Hooks
from .groups import Group, GroupResult

__all__ = ["announce", "failover_rows", "patch", "pick"]


def failover_rows(result: GroupResult) -> list[int]:
    """Rows whose failure another deployment of the model might not share."""
    return sorted(r for r, e in result.failed.items() if getattr(e, "fails_over", False))


def announce(hooks: Hooks, primary: str, fallback: str, reason: BaseException) -> None:
    """Tell the hooks (and so the logs) that texts move from ``primary`` to ``fallback``."""
    if hooks.active:
        kind = getattr(reason, "kind", type(reason).__name__)
        hooks.emit(FailedOver(from_provider=primary, to_provider=fallback, reason=kind))


def pick(group: Group, rows: list[int]) -> Group:
    """The sub-group of ``rows`` (to send to a fallback)."""
    return Group([group.texts[i] for i in rows], [group.tokens[i] for i in rows], group.kind)


def patch(
    result: GroupResult, rows: list[int], retried: GroupResult, n: int, source: int
) -> GroupResult:
    """``result`` with ``rows`` replaced by ``retried`` (just those rows, in order), which
    endpoint ``source`` of the chain answered."""
    taken = set(rows)
    failed = {row: e for row, e in result.failed.items() if row not in taken}
    served = dict(result.served)
    vectors = result.vectors
    if retried.vectors is not None:
        width = retried.vectors.shape[1]
        if vectors is None:
            vectors = np.empty((n, width), dtype=np.float32)
        elif vectors.shape[1] != width:
            mismatch = errors.ResponseValidationError(
                f"fallback returned {width} dimensions, expected {vectors.shape[1]}"
            )
            failed.update(dict.fromkeys(rows, mismatch))
            return GroupResult(vectors, failed, served)
        ok = [i for i in range(len(rows)) if i not in retried.failed]
        vectors[[rows[i] for i in ok]] = retried.vectors[ok]
        served.update({rows[i]: source for i in ok})
    failed.update({rows[i]: e for i, e in retried.failed.items()})
    return GroupResult(vectors, failed, served)
