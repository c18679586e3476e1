"""Google's Gemini API: ``POST {base}/v1beta/models/{model}:batchEmbedContents`` (sans-IO codec).

Always the batch endpoint, even for one text (as google-genai sends it), with the model
repeated in every entry::

    {"requests": [{"model": "models/gemini-embedding-001",
                   "content": {"parts": [{"text": "..."}]},
                   "taskType": "RETRIEVAL_DOCUMENT", "outputDimensionality": 768}, ...]}
    -> {"embeddings": [{"values": [...]}, ...]}            (request order, no index)

Errors are Google RPC envelopes, classified by :mod:`._google_rpc`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import quote

import numpy as np
from pydantic import SecretStr

from embedguard.core.config import ProviderProfile
from embedguard.core.errors import (
    ConfigurationError,
    InputValidationError,
    ProviderError,
    ResponseValidationError,
)

from ._codec import NativeSize, check_native_dimensions, resolve_base_url, resolve_key
from ._decode import decode_float_rows, load_json_object
from ._google_rpc import google_rpc_error
from ._json import DecodedBody, JsonCodec, token_count
from .base import HttpRequest
from .headers import request_id_of

__all__ = [
    "DEFAULT_BASE_URL",
    "GEMINI_MAX_INPUT_TOKENS",
    "GEMINI_NATIVE_DIMENSIONS",
    "GEMINI_TASK_TYPES",
    "GeminiCodec",
    "gemini_model_id",
]

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
DEFAULT_API_VERSION = "v1beta"
KEY_VARIABLES = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
BASE_URL_VARIABLE = "GOOGLE_GEMINI_BASE_URL"

GEMINI_NATIVE_DIMENSIONS: Mapping[str, NativeSize] = {
    "gemini-embedding-001": NativeSize(3072, 3072),
    "text-embedding-004": NativeSize(768, 768),
    "embedding-001": NativeSize(768, 768, fixed=True),
}
"""Native vector sizes; smaller ones are asked for with ``outputDimensionality`` (Matryoshka).

gemini-embedding-001 accepts 128 to 3072 (768, 1536 and 3072 recommended); below 3072 its
vectors are **not** unit-length (measured: about 0.58 at 768). The legacy embedding-001 takes
no ``outputDimensionality``. Other models (gemini-embedding-2...) get the profile's
``dimensions`` as ``outputDimensionality`` whenever it is set.
"""

GEMINI_MAX_INPUT_TOKENS: Mapping[str, int] = {
    "gemini-embedding-001": 2048,
    "gemini-embedding-2": 8192,
    "gemini-embedding-2-preview": 8192,
    "text-embedding-004": 2048,
    "embedding-001": 2048,
}
"""Input tokens per text, by model (Google's model pages; 2048 is assumed for others)."""

GEMINI_TASK_TYPES = frozenset(
    {
        "RETRIEVAL_QUERY",
        "RETRIEVAL_DOCUMENT",
        "SEMANTIC_SIMILARITY",
        "CLASSIFICATION",
        "CLUSTERING",
        "QUESTION_ANSWERING",
        "FACT_VERIFICATION",
        "CODE_RETRIEVAL_QUERY",
        "TASK_TYPE_UNSPECIFIED",
    }
)
"""The API's ``TaskType`` values; an input type is matched case-blind and sent upper-case."""

_MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# A base URL that already names an API version (".../v1", ".../v1beta") is used as is.
_VERSIONED = re.compile(r".*/v\d+(?:alpha|beta)?\d*")


def gemini_model_id(model: str) -> str:
    """The model id without Google's ``models/`` resource prefix (``models/x`` -> ``x``).

    Raises:
        ValueError: What is left is not a model id (empty, or holds ``/``, ``:``, spaces...).
    """
    model_id = model.strip().removeprefix("models/")
    if not _MODEL_ID.fullmatch(model_id):
        raise ValueError(f"not a Gemini model id: {model!r}")
    return model_id


def _task_type(value: str, *, provider: str, field: str | None = None) -> str:
    """``value`` as the API spells it, or a typed error naming the accepted values."""
    upper = value.strip().upper()
    if upper in GEMINI_TASK_TYPES:
        return upper
    accepted = ", ".join(sorted(GEMINI_TASK_TYPES))
    message = f"{value!r} is not a Gemini task type; use one of {accepted}"
    if field is not None:
        raise ConfigurationError(message, field=field, provider=provider)
    raise InputValidationError(message, provider=provider)


def _key(profile: ProviderProfile, api_key: str | None, environ: Mapping[str, str]) -> SecretStr:
    """``api_key``, else the profile's variable, else GOOGLE_API_KEY, else GEMINI_API_KEY."""
    default = next((name for name in KEY_VARIABLES if environ.get(name, "").strip()), None)
    key = resolve_key(profile, api_key, environ, default, required=False)
    if key is None:
        names = profile.api_key_env or " or ".join(KEY_VARIABLES)
        raise ConfigurationError(
            f"no API key for the gemini provider; set {names} or pass api_key",
            field="api_key",
            provider=profile.name,
        )
    return key


class GeminiCodec(JsonCodec):
    """Codec for the Gemini API's ``batchEmbedContents``.

    Key from ``api_key``, the profile's ``api_key_env``, ``GOOGLE_API_KEY`` or
    ``GEMINI_API_KEY`` (in that order, as google-genai reads them), sent as ``x-goog-api-key``:
    never as ``?key=``, since URLs end up in logs. Base URL from the profile,
    ``GOOGLE_GEMINI_BASE_URL`` or ``https://generativelanguage.googleapis.com``; ``/v1beta`` is
    added unless the base already ends with a version (``.../v1``).

    ``embed`` sends ``taskType: RETRIEVAL_DOCUMENT`` and ``embed_query`` ``RETRIEVAL_QUERY``
    (profile overrides: ``document_input_type`` / ``query_input_type``); a per-call
    ``input_type`` is any Gemini task type (``"CLASSIFICATION"``, case-blind).
    ``outputDimensionality`` is sent when the profile asks a known model for less than its
    native size, and for any size it names for a model not in
    :data:`GEMINI_NATIVE_DIMENSIONS`. The profile's
    ``extra_body`` fields go into every entry of ``requests`` (where Gemini's options live).

    Responses carry no index: ``embeddings[i]`` is text ``i``, so the count must match
    exactly. Usage is read from ``usageMetadata.promptTokenCount`` when the model reports it
    (gemini-embedding-2); gemini-embedding-001 reports none, and the client then counts its
    own estimate. Vectors are returned as sent: gemini-embedding-001 below 3072 dimensions is
    not unit-length (normalise before a dot-product index; cosine is unaffected).
    """

    provider: ClassVar[str] = "gemini"
    input_types: ClassVar[Mapping[str, str]] = {
        "query": "RETRIEVAL_QUERY",
        "document": "RETRIEVAL_DOCUMENT",
    }
    __slots__ = ("_model_ref",)

    def __init__(
        self,
        profile: ProviderProfile,
        *,
        api_key: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        environ = os.environ if environ is None else environ
        try:
            model = gemini_model_id(profile.model)
        except ValueError as exc:
            raise ConfigurationError(str(exc), field="model", provider=profile.name) from None
        kinds = {
            kind: _task_type(value, provider=profile.name, field=f"{kind}_input_type")
            for kind in ("query", "document")
            if (value := profile.input_type_for(kind)) is not None
        }
        key = _key(profile, api_key, environ)
        base = resolve_base_url(profile, environ, BASE_URL_VARIABLE, DEFAULT_BASE_URL)
        if not _VERSIONED.fullmatch(base):
            base = f"{base}/{DEFAULT_API_VERSION}"
        fields: dict[str, Any] = {}
        size = check_native_dimensions(profile, GEMINI_NATIVE_DIMENSIONS, model)
        if size is None and model not in GEMINI_NATIVE_DIMENSIONS:
            size = profile.dimensions  # Gemini's newer models are Matryoshka: ask for it
        if size is not None:
            fields["outputDimensionality"] = size
        url = f"{base}/models/{quote(model, safe='')}:batchEmbedContents"
        super().__init__(profile, url=url, fields=fields, key=key)
        self._kinds.update(kinds)  # the profile's input types, spelt as the API wants them
        self._model_ref = f"models/{model}"

    # -- request ------------------------------------------------------------------------------
    def _auth_headers(self) -> dict[str, str]:
        assert self._key is not None  # the constructor refuses to go on without one
        return {"x-goog-api-key": self._key.get_secret_value()}

    def build_request(self, texts: Sequence[str], kind: str = "document") -> HttpRequest:
        """The ``batchEmbedContents`` POST for ``texts`` as ``kind`` (see the class docstring).

        Raises:
            InputValidationError: An item is not a ``str``, or ``kind`` is not a task type.
        """
        if kind not in ("query", "document"):
            kind = _task_type(kind, provider=self.name)
        return super().build_request(texts, kind)

    def _body(self, inputs: list[str], input_type: str | None) -> dict[str, Any]:
        head: dict[str, Any] = {"model": self._model_ref}
        tail: dict[str, Any] = {} if input_type is None else {"taskType": input_type}
        tail.update(self._fields)
        return {
            "requests": [{**head, "content": {"parts": [{"text": text}]}, **tail}
                         for text in inputs]
        }  # fmt: skip

    # -- response -----------------------------------------------------------------------------
    def _error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        return google_rpc_error(
            self.name, status, headers, body, secrets=self._secrets(), url=self.url
        )

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
        from ._typed import decode_gemini_floats  # msgspec is imported at the first reply

        typed = decode_gemini_floats(body, n_inputs=n_inputs, dimensions=dimensions, out=out)
        if typed is not None:
            return typed
        secrets = self._secrets()
        try:
            doc = load_json_object(self.name, status, headers, body, secrets=secrets)
        except ResponseValidationError:
            raise
        except ProviderError:  # an error envelope with a 2xx status: classify it as Google's
            raise self._error(status, headers, body) from None
        items = doc.get("embeddings")
        request_id = request_id_of(headers, secrets)
        if not isinstance(items, list):
            raise ResponseValidationError(
                f"'embeddings' is {type(items).__name__}, not a list", provider=self.name,
                status_code=status, request_id=request_id,
            )  # fmt: skip
        rows = []
        for position, item in enumerate(items):
            values = item.get("values") if isinstance(item, dict) else None
            if not isinstance(values, list):
                raise ResponseValidationError(
                    f"embedding {position} has no 'values' list", provider=self.name,
                    status_code=status, request_id=request_id,
                )  # fmt: skip
            rows.append(values)
        vectors = decode_float_rows(
            rows, n_inputs=n_inputs, dimensions=dimensions, provider=self.name,
            status_code=status, request_id=request_id, out=out,
        )  # fmt: skip
        return DecodedBody(vectors, _prompt_tokens(doc), None)


def _prompt_tokens(doc: Mapping[str, Any]) -> int | None:
    """``usageMetadata.promptTokenCount`` (gemini-embedding-2), else ``None``."""
    usage = doc.get("usageMetadata")
    count = usage.get("promptTokenCount") if isinstance(usage, dict) else None
    return token_count(count)
