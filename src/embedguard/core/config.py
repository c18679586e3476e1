"""Frozen, typed configuration: the policies and the provider profile that holds them.

This module is the one source of defaults. A field's default here is the OpenAI value; the built-in
profiles in :mod:`embedguard.core.profiles` override only where a provider differs. Every object is
immutable, compares by value, has a compact ``repr``, and round-trips through ``dict``, TOML and
environment variables::

    profile = ProviderProfile(provider="openai", model="text-embedding-3-small", dimensions=1536)
    assert ProviderProfile.from_dict(profile.to_dict()) == profile
    assert ProviderProfile.from_toml(profile.to_toml()) == profile
    assert ProviderProfile.from_env(profile.to_env()) == profile

Invalid values raise :class:`~embedguard.ConfigurationError` naming the field (dotted for nested
policies, e.g. ``retry.max_retries``). Secrets never live in a profile: the key is given to the
client or read from the environment variable the profile names (``api_key_env``).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Self, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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
]

ProviderKind = Literal["openai", "azure", "mistral", "ollama", "openai_compatible", "local"]
"""The wire format (or in-process runtime) a profile talks to."""

_T = TypeVar("_T", bound="_Frozen")
_ENV_PREFIX = "EMBEDGUARD_"


def _configuration_error(exc: ValidationError) -> ConfigurationError:
    err = exc.errors()[0]
    parts = [str(part) for part in err["loc"] if not isinstance(part, int)]
    message = err["msg"].removeprefix("Value error, ")
    inner = err.get("ctx", {}).get("error")
    if isinstance(inner, ConfigurationError):  # a nested policy built from a dict
        message = inner.reason
        parts += [inner.field] if inner.field else []
    return ConfigurationError(message, field=".".join(parts) or None)


class _Frozen(BaseModel):
    """Immutable, validated, value-equal; raises ConfigurationError instead of ValidationError."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise _configuration_error(exc) from None

    @model_validator(mode="before")
    @classmethod
    def _none_spelled_out(cls, data: Any) -> Any:
        # TOML and environment variables have no null: the string "none" stands for None.
        if isinstance(data, dict):
            for key, value in data.items():
                if (
                    isinstance(value, str)
                    and value.lower() == "none"
                    and key in _NULLABLE.get(cls, frozenset())
                ):
                    data[key] = None
        return data

    def __repr_args__(self) -> Any:
        # Compact repr: show only the fields that differ from their default.
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if info.is_required() or value != info.get_default(call_default_factory=True):
                yield name, value

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Build from a plain mapping (as produced by :meth:`to_dict`)."""
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"expected a mapping, got {type(data).__name__}")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise _configuration_error(exc) from None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (nested policies as dicts)."""
        return self.model_dump(mode="json")

    def evolve(self, **changes: Any) -> Self:
        """Return a validated copy with ``changes`` applied (nested policies may be dicts)."""
        merged = self.to_dict()
        for key, value in changes.items():
            merged[key] = value.to_dict() if isinstance(value, _Frozen) else value
        return type(self).from_dict(merged)


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

    Opens after ``failure_threshold`` consecutive provider failures; stays open ``open_timeout``
    seconds; then admits at most ``half_open_max_attempts`` probe requests (the first included),
    closing after ``success_threshold`` successful probes and reopening on a failed one. A half-open
    episode that reaches no verdict within ``half_open_timeout`` seconds reopens, so it cannot
    wedge.
    """

    enabled: bool = True
    failure_threshold: int = Field(5, ge=1)
    success_threshold: int = Field(2, ge=1)
    open_timeout: float = Field(30.0, gt=0)
    half_open_max_attempts: int = Field(3, ge=1)
    half_open_timeout: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _probes_can_close(self) -> Self:
        if self.success_threshold > self.half_open_max_attempts:
            raise ValueError(
                "success_threshold must not exceed half_open_max_attempts "
                "(the breaker could never close)"
            )
        return self


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
    """

    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)


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
            ``openai_compatible`` (vLLM, LM Studio, llama.cpp, TEI, LocalAI...) or ``local``.
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
        extra_body: Extra JSON fields sent with every request (e.g. Ollama's ``keep_alive``).
        timeouts: Per-request timeouts; a single number sets both.
        pool_size: Maximum requests in flight from one client, and its connection pool size.
        rate_limit: Hard caps per minute (see :class:`RateLimit`); ``None`` (the default)
            learns the limits from the server, starting from the provider's assumed ones.
        compression: Gzip request bodies (off unless enabled; see :class:`CompressionPolicy`).
        metrics: Record metrics (``False`` turns the collector into a no-op).
        price_per_million_tokens: USD per 1M input tokens; ``None`` uses the built-in price table.
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
    extra_body: dict[str, str | int | float | bool] = Field(default_factory=dict)
    timeouts: Timeouts = Timeouts()
    pool_size: int = Field(20, ge=1, le=1024)
    retry: RetryPolicy = RetryPolicy()
    breaker: BreakerPolicy = BreakerPolicy()
    batching: BatchPolicy = BatchPolicy()
    rate_limit: RateLimit | None = None
    compression: CompressionPolicy = CompressionPolicy()
    metrics: bool = True
    price_per_million_tokens: float | None = Field(None, ge=0)

    @field_validator("timeouts", mode="before")
    @classmethod
    def _single_number_timeout(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {"request": float(value), "connect": min(float(value), 5.0)}
        return value

    @field_validator("base_url")
    @classmethod
    def _valid_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return check_url(value)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if not self.name:
            object.__setattr__(self, "name", self.provider)
        if self.provider != "azure" and (self.deployment or self.api_version):
            raise ValueError("deployment and api_version apply to the azure provider only")
        if "input" in self.extra_body or "model" in self.extra_body:
            raise ValueError("extra_body must not set 'input' or 'model'")
        return self

    # -- TOML -------------------------------------------------------------------------------
    @classmethod
    def from_toml(cls, source: str | Path) -> ProviderProfile:
        """Load from TOML text, or from a file when given a :class:`~pathlib.Path`."""
        text = source.read_text(encoding="utf-8") if isinstance(source, Path) else source
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"invalid TOML: {exc}") from None
        return cls.from_dict(data)

    def to_toml(self) -> str:
        """Dump as TOML: scalars first, then one table per policy.

        TOML has no null: a ``None`` whose default is also ``None`` is left out, any other
        ``None`` is written as the string ``"none"``.
        """
        lines: list[str] = []
        tables: list[str] = []
        for key, value in _toml_items(self):
            if isinstance(value, _Frozen):
                tables.append(f"\n[{key}]")
                tables.extend(f"{k} = {_toml_value(v)}" for k, v in _toml_items(value))
            elif isinstance(value, dict):
                tables.append(f"\n[{key}]")
                tables.extend(f"{k} = {_toml_value(v)}" for k, v in value.items())
            else:
                lines.append(f"{key} = {_toml_value(value)}")
        return "\n".join(lines + tables) + "\n"

    # -- environment --------------------------------------------------------------------------
    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, prefix: str = _ENV_PREFIX
    ) -> ProviderProfile:
        """Load from variables such as ``EMBEDGUARD_MODEL`` and ``EMBEDGUARD_RETRY__MAX_RETRIES``.

        Nested policy fields use a double underscore; the value ``none`` means ``None``;
        ``extra_body`` is given as JSON.
        """
        env = os.environ if environ is None else environ
        data: dict[str, Any] = {}
        for key, raw in env.items():
            if not key.startswith(prefix):
                continue
            path = key[len(prefix) :].lower().split("__")
            value: Any = raw
            if path == ["extra_body"]:
                import json

                try:
                    value = json.loads(value)
                except json.JSONDecodeError as exc:
                    raise ConfigurationError(f"not JSON: {exc}", field="extra_body") from None
            target = data
            for part in path[:-1]:
                target = target.setdefault(part, {})
            target[path[-1]] = value
        if "provider" not in data:
            raise ConfigurationError("is required", field=f"{prefix}PROVIDER")
        return cls.from_dict(data)

    def to_env(self, *, prefix: str = _ENV_PREFIX) -> dict[str, str]:
        """Dump as environment variables (the inverse of :meth:`from_env`)."""
        import json

        out: dict[str, str] = {}
        for key, value in self.to_dict().items():
            if key == "extra_body":
                if value:
                    out[f"{prefix}EXTRA_BODY"] = json.dumps(value)
            elif isinstance(value, dict):
                for sub, subvalue in value.items():
                    out[f"{prefix}{key}__{sub}".upper()] = _env_value(subvalue)
            else:
                out[f"{prefix}{key}".upper()] = _env_value(value)
        return out


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


def _toml_items(model: _Frozen) -> list[tuple[str, Any]]:
    items = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if value is None and not info.is_required() and info.get_default() is None:
            continue
        items.append((name, value))
    return items


def _toml_value(value: Any) -> str:
    if value is None:
        return '"none"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        import json

        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, dict):
        inner = ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    raise ConfigurationError(f"cannot write {type(value).__name__} to TOML")


def _env_value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _nullable_fields(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(
        name
        for name, info in model.model_fields.items()
        if info.annotation is not None and type(None) in getattr(info.annotation, "__args__", ())
    )


_NULLABLE: dict[type, frozenset[str]] = {
    model: _nullable_fields(model)
    for model in (
        Timeouts,
        RetryPolicy,
        BreakerPolicy,
        BatchPolicy,
        RateLimit,
        CompressionPolicy,
        ProviderProfile,
    )
}
