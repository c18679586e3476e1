"""Cutting the texts a call sends into requests: :func:`split_units` (pure, no I/O).

Re-exported by :mod:`embedguard.core.planning`, the module the send path imports it from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .config import BatchPolicy
from .errors import ConfigurationError

__all__ = ["Batch", "split_units"]


@dataclass(frozen=True, slots=True, repr=False)
class Batch:
    """One request's worth of units.

    Attributes:
        units: Indices into :attr:`Plan.units`, ascending and consecutive.
        texts: The texts to send, in the same order as ``units``.
        tokens: Estimated tokens of the whole batch.
    """

    units: tuple[int, ...]
    texts: tuple[str, ...]
    tokens: int

    def __repr__(self) -> str:
        # Never print the texts: they may be large or private.
        span = f"{self.units[0]}..{self.units[-1]}" if self.units else "-"
        return f"Batch(units={span}, size={len(self.units)}, tokens={self.tokens})"


def split_units(
    units: Sequence[str],
    unit_tokens: Sequence[int],
    batching: BatchPolicy,
    *,
    concurrency: int = 1,
    min_batch_inputs: int = 32,
) -> list[Batch]:
    """Cut distinct texts, in order, into balanced batches within the request limits.

    ``Batch.units`` index into ``units``; each batch is a run of consecutive indices. Each batch
    holds at most ``batching.max_inputs`` units and ``max_tokens_per_request`` estimated tokens.
    There are at least ``min(concurrency, ceil(units / min_batch_inputs))`` batches, so every
    in-flight slot gets work without making batches tiny; more than ``concurrency`` batches come
    in whole rounds, and sizes are balanced (e.g. 20,000 units, 2048 per request, concurrency 8
    -> 16 batches of 1,250: two full rounds, not 8 + 2 batches of 2,000). Units keep their order
    inside and across batches.

    Raises:
        ConfigurationError: ``concurrency`` or ``min_batch_inputs`` is below 1.
    """
    if concurrency < 1:
        raise ConfigurationError(f"must be at least 1, got {concurrency}", field="concurrency")
    if min_batch_inputs < 1:
        raise ConfigurationError(
            f"must be at least 1, got {min_batch_inputs}", field="min_batch_inputs"
        )
    n = len(units)
    if n == 0:
        return []
    cum = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(unit_tokens, out=cum[1:])
    total = int(cum[-1])
    cap = batching.max_tokens_per_request
    target = max(
        math.ceil(n / batching.max_inputs),
        math.ceil(total / cap),
        min(concurrency, math.ceil(n / min_batch_inputs)),
    )
    if target > concurrency:
        # Whole rounds: 10 batches on 8 slots take two rounds of the biggest batch, while 16
        # smaller batches take two rounds of a smaller one.
        target = min(-(-target // concurrency) * concurrency, max(target, n // min_batch_inputs))
    batches: list[Batch] = []
    start = 0
    while start < n:
        # Take an equal share of what is left, unless the token budget runs out first; a batch
        # cut short by tokens leaves more for the rest, which may then need extra batches.
        left = max(1, target - len(batches))
        size = min(-(-(n - start) // left), batching.max_inputs)
        by_tokens = int(np.searchsorted(cum, cum[start] + cap, side="right")) - 1
        end = max(start + 1, min(start + size, by_tokens))
        batches.append(
            Batch(tuple(range(start, end)), tuple(units[start:end]), int(cum[end] - cum[start]))
        )
        start = end
    return batches
