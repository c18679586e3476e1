"""Shared machinery of the JSON-over-HTTP codecs: key and URL resolution, request assembly and
response parsing (headers are read by :mod:`.headers`)."""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np
import orjson
from pydantic import SecretStr

from embedguard.core.config import ProviderProfile, check_url
from embedguard.core.errors import ConfigurationError, InputValidationError

from ._decode import decode_openai_data, echoed_model, load_json_object, usage_tokens
from ._errors import error_from_response
from .base import EmbeddingResult, HttpRequest, RateLimitInfo
from .headers import lower_headers, openai_rate_limit, request_id_of

__all__ = [
    "JsonCodec",
    "NativeSize",
    "check_native_dimensions",
    "resolve_base_url",
    "resolve_key",
    "user_agent",
]


@functools.cache
def user_agent() -> str:
    """``embedguard/<installed version>`` (``embedguard/0`` when not installed)."""
    try:
        version = importlib.metadata.version("embedguard")
    except importlib.metadata.PackageNotFoundError:
        version = "0"
    return f"embedguard/{version}"


def resolve_key(
    profile: ProviderProfile,
    api_key: str | None,
    environ: Mapping[str, str],
    default_env: str | None,
    *,
    required: bool,
) -> SecretStr | None:
    """The key: ``api_key``, else ``environ[profile.api_key_env or default_env]``.

    Raises:
        ConfigurationError: ``required`` and no non-empty key was found (names the variable).
    """
    if api_key is not None and api_key.strip():
        return SecretStr(api_key.strip())
    env_name = profile.api_key_env or default_env
    value = environ.get(env_name, "").strip() if env_name else ""
    if value:
        return SecretStr(value)
    if required:
        where = f"set the {env_name} environment variable or pass api_key" if env_name else ""
        raise ConfigurationError(
            f"no API key for the {profile.provider} provider; {where}".rstrip("; "),
            field="api_key",
            provider=profile.name,
        )
    return None


def resolve_base_url(
    profile: ProviderProfile,
    environ: Mapping[str, str],
    env_name: str | None,
    default: str | None,
) -> str:
    """The base URL: ``profile.base_url``, else ``environ[env_name]``, else ``default``.

    Raises:
        ConfigurationError: No URL was found, or the variable's value is not an http(s) URL.
    """
    if profile.base_url:
        return profile.base_url.rstrip("/")
    value = environ.get(env_name, "").strip() if env_name else ""
    if value:
        try:
            return check_url(value)
        except ValueError:
            raise ConfigurationError(
                f"{env_name} is not an http(s) URL: {value!r}",
                field="base_url",
                provider=profile.name,
            ) from None
    if default is None:
        hint = f" or set {env_name}" if env_name else ""
        raise ConfigurationError(
            f"the {profile.provider} provider needs a base URL; set profile.base_url{hint}",
            field="base_url",
            provider=profile.name,
        )
    return default


class NativeSize(NamedTuple):
    """A model's native vector size, the largest it can produce, and whether it is fixed."""

    size: int
    maximum: int
    fixed: bool = False


def check_native_dimensions(
    profile: ProviderProfile, natives: Mapping[str, NativeSize], model_key: str
) -> int | None:
    """The output size to request, or ``None`` when the model's native size is wanted.

    Unknown models never get one (the server would reject it for models that cannot change
    their vector size).

    Raises:
        ConfigurationError: A fixed-size model was asked for another size, or a model was asked
            for more dimensions than it can produce.
    """
    wanted = profile.dimensions
    known = natives.get(model_key)
    if wanted is None or known is None or wanted == known.size:
        return None
    if known.fixed or wanted > known.maximum:
        allowed = f"exactly {known.size}" if known.fixed else f"at most {known.maximum}"
        raise ConfigurationError(
            f"{profile.model} produces {allowed} dimensions, not {wanted}",
            field="dimensions",
            provider=profile.name,
        )
    return wanted


class JsonCodec:
    """A codec that POSTs one JSON body and reads an OpenAI-shaped JSON response.

    Subclasses set the URL, headers and body fields in ``__init__`` and may override
    :meth:`_auth_headers`, :meth:`_vectors`, :meth:`_tokens` and :meth:`_rate_limit`.
    """

    provider: ClassVar[str] = "openai"
    __slots__ = ("_fields", "_headers", "_key", "model", "name", "url")

    def __init__(
        self,
        profile: ProviderProfile,
        *,
        url: str,
        fields: Mapping[str, Any],
        key: SecretStr | None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.name: str = profile.name
        self.model: str = profile.model
        self.url: str = url
        self._key = key
        # extra_body comes last so a caller can override any field the codec sets itself.
        self._fields: dict[str, Any] = {**fields, **profile.extra_body}
        self._headers: dict[str, str] = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": user_agent(),
            **(headers or {}),
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(provider={self.provider!r}, model={self.model!r}, "
            f"url={self.url!r})"
        )

    # -- request ------------------------------------------------------------------------------
    def _auth_headers(self) -> dict[str, str]:
        if self._key is None:
            return {}
        return {"Authorization": f"Bearer {self._key.get_secret_value()}"}

    def _secrets(self) -> tuple[str | None, ...]:
        return (self._key.get_secret_value() if self._key else None,)

    def build_request(self, texts: Sequence[str]) -> HttpRequest:
        """Describe the POST that embeds ``texts`` (raw strings, in order).

        Raises:
            InputValidationError: An item is not a ``str`` (token ids are never sent).
        """
        inputs = list(texts)
        for index, text in enumerate(inputs):
            if not isinstance(text, str):
                raise InputValidationError(
                    f"expected str, got {type(text).__name__}", index=index, provider=self.name
                )
        body = orjson.dumps({"input": inputs, **self._fields})
        headers = {**self._headers, **self._auth_headers()}
        return HttpRequest(method="POST", url=self.url, headers=headers, body=body)

    # -- response -----------------------------------------------------------------------------
    def _vectors(
        self,
        doc: Mapping[str, Any],
        *,
        n_inputs: int,
        dimensions: int | None,
        status: int,
        request_id: str | None,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        return decode_openai_data(
            doc.get("data"),
            n_inputs=n_inputs,
            dimensions=dimensions,
            provider=self.name,
            status_code=status,
            request_id=request_id,
            out=out,
        )

    def _tokens(self, doc: Mapping[str, Any]) -> int | None:
        return usage_tokens(doc)

    def _rate_limit(self, headers: Mapping[str, str]) -> RateLimitInfo | None:
        return openai_rate_limit(headers)

    def parse_response(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        *,
        n_inputs: int,
        dimensions: int | None,
        out: np.ndarray | None = None,
    ) -> EmbeddingResult:
        """Return the validated vectors of a 2xx response; raise the typed error otherwise.

        With ``out`` (float32, ``(n_inputs, dimensions)``) the vectors are decoded into it.

        Raises:
            ProviderError: The subclass for a non-2xx status or an error body.
            ResponseValidationError: A 2xx that is not one finite vector per input.
        """
        lowered = lower_headers(headers)
        secrets = self._secrets()
        if not 200 <= status < 300:
            raise error_from_response(self.name, status, lowered, body, secrets=secrets)
        doc = load_json_object(self.name, status, lowered, body, secrets=secrets)
        vectors = self._vectors(
            doc,
            n_inputs=n_inputs,
            dimensions=dimensions,
            status=status,
            request_id=request_id_of(lowered, secrets),
            out=out,
        )
        return EmbeddingResult(
            vectors=vectors,
            prompt_tokens=self._tokens(doc),
            model=echoed_model(doc),
            rate_limit=self._rate_limit(lowered),
        )
