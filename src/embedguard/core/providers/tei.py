"""Hugging Face Text Embeddings Inference (TEI): ``POST {base}/embed`` (sans-IO codec).

TEI serves one model; its native route takes ``{"inputs": [...], "normalize": true,
"truncate": false, "prompt_name": ...}`` and answers with a bare JSON array of vectors, the input
tokens in the ``x-compute-tokens`` header. ``GET {base}/info`` states the server's limits
(``max_client_batch_size``, ``max_batch_tokens``, ``max_input_length``); the codec describes that
request (:meth:`TEICodec.info_request`) and turns its answer into batching
(:meth:`TEICodec.batching_from_info`), and the client fetches it once before its first call
(:mod:`embedguard.core.send.discover`). TEI's OpenAI-compatible ``/v1/embeddings`` route is served
by the ``openai_compatible`` provider instead.

Errors (``{"error": "...", "error_type": "Validation"|"Tokenizer"|"Empty"|"Overloaded"|"Backend"|
"Unhealthy"}``) map to the typed errors: an input over the model's length or a batch over the
server's size or payload limit is a :class:`~embedguard.ContextLengthError` (the send path
splits a batch of several texts), 424 Backend and 503 Unhealthy are retryable
:class:`~embedguard.ServerError`, 429 Overloaded a :class:`~embedguard.RateLimitError`, a bare
401 an :class:`~embedguard.AuthenticationError`, a 404 (no such route) an
:class:`~embedguard.EndpointNotFoundError`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import orjson

from embedguard.core.config import BatchPolicy, ProviderProfile
from embedguard.core.errors import (
    ConfigurationError,
    ContextLengthError,
    EndpointNotFoundError,
    ProviderError,
    ResponseValidationError,
    ServerError,
)

from ._codec import resolve_base_url, resolve_key, user_agent
from ._decode import decode_float_rows
from ._errors import error_from_response, safe_url
from ._json import DecodedBody, JsonCodec
from .base import HttpRequest, RateLimitInfo
from .headers import int_header, lower_headers, request_id_of

__all__ = ["DEFAULT_BASE_URL", "TEICodec"]

DEFAULT_BASE_URL = "http://localhost:8080"
"""Where TEI's Docker images are usually published (``-p 8080:80``; the bare binary's own
default port is 3000)."""
BASE_URL_ENV = "TEI_BASE_URL"
KEY_ENV = "TEI_API_KEY"

_DEFAULTS = ("default", "provider default")  # sources /info may replace
# /info field -> BatchPolicy field, and the largest value taken as sane.
_INFO_FIELDS = (
    ("max_client_batch_size", "max_inputs", 100_000),
    ("max_batch_tokens", "max_tokens_per_request", 100_000_000),
    ("max_input_length", "max_tokens_per_input", 100_000_000),
)
_BATCH_SIZE = re.compile(r"batch size \d+ > maximum allowed batch size (\d+)")
_TOO_LONG = re.compile(r"must have less than \d+ (?:tokens|characters)")


def _explicit(profile: ProviderProfile, path: str) -> bool:
    return profile.sources().get(path, "default") not in _DEFAULTS


class TEICodec(JsonCodec):
    """Codec for a Text Embeddings Inference server's native ``/embed`` route.

    The base URL is the server's root: ``profile.base_url``, else ``TEI_BASE_URL``, else
    ``http://localhost:8080`` (a URL ending in ``/embed`` is taken as the route itself). The key
    is optional (servers started with ``--api-key``): ``api_key``, else ``TEI_API_KEY`` (or the
    profile's ``api_key_env``); a Hugging Face token is never read implicitly, since this server
    may not be Hugging Face's. Without a key no ``Authorization`` header is sent.

    Input types are TEI's ``prompt_name`` (prompts the served model defines, often ``query`` /
    ``document`` or ``query`` / ``passage``): the profile's ``query_input_type`` /
    ``document_input_type``, or a per-call type; none by default, so the server's default prompt
    applies. Models that take text prefixes instead (E5's ``"query: "``) use the profile's
    ``query_prefix`` / ``document_prefix``. ``truncate`` is sent as ``false`` so that an input
    over the model's length is refused (the client's ``context_policy`` decides, not the
    server), ``normalize`` as ``true``; both can be changed in ``extra_body``. ``dimensions`` is
    sent only when the profile sets it explicitly (Matryoshka models).

    Attributes:
        batch_cap: The inputs per request the server allows, when a refusal named it ("batch
            size 40 > maximum allowed batch size 32"); the client plans later calls with it.
    """

    provider: ClassVar[str] = "tei"
    __slots__ = ("_info_url", "batch_cap")

    def __init__(
        self,
        profile: ProviderProfile,
        *,
        api_key: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        environ = os.environ if environ is None else environ
        base = resolve_base_url(profile, environ, BASE_URL_ENV, DEFAULT_BASE_URL)
        root = base.removesuffix("/embed")
        key = resolve_key(profile, api_key, environ, KEY_ENV, required=False)
        if "inputs" in profile.extra_body:
            raise ConfigurationError(
                "extra_body must not set 'inputs'", field="extra_body", provider=profile.name
            )
        fields: dict[str, Any] = {"normalize": True, "truncate": False}
        if profile.dimensions is not None and _explicit(profile, "dimensions"):
            fields["dimensions"] = profile.dimensions
        super().__init__(profile, url=f"{root}/embed", fields=fields, key=key)
        self._info_url = f"{root}/info"
        self.batch_cap: int | None = None

    # -- request ------------------------------------------------------------------------------
    def _body(self, inputs: list[str], input_type: str | None) -> dict[str, Any]:
        body = {"inputs": inputs, **self._fields}
        if input_type is not None:
            body["prompt_name"] = input_type
        return body

    def info_request(self) -> HttpRequest:
        """Describe ``GET {base}/info``, the server's model and limits."""
        headers = {"Accept": "application/json", "User-Agent": user_agent()}
        return HttpRequest("GET", self._info_url, {**headers, **self._auth_headers()}, b"")

    def batching_from_info(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        profile: ProviderProfile,
    ) -> BatchPolicy:
        """The profile's batching with the limits ``/info`` states, where the profile did not set
        them itself (their source is a default): ``max_client_batch_size`` -> ``max_inputs``,
        ``max_batch_tokens`` -> ``max_tokens_per_request``, ``max_input_length`` ->
        ``max_tokens_per_input`` (kept within the request limit; an explicit per-input limit
        raises a learned request limit instead).

        Raises:
            ProviderError: The reply is an error (the typed error), or it states none of those
                limits as a positive integer (:class:`~embedguard.ResponseValidationError`).
        """
        if not 200 <= status < 300:
            raise self._error(status, headers, body)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            doc = None
        stated: dict[str, int] = {}
        for key, field, largest in _INFO_FIELDS:
            value = doc.get(key) if isinstance(doc, dict) else None
            if type(value) is int and 1 <= value <= largest:
                stated[field] = value
        if not stated:
            raise ResponseValidationError(
                f"{self._info_url} states no limits (max_client_batch_size, max_batch_tokens, "
                "max_input_length)",
                provider=self.name,
                status_code=status,
            )
        values = profile.batching.to_dict()
        for field, value in stated.items():
            if not _explicit(profile, f"batching.{field}"):
                values[field] = value
        if values["max_tokens_per_input"] > values["max_tokens_per_request"]:
            if _explicit(profile, "batching.max_tokens_per_input"):
                values["max_tokens_per_request"] = values["max_tokens_per_input"]
            else:
                values["max_tokens_per_input"] = values["max_tokens_per_request"]
        return BatchPolicy(**values)

    # -- response -----------------------------------------------------------------------------
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
        from ._typed import decode_float_list  # msgspec is imported at the first reply

        typed = decode_float_list(body, n_inputs=n_inputs, dimensions=dimensions, out=out)
        if typed is not None:
            return DecodedBody(typed, int_header(headers, "x-compute-tokens"), None)
        secrets = self._secrets()

        def invalid(message: str, *, truncated: bool = False) -> ResponseValidationError:
            return ResponseValidationError(
                message, truncated=truncated, provider=self.name, status_code=status,
                request_id=request_id_of(headers, secrets),
            )  # fmt: skip

        stripped = body.strip()
        if not stripped:
            raise invalid("empty response body", truncated=True)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            cut_short = stripped[:1] in (b"[", b"{") and exc.pos >= len(body.rstrip())
            raise invalid(
                f"{'truncated JSON' if cut_short else 'non-JSON'} response body",
                truncated=cut_short,
            ) from None
        if isinstance(doc, dict) and doc.get("error"):
            raise error_from_response(self.name, status, headers, body, secrets=secrets)
        if not isinstance(doc, list):
            raise invalid(f"response body is a JSON {type(doc).__name__}, not a list of vectors")
        vectors = decode_float_rows(
            doc, n_inputs=n_inputs, dimensions=dimensions, provider=self.name,
            status_code=status, request_id=request_id_of(headers, secrets), out=out,
        )  # fmt: skip
        return DecodedBody(vectors, int_header(headers, "x-compute-tokens"), None)

    def _rate_limit(self, headers: Mapping[str, str]) -> RateLimitInfo | None:
        return None  # TEI states no rate limits (a 429 means its queue is full)

    def _error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """The typed error for a TEI error reply (see the module docstring)."""
        secrets = self._secrets()
        error = error_from_response(
            self.name, status, lower_headers(headers), body, secrets=secrets, url=self.url
        )
        message = error.message
        kwargs: dict[str, Any] = {
            "provider": self.name, "status_code": status, "code": error.code,
            "request_id": error.request_id,
        }  # fmt: skip
        if status == 404:
            shown = safe_url(self.url, secrets)
            return EndpointNotFoundError(
                f"404 Not Found from {shown}: no TEI /embed route there; check base_url (the "
                f"server's root, e.g. {DEFAULT_BASE_URL}). The server said: {message}",
                url=shown,
                **kwargs,
            )
        if status == 424:  # Backend: the model failed on this batch
            return ServerError(message, **kwargs)
        cap = _BATCH_SIZE.search(message)
        if cap is not None and status in (400, 413, 422):
            self.batch_cap = max(1, int(cap.group(1)))
            return ContextLengthError(message, **kwargs)
        if status == 413 or (status == 422 and _TOO_LONG.search(message)):
            return ContextLengthError(message, **kwargs)
        return error
