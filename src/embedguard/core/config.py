"""Frozen, typed configuration: the policies and the provider profile that holds them.

This module is the one source of defaults. A field's default here is the OpenAI value; the built-in
profiles in :mod:`embedguard.core.profiles` override only where a provider differs. Every object is
immutable, compares by value, has a compact ``repr``, and round-trips through ``dict``, TOML and
environment variables::

    profile = ProviderProfile(provider="openai", model="text-embedding-3-small", dimensions=1536)
    assert ProviderProfile.from_dict(profile.to_dict()) == profile
    assert ProviderProfile.from_toml(profile.to_toml()) == profile
    assert ProviderProfile.from_env(profile.to_env()) == profile

Loading is layered: a built-in provider's profile is the base, and ``profiles.*`` keywords,
:meth:`~ProviderProfile.evolve`, ``from_dict``, ``from_toml`` and ``from_env`` change only the
fields they name, nested policies included; :meth:`~ProviderProfile.explain` shows every effective
value and where it came from.

Invalid values raise :class:`~embedguard.ConfigurationError` naming the field (dotted for nested
policies, e.g. ``retry.max_retries``). Secrets never live in a profile: the key is given to the
client or read from the environment variable the profile names (``api_key_env``).
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self, cast
from urllib.parse import urlsplit

from pydantic import (
    Field,
    JsonValue,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from ._frozen import Frozen as _Frozen
from ._frozen import mapping as _mapping
from ._layers import (
    Label,
    env_layer,
    env_vars,
    fields_set,
    leaves,
    nested,
    overlay,
    render_explanation,
    timeouts_from_number,
    toml_text,
)
from .errors import ConfigurationError

__all__ = [
    "BatchPolicy",
    "BreakerPolicy",
    "CompressionPolicy",
    "ProviderKind",
    "ProviderProfile",
    "RateLimit",
    "RetryPolicy",
    "Timeouts",
    "VectorDtype",
]

ProviderKind = Literal[
    "openai",
    "azure",
    "mistral",
    "ollama",
    "openai_compatible",
    "cohere",
    "voyage",
    "gemini",
    "bedrock",
    "tei",
    "local",
]
"""The wire format (or in-process runtime) a profile talks to."""

VectorDtype = Literal["float32", "int8", "uint8", "binary", "ubinary"]
"""What :meth:`~embedguard.EmbeddingClient.embed` returns: float32 vectors, or a provider's compact
type: ``int8``/``uint8`` (one value per dimension) or ``binary``/``ubinary`` (one bit per
dimension, packed 8 per byte as int8/uint8, most significant bit first)."""

_ENV_PREFIX = "EMBEDGUARD_"


class Timeouts(_Frozen):
    """Per-request timeouts in seconds.

    ``request`` bounds reading the response, writing the body and waiting for a pooled connection;
    ``connect`` bounds opening a connection. A profile accepts a single number for both.
    """

    request: float = Field(60.0, gt=0)
    connect: float = Field(5.0, gt=0)


class RetryPolicy(_Frozen):
    """When and how long to wait before trying a failed request again.

    Retried: 408, 409, 429 (except quota exhaustion), 5xx, timeouts, connection errors and bodies
    that look truncated. The wait before retry ``n`` (0-based) is::

        server_hint                                       if the server sent retry-after(-ms)
        min(initial_delay * multiplier**n, max_delay) * (1 - jitter * U[0, 1))   otherwise

    A server hint above ``max_retry_after`` is not honoured: the call gives up at once with the
    :class:`RateLimitError` (carrying ``retry_after``) instead of sleeping for, say, a day.
    Retries stop after ``max_retries``, after ``max_elapsed`` seconds spent on one batch, or when
    the retry budget is spent: in any ``budget_window`` seconds at most
    ``budget_min + budget_ratio * requests`` retries are made, so a failing provider is not
    hammered.
    """

    max_retries: int = Field(3, ge=0, le=100)
    initial_delay: float = Field(1.0, ge=0)
    max_delay: float = Field(20.0, ge=0)
    multiplier: float = Field(2.0, ge=1)
    jitter: float = Field(0.25, ge=0, le=1)
    max_retry_after: float = Field(60.0, ge=0)
    max_elapsed: float | None = Field(300.0, gt=0)
    budget_ratio: float = Field(0.2, ge=0)
    budget_min: int = Field(10, ge=0)
    budget_window: float = Field(10.0, gt=0)


class BreakerPolicy(_Frozen):
    """Circuit breaker settings (see :class:`~embedguard.CircuitBreaker` for the state machine).

    Closed, it opens when, over the last ``window_size`` counted requests (at least
    ``minimum_calls`` of them), the share that failed through the provider's fault reaches
    ``failure_rate_threshold``. It stays open ``open_timeout`` seconds; then admits at most
    ``half_open_max_attempts`` probe requests (the first included), closing after
    ``success_threshold`` successful probes and reopening on a failed one. A half-open episode
    that reaches no verdict within ``half_open_timeout`` seconds reopens, so it cannot wedge.

    The defaults (20, 10, 0.75) keep a provider failing 20% of attempts at random closed over a
    2,000-attempt job with probability above 99.97%, and open on a hard outage after 10 failures
    (15 when the last 20 requests had all succeeded).

    ``failure_threshold=n`` is a deprecated alias for the old rule, "``n`` failures in a row":
    it sets ``window_size=minimum_calls=n`` and ``failure_rate_threshold=1`` (exactly that rule)
    and cannot be combined with those fields. Reading ``failure_threshold`` gives
    ``minimum_calls``: the failures in a row that open a breaker with an empty window.
    """

    enabled: bool = True
    failure_rate_threshold: float = Field(0.75, gt=0, le=1)
    window_size: int = Field(20, ge=1, le=1000)
    minimum_calls: int = Field(10, ge=1)
    success_threshold: int = Field(2, ge=1)
    open_timeout: float = Field(30.0, gt=0)
    half_open_max_attempts: int = Field(3, ge=1)
    half_open_timeout: float = Field(30.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _failure_threshold_alias(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "failure_threshold" not in data:
            return data
        data = dict(data)
        given = data.pop("failure_threshold")
        if _WINDOW_FIELDS & data.keys():
            raise ConfigurationError(
                "a deprecated alias; give it or window_size/minimum_calls/failure_rate_threshold, "
                "not both",
                field="failure_threshold",
            )
        try:
            n = _AT_LEAST_ONE.validate_python(given)
        except ValidationError:
            raise ConfigurationError(
                "Input should be an integer greater than or equal to 1", field="failure_threshold"
            ) from None
        return {**data, "window_size": n, "minimum_calls": n, "failure_rate_threshold": 1.0}

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.success_threshold > self.half_open_max_attempts:
            raise ValueError(
                "success_threshold must not exceed half_open_max_attempts "
                "(the breaker could never close)"
            )
        if self.minimum_calls > self.window_size:
            raise ValueError(
                "minimum_calls must not exceed window_size (the breaker could never open)"
            )
        return self

    @property
    def failure_threshold(self) -> int:
        """Deprecated: failures in a row that open a breaker with an empty window."""
        return self.minimum_calls

    def evolve(self, **changes: Any) -> Self:
        """Return a validated copy with ``changes`` applied (``failure_threshold`` included)."""
        if "failure_threshold" not in changes:
            return super().evolve(**changes)
        base = {k: v for k, v in self.to_dict().items() if k not in _WINDOW_FIELDS}
        return type(self).from_dict({**base, **changes})


_WINDOW_FIELDS = frozenset({"window_size", "minimum_calls", "failure_rate_threshold"})
_AT_LEAST_ONE: TypeAdapter[int] = TypeAdapter(Annotated[int, Field(ge=1)])


class BatchPolicy(_Frozen):
    """How one call's texts are split into requests.

    A request holds at most ``max_inputs`` texts and ``max_tokens_per_request`` estimated tokens;
    one text may hold at most ``max_tokens_per_input`` tokens (what happens above that is the
    client's ``context_policy``).
    """

    max_inputs: int = Field(2048, ge=1)
    max_tokens_per_request: int = Field(300_000, ge=1)
    max_tokens_per_input: int = Field(8191, ge=1)

    @model_validator(mode="after")
    def _input_fits_request(self) -> Self:
        if self.max_tokens_per_input > self.max_tokens_per_request:
            raise ValueError("max_tokens_per_input must not exceed max_tokens_per_request")
        return self


class RateLimit(_Frozen):
    """Limits per minute that you set: hard caps (``None`` for a field: no cap on it).

    A profile without one (``rate_limit=None``, the default) learns: it starts from the
    provider's assumed limits (:func:`~embedguard.core.profiles.assumed_rate_limit`) and follows
    the limits the server states in its ``x-ratelimit-*`` headers, up or down. A cap you set
    (e.g. to share a budget between jobs) is never exceeded: a server stating less lowers the
    limit in force, a server stating more does not raise it. A ``None`` field is learned like
    an unset profile limit. Example: ``RateLimit(tokens_per_minute=200_000)``.

    ``enabled=False`` turns client-side pacing off altogether (no assumed, stated or capped
    limit is applied; a 429 is still retried after the wait it asks for), e.g. for a server of
    your own that queues requests itself.
    """

    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    enabled: bool = True


class CompressionPolicy(_Frozen):
    """Gzip request bodies of at least ``threshold_bytes`` (when ``enabled``) at ``level``.

    Off by default, in every built-in profile too: no provider documents accepting gzip
    request bodies. Turn it on only for a server known to take them.
    """

    enabled: bool = False
    threshold_bytes: int = Field(1024, ge=0)
    level: int = Field(6, ge=1, le=9)


class ProviderProfile(_Frozen):
    """Everything the client needs to talk to one provider, minus the secret.

    Args:
        provider: The wire format: ``openai``, ``azure``, ``mistral``, ``ollama``,
            ``openai_compatible`` (vLLM, LM Studio, llama.cpp, LocalAI...), ``cohere``,
            ``voyage``, ``gemini``, ``bedrock``, ``tei`` (Text Embeddings Inference) or ``local``.
        model: The model name sent to the provider (any name for compatible servers). For Azure's
            deployment URL form it is the model behind the deployment (used for pricing).
        name: A label for metrics, logs and errors; defaults to ``provider``.
        dimensions: The expected vector size, checked on every response; ``None`` learns it from
            the first response. Sent as the request's output dimension when it differs from the
            model's native size.
        base_url: The endpoint root (e.g. ``https://api.openai.com/v1``); ``None`` reads the
            provider's environment variable (``OPENAI_BASE_URL``...) or uses its public default.
        api_key_env: The environment variable holding the key when none is passed to the client.
        deployment: Azure deployment name (classic ``/openai/deployments/{deployment}`` URLs).
        api_version: Azure ``api-version``; ``None`` with no deployment uses ``/openai/v1``.
        encoding_format: Ask OpenAI-style servers for ``base64`` (compact) or ``float`` vectors.
        extra_body: Extra JSON fields sent with every request, nested values included (e.g.
            Ollama's ``{"keep_alive": "5m", "options": {"num_ctx": 8192}}``); they override
            the codec's own fields of the same name. ``null`` and non-finite numbers are
            refused (TOML has no null; JSON has no NaN).
        timeouts: Per-request timeouts; a single number sets both.
        pool_size: Maximum requests in flight from one client, and its connection pool size.
        rate_limit: Hard caps per minute (see :class:`RateLimit`); ``None`` (the default)
            learns the limits from the server, starting from the provider's assumed ones.
        compression: Gzip request bodies (off unless enabled; see :class:`CompressionPolicy`).
        metrics: Record metrics (``False`` turns the collector into a no-op).
        price_per_million_tokens: USD per 1M input tokens; ``None`` uses the built-in price table.
        query_input_type: What ``embed_query`` sends as the provider's input type (e.g.
            Cohere's ``search_query``); ``None`` uses the provider's query type, where it has one.
        document_input_type: The same for ``embed`` / ``embed_documents`` (e.g.
            ``search_document``).
        query_prefix: Text put before every query on the wire, for models that take instruction
            prefixes instead of an input type (nomic-embed-text's ``"search_query: "``, E5's
            ``"query: "``). The cache keys the text as given, apart from documents.
        document_prefix: The same for documents (``"search_document: "``, ``"passage: "``).
        dtype: ``float32`` (the default), or a compact type the provider returns (see
            :data:`VectorDtype`); a provider that cannot return it is a configuration error.
        region: The cloud region (Bedrock); ``None`` reads the provider's usual settings.

    Settings are layered: a provider's built-in profile is the base, and :meth:`evolve`,
    :meth:`from_dict`, :meth:`from_toml`, :meth:`from_env` and the ``profiles.*`` functions
    change only the fields they name, nested ones included::

        profiles.azure(retry={"max_retries": 6}).retry.initial_delay   # 2.0, Azure's
        ProviderProfile.from_dict({"provider": "mistral", "batching": {"max_inputs": 64}})
        # -> mistral's profile with max_inputs=64 (its 16,384-token request cap kept)

    A policy object names the fields it was built with (``RetryPolicy(max_retries=6)`` names
    one; ``policy.evolve(...)`` names all). :meth:`explain` shows every effective value and
    where it came from.
    """

    provider: ProviderKind
    model: str = Field(min_length=1)
    name: str = ""
    dimensions: int | None = Field(None, ge=1)
    base_url: str | None = None
    api_key_env: str | None = None
    deployment: str | None = None
    api_version: str | None = None
    encoding_format: Literal["base64", "float"] = "base64"
    extra_body: dict[str, JsonValue] = Field(default_factory=dict)
    timeouts: Timeouts = Timeouts()
    pool_size: int = Field(20, ge=1, le=1024)
    retry: RetryPolicy = RetryPolicy()
    breaker: BreakerPolicy = BreakerPolicy()
    batching: BatchPolicy = BatchPolicy()
    rate_limit: RateLimit | None = None
    compression: CompressionPolicy = CompressionPolicy()
    metrics: bool = True
    price_per_million_tokens: float | None = Field(None, ge=0)
    query_input_type: str | None = Field(None, min_length=1)
    document_input_type: str | None = Field(None, min_length=1)
    query_prefix: str = ""
    document_prefix: str = ""
    dtype: VectorDtype = "float32"
    region: str | None = Field(None, min_length=1)

    _origins: dict[str, str] | None = PrivateAttr(None)  # dotted name -> where it came from
    _base: str | None = PrivateAttr(None)  # the built-in profile the layers apply to

    @field_validator("timeouts", mode="before")
    @classmethod
    def _single_number_timeout(cls, value: Any) -> Any:
        return timeouts_from_number(value) or value

    @field_validator("base_url")
    @classmethod
    def _valid_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return check_url(value)

    @field_validator("extra_body")
    @classmethod
    def _extra_body_is_plain_json(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        for key, item in value.items():
            _check_json(item, key)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not self.name:
            object.__setattr__(self, "name", self.provider)
        if self.provider != "azure" and (self.deployment or self.api_version):
            raise ValueError("deployment and api_version apply to the azure provider only")
        if "input" in self.extra_body or "model" in self.extra_body:
            raise ValueError("extra_body must not set 'input' or 'model'")
        return self

    def __eq__(self, other: object) -> bool:
        # Equal settings are equal profiles, wherever the values came from.
        if not isinstance(other, ProviderProfile):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # extra_body is a dict

    # -- layers ----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from a mapping: a built-in ``provider`` is the base, ``data`` changes it.

        ``{"provider": "mistral", "batching": {"max_inputs": 64}}`` is Mistral's profile with
        64 inputs per request; a full :meth:`to_dict` gives back the same profile.
        """
        return cls._load(_mapping(data), lambda path: "argument")

    def evolve(self, **changes: Any) -> Self:
        """Return a validated copy with ``changes`` applied.

        A nested policy given as a dict (or a policy object) changes only the fields it names.
        A new ``provider`` or ``model`` also selects a new base: the values that came from the
        old provider's defaults (e.g. ``dimensions`` from the model) are taken from the new one,
        while the values set explicitly are kept.
        """
        return self._apply(changes, lambda path: "argument")

    def prefix_for(self, kind: str) -> str:
        """What goes before a text of ``kind`` on the wire: ``query_prefix`` for ``"query"``,
        ``document_prefix`` for ``"document"``, nothing for a provider's own input type."""
        if kind == "query":
            return self.query_prefix
        return self.document_prefix if kind == "document" else ""

    def input_type_for(self, kind: str) -> str | None:
        """The input type this profile sets for ``"query"`` or ``"document"`` (``None``: the
        provider's own, and for any other kind)."""
        if kind == "query":
            return self.query_input_type
        return self.document_input_type if kind == "document" else None

    def sources(self) -> dict[str, str]:
        """Where each effective value came from, by dotted name (``retry.max_retries``).

        ``provider default`` (the built-in profile), ``default`` (a profile built field by
        field has no provider base), ``argument`` (keywords of ``profiles.*``, :meth:`evolve`,
        :meth:`from_dict`), ``file PATH`` / ``TOML`` (:meth:`from_toml`) or ``env VARIABLE``
        (:meth:`from_env`); the last layer that set a value wins.
        """
        origins = self._origins if self._origins is not None else fields_set(self)
        fallback = "provider default" if self._base else "default"
        return {path: origins.get(path, fallback) for path, _ in leaves(self)}

    def explain(self) -> str:
        """Every effective value with where it came from, as commented TOML.

        Example::

            >>> print(profiles.azure(retry={"max_retries": 6}).explain())  # doctest: +SKIP
            # profile 'azure' (on the built-in azure profile): value  # source
            provider = "azure"  # provider default
            ...
            [retry]
            max_retries = 6     # argument
            initial_delay = 2.0 # provider default

        The text loads back with :meth:`from_toml` to an equal profile.
        """
        sources = self.sources()
        rows = [(path, value, sources[path]) for path, value in leaves(self)]
        base = f"on the built-in {self._base} profile" if self._base else "no built-in base"
        return render_explanation(f"profile {self.name!r} ({base}): value  # source", rows)

    def _with_origins(self, base: str | None, origins: Mapping[str, str]) -> Self:
        self._base = base
        self._origins = dict(origins)
        return self

    def _apply(self, layer: Mapping[str, Any], label: Label) -> Self:
        """This profile with ``layer`` on top (rebased when it changes provider or model)."""
        start: ProviderProfile = self
        provider, model = layer.get("provider", self.provider), layer.get("model", self.model)
        origins = dict(self._origins if self._origins is not None else fields_set(self))
        if self._base is not None and (provider, model) != (self.provider, self.model):
            rebased = _builtin(provider, model)
            if rebased is not None:  # keep what was set explicitly, on the new base
                kept = {
                    p: v for p, v in leaves(self) if p in origins and p not in ("provider", "model")
                }
                start = rebased._apply(nested(kept), origins.__getitem__)
                origins = {**(start._origins or {}), **origins}
        values = start.to_dict()
        overlay(values, origins, layer, label, _POLICIES)
        return type(self)._validated(values)._with_origins(start._base, origins)

    @classmethod
    def _load(cls, data: dict[str, Any], label: Label) -> Self:
        base = _builtin(data.get("provider"), data.get("model"))
        if base is None:  # not a built-in provider: validation names what is wrong
            return cls._validated(data)
        return cast(Self, base._apply(data, label))

    # -- TOML -------------------------------------------------------------------------------
    @classmethod
    def from_toml(cls, source: str | Path) -> Self:
        """Load from TOML text, or from a file when given a :class:`~pathlib.Path`.

        Like :meth:`from_dict`: the file's ``provider`` selects the base, and a table such as
        ``[retry]`` changes only the fields it lists.
        """
        text = source.read_text(encoding="utf-8") if isinstance(source, Path) else source
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"invalid TOML: {exc}") from None
        where = f"file {source}" if isinstance(source, Path) else "TOML"
        return cls._load(data, lambda path: where)

    def to_toml(self) -> str:
        """Dump as TOML: scalars first, then one table per policy.

        TOML has no null: a ``None`` that loading would also give is left out, any other
        ``None`` is written as the string ``"none"``.
        """
        base = _builtin(self.provider, self.model)
        return toml_text(self, base.to_dict() if base is not None else {})

    # -- environment --------------------------------------------------------------------------
    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, prefix: str = _ENV_PREFIX
    ) -> Self:
        """Load from variables such as ``EMBEDGUARD_MODEL`` and ``EMBEDGUARD_RETRY__MAX_RETRIES``.

        Nested policy fields use a double underscore; the value ``none`` means ``None``;
        ``extra_body`` is given as JSON. ``EMBEDGUARD_PROVIDER`` is required and selects the
        base: the variables change only the fields they name.
        """
        data, names = env_layer(os.environ if environ is None else environ, prefix)
        if "provider" not in data:
            raise ConfigurationError("is required", field=f"{prefix}PROVIDER")
        return cls._load(data, lambda path: f"env {names.get(path, path)}")

    def to_env(self, *, prefix: str = _ENV_PREFIX) -> dict[str, str]:
        """Dump as environment variables (the inverse of :meth:`from_env`)."""
        return env_vars(self.to_dict(), prefix)


def check_url(value: str) -> str:
    """An http(s) URL with a host and a valid port, without its trailing slash."""
    parts = urlsplit(value)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # not a number, or out of range
        port_ok = False
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or not port_ok
        or any(c.isspace() for c in value)
    ):
        raise ValueError(f"not an http(s) URL: {value!r}")
    return value.rstrip("/")


def _builtin(provider: Any, model: Any) -> ProviderProfile | None:
    """The built-in profile a layered profile starts from, or ``None`` for an unknown provider."""
    from . import profiles

    if not isinstance(provider, str) or provider not in profiles.names():
        return None
    return profiles.get(provider, **({} if model is None else {"model": model}))


_POLICIES = frozenset(
    name
    for name, info in ProviderProfile.model_fields.items()
    if isinstance(info.annotation, type) and issubclass(info.annotation, _Frozen)
)


_MAX_JSON_DEPTH = 32


def _check_json(value: JsonValue, where: str, depth: int = 0) -> None:
    """Refuse what a request body or a TOML file cannot carry faithfully."""
    if depth > _MAX_JSON_DEPTH:
        raise ValueError(f"{where}: nested deeper than {_MAX_JSON_DEPTH} levels")
    if value is None:
        raise ValueError(f"{where}: null is not supported (TOML has no null); leave it out")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: {value} is not a finite number (JSON has no NaN/infinity)")
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(item, f"{where}[{index}]", depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_json(item, f"{where}.{key}", depth + 1)
