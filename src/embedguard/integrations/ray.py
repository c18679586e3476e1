"""Embed a Ray Data ``Dataset`` with embedguard: one resilient client per actor.

Install with ``pip install 'embedguard[ray]'``::

    import ray
    from embedguard import profiles
    from embedguard.integrations.ray import MetricsSink, embed_dataset

    ds = ray.data.read_parquet("s3://bucket/passages/")         # a "text" column
    sink = MetricsSink()
    ds = embed_dataset(ds, profiles.openai(), concurrency=4, metrics=sink).materialize()
    print(ds.filter(lambda row: not row["embedding_ok"]).count(), "rows without a vector")
    print(sink.collect().format())                               # the fleet's metrics
    ds.write_parquet("s3://bucket/vectors/")

Ray Data is lazy: :func:`embed_dataset` sends nothing until the dataset is consumed, and
consuming it twice embeds twice, hence ``materialize()`` before looking at it more than once.

Each actor of the pool builds one :class:`~embedguard.EmbeddingClient` from the profile (sent
as ``profile.to_dict()``, so it pickles) and reads the key from an environment variable *inside*
the actor: the key never travels with the task's arguments. Every input row comes out once, with
three new columns (rows keep their order within a batch; set
``DataContext.get_current().execution_options.preserve_order = True`` to keep the dataset's):

- ``embedding``: a float32 fixed-size tensor column (one row of ``dimensions`` values);
- ``embedding_ok``: ``True`` when the row got its vector;
- ``embedding_error``: ``None`` when fine, else ``"<kind>: <message>"`` (``kind`` as in
  :attr:`EmbedGuardError.kind <embedguard.EmbedGuardError.kind>`, e.g. ``context_length``).

A tensor column cannot hold an empty vector, so a failed row's ``embedding`` is all zeros:
filter on ``embedding_ok`` before indexing. Rows are marked from the error's ``failed_indices``,
so exactly the rows without a vector are marked; rows that are not texts (``None``, empty,
whitespace only) fail with kind ``input`` without being sent.
"""

from __future__ import annotations

import copy
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

import numpy as np

from embedguard._extras import require
from embedguard.core.client import EmbeddingClient
from embedguard.core.config import ProviderProfile
from embedguard.core.errors import ConfigurationError, EmbedGuardError, InputValidationError
from embedguard.core.metrics import MetricsSnapshot
from embedguard.core.planning import validate_texts

require("ray.data", "ray")

import ray  # noqa: E402
import ray.data  # noqa: E402

__all__ = ["EmbedBatches", "MetricsSink", "combine_snapshots", "embed_dataset"]

# A small per-actor cache: when a call fails for some rows, the rows that did get a vector are
# stored, so the follow-up call for them is answered from memory instead of being sent again.
_RESCUE_CACHE = "memory://?max_bytes=67108864"
_DEFAULT_CLIENT_KWARGS: dict[str, Any] = {"coalesce_window": 0.0, "cache": _RESCUE_CACHE}
_MAX_ROUNDS = 4  # calls per batch at most; each round gives up on at least one row
_FORBIDDEN = {
    "api_key": "pass the name of an environment variable (api_key_env), never the key itself",
    "shared_state": "use the shared_state argument",
}

Batch = Any  # a dict of numpy arrays, or a pandas DataFrame


class MetricsSink:
    """A small Ray actor that keeps the latest metrics snapshot of every embedding actor.

    Create it in the driver and pass it to :func:`embed_dataset` (or to :class:`EmbedBatches`
    as ``metrics_sink``). Each actor reports its client's cumulative snapshot after every
    batch, waiting for the report to land, so once the dataset has been consumed,
    :meth:`collect` covers every request the fleet made. It is picklable (it holds an actor
    handle) and lives as long as the driver holds it.
    """

    def __init__(self) -> None:
        self._actor: Any = ray.remote(num_cpus=0)(_SinkActor).remote()

    def report(self, source: str, snapshot: MetricsSnapshot) -> None:
        """Store ``snapshot`` as the latest one from ``source`` (an actor's id)."""
        ray.get(self._actor.report.remote(source, snapshot.to_dict()))

    def snapshots(self) -> list[MetricsSnapshot]:
        """The latest snapshot of each actor that reported, in order of first report."""
        data: list[dict[str, Any]] = ray.get(self._actor.snapshots.remote())
        return [MetricsSnapshot.from_dict(d) for d in data]

    def collect(self) -> MetricsSnapshot:
        """The fleet-wide metrics: :func:`combine_snapshots` of every actor's latest snapshot."""
        return combine_snapshots(self.snapshots())


class _SinkActor:
    def __init__(self) -> None:
        self._latest: dict[str, dict[str, Any]] = {}

    def report(self, source: str, snapshot: dict[str, Any]) -> None:
        self._latest[source] = snapshot

    def snapshots(self) -> list[dict[str, Any]]:
        return list(self._latest.values())


def combine_snapshots(snapshots: Sequence[MetricsSnapshot]) -> MetricsSnapshot:
    """Add up the snapshots of several clients (e.g. one per actor) into one.

    Counters, token and byte counts, ``latency_sum``, ``estimated_cost`` and the per-kind and
    per-provider mappings are summed, so rates and averages (``success_rate``,
    ``average_batch_size``, mean latency) are fleet-wide and exact. Percentiles cannot be
    combined from percentiles: ``latency_p50/p95/p99`` are the *worst actor's* (an upper bound
    on the fleet's), and ``latency_max`` and ``uptime`` are maxima. ``provider`` and ``model``
    list the distinct values; ``cost_known`` holds when it holds for every snapshot.
    """
    combined: dict[str, Any] = {}
    for f in fields(MetricsSnapshot):
        values = [getattr(s, f.name) for s in snapshots]
        if f.name in ("latency_max", "latency_p50", "latency_p95", "latency_p99", "uptime"):
            combined[f.name] = max(values, default=0.0)
        elif f.type == "str":
            combined[f.name] = ", ".join(sorted(set(values)))
        elif f.type == "bool":
            combined[f.name] = all(values)
        elif "Mapping" in str(f.type):
            total: dict[str, Any] = {}
            for mapping in values:
                for key, count in mapping.items():
                    total[key] = total.get(key, 0) + count
            combined[f.name] = total
        else:
            combined[f.name] = sum(values, 0.0 if f.type == "float" else 0)
    return MetricsSnapshot(**combined)


class EmbedBatches:
    """A callable class for ``Dataset.map_batches``: embeds a text column, keeps every row.

    Built once per actor of the pool; it builds one :class:`~embedguard.EmbeddingClient`, so
    connections, the breaker, rate limits and metrics are per actor::

        ds.map_batches(
            EmbedBatches,
            fn_constructor_kwargs={"profile": profile.to_dict(), "api_key_env": "OPENAI_API_KEY"},
            compute=ray.data.ActorPoolStrategy(size=4),
            batch_size=256,
            batch_format="numpy",          # or "pandas"
        )

    A call embeds the batch's texts with one ``client.embed``; the client splits them into
    requests of the profile's ``max_inputs`` and retries by itself. When it gives up on some
    rows, their error names them (``failed_indices``): those rows are marked failed and the
    others are embedded again, answered from the actor's cache (see ``client_kwargs``), in at
    most four calls per batch. A batch in which every row fails gets zero vectors when the
    vector size is known (the profile's ``dimensions``, or learned from an earlier response);
    otherwise the error is raised, failing the task, so set ``dimensions`` for servers the
    profile does not know.

    Args:
        profile: A :class:`~embedguard.ProviderProfile` or its ``to_dict()``.
        text_column: The column holding the texts.
        vector_column: The float32 tensor column to write.
        ok_column: The boolean column saying whether the row got its vector.
        error_column: The column with ``None`` or the row's ``"<kind>: <message>"``.
        api_key_env: The environment variable holding the key in the actor; default: the
            profile's ``api_key_env``, else the provider's usual variable (``OPENAI_API_KEY``...).
        client_kwargs: More :class:`~embedguard.EmbeddingClient` keywords (picklable ones).
            Defaults: ``coalesce_window=0`` (an actor has one caller) and a 64 MiB in-memory
            ``cache``, which also spares re-sending rows after a partial failure; pass
            ``cache=None`` to turn it off (those rows are then sent again).
        shared_state: A Redis URL for the client's ``shared_state``: every actor then shares one
            rate-limit budget and one circuit breaker (extra ``redis``).
        metrics_sink: A :class:`MetricsSink` to report this actor's metrics to after each batch.

    Raises:
        ConfigurationError: An invalid profile or option, or a missing key variable.
    """

    def __init__(
        self,
        profile: ProviderProfile | Mapping[str, Any],
        *,
        text_column: str = "text",
        vector_column: str = "embedding",
        ok_column: str = "embedding_ok",
        error_column: str = "embedding_error",
        api_key_env: str | None = None,
        client_kwargs: Mapping[str, Any] | None = None,
        shared_state: str | None = None,
        metrics_sink: MetricsSink | None = None,
    ) -> None:
        options = _client_options(client_kwargs, shared_state)
        if not isinstance(profile, ProviderProfile):
            profile = ProviderProfile.from_dict(profile)
        variable = api_key_env or profile.api_key_env
        api_key = None
        if variable is not None:
            api_key = os.environ.get(variable)
            if not api_key:
                raise ConfigurationError(
                    f"the environment variable {variable!r} is not set in this Ray worker",
                    field="api_key_env",
                )
        self._client = EmbeddingClient(profile, api_key=api_key, **options)
        self._text, self._vector = text_column, vector_column
        self._ok, self._error = ok_column, error_column
        self._sink = metrics_sink
        self._source = uuid.uuid4().hex

    def __call__(self, batch: Batch) -> Batch:
        """Embed one batch (a numpy dict or a pandas DataFrame); returns it with the new columns."""
        is_dict = isinstance(batch, dict)
        if self._text not in (batch if is_dict else batch.columns):
            raise ConfigurationError(f"the batch has no column {self._text!r}", field="text_column")
        texts = list(batch[self._text].tolist())
        vectors, ok, failures = self._embed(texts)
        errors_out = np.empty(len(texts), dtype=object)
        for row, message in failures.items():
            errors_out[row] = message
        if self._sink is not None:
            self._sink.report(self._source, self._client.metrics())
        if is_dict:
            out = dict(batch)
            out[self._vector] = vectors
        else:
            out = batch.copy(deep=False)
            out[self._vector] = list(vectors)
        out[self._ok] = ok
        out[self._error] = errors_out
        return out

    def close(self) -> None:
        """Close the client's connections (Ray ends the actor's process anyway when done)."""
        self._client.close()

    def _embed(self, texts: list[Any]) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
        failures: dict[int, str] = {}
        pending = _valid_rows(texts, failures)
        found: dict[int, np.ndarray] = {}
        last: EmbedGuardError | None = None
        for _ in range(_MAX_ROUNDS):
            if not pending:
                break
            try:
                vectors = self._client.embed([texts[i] for i in pending])
            except EmbedGuardError as error:
                last = error
                named = {pending[j] for j in _named(error) if 0 <= j < len(pending)}
                if not named or len(named) == len(pending):
                    named = set(pending)
                failures.update(dict.fromkeys(named, _describe(error)))
                pending = [i for i in pending if i not in named]
            else:
                found.update(zip(pending, vectors, strict=True))
                pending = []
        if pending and last is not None:  # out of rounds: these rows got no vector either
            failures.update(dict.fromkeys(pending, _describe(last)))
        return self._assemble(len(texts), found, failures, last)

    def _assemble(
        self,
        n: int,
        found: dict[int, np.ndarray],
        failures: dict[int, str],
        last: EmbedGuardError | None,
    ) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
        d = len(next(iter(found.values()))) if found else self._client.dimensions
        if d is None:
            if last is not None:
                raise last
            d = 0  # an empty batch, or every row invalid before any vector was seen
        vectors = np.zeros((n, d), dtype=np.float32)
        ok = np.zeros(n, dtype=bool)
        for row, vector in found.items():
            vectors[row] = vector
            ok[row] = True
        return vectors, ok, failures


def embed_dataset(
    ds: ray.data.Dataset,
    profile: ProviderProfile,
    *,
    text_column: str = "text",
    vector_column: str = "embedding",
    ok_column: str = "embedding_ok",
    error_column: str = "embedding_error",
    api_key_env: str | None = None,
    client_kwargs: Mapping[str, Any] | None = None,
    shared_state: str | None = None,
    metrics: MetricsSink | None = None,
    concurrency: int = 2,
    batch_size: int = 256,
    batch_format: str = "numpy",
    num_cpus: float = 0.25,
) -> ray.data.Dataset:
    """Add the embedding columns to ``ds`` with a pool of ``concurrency`` :class:`EmbedBatches`.

    Lazy, like every Ray Data transform. The options are checked here, in the driver, so a
    mistake fails at once rather than in every actor. See :class:`EmbedBatches` for the rest.

    Args:
        ds: The dataset; it must have ``text_column``.
        profile: The provider profile.
        text_column: The column holding the texts.
        vector_column: The float32 tensor column to write.
        ok_column: The boolean column saying whether the row got its vector.
        error_column: The column with ``None`` or the row's ``"<kind>: <message>"``.
        api_key_env: The environment variable holding the key inside the actors.
        client_kwargs: More :class:`~embedguard.EmbeddingClient` keywords.
        shared_state: A Redis URL shared by every actor's client (one budget, one breaker).
        metrics: A :class:`MetricsSink` collecting every actor's metrics.
        concurrency: Actors in the pool, each with its own client (its own ``pool_size`` of
            requests in flight and its own rate limits: divide the provider's budget by it).
        batch_size: Rows per call to an actor.
        batch_format: ``"numpy"`` or ``"pandas"``.
        num_cpus: CPUs reserved per actor; embedding waits on the network, so a fraction.

    Returns:
        The dataset with the three columns added and every row kept.

    Raises:
        ConfigurationError: An invalid option.
    """
    if batch_format not in ("numpy", "pandas"):
        raise ConfigurationError(
            f"must be 'numpy' or 'pandas', got {batch_format!r}", field="batch_format"
        )
    if concurrency < 1 or batch_size < 1:
        raise ConfigurationError("concurrency and batch_size must be at least 1")
    _client_options(client_kwargs, shared_state)
    kwargs: dict[str, Any] = {
        "profile": profile.to_dict(),
        "text_column": text_column,
        "vector_column": vector_column,
        "ok_column": ok_column,
        "error_column": error_column,
        "api_key_env": api_key_env,
        "client_kwargs": dict(client_kwargs or {}),
        "shared_state": shared_state,
        "metrics_sink": metrics,
    }
    return ds.map_batches(
        EmbedBatches,
        fn_constructor_kwargs=kwargs,
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        batch_size=batch_size,
        batch_format=batch_format,
        num_cpus=num_cpus,
    )


def _client_options(
    client_kwargs: Mapping[str, Any] | None, shared_state: str | None
) -> dict[str, Any]:
    given = dict(client_kwargs or {})
    for name, advice in _FORBIDDEN.items():
        if name in given:
            raise ConfigurationError(advice, field=f"client_kwargs.{name}")
    options = {**_DEFAULT_CLIENT_KWARGS, **given}
    if shared_state is not None:
        options["shared_state"] = shared_state
    return options


def _valid_rows(texts: list[Any], failures: dict[int, str]) -> list[int]:
    """Rows holding embeddable text; the others are recorded in ``failures``."""
    try:
        validate_texts(texts)
    except InputValidationError:
        pass
    else:
        return list(range(len(texts)))
    valid = []
    for i, text in enumerate(texts):
        try:
            validate_texts([text])
        except InputValidationError as error:
            failures[i] = _describe(error)
        else:
            valid.append(i)
    return valid


def _named(error: EmbedGuardError) -> tuple[int, ...]:
    """Positions (in the call's input) the error names as without a vector."""
    if error.failed_indices:
        return error.failed_indices
    if isinstance(error, InputValidationError) and error.index is not None:
        return (error.index,)
    return ()


def _describe(error: EmbedGuardError) -> str:
    """``"<kind>: <message>"`` without the call's input positions, which mean nothing per row."""
    if isinstance(error, InputValidationError):
        return f"{error.kind}: {error.reason}"
    clone = copy.copy(error)
    clone.failed_indices = ()
    return f"{error.kind}: {clone}"
