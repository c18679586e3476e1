"""Voyage AI embeddings: ``POST {base}/embeddings`` (sans-IO codec).

The request is the one voyageai-python sends (its explicit ``null`` fields included)::

    {"input": [...], "model": "voyage-3.5", "input_type": "query", "truncation": false,
     "output_dtype": null, "output_dimension": null, "encoding_format": "base64"}

``input_type`` is ``query`` for :meth:`~embedguard.EmbeddingClient.embed_query` and
``document`` for ``embed``; ``truncation`` is false, so an over-long input is a
:class:`~embedguard.ContextLengthError` instead of a silently cut vector (``extra_body=
{"truncation": True}`` restores Voyage's default). The response is OpenAI-shaped
(``data[i].embedding``, ``index``, ``usage.total_tokens`` only): float32 base64 bodies take the
shared fast path, compact dtypes are decoded by :mod:`._voyage_compact`. Errors are
``{"detail": "..."}`` (FastAPI): a 400 naming an unsupported model is a
:class:`~embedguard.ModelNotFoundError`, one about too many tokens (in an input or in the
batch) a :class:`~embedguard.ContextLengthError`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
from pydantic import SecretStr

from embedguard.core.config import ProviderProfile
from embedguard.core.errors import (
    BadRequestError,
    ConfigurationError,
    ContextLengthError,
    InputValidationError,
    ModelNotFoundError,
    ProviderError,
)
from embedguard.core.ratelimit import bound_count

from ._codec import resolve_base_url, resolve_key
from ._errors import error_from_response
from ._json import DecodedBody, JsonCodec, decode_openai_body
from ._voyage_compact import decode_compact_body
from .base import RateLimitInfo
from .headers import openai_rate_limit, rate_limit_or_none

__all__ = [
    "VOYAGE_MODELS",
    "VoyageCodec",
    "VoyageModel",
    "voyage_error",
    "voyage_rate_limit",
]

DEFAULT_BASE_URL = "https://api.voyageai.com/v1"
ATLAS_BASE_URL = "https://ai.mongodb.com/v1"
"""Where MongoDB Atlas model keys (``al-...``) are served, as voyageai-python routes them."""


class VoyageModel(NamedTuple):
    """What Voyage documents for one model.

    Attributes:
        size: The native vector size (``output_dimension: null``).
        max_tokens_per_request: Tokens allowed in one request's whole input list.
        max_tokens_per_input: The context length of one input.
        flexible: Matryoshka sizes 256/512/1024/2048 and the compact dtypes are offered.
    """

    size: int
    max_tokens_per_request: int
    max_tokens_per_input: int
    flexible: bool = False


# docs.voyageai.com/reference/embeddings-api (request caps: 1M for the -lite models, 320K for
# voyage-4 / 3.5 / 2, 120K for the large, code, finance and law models; older docs give voyage-3
# 320K and voyage-3-lite 1M); context lengths and sizes from the models page.
VOYAGE_MODELS: Mapping[str, VoyageModel] = {
    "voyage-4-large": VoyageModel(1024, 120_000, 32_000, flexible=True),
    "voyage-4": VoyageModel(1024, 320_000, 32_000, flexible=True),
    "voyage-4-lite": VoyageModel(1024, 1_000_000, 32_000, flexible=True),
    "voyage-3.5": VoyageModel(1024, 320_000, 32_000, flexible=True),
    "voyage-3.5-lite": VoyageModel(1024, 1_000_000, 32_000, flexible=True),
    "voyage-3-large": VoyageModel(1024, 120_000, 32_000, flexible=True),
    "voyage-code-3": VoyageModel(1024, 120_000, 32_000, flexible=True),
    "voyage-3": VoyageModel(1024, 320_000, 32_000),
    "voyage-3-lite": VoyageModel(512, 1_000_000, 32_000),
    "voyage-finance-2": VoyageModel(1024, 120_000, 32_000),
    "voyage-multilingual-2": VoyageModel(1024, 120_000, 32_000),
    "voyage-law-2": VoyageModel(1024, 120_000, 16_000),
    "voyage-code-2": VoyageModel(1536, 120_000, 16_000),
    "voyage-large-2-instruct": VoyageModel(1024, 120_000, 16_000),
    "voyage-large-2": VoyageModel(1536, 120_000, 16_000),
    "voyage-2": VoyageModel(1024, 320_000, 4_000),
}
"""The models embedguard knows; any other name is sent as is, with the most cautious limits."""

UNKNOWN_MODEL = VoyageModel(0, 120_000, 32_000)
"""The limits assumed for a model not in :data:`VOYAGE_MODELS` (its size is learned)."""

FLEXIBLE_SIZES = (256, 512, 1024, 2048)
"""The ``output_dimension`` values the flexible models accept."""

_WIRE_DTYPES = {"float32": None, "int8": "int8", "uint8": "uint8", "binary": "binary",
                "ubinary": "ubinary"}  # fmt: skip
_INPUT_TYPES = frozenset({"query", "document"})
# Sent as null: Voyage embeds the text without a retrieval prompt. A profile spells it "null"
# (in profiles, as in TOML and the environment, the string "none" means the field is unset).
_NO_INPUT_TYPE = frozenset({"null", "none"})
# Voyage's 400 texts (FastAPI "detail"), as recorded or quoted in public issue threads.
_UNSUPPORTED_MODEL = re.compile(r"^Model \S+ is not supported")
_ITEM_TOO_LONG = re.compile(r"examples? at ind(?:ex|ices|exes) (\d{1,9})\b.*too many tokens")
_TOO_LONG = re.compile(
    r"max allowed tokens per submitted batch|does not fit into the model's context window"
    r"|too many tokens",
    re.IGNORECASE,
)
# The free-tier warning header: "... will have reduced rate limits of 3 RPM and 10K TPM. ..."
_WARNING = re.compile(
    r"rate limits? of (\d{1,9}(?:\.\d{1,6})?)\s*([KM]?)\s*RPM and (\d{1,9}(?:\.\d{1,6})?)\s*([KM]?)"
    r"\s*TPM",
    re.IGNORECASE,
)
_SCALE = {"": 1, "K": 1_000, "M": 1_000_000}


def voyage_model(model: str) -> VoyageModel:
    """The documented limits of ``model`` (:data:`UNKNOWN_MODEL` when it is not known)."""
    return VOYAGE_MODELS.get(model, UNKNOWN_MODEL)


def _scaled(number: str, unit: str) -> int | None:
    return bound_count(round(float(number) * _SCALE[unit.upper()]))


def voyage_rate_limit(headers: Mapping[str, str]) -> RateLimitInfo | None:
    """The limits a Voyage response states (lower-cased ``headers``), or ``None``.

    Voyage sends no ``x-ratelimit-*`` headers; an account without a payment method gets an
    ``x-api-warning`` saying it has "reduced rate limits of 3 RPM and 10K TPM", which is read
    as those limits. OpenAI-style ``x-ratelimit-*`` headers (a proxy's) are read when present.
    """
    stated = openai_rate_limit(headers)
    if stated is not None:
        return stated
    match = _WARNING.search(headers.get("x-api-warning", "")[:2000])
    if match is None:
        return None
    return rate_limit_or_none(
        RateLimitInfo(
            limit_requests=_scaled(match[1], match[2]), limit_tokens=_scaled(match[3], match[4])
        )
    )


def voyage_error(
    provider: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    secrets: tuple[str | None, ...] = (),
    url: str | None = None,
) -> ProviderError:
    """The typed error of a failed Voyage response (see :func:`error_from_response`).

    Voyage answers 400 where others answer 404 or name a code: "Model X is not supported" is a
    :class:`ModelNotFoundError`; "the example at index 3 ... has too many tokens" and "the max
    allowed tokens per submitted batch is 120000" are :class:`ContextLengthError` (with the
    index, when named), so the client splits an over-long batch.
    """
    error = error_from_response(provider, status, headers, body, secrets=secrets, url=url)
    if type(error) is not BadRequestError:
        return error
    kwargs: dict[str, Any] = {"provider": error.provider, "status_code": error.status_code,
                              "code": error.code, "request_id": error.request_id}  # fmt: skip
    text = error.message
    if _UNSUPPORTED_MODEL.search(text):
        return ModelNotFoundError(text, **kwargs)
    item = _ITEM_TOO_LONG.search(text)
    if item is not None or _TOO_LONG.search(text):
        return ContextLengthError(text, index=None if item is None else int(item[1]), **kwargs)
    return error


def _read_key_file(profile: ProviderProfile, path: str) -> SecretStr:
    """The key held in the file ``VOYAGE_API_KEY_PATH`` names (never shown in errors)."""
    try:
        key = Path(path).read_text("utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"VOYAGE_API_KEY_PATH names a file that cannot be read ({type(exc).__name__}): {path}",
            field="api_key",
            provider=profile.name,
        ) from None
    if not key:
        raise ConfigurationError(
            f"the file VOYAGE_API_KEY_PATH names is empty: {path}",
            field="api_key",
            provider=profile.name,
        )
    return SecretStr(key)


def voyage_key(
    profile: ProviderProfile, api_key: str | None, environ: Mapping[str, str]
) -> SecretStr:
    """The key: ``api_key``, the profile's ``api_key_env``, the file ``VOYAGE_API_KEY_PATH``
    names, else ``VOYAGE_API_KEY`` (the file wins over the variable, as in voyageai-python).

    Raises:
        ConfigurationError: No key was found, or the key file cannot be read or is empty.
    """
    named = (api_key is not None and api_key.strip()) or profile.api_key_env
    path = environ.get("VOYAGE_API_KEY_PATH", "").strip()
    if path and not named:
        return _read_key_file(profile, path)
    key = resolve_key(profile, api_key, environ, "VOYAGE_API_KEY", required=True)
    assert key is not None  # required=True raises instead
    return key


def _output_dimension(profile: ProviderProfile, spec: VoyageModel | None) -> int | None:
    """``output_dimension`` to send: ``None`` (null) for the native size."""
    wanted = profile.dimensions
    if wanted is None:
        return None
    if spec is None:
        return wanted  # a model we do not know: Voyage refuses a size it cannot produce (400)
    if wanted == spec.size:
        return None
    if spec.flexible and wanted in FLEXIBLE_SIZES:
        return wanted
    allowed = "256, 512, 1024 or 2048" if spec.flexible else f"exactly {spec.size}"
    raise ConfigurationError(
        f"{profile.model} produces {allowed} dimensions, not {wanted}",
        field="dimensions",
        provider=profile.name,
    )


def _check_input_type(profile: ProviderProfile, field: str) -> None:
    value = getattr(profile, field)
    if value is not None and value not in _INPUT_TYPES | _NO_INPUT_TYPE:
        raise ConfigurationError(
            f"Voyage input types are 'query', 'document' or 'null', not {value!r}",
            field=field,
            provider=profile.name,
        )


class VoyageCodec(JsonCodec):
    """Codec for the Voyage AI embeddings API.

    Key from ``api_key``, the profile's ``api_key_env``, the file named by
    ``VOYAGE_API_KEY_PATH`` or ``VOYAGE_API_KEY``; base URL from the profile, ``VOYAGE_BASE_URL``,
    else ``https://api.voyageai.com/v1`` (``https://ai.mongodb.com/v1`` for an Atlas ``al-``
    key). ``embed_query`` sends ``input_type: "query"``, ``embed`` ``"document"``; the input
    type ``"null"`` (per call also ``"none"``) sends ``null``: no retrieval prompt.
    ``dimensions`` other than the native size is sent as ``output_dimension`` (256/512/1024/2048
    on the flexible models: the voyage-4 and 3.5 families, voyage-3-large, voyage-code-3); a
    compact ``dtype`` is sent as ``output_dtype`` and offered on those models only. Vectors
    come as base64 unless the profile's ``encoding_format`` is ``"float"`` (JSON numbers).

    Example::

        codec = VoyageCodec(profiles.voyage(), api_key="pa-...")
        codec.build_request(["what is a vector?"], "query").url
        # 'https://api.voyageai.com/v1/embeddings'
    """

    provider: ClassVar[str] = "voyage"
    input_types: ClassVar[Mapping[str, str]] = {"query": "query", "document": "document"}
    dtypes: ClassVar[frozenset[str]] = frozenset(_WIRE_DTYPES)
    __slots__ = ()

    def __init__(
        self,
        profile: ProviderProfile,
        *,
        api_key: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        environ = os.environ if environ is None else environ
        spec = VOYAGE_MODELS.get(profile.model)
        if profile.dtype != "float32" and spec is not None and not spec.flexible:
            raise ConfigurationError(
                f"{profile.model} returns float vectors only, not {profile.dtype}; compact "
                "types need voyage-4, voyage-3.5, voyage-3-large or voyage-code-3 models",
                field="dtype",
                provider=profile.name,
            )
        for field in ("query_input_type", "document_input_type"):
            _check_input_type(profile, field)
        key = voyage_key(profile, api_key, environ)
        atlas = key.get_secret_value().startswith("al-")
        default = ATLAS_BASE_URL if atlas else DEFAULT_BASE_URL
        base = resolve_base_url(profile, environ, "VOYAGE_BASE_URL", default)
        fields: dict[str, Any] = {
            "model": profile.model,
            "truncation": False,
            "output_dtype": _WIRE_DTYPES[profile.dtype],
            "output_dimension": _output_dimension(profile, spec),
            "encoding_format": "base64" if profile.encoding_format == "base64" else None,
        }
        super().__init__(profile, url=f"{base}/embeddings", fields=fields, key=key)

    def _body(self, inputs: list[str], input_type: str | None) -> dict[str, Any]:
        """``input``, ``model``, ``input_type`` (``"null"`` or ``"none"``: null), then the rest.

        Raises:
            InputValidationError: A per-call input type Voyage does not take.
        """
        if input_type in _NO_INPUT_TYPE:
            input_type = None
        elif input_type not in _INPUT_TYPES:
            raise InputValidationError(
                f"Voyage input types are 'query', 'document' or 'null', not {input_type!r}",
                provider=self.name,
            )
        return {"input": inputs, "model": self.model, "input_type": input_type, **self._fields}

    def _decode_body(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        *,
        n_inputs: int,
        dimensions: int | None,
        out: np.ndarray | None,
    ) -> DecodedBody:
        secrets = self._secrets()
        if self.dtype == "float32":
            decoded = decode_openai_body(
                self.name, status, headers, body, n_inputs=n_inputs, dimensions=dimensions,
                secrets=secrets, out=out,
            )  # fmt: skip
        else:
            decoded = decode_compact_body(
                self.name, status, headers, body, dtype=self.dtype, n_inputs=n_inputs,
                dimensions=dimensions, secrets=secrets, out=out,
            )  # fmt: skip
        if decoded.prompt_tokens == 0:  # Voyage has answered total_tokens 0: unknown, not free
            return decoded._replace(prompt_tokens=None)
        return decoded

    def _error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """Voyage's ``{"detail": ...}`` bodies (see :func:`voyage_error`)."""
        return voyage_error(self.name, status, headers, body, secrets=self._secrets(), url=self.url)

    def _rate_limit(self, headers: Mapping[str, str]) -> RateLimitInfo | None:
        """The free tier's ``x-api-warning`` (see :func:`voyage_rate_limit`)."""
        return voyage_rate_limit(headers)
