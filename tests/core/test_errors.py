"""The typed error hierarchy."""

import pytest

from embedguard import (
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    ConfigurationError,
    ContextLengthError,
    EmbedGuardError,
    InputValidationError,
    ModelNotFoundError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeoutError,
    QuotaExhaustedError,
    RateLimitError,
    ResponseValidationError,
    ServerError,
)
from embedguard.core.errors import redact


@pytest.mark.parametrize(
    ("cls", "parent"),
    [
        (ConfigurationError, EmbedGuardError),
        (InputValidationError, EmbedGuardError),
        (CircuitOpenError, EmbedGuardError),
        (ProviderError, EmbedGuardError),
        (AuthenticationError, ProviderError),
        (RateLimitError, ProviderError),
        (QuotaExhaustedError, ProviderError),
        (BadRequestError, ProviderError),
        (ContextLengthError, BadRequestError),
        (ModelNotFoundError, BadRequestError),
        (ServerError, ProviderError),
        (ProviderTimeoutError, ProviderError),
        (ProviderConnectionError, ProviderError),
        (ResponseValidationError, ProviderError),
    ],
)
def test_hierarchy(cls: type, parent: type) -> None:
    """Each error sits under the parent the module docstring draws."""
    assert issubclass(cls, parent)


def test_value_errors() -> None:
    """Configuration and input errors are also ValueErrors (what callers often catch)."""
    assert issubclass(ConfigurationError, ValueError)
    assert issubclass(InputValidationError, ValueError)


def test_retryable_flags() -> None:
    """Only transient provider errors are marked retryable."""
    assert RateLimitError("x").retryable
    assert ServerError("x").retryable
    assert ProviderTimeoutError("x").retryable
    assert ProviderConnectionError("x").retryable
    assert ResponseValidationError("x", truncated=True).retryable
    assert not ResponseValidationError("x").retryable
    for cls in (AuthenticationError, QuotaExhaustedError, BadRequestError, ContextLengthError):
        assert not cls("x").retryable


def test_message_carries_provider_and_details() -> None:
    """str() names the provider, status, code and request id."""
    error = RateLimitError(
        "slow down",
        provider="openai",
        code="rate_limit_exceeded",
        request_id="req_1",
        retry_after=2.5,
    )
    text = str(error)
    assert text.startswith("[openai] slow down")
    assert "status 429" in text and "rate_limit_exceeded" in text and "req_1" in text
    assert error.retry_after == 2.5


def test_failed_indices_are_reported() -> None:
    """with_failed_indices() records the inputs without a vector and shows them."""
    error = ServerError("down", provider="p").with_failed_indices([5, 1, 1, 3])
    assert error.failed_indices == (1, 3, 5)
    assert "1, 3, 5" in str(error)
    many = ServerError("down").with_failed_indices(range(100))
    assert "(100)" in str(many)


def test_input_and_config_errors_name_their_place() -> None:
    """InputValidationError names the index, ConfigurationError the field."""
    assert InputValidationError("empty", index=3).index == 3
    assert "input 3" in str(InputValidationError("empty", index=3))
    assert ConfigurationError("bad", field="retry.max_retries").field == "retry.max_retries"


def test_redact() -> None:
    """redact() removes every known secret from a text."""
    assert redact("key sk-abc123 again sk-abc123", ["sk-abc123"]) == "key *** again ***"
    assert redact("nothing", [None, ""]) == "nothing"
