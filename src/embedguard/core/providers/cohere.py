"""Cohere embeddings: ``POST {base}/v2/embed`` (sans-IO codec).

The body carries ``model``, ``texts``, ``input_type`` (``search_query`` for queries,
``search_document`` for documents, or a type given per call such as ``classification``),
``embedding_types`` (the profile's dtype under Cohere's name), ``truncate: "NONE"`` (an input
over the model's limit is an error, never silently cut) and ``output_dimension`` when an
embed-v4 profile asks for a size other than 1536. Responses, errors and headers are read by
:mod:`._cohere`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from pydantic import SecretStr

from embedguard.core.config import ProviderProfile
from embedguard.core.errors import ConfigurationError, InputValidationError, ProviderError

from ._codec import NativeSize, check_native_dimensions, resolve_base_url, resolve_key
from ._cohere import EMBEDDING_TYPES, cohere_error, cohere_rate_limit, decode_cohere_body
from ._json import DecodedBody, JsonCodec
from .base import RateLimitInfo

__all__ = [
    "COHERE_NATIVE_DIMENSIONS",
    "DEFAULT_BASE_URL",
    "INPUT_TYPES",
    "V4_DIMENSIONS",
    "CohereCodec",
    "cohere_family",
    "cohere_max_input_tokens",
]

DEFAULT_BASE_URL = "https://api.cohere.com"

COHERE_NATIVE_DIMENSIONS: Mapping[str, NativeSize] = {
    "embed-v4.0": NativeSize(1536, 1536),
    "embed-english-v3.0": NativeSize(1024, 1024, fixed=True),
    "embed-multilingual-v3.0": NativeSize(1024, 1024, fixed=True),
    "embed-english-light-v3.0": NativeSize(384, 384, fixed=True),
    "embed-multilingual-light-v3.0": NativeSize(384, 384, fixed=True),
}
"""Native vector size of each known model; the v3 models cannot change theirs."""

V4_DIMENSIONS = (256, 512, 1024, 1536)
"""The ``output_dimension`` values embed-v4 accepts."""

_API_SUFFIX = re.compile(r"/v[12]/?$")
INPUT_TYPES = ("search_document", "search_query", "classification", "clustering", "image")
"""The ``input_type`` values Cohere's ``/v2/embed`` takes."""
_OLD_MODEL = re.compile(r"-v[123]\.\d+$")  # embed-*-v2.0 / v3.0: 512-token inputs


def cohere_family(model: str) -> str:
    """The model whose sizes apply: ``embed-v4.0`` for any ``embed-v4*`` name, else ``model``."""
    return "embed-v4.0" if model.startswith("embed-v4") else model


def cohere_max_input_tokens(model: str) -> int:
    """Tokens one input may hold: 512 for the v2/v3 models, 128,000 for embed-v4 and newer."""
    return 512 if _OLD_MODEL.search(model) else 128_000


def _key(profile: ProviderProfile, api_key: str | None, environ: Mapping[str, str]) -> SecretStr:
    """``api_key``, else the profile's ``api_key_env``, else ``CO_API_KEY``, else
    ``COHERE_API_KEY`` (the SDK's order)."""
    if profile.api_key_env is not None:
        found = resolve_key(profile, api_key, environ, None, required=True)
        assert found is not None  # required=True raised otherwise
        return found
    for name in ("CO_API_KEY", "COHERE_API_KEY"):
        key = resolve_key(profile, api_key, environ, name, required=False)
        if key is not None:
            return key
    raise ConfigurationError(
        "no API key for the cohere provider; set the CO_API_KEY (or COHERE_API_KEY) "
        "environment variable or pass api_key",
        field="api_key",
        provider=profile.name,
    )


def _output_dimension(profile: ProviderProfile) -> int | None:
    family = cohere_family(profile.model)
    wanted = check_native_dimensions(profile, COHERE_NATIVE_DIMENSIONS, family)
    if wanted is not None and family == "embed-v4.0" and wanted not in V4_DIMENSIONS:
        raise ConfigurationError(
            f"{profile.model} produces 256, 512, 1024 or 1536 dimensions, not {wanted}",
            field="dimensions",
            provider=profile.name,
        )
    return wanted


class CohereCodec(JsonCodec):
    """Codec for Cohere's v2 embed API.

    Key from ``api_key``, the profile's ``api_key_env``, ``CO_API_KEY`` or ``COHERE_API_KEY``;
    base URL from the profile, ``CO_API_URL`` (as the Cohere SDK reads it; a trailing ``/v1``
    or ``/v2`` is dropped) or ``https://api.cohere.com``. Every ``dtype`` is offered: float32
    asks for ``float``, the compact ones for Cohere's type of the same name. The profile's
    ``extra_body`` may set Cohere's other fields (``truncate: "END"``, ``max_tokens``,
    ``priority``...), but not ``texts`` or ``embedding_types`` (``dtype`` chooses the type).

    Example::

        codec = CohereCodec(profiles.cohere(), api_key="...")
        request = codec.build_request(["what is a vector?"], kind="query")
        request.url  # 'https://api.cohere.com/v2/embed'
        # body: {"model": "embed-v4.0", "texts": [...], "input_type": "search_query",
        #        "embedding_types": ["float"], "truncate": "NONE"}
    """

    provider: ClassVar[str] = "cohere"
    input_types: ClassVar[Mapping[str, str]] = {
        "query": "search_query",
        "document": "search_document",
    }
    dtypes: ClassVar[frozenset[str]] = frozenset(EMBEDDING_TYPES)
    __slots__ = ()

    def __init__(
        self,
        profile: ProviderProfile,
        *,
        api_key: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        environ = os.environ if environ is None else environ
        refused = sorted({"texts", "embedding_types"} & set(profile.extra_body))
        if refused:
            raise ConfigurationError(
                f"extra_body must not set {' or '.join(refused)} (the codec sends the texts, "
                "and the profile's dtype chooses the embedding type)",
                field="extra_body",
                provider=profile.name,
            )
        key = _key(profile, api_key, environ)
        base = _API_SUFFIX.sub(
            "", resolve_base_url(profile, environ, "CO_API_URL", DEFAULT_BASE_URL)
        )
        fields: dict[str, Any] = {
            "embedding_types": [EMBEDDING_TYPES.get(profile.dtype, "float")],
            "truncate": "NONE",
        }
        dimension = _output_dimension(profile)
        if dimension is not None:
            fields["output_dimension"] = dimension
        super().__init__(profile, url=f"{base}/v2/embed", fields=fields, key=key)

    def _body(self, inputs: list[str], input_type: str | None) -> dict[str, Any]:
        """``model``, ``texts``, ``input_type`` (``search_document`` when none is known: v3
        and newer models require one), then the other fields.

        Raises:
            InputValidationError: An input type Cohere does not take (before sending).
        """
        if input_type is not None and input_type not in INPUT_TYPES:
            raise InputValidationError(
                f"Cohere input types are {', '.join(INPUT_TYPES)}; not {input_type!r}",
                provider=self.name,
            )
        return {
            "model": self.model,
            "texts": inputs,
            "input_type": input_type or "search_document",
            **self._fields,
        }

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
        return decode_cohere_body(
            self.name, status, headers, body, dtype=self.dtype, n_inputs=n_inputs,
            dimensions=dimensions, secrets=self._secrets(), out=out,
        )  # fmt: skip

    def _error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """Cohere's error bodies (see :func:`~embedguard.core.providers._cohere.cohere_error`)."""
        return cohere_error(self.name, status, headers, body, secrets=self._secrets(), url=self.url)

    def _rate_limit(self, headers: Mapping[str, str]) -> RateLimitInfo | None:
        """Cohere's trial-key headers (see :func:`cohere_rate_limit`)."""
        return cohere_rate_limit(headers)
