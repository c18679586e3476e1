"""Typed errors raised by embedguard.

Catch the class you mean, or the root::

    EmbedGuardError
    ├── ConfigurationError            invalid settings; names the field (also a ValueError)
    ├── InputValidationError          bad input, refused before any request; names the index
    ├── CircuitOpenError              the breaker is open: failed fast, nothing was sent
    └── ProviderError                 the provider call failed (status, request id, retryable)
        ├── AuthenticationError       401 / 403: missing or wrong key
        ├── RateLimitError            429 rate limit; ``retry_after`` in seconds when known
        ├── QuotaExhaustedError       429 quota / billing exhausted (never retried)
        ├── BadRequestError           other 4xx: the request itself is wrong (never retried)
        │   ├── ContextLengthError    an input, or the batch, is over the model's token limit
        │   ├── ModelNotFoundError    unknown model or deployment (404)
        │   └── EndpointNotFoundError 404 not about a model: check base_url (shows the URL)
        ├── ServerError               5xx and other provider-side failures
        ├── ProviderTimeoutError      connect / read / write / pool timeout
        ├── ProviderConnectionError   connection refused, reset or dropped
        └── ResponseValidationError   a 2xx whose body is not exactly one finite vector per input

What each error means for the send path is stated once, here, as class attributes (read by the
attempt flow, the batch fan-out and failover; nowhere else keeps a list of error types)::

    class                      retryable  provider_fault  stops_call  fails_over
    ConfigurationError             -            -             x           -
    CircuitOpenError               -            -             x           x
    AuthenticationError            -            -             x           -
    RateLimitError                 x            -             -           x
    QuotaExhaustedError            -            -             x           x
    BadRequestError (+ subclasses) -            -             -           -
    ModelNotFoundError             -            -             x           -
    EndpointNotFoundError          -            -             x           -
    ServerError                    x            x             -           x
    ProviderTimeoutError           x            x             -           x
    ProviderConnectionError        x            x             -           x
    ResponseValidationError     truncated       x             -           x

``retryable``: the same request may succeed if sent again. ``provider_fault``: it counts against the
endpoint's health (the circuit breaker); the others neither count nor clear. ``stops_call``: every
other batch of the call would fail the same way, so those not sent yet are not sent. ``fails_over``:
another deployment of the same model (a fallback profile) may succeed.

Every error carries the ``provider`` it came from and never a secret: messages are built from the
provider's error text with any known secret redacted; transport errors keep the underlying httpx or
OS exception as ``__cause__``. When a call gives up, ``failed_indices`` lists the positions of the
inputs that did not get a vector and ``partial`` holds what the call did get: a float32 array with
one row per input, NaN rows exactly at ``failed_indices`` (``None`` when no vector was received).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "CircuitOpenError",
    "ConfigurationError",
    "ContextLengthError",
    "EmbedGuardError",
    "EndpointNotFoundError",
    "InputValidationError",
    "ModelNotFoundError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeoutError",
    "QuotaExhaustedError",
    "RateLimitError",
    "ResponseValidationError",
    "ServerError",
    "redact",
]

_REDACTED = "***"


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Return ``text`` with every occurrence of each non-empty secret replaced by ``***``."""
    for secret in secrets:
        if secret and len(secret) >= 4 and secret in text:
            text = text.replace(secret, _REDACTED)
    return text


class EmbedGuardError(Exception):
    """Root of every error embedguard raises.

    Attributes:
        provider: The profile name of the provider involved, when there is one.
        failed_indices: Positions (in the caller's input) of texts that did not get a vector.
        partial: When a call failed part-way, one float32 row per input: the vectors it did get,
            NaN rows at ``failed_indices``; ``None`` when it got none.
    """

    kind: str = "error"
    retryable: bool = False
    """The same request may succeed if sent again (the retry policy decides whether it is)."""
    provider_fault: bool = False
    """The failure counts against the endpoint's health (the circuit breaker)."""
    stops_call: bool = False
    """Every other batch of the call would fail the same way: batches not sent yet are skipped."""
    fails_over: bool = False
    """Another deployment of the same model (a fallback profile) may not share the failure."""

    def __init__(self, message: str, *, provider: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.failed_indices: tuple[int, ...] = ()
        self.partial: np.ndarray | None = None

    def __str__(self) -> str:
        prefix = f"[{self.provider}] " if self.provider else ""
        suffix = ""
        if self.failed_indices:
            shown = ", ".join(str(i) for i in self.failed_indices[:10])
            more = "" if len(self.failed_indices) <= 10 else f", ... ({len(self.failed_indices)})"
            suffix = f" (inputs without a vector: {shown}{more})"
        return f"{prefix}{self.message}{suffix}"

    def with_failed_indices(self, indices: Sequence[int]) -> EmbedGuardError:
        """Record which inputs did not complete and return ``self`` (for ``raise ... from``)."""
        self.failed_indices = tuple(sorted(set(indices)))
        return self

    def shifted(self, offset: int) -> EmbedGuardError:
        """A copy whose input positions are moved by ``offset`` (a chunk's place in a stream)."""
        clone = copy.copy(self)
        clone.failed_indices = tuple(i + offset for i in self.failed_indices)
        clone.__cause__ = self.__cause__
        return clone

    def copy(self) -> EmbedGuardError:
        """A copy to hand one caller (several concurrent callers may share one failure); it
        keeps the cause (``__cause__``)."""
        clone = copy.copy(self)
        clone.partial = None
        clone.__cause__ = self.__cause__
        return clone


class ConfigurationError(EmbedGuardError, ValueError):
    """A setting is invalid or missing. ``field`` names it (dotted for nested policies)."""

    kind = "configuration"
    stops_call = True

    def __init__(self, message: str, *, field: str | None = None, provider: str | None = None):
        super().__init__(f"{field}: {message}" if field else message, provider=provider)
        self.field = field
        self.reason = message


class InputValidationError(EmbedGuardError, ValueError):
    """An input is not embeddable (wrong type, empty, too long). ``index`` names it."""

    kind = "input"

    def __init__(self, message: str, *, index: int | None = None, provider: str | None = None):
        where = f"input {index}: " if index is not None else ""
        super().__init__(f"{where}{message}", provider=provider)
        self.index = index
        self.reason = message

    def shifted(self, offset: int) -> EmbedGuardError:
        """A copy naming the input ``offset`` places further on."""
        index = None if self.index is None else self.index + offset
        clone = InputValidationError(self.reason, index=index, provider=self.provider)
        clone.failed_indices = tuple(i + offset for i in self.failed_indices)
        clone.partial = self.partial
        clone.__cause__ = self.__cause__
        return clone

    def copy(self) -> EmbedGuardError:
        """A copy to hand one caller."""
        return self.shifted(0)


class CircuitOpenError(EmbedGuardError):
    """The circuit breaker is open; the call failed fast without sending a request.

    The message says what opened the circuit (``circuit open: 10 of 12 recent requests
    failed; last: ProviderConnectionError: connection refused (127.0.0.1:9); ...``), and the
    breaker raises it ``from`` that last failure, so ``__cause__`` is set too.

    Attributes:
        retry_in: Seconds until the breaker admits a probe request (0 when probes are busy).
        last_failure: The last failure the breaker counted before refusing, when known (with a
            shared breaker, only when this process reported it).
    """

    kind = "circuit_open"
    stops_call = True
    fails_over = True

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        retry_in: float = 0.0,
        last_failure: BaseException | None = None,
    ):
        super().__init__(message, provider=provider)
        self.retry_in = retry_in
        self.last_failure = last_failure


class ProviderError(EmbedGuardError):
    """The provider call failed.

    Attributes:
        status_code: HTTP status, or ``None`` for transport failures.
        code: The provider's machine-readable error code or type, when it sent one.
        request_id: The provider's request id header, when it sent one.
        retryable: Whether the retry policy may try the same request again.
    """

    kind = "provider"

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        status_code: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider)
        self.status_code = status_code
        self.code = code
        self.request_id = request_id

    def __str__(self) -> str:
        base = super().__str__()
        details = []
        if self.status_code is not None:
            details.append(f"status {self.status_code}")
        if self.code:
            details.append(f"code {self.code}")
        if self.request_id:
            details.append(f"request {self.request_id}")
        return f"{base} ({', '.join(details)})" if details else base


class AuthenticationError(ProviderError):
    """The provider rejected the credentials (401/403)."""

    kind = "authentication"
    stops_call = True


class RateLimitError(ProviderError):
    """The provider is rate limiting (429). ``retry_after`` is its requested wait, in seconds."""

    kind = "rate_limit"
    retryable = True
    fails_over = True

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        provider: str | None = None,
        status_code: int | None = 429,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(
            message, provider=provider, status_code=status_code, code=code, request_id=request_id
        )
        self.retry_after = retry_after


class QuotaExhaustedError(ProviderError):
    """The account's quota or budget is exhausted (429 ``insufficient_quota``); never retried."""

    kind = "quota"
    stops_call = True
    fails_over = True


class BadRequestError(ProviderError):
    """The provider rejected the request as invalid (4xx other than auth/429); never retried."""

    kind = "bad_request"


class ContextLengthError(BadRequestError):
    """An input, or a whole batch, exceeds the model's token limit.

    Attributes:
        index: The position, in the request's input list, of the item the provider named as
            too long (OpenAI's ``param: "input[3]"``); ``None`` when it named none (a batch over
            its token limit, or a server that does not say).
    """

    kind = "context_length"

    def __init__(
        self,
        message: str,
        *,
        index: int | None = None,
        provider: str | None = None,
        status_code: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(
            message, provider=provider, status_code=status_code, code=code, request_id=request_id
        )
        self.index = index


class ModelNotFoundError(BadRequestError):
    """The model or deployment does not exist, or the key has no access to it (404)."""

    kind = "model_not_found"
    stops_call = True


class EndpointNotFoundError(BadRequestError):
    """A 404 that is not about a model: the URL is wrong (often a ``base_url`` missing ``/v1``).

    Attributes:
        url: The URL requested, without user info and with query values other than
            ``api-version`` hidden; ``None`` when not known.
    """

    kind = "endpoint_not_found"
    stops_call = True

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        provider: str | None = None,
        status_code: int | None = 404,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(
            message, provider=provider, status_code=status_code, code=code, request_id=request_id
        )
        self.url = url


class ServerError(ProviderError):
    """The provider failed on its side (5xx)."""

    kind = "server"
    retryable = True
    provider_fault = True
    fails_over = True


class ProviderTimeoutError(ProviderError):
    """The request timed out (connect, read, write or waiting for a pooled connection)."""

    kind = "timeout"
    retryable = True
    provider_fault = True
    fails_over = True


class ProviderConnectionError(ProviderError):
    """The connection failed: refused, reset, or dropped mid-response."""

    kind = "connection"
    retryable = True
    provider_fault = True
    fails_over = True


class ResponseValidationError(ProviderError):
    """A successful status with a body that is not exactly one finite vector per input.

    Attributes:
        truncated: The body looks cut short (e.g. JSON ended early); retried once.
    """

    kind = "invalid_response"
    provider_fault = True
    fails_over = True

    def __init__(
        self,
        message: str,
        *,
        truncated: bool = False,
        provider: str | None = None,
        status_code: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, provider=provider, status_code=status_code, request_id=request_id)
        self.truncated = truncated
        self.retryable = truncated
