"""The pure first step of every call: validate, dedupe, apply the context policy, batch, reassemble.

Nothing here does I/O. :func:`validate_texts` rejects bad input before any request is made;
:func:`plan_units` turns the texts into a :class:`Plan`: the distinct texts to embed (each sent
once) and what :meth:`Plan.assemble` needs to give back one vector per input, in input order::

    texts = validate_texts(["a", "b", "a"])
    plan = plan_units(texts, batching=BatchPolicy())
    assert plan.units == ["a", "b"]
    vectors = plan.assemble(unit_vectors)  # unit_vectors: one row per unit -> one row per input

:func:`split_units` cuts the texts a call actually sends (after cache hits and texts other calls
have in flight are taken out) into batches; the send path calls it once per send.

An empty list is valid: its plan has no units, so no request is made and the result is an empty
array. Empty and whitespace-only texts follow the :data:`EmptyPolicy`: refused (the default), or
kept out of every request and given a zero row (``"zero"``) or a NaN row (``"skip"``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt

from .config import BatchPolicy
from .errors import ConfigurationError, InputValidationError
from .tokens import TokenCounter, default_token_counter

__all__ = [
    "Batch",
    "ContextPolicy",
    "EmptyPolicy",
    "Plan",
    "plan_units",
    "split_units",
    "validate_texts",
]

ContextPolicy = Literal["error", "truncate", "chunk"]
"""What to do with a text over the model's per-input token limit.

``"error"`` rejects it before any request; ``"truncate"`` embeds its longest prefix within the
limit; ``"chunk"`` embeds it in pieces and returns their token-weighted average, L2-renormalised.
"""

EmptyPolicy = Literal["error", "skip", "zero"]
"""What to do with an empty or whitespace-only text.

``"error"`` (the default) rejects the call with :class:`~embedguard.InputValidationError` naming
the first one. ``"zero"`` gives it a zero vector and ``"skip"`` a row of NaN (the mark a failed
call's ``partial`` uses too); either way it is never sent nor billed, and the result keeps one row
per input, in order, so ``np.isnan(vectors[:, 0])`` finds the skipped ones.
"""

_POLICIES = frozenset(get_args(ContextPolicy))
_EMPTY_POLICIES = frozenset(get_args(EmptyPolicy))
_BLANK = -2  # Plan.inverse of an empty text (-1 is a chunked one)
_Pieces = tuple[tuple[int, int], ...]  # (unit, tokens) for each piece of a chunked input


def validate_texts(
    texts: object, *, provider: str | None = None, empty: EmptyPolicy = "error"
) -> list[str]:
    """Check that ``texts`` is a sequence of embeddable strings and return them as a list.

    Rejected, with :class:`~embedguard.InputValidationError` naming the first bad index: items
    that are not ``str``; empty or whitespace-only strings unless ``empty`` is ``"skip"`` or
    ``"zero"`` (providers reject them or silently embed them as noise); strings holding a lone
    surrogate (they cannot be sent as UTF-8 JSON). A bare ``str`` or ``bytes`` instead of a list
    is rejected too. An empty list is valid.

    Args:
        texts: A list, tuple or other sequence (not ``str``/``bytes``) of strings.
        provider: The provider name to attach to the error.
        empty: The :data:`EmptyPolicy`; with ``"skip"`` or ``"zero"`` empty texts are kept
            (:func:`plan_units` keeps them out of every request).

    Returns:
        A new list of plain ``str`` (``str`` subclasses are converted).
    """
    if empty not in _EMPTY_POLICIES:
        raise ConfigurationError(
            f"must be one of {sorted(_EMPTY_POLICIES)}, got {empty!r}", field="empty"
        )
    if isinstance(texts, str | bytes | bytearray):
        kind = type(texts).__name__
        raise InputValidationError(
            f"expected a list of strings, got a single {kind}; wrap it in a list", provider=provider
        )
    if not isinstance(texts, Sequence):
        raise InputValidationError(
            f"expected a list of strings, got {type(texts).__name__}; pass list(...) of it",
            provider=provider,
        )
    out = list(texts)
    for i, text in enumerate(out):
        if type(text) is not str:
            if not isinstance(text, str):
                raise InputValidationError(
                    f"expected a str, got {type(text).__name__}", index=i, provider=provider
                )
            text = out[i] = str(text)
        if (not text or text.isspace()) and empty == "error":
            what = "empty" if not text else "whitespace only"
            raise InputValidationError(
                f"the text is {what}; empty and whitespace-only texts cannot be embedded "
                "(pass empty='zero' for a zero vector, or empty='skip' for a NaN row)",
                index=i,
                provider=provider,
            )
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise InputValidationError(
                    f"the text holds a lone surrogate (U+{ord(text[exc.start]):04X} at position "
                    f"{exc.start}), which cannot be encoded as UTF-8",
                    index=i,
                    provider=provider,
                ) from None
    return out


@dataclass(frozen=True, slots=True, repr=False)
class Batch:
    """One request's worth of units.

    Attributes:
        units: Indices into :attr:`Plan.units`, ascending and consecutive.
        texts: The texts to send, in the same order as ``units``.
        tokens: Estimated tokens of the whole batch.
        kind: ``"document"``, ``"query"`` or a provider's input type given per call.
    """

    units: tuple[int, ...]
    texts: tuple[str, ...]
    tokens: int
    kind: str = "document"

    def __repr__(self) -> str:
        # Never print the texts: they may be large or private.
        span = f"{self.units[0]}..{self.units[-1]}" if self.units else "-"
        return f"Batch(units={span}, size={len(self.units)}, tokens={self.tokens})"


@dataclass(frozen=True, eq=False, repr=False)
class Plan:
    """What to send and how to put the answers back in input order.

    Attributes:
        n_inputs: Number of caller inputs.
        units: Distinct texts to embed (after truncation or chunking), each sent exactly once.
        unit_tokens: Estimated tokens per unit.
        inverse: For each input, the index of its unit; ``-1`` for a chunked input, ``-2``
            for an empty one.
        pieces: For each chunked input, its ``(unit, tokens)`` pieces in text order.
        truncated: Indices of the inputs that were truncated to fit the per-input limit.
        blank: Indices of the empty or whitespace-only inputs (sent nowhere).
        empty: What their rows hold: zeros (``"zero"``) or NaN (``"skip"``).
        identity: Every input is its own unit, in order (no duplicates, nothing chunked, nothing
            empty): :meth:`assemble` would return the unit vectors as they are.
    """

    n_inputs: int
    units: list[str]
    unit_tokens: list[int]
    inverse: npt.NDArray[np.intp]
    pieces: dict[int, _Pieces] = field(default_factory=dict)
    truncated: tuple[int, ...] = ()
    blank: tuple[int, ...] = ()
    empty: EmptyPolicy = "error"
    identity: bool = field(init=False)

    def __post_init__(self) -> None:
        identity = not self.pieces and not self.blank and len(self.units) == self.n_inputs
        object.__setattr__(self, "identity", identity)

    def __repr__(self) -> str:
        return (
            f"Plan(n_inputs={self.n_inputs}, units={len(self.units)}, "
            f"tokens={self.estimated_tokens}, chunked={len(self.pieces)}, "
            f"truncated={len(self.truncated)}, empty={len(self.blank)})"
        )

    @property
    def estimated_tokens(self) -> int:
        """Estimated tokens of everything the plan sends."""
        return sum(self.unit_tokens)

    @property
    def chunked(self) -> tuple[int, ...]:
        """Indices of the inputs embedded in pieces, ascending."""
        return tuple(sorted(self.pieces))

    def adjusted(self) -> dict[str, int]:
        """How many inputs are not embedded as given, by what is done to them (for metrics).

        Keys: ``truncated``, ``chunked``, and ``empty_zero`` or ``empty_skipped``.
        """
        empty = "empty_zero" if self.empty == "zero" else "empty_skipped"
        return {
            "truncated": len(self.truncated),
            "chunked": len(self.pieces),
            empty: len(self.blank),
        }

    def assemble(self, unit_vectors: npt.ArrayLike) -> npt.NDArray[np.float32]:
        """One float32 row per input, in input order, from one row per unit.

        A 1:1 input gets its unit's row exactly; a chunked input gets the token-weighted average
        of its pieces' rows, L2-renormalised; an empty input gets zeros (``empty="zero"``) or
        NaN (``"skip"``). When every input is its own unit in order, the (float32)
        ``unit_vectors`` array itself is returned, without a copy.

        Args:
            unit_vectors: Shape ``(len(units), d)``; with no units, ``(0, d)`` gives ``d``.

        Raises:
            ValueError: ``unit_vectors`` does not have one row per unit.
        """
        vectors = np.asarray(unit_vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(self.units):
            if self.units or vectors.size:
                raise ValueError(
                    f"expected unit vectors of shape ({len(self.units)}, d), got {vectors.shape}"
                )
            vectors = np.empty((0, vectors.shape[-1] if vectors.ndim == 2 else 0), np.float32)
        if self.identity:
            return vectors  # dedupe and chunking found nothing: the identity mapping
        if self.blank:
            out = np.empty((self.n_inputs, vectors.shape[1]), np.float32)
            sent = self.inverse >= 0
            out[sent] = vectors[self.inverse[sent]]
            out[list(self.blank)] = 0.0 if self.empty == "zero" else np.nan
        else:
            out = vectors[self.inverse]
        averaged: dict[_Pieces, npt.NDArray[np.float32]] = {}
        for i, pieces in self.pieces.items():
            row = averaged.get(pieces)
            if row is None:
                row = averaged[pieces] = _weighted_average(vectors, pieces)
            out[i] = row
        return out

    def assemble_nothing_sent(
        self, dimensions: int | None, *, provider: str | None = None
    ) -> npt.NDArray[np.float32]:
        """The result of a plan without units (no inputs, or only empty ones): shape ``(n, d)``.

        Raises:
            InputValidationError: There are empty inputs and ``dimensions`` is not known yet
                (no zero or NaN row can be made); it names the first one.
        """
        if dimensions is None and self.blank:
            raise InputValidationError(
                "every text is empty and the vector size is not known yet, so no zero or NaN "
                "row can be made; set the profile's dimensions",
                index=self.blank[0],
                provider=provider,
            )
        return self.assemble(np.empty((0, dimensions or 0), dtype=np.float32))

    def units_of(self, input_indices: Iterable[int]) -> list[int]:
        """The units the given inputs need, ascending."""
        wanted: set[int] = set()
        for i in input_indices:
            unit = int(self.inverse[i])
            if unit >= 0:
                wanted.add(unit)
            elif unit != _BLANK:
                wanted.update(u for u, _ in self.pieces[i])
        return sorted(wanted)

    def inputs_of(self, unit_indices: Iterable[int]) -> list[int]:
        """The inputs that need any of the given units (e.g. failed ones), ascending."""
        # Two more slots, never hit: inverse -1 (chunked) and -2 (empty) index them.
        hit = np.zeros(len(self.units) + 2, dtype=bool)
        hit[np.fromiter(unit_indices, dtype=np.intp)] = True
        hit[-2:] = False
        inputs = set(np.flatnonzero(hit[self.inverse]).tolist())
        inputs.update(i for i, pieces in self.pieces.items() if any(hit[u] for u, _ in pieces))
        return sorted(inputs)


def _weighted_average(vectors: npt.NDArray[np.float32], pieces: _Pieces) -> npt.NDArray[np.float32]:
    units = [u for u, _ in pieces]
    weights = np.array([w for _, w in pieces], dtype=np.float64)
    mean: npt.NDArray[np.float64] = weights @ vectors[units].astype(np.float64)
    norm = float(np.linalg.norm(mean))
    return (mean / norm if norm > 0 else mean).astype(np.float32)


_COUNT_CHUNK = 1024  # texts per count_many call: bounds the token ids held at once


def _count_all(counter: TokenCounter, texts: Sequence[str]) -> dict[str, int]:
    """Each distinct non-blank text's count, in a few ``count_many`` calls when the counter has
    one (a model's own tokenizer: one call per text costs more than the model's work on short
    texts); empty when it has none (then texts are counted one by one)."""
    count_many = getattr(counter, "count_many", None)
    if not callable(count_many):
        return {}
    distinct = list(dict.fromkeys(t for t in texts if t and not t.isspace()))
    counted: dict[str, int] = {}
    for start in range(0, len(distinct), _COUNT_CHUNK):
        chunk = distinct[start : start + _COUNT_CHUNK]
        counted.update(zip(chunk, count_many(chunk), strict=True))
    return counted


def plan_units(
    texts: Sequence[str],
    *,
    batching: BatchPolicy,
    counter: TokenCounter | None = None,
    context_policy: ContextPolicy = "error",
    provider: str | None = None,
    empty: EmptyPolicy = "error",
) -> Plan:
    """Dedupe validated ``texts`` and apply the context policy: the units a call must embed.

    Exact duplicates share one unit. A text estimated over ``batching.max_tokens_per_input``
    raises :class:`~embedguard.InputValidationError` under ``"error"``, is cut to its longest
    prefix within the limit under ``"truncate"`` (then deduped on the cut text), or is split into
    pieces that become units under ``"chunk"``. An empty or whitespace-only text becomes no unit
    under ``empty="skip"`` or ``"zero"`` (:attr:`Plan.blank`); under ``"error"`` it is refused.

    Args:
        texts: Output of :func:`validate_texts`.
        batching: The provider's limits.
        counter: Token counter; defaults to :func:`~embedguard.core.tokens.default_token_counter`.
        context_policy: ``"error"``, ``"truncate"`` or ``"chunk"``.
        provider: The provider name to attach to errors.
        empty: The :data:`EmptyPolicy` (as given to :func:`validate_texts`).

    Raises:
        InputValidationError: A text is over the per-input limit under ``"error"``, or empty
            under ``empty="error"``.
        ConfigurationError: ``context_policy`` or ``empty`` is invalid.
    """
    if context_policy not in _POLICIES:
        raise ConfigurationError(
            f"must be one of {sorted(_POLICIES)}, got {context_policy!r}", field="context_policy"
        )
    if empty not in _EMPTY_POLICIES:
        raise ConfigurationError(
            f"must be one of {sorted(_EMPTY_POLICIES)}, got {empty!r}", field="empty"
        )
    counter = counter or default_token_counter()
    limit = batching.max_tokens_per_input
    counted = _count_all(counter, texts)

    units: list[str] = []
    unit_tokens: list[int] = []
    unit_of: dict[str, int] = {}  # unit text -> unit index
    code_of: dict[str, int] = {}  # input text -> its unit, or -1 - k for the k-th chunked text
    chunked: list[_Pieces] = []
    cut: set[str] = set()  # input texts that were truncated
    blank: list[int] = []
    inverse = np.empty(len(texts), dtype=np.intp)

    def add(text: str, tokens: int) -> int:
        unit = unit_of.get(text)
        if unit is None:
            unit = unit_of[text] = len(units)
            units.append(text)
            unit_tokens.append(tokens)
        return unit

    for i, text in enumerate(texts):
        if not text or text.isspace():
            if empty == "error":
                validate_texts([text], provider=provider)  # raises, with the usual message
            blank.append(i)
            inverse[i] = 0  # a placeholder until the chunked inputs are resolved below
            continue
        code = code_of.get(text)
        if code is None:
            tokens = counted.get(text)
            if tokens is None:
                tokens = counter.count(text)
            if tokens <= limit:
                code = add(text, tokens)
            elif context_policy == "error":
                raise InputValidationError(
                    f"the text has {tokens} tokens, over the limit of {limit} tokens "
                    "per input; pass context_policy='truncate' to embed its first "
                    f"{limit} tokens or context_policy='chunk' to embed it in pieces",
                    index=i,
                    provider=provider,
                )
            elif context_policy == "truncate":
                prefix = counter.truncate(text, limit)
                code = add(prefix, counter.count(prefix))
                cut.add(text)
            else:
                parts = []
                for piece in counter.split(text, limit):
                    n = counter.count(piece)
                    parts.append((add(piece, n), n))
                chunked.append(tuple(parts))
                code = -len(chunked)
            code_of[text] = code
        inverse[i] = code

    pieces: dict[int, _Pieces] = {}
    truncated: tuple[int, ...] = ()
    if chunked:
        for i in np.flatnonzero(inverse < 0).tolist():
            pieces[i] = chunked[-1 - int(inverse[i])]
        inverse[inverse < 0] = -1
    if cut:
        truncated = tuple(i for i, text in enumerate(texts) if text in cut)
    inverse[blank] = _BLANK
    return Plan(len(texts), units, unit_tokens, inverse, pieces, truncated, tuple(blank), empty)


def split_units(
    units: Sequence[str],
    unit_tokens: Sequence[int],
    batching: BatchPolicy,
    *,
    concurrency: int = 1,
    min_batch_inputs: int = 32,
    kind: str = "document",
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
    cap = batching.max_tokens_per_request
    if n <= min_batch_inputs and n <= batching.max_inputs:  # a small call: one batch, no numpy
        total = sum(unit_tokens)
        if total <= cap:
            return [Batch(tuple(range(n)), tuple(units), total, kind)]
    cum = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(unit_tokens, out=cum[1:])
    total = int(cum[-1])
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
            Batch(
                tuple(range(start, end)),
                tuple(units[start:end]),
                int(cum[end] - cum[start]),
                kind,
            )
        )
        start = end
    return batches
