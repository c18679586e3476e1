"""The bulk fast path: decode an OpenAI-shaped base64 response straight from its bytes (pure).

:func:`scan_openai_base64` finds each item's base64 ``embedding`` string in the raw body with
``bytes.find`` and decodes it with pybase64 straight into its row of the result array, so no
Python string is ever built per vector. Everything else in the body (the *skeleton*: the body
with the contents of those strings cut out, a few hundred bytes per item) is parsed with orjson,
which validates the JSON and yields ``index``, ``usage`` and ``model`` as the full parser sees
them. It never raises: it returns ``None`` for anything it does not prove valid, and
:func:`decode_openai_body` then runs the full parser, so results and errors are always the
full parser's.

Why the skeleton stands for the whole body: the scanner cuts the contents of ``n`` strings,
each following a literal ``"embedding"`` and a colon. When the skeleton holds no backslash and
parses, every quote in it is a delimiter, so each cut is there an empty string valued under an
``embedding`` key (two adjacent quotes can only be an empty string). The cut contents are
validated base64 (no quote, no backslash), so putting them back gives the body itself. The
skeleton must then hold exactly ``n`` string-valued ``embedding`` keys (so the cuts are all of
them: none nested elsewhere, none duplicated, none written with other spacing) and ``n`` items
whose ``embedding`` is empty, which pairs item ``p`` with cut ``p``.
"""

from __future__ import annotations

import binascii
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np
import orjson
import pybase64
from pydantic import SecretStr

from embedguard.core.config import ProviderProfile
from embedguard.core.errors import ConfigurationError, InputValidationError, ProviderError

from ._codec import user_agent
from ._errors import error_from_response
from .base import EmbeddingResult, HttpRequest, RateLimitInfo
from .headers import openai_rate_limit, request_id_of

__all__ = [
    "DecodedBody",
    "JsonCodec",
    "decode_openai_body",
    "echoed_model",
    "scan_openai_base64",
    "token_count",
    "usage_tokens",
]

_KEY = b'"embedding"'
# JSON whitespace only (``\s`` would also take \f and \v, which JSON rejects).
_COLON = re.compile(rb"[ \t\n\r]*:[ \t\n\r]*")
_STRING_KEY = re.compile(rb'"embedding"[ \t\n\r]*:[ \t\n\r]*"')
_QUOTE = ord('"')
_EQUALS = ord("=")
_LITTLE_ENDIAN = sys.byteorder == "little"
_FLOAT32 = np.dtype(np.float32)


# -- shared with the full parser (_decode.py) ----------------------------------------------
def _has_error(doc: Mapping[str, Any]) -> bool:
    error = doc.get("error")
    return bool(error) or doc.get("object") == "error"


def usage_tokens(doc: Mapping[str, Any], key: str = "usage") -> int | None:
    """Input tokens from ``usage.prompt_tokens`` (else ``usage.total_tokens``), or ``None``."""
    usage = doc.get(key)
    if not isinstance(usage, dict):
        return None
    for name in ("prompt_tokens", "total_tokens"):
        value = usage.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def token_count(value: object) -> int | None:
    """A token count a body states (Ollama's ``prompt_eval_count``, Gemini's and Bedrock's
    counts): ``value`` when it is a non-negative integer, else ``None``."""
    return value if type(value) is int and value >= 0 else None


def echoed_model(doc: Mapping[str, Any]) -> str | None:
    """The ``model`` the server echoed, when it is a non-empty string."""
    model = doc.get("model")
    return model if isinstance(model, str) and model else None


def _target(out: np.ndarray | None, n: int, d: int) -> np.ndarray:
    """The caller's buffer when it fits, else a new array (each row is written exactly once)."""
    if out is not None and out.shape == (n, d) and out.dtype == _FLOAT32:
        return out
    return np.empty((n, d), dtype=_FLOAT32)


class DecodedBody(NamedTuple):
    """What an OpenAI-shaped 2xx body holds: the vectors, the input tokens and the model."""

    vectors: np.ndarray
    prompt_tokens: int | None
    model: str | None


def _first_string(body: bytes) -> tuple[bytes, int, int] | None:
    """The first string valued under a literal ``"embedding"`` key: the key and separator as
    written (``"embedding": "``), and the string's ``(start, end)``; ``None`` when there is no
    such string or the first such key holds something else (a float list: not this path)."""
    pos = 0
    while True:
        key = body.find(_KEY, pos)
        if key < 0:
            return None
        colon = _COLON.match(body, key + len(_KEY))
        if colon is None:  # a value such as "object": "embedding", not a key
            pos = key + len(_KEY) - 1  # its closing quote may open the next string
            continue
        start = colon.end()
        if body[start : start + 1] != b'"':
            return None
        end = body.find(b'"', start + 1)
        return None if end < 0 else (body[key : start + 1], start + 1, end)


def _width(body: bytes, start: int, end: int, dimensions: int | None) -> int | None:
    """The vector size a base64 string of that length announces, when it is acceptable."""
    length = end - start
    if length == 0 or length % 4:
        return None
    pad = (body[end - 1] == _EQUALS) + (body[end - 2] == _EQUALS)
    nbytes = length // 4 * 3 - pad
    if nbytes % 4 or nbytes == 0 or (nbytes + 2) // 3 * 4 != length:
        return None
    d = nbytes // 4
    return None if dimensions is not None and d != dimensions else d


def _decode_items(body: bytes, sep: bytes, length: int, target: np.ndarray) -> bytes | None:
    """Decode the ``n`` strings that follow ``sep`` into rows ``0..n-1`` (body order).

    Each string must be ``length`` bytes of valid base64 holding one row. Returns the skeleton
    (the body without those strings' contents), or ``None`` at the first thing that is not so.
    """
    n, d = target.shape
    row_bytes = 4 * d
    view = memoryview(body)
    find = body.find
    decode = pybase64.b64decode
    # _target made it native float32: on a little-endian host its bytes are the wire's.
    flat = target.data.cast("B") if _LITTLE_ENDIAN and target.flags.c_contiguous else None
    parts = []
    prev = pos = 0
    try:
        for row in range(n):
            key = find(sep, pos)
            if key < 0:
                return None
            start = key + len(sep)
            end = start + length
            if body[end] != _QUOTE:
                return None
            raw = decode(view[start:end], validate=True)  # rejects '"' and '\\' in the string
            if len(raw) != row_bytes:
                return None
            if flat is not None:
                flat[row * row_bytes : (row + 1) * row_bytes] = raw
            else:
                target[row] = np.frombuffer(raw, dtype="<f4")
            parts.append(view[prev:start])
            prev = pos = end
    except (binascii.Error, ValueError, IndexError):
        return None
    parts.append(view[prev:])
    return b"".join(parts)


def _parse_skeleton(skeleton: bytes, n: int) -> dict[str, Any] | None:
    """The skeleton's document when it proves the cuts were exactly the ``n`` items' strings."""
    if b"\\" in skeleton:  # an escape anywhere breaks the quote-counting argument
        return None
    try:
        doc = orjson.loads(skeleton)
    except orjson.JSONDecodeError:
        return None
    if type(doc) is not dict or _has_error(doc):
        return None
    if len(_STRING_KEY.findall(skeleton)) != n:  # a string-valued "embedding" left uncut
        return None
    return doc


def _rows(data: Any, n: int) -> list[int] | None:
    """Each item's ``index`` (its row), when every item holds one cut string."""
    if not isinstance(data, list) or len(data) != n:
        return None
    rows = []
    seen = bytearray(n)
    for item in data:
        if type(item) is not dict or item.get("embedding") != "":
            return None
        index = item.get("index")
        if type(index) is not int or not 0 <= index < n or seen[index]:
            return None
        seen[index] = 1
        rows.append(index)
    return rows


def scan_openai_base64(
    body: bytes,
    *,
    n_inputs: int,
    dimensions: int | None,
    out: np.ndarray | None = None,
) -> DecodedBody | None:
    """Decode an OpenAI-shaped base64 body without a JSON tree of vector strings, or ``None``.

    Returns exactly what the full parser (:func:`load_json_object`, :func:`decode_openai_data`,
    :func:`usage_tokens`, :func:`echoed_model`) returns for the same arguments, or ``None``
    whenever the body is anything else than plain, valid base64 items: escapes anywhere, float
    vectors, an error document, a wrong count, index, size or value, invalid JSON... The full
    parser then decides (and names the error). Never raises.

    Args:
        body: The raw 2xx response body.
        n_inputs: How many vectors the request asked for.
        dimensions: The expected vector size, or ``None`` to take the first vector's.
        out: A writable float32 ``(n_inputs, d)`` array to decode into (used when it fits, as
            the full parser does); rows may be written even when ``None`` is returned.
    """
    if n_inputs <= 0 or (out is not None and not out.flags.writeable):
        return None
    first = _first_string(body)
    if first is None:
        return None
    sep, start, end = first
    d = _width(body, start, end, dimensions)
    if d is None:
        return None
    target = _target(out, n_inputs, d)
    skeleton = _decode_items(body, sep, end - start, target)
    doc = None if skeleton is None else _parse_skeleton(skeleton, n_inputs)
    if doc is None:
        return None
    rows = _rows(doc.get("data"), n_inputs)
    if rows is None or not np.isfinite(target).all():
        return None
    if any(row != position for position, row in enumerate(rows)):
        target[rows] = target.copy()  # row p holds item p: move it to the item's index
    return DecodedBody(target, usage_tokens(doc), echoed_model(doc))


def decode_openai_body(
    provider: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    n_inputs: int,
    dimensions: int | None,
    secrets: Sequence[str | None] = (),
    out: np.ndarray | None = None,
) -> DecodedBody:
    """Validate and decode an OpenAI-shaped 2xx body: the base64 scanner first, then the
    typed float decoder (``_typed.py``), the full parser after.

    ``headers`` have lower-case names. Results and errors are those of the full parser
    (base64 or float items alike); the fast paths only make plain bodies cheaper.

    Example::

        decoded = decode_openai_body("openai", 200, {}, body, n_inputs=2, dimensions=1536)
        decoded.vectors.shape  # (2, 1536)

    Raises:
        ResponseValidationError: The body is not one finite vector of the right size per input.
        ProviderError: The body is an error document despite the 2xx status (the typed error).
    """
    scanned = scan_openai_base64(body, n_inputs=n_inputs, dimensions=dimensions, out=out)
    if scanned is not None:
        return scanned
    from ._typed import decode_openai_floats  # float bodies only: msgspec is imported lazily

    typed = decode_openai_floats(body, n_inputs=n_inputs, dimensions=dimensions, out=out)
    if typed is not None:
        return typed
    from ._decode import decode_openai_data, load_json_object  # the full parser: slow path only

    doc = load_json_object(provider, status, headers, body, secrets=secrets)
    vectors = decode_openai_data(
        doc.get("data"),
        n_inputs=n_inputs,
        dimensions=dimensions,
        provider=provider,
        status_code=status,
        request_id=request_id_of(headers, secrets),
        out=out,
    )
    return DecodedBody(vectors, usage_tokens(doc), echoed_model(doc))


class JsonCodec:
    """A codec that POSTs one JSON body and reads an OpenAI-shaped JSON response.

    Subclasses set the URL, headers and body fields in ``__init__`` and may override
    :meth:`_auth_headers`, :meth:`_decode_body` and :meth:`_rate_limit`.
    """

    provider: ClassVar[str] = "openai"
    input_types: ClassVar[Mapping[str, str]] = {}
    """The provider's input type for ``"query"`` and ``"document"`` (empty: it has none)."""
    dtypes: ClassVar[frozenset[str]] = frozenset({"float32"})
    """The :data:`~embedguard.core.config.VectorDtype` values the provider can return."""
    __slots__ = ("_fields", "_headers", "_key", "_kinds", "_prefixes", "dtype", "model", "name",
                 "url")  # fmt: skip

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
        if profile.dtype not in self.dtypes:
            offered = ", ".join(sorted(self.dtypes))
            raise ConfigurationError(
                f"the {profile.provider} provider returns {offered} vectors, not {profile.dtype}",
                field="dtype",
                provider=profile.name,
            )
        self.dtype: str = profile.dtype
        # kind -> the input type sent: the profile's choice, else the provider's own.
        kinds = dict(self.input_types)
        for kind in ("query", "document"):
            if (chosen := profile.input_type_for(kind)) is not None:
                kinds[kind] = chosen
        self._kinds: dict[str, str] = kinds
        self._prefixes = {kind: profile.prefix_for(kind) for kind in ("query", "document")}
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

    def build_request(self, texts: Sequence[str], kind: str = "document") -> HttpRequest:
        """Describe the POST that embeds ``texts`` (raw strings, in order) as ``kind``.

        The profile's ``query_prefix`` / ``document_prefix`` goes before each text, and the
        body carries :meth:`input_type` where the provider takes one (see :meth:`_body`).

        Raises:
            InputValidationError: An item is not a ``str`` (token ids are never sent).
        """
        inputs = list(texts)
        for index, text in enumerate(inputs):
            if not isinstance(text, str):
                raise InputValidationError(
                    f"expected str, got {type(text).__name__}", index=index, provider=self.name
                )
        prefix = self._prefixes.get(kind)
        if prefix:
            inputs = [prefix + text for text in inputs]
        body = orjson.dumps(self._body(inputs, self.input_type(kind)))
        headers = {**self._headers, **self._auth_headers()}
        return HttpRequest(method="POST", url=self.url, headers=headers, body=body)

    def input_type(self, kind: str) -> str | None:
        """The input type sent for ``kind``: the profile's or provider's for ``"query"`` /
        ``"document"``, ``kind`` itself for any other (a provider's type given per call), or
        ``None`` when the provider has none for it."""
        if kind in ("query", "document"):
            return self._kinds.get(kind)
        return kind

    def _body(self, inputs: list[str], input_type: str | None) -> dict[str, Any]:
        """The JSON body for ``inputs`` (prefixes applied); OpenAI's shape by default."""
        return {"input": inputs, **self._fields}

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
        """The vectors, tokens and model of a 2xx body (OpenAI's shape; subclasses may differ)."""
        return decode_openai_body(
            self.name, status, headers, body, n_inputs=n_inputs, dimensions=dimensions,
            secrets=self._secrets(), out=out,
        )  # fmt: skip

    def _rate_limit(self, headers: Mapping[str, str]) -> RateLimitInfo | None:
        """What a 2xx's (lower-cased) headers state about the limits; OpenAI's by default."""
        if not any(name.startswith("x-ratelimit") for name in headers):
            return None
        return openai_rate_limit(headers)

    def _error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """The typed error a non-2xx reply stands for (``headers`` lower-cased); OpenAI-style
        bodies by default."""
        return error_from_response(
            self.name, status, headers, body, secrets=self._secrets(), url=self.url
        )

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
        # Lower-cased here rather than by headers.lower_headers: one module less per call.
        lowered = {name.lower(): value for name, value in headers.items()}
        if not 200 <= status < 300:
            raise self._error(status, lowered, body)
        decoded = self._decode_body(
            status, lowered, body, n_inputs=n_inputs, dimensions=dimensions, out=out
        )
        return EmbeddingResult(
            vectors=decoded.vectors,
            prompt_tokens=decoded.prompt_tokens,
            model=decoded.model,
            rate_limit=self._rate_limit(lowered),
        )
