"""Amazon Bedrock embeddings: ``POST {host}/model/{modelId}/invoke`` (sans-IO codecs).

Two body families share the endpoint: Amazon Titan Text Embeddings (v1, v2: one text per request)
and Cohere Embed on Bedrock (v3, v4: up to 96 texts). :func:`make_bedrock_codec` picks the codec
from the model id; both are :class:`BedrockCodec`::

    codec = make_bedrock_codec(profiles.bedrock(region="us-east-1"))
    request = codec.build_request(["one text"])        # signed with SigV4 for this attempt
    request.url  # https://bedrock-runtime.us-east-1.amazonaws.com/model/amazon.titan-embed-text-v2%3A0/invoke
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import quote

import numpy as np

from embedguard.core.config import ProviderProfile
from embedguard.core.errors import ConfigurationError, InputValidationError, ProviderError

from ._aws import SigV4Signer, resolve_region
from ._bedrock_decode import WIRE_TYPES, decode_cohere, decode_titan
from ._bedrock_errors import bedrock_error
from ._bedrock_models import BEDROCK_MODELS, BedrockModel, bedrock_model
from ._codec import resolve_base_url, resolve_key
from ._decode import load_json_object
from ._json import DecodedBody, JsonCodec, token_count
from .base import HttpRequest, RateLimitInfo
from .headers import int_header, lower_headers, request_id_of

__all__ = ["BedrockCodec", "make_bedrock_codec"]

KEY_ENV = "AWS_BEARER_TOKEN_BEDROCK"
"""Where a Bedrock API key is read from (sent as ``Authorization: Bearer``, instead of SigV4)."""
ENDPOINT_ENV = "AWS_ENDPOINT_URL_BEDROCK_RUNTIME"
"""The AWS SDKs' variable for another Bedrock Runtime endpoint (a VPC endpoint, a proxy)."""
_TOKEN_HEADER = "x-amzn-bedrock-input-token-count"


def _default_host(region: str) -> str:
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://bedrock-runtime.{region}.{suffix}"


class BedrockCodec(JsonCodec):
    """Codec for Bedrock's InvokeModel; :class:`TitanCodec` and :class:`CohereCodec` give bodies.

    Auth: a Bedrock API key (``api_key``, or ``AWS_BEARER_TOKEN_BEDROCK`` / the profile's
    ``api_key_env``) is sent as ``Authorization: Bearer``; otherwise every request is signed with
    SigV4 by botocore (the ``bedrock`` extra), for each attempt (a fresh ``X-Amz-Date``), over the
    exact bytes and encoded path sent. Host: ``profile.base_url``, else
    ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``, else ``https://bedrock-runtime.{region}.amazonaws.com``;
    region: ``profile.region``, ``AWS_REGION``, ``AWS_DEFAULT_REGION`` or the AWS config.
    Responses carry no rate-limit headers; tokens come from the body (Titan) or
    ``X-Amzn-Bedrock-Input-Token-Count``; errors are classified by ``x-amzn-ErrorType``.
    """

    provider: ClassVar[str] = "bedrock"
    spec: ClassVar[BedrockModel]
    __slots__ = ("_signer", "region")

    def __init__(
        self,
        profile: ProviderProfile,
        *,
        api_key: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        environ = os.environ if environ is None else environ
        self._check(profile)
        key = resolve_key(profile, api_key, environ, KEY_ENV, required=False)
        explicit = profile.base_url or environ.get(ENDPOINT_ENV, "").strip()
        region = resolve_region(profile, environ, required=key is None or not explicit)
        default = None if region is None else _default_host(region)
        base = resolve_base_url(profile, environ, ENDPOINT_ENV, default)
        url = f"{base}/model/{quote(profile.model, safe='')}/invoke"
        super().__init__(profile, url=url, fields=self._fields_for(profile), key=key)
        self.region = region
        # A Bedrock API key replaces SigV4 (and then a region is needed only for the host).
        self._signer = SigV4Signer(profile, region, environ) if key is None and region else None

    def __repr__(self) -> str:
        auth = "bearer" if self._signer is None else "sigv4"
        return (
            f"{type(self).__name__}(model={self.model!r}, region={self.region!r}, "
            f"auth={auth!r}, url={self.url!r})"
        )

    # -- configuration --------------------------------------------------------------------------
    def _check(self, profile: ProviderProfile) -> None:
        """Refuse settings this model family cannot honour, before any request."""
        spec = self.spec
        problem = None
        if profile.dimensions is not None and profile.dimensions not in spec.sizes:
            sizes = ", ".join(str(size) for size in sorted(spec.sizes))
            problem = ("dimensions", f"{profile.model} produces {sizes} dimensions")
        elif profile.batching.max_inputs > spec.max_inputs:
            problem = (
                "batching.max_inputs",
                f"{profile.model} takes {spec.max_inputs} texts at most",
            )
        elif profile.compression.enabled:
            problem = ("compression.enabled", "Bedrock takes no gzip bodies; SigV4 signs the bytes")
        if problem is not None:
            raise ConfigurationError(problem[1], field=problem[0], provider=profile.name)

    def _fields_for(self, profile: ProviderProfile) -> dict[str, Any]:
        raise NotImplementedError

    # -- request --------------------------------------------------------------------------------
    def _secrets(self) -> tuple[str | None, ...]:
        signer = self._signer
        return (*super()._secrets(), *(signer.secrets() if signer is not None else ()))

    def build_request(self, texts: Sequence[str], kind: str = "document") -> HttpRequest:
        """Describe (and sign, with SigV4) the POST that embeds ``texts`` as ``kind``.

        Raises:
            InputValidationError: An item is not a ``str``, or the model takes no input types
                and one was given for this call.
            ConfigurationError: No AWS credentials were found (SigV4).
            AuthenticationError: The AWS credentials could not be resolved or refreshed.
        """
        request = super().build_request(texts, kind)
        if self._signer is None:
            return request
        headers = self._signer.sign(request.url, request.body, request.headers)
        return HttpRequest(method=request.method, url=request.url, headers=headers,
                           body=request.body)  # fmt: skip

    # -- response -------------------------------------------------------------------------------
    def _error(self, status: int, headers: Mapping[str, str], body: bytes) -> ProviderError:
        """The subclass ``x-amzn-ErrorType`` (else the status) stands for."""
        return bedrock_error(
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
        secrets = self._secrets()
        doc = load_json_object(self.name, status, headers, body, secrets=secrets)
        decode = decode_cohere if self.spec.cohere else decode_titan
        vectors = decode(
            doc, self.dtype, n_inputs=n_inputs, dimensions=dimensions, provider=self.name,
            status=status, request_id=request_id_of(headers, secrets), out=out,
        )  # fmt: skip
        tokens = token_count(doc.get("inputTextTokenCount"))
        if tokens is None:
            tokens = int_header(lower_headers(headers), _TOKEN_HEADER)
        return DecodedBody(vectors, tokens, None)

    def _rate_limit(self, headers: Mapping[str, str]) -> RateLimitInfo | None:
        return None  # Bedrock states no limits; 429 ThrottlingException is all it says


class TitanCodec(BedrockCodec):
    """Amazon Titan Text Embeddings: one ``inputText`` per request, no input types.

    v2 sends ``dimensions`` (1024, 512 or 256; the profile's) and ``normalize: true``, and asks for
    ``embeddingTypes: ["binary"]`` when the profile's dtype is ``binary``/``ubinary`` (floats are
    the default, as every recorded client sends them). v1 sends ``inputText`` alone (1536
    dimensions, not normalised).
    """

    __slots__ = ()

    def _check(self, profile: ProviderProfile) -> None:
        super()._check(profile)
        for field in ("query_input_type", "document_input_type"):
            if getattr(profile, field) is not None:
                raise ConfigurationError(
                    f"{profile.model} takes no input type; use query_prefix/document_prefix",
                    field=field,
                    provider=profile.name,
                )

    def _fields_for(self, profile: ProviderProfile) -> dict[str, Any]:
        if self.spec.family == "titan-v1":
            return {}
        fields: dict[str, Any] = {"dimensions": profile.dimensions or self.spec.native}
        fields["normalize"] = True
        if profile.dtype in ("binary", "ubinary"):
            fields["embeddingTypes"] = ["binary"]
        return fields

    def _body(self, inputs: list[str], input_type: str | None) -> dict[str, Any]:
        if input_type is not None:
            raise InputValidationError(
                f"{self.model} takes no input type, got {input_type!r}", provider=self.name
            )
        if len(inputs) != 1:
            raise InputValidationError(
                f"{self.model} embeds one text per request, got {len(inputs)}", provider=self.name
            )
        return {"inputText": inputs[0], **self._fields}


class CohereCodec(BedrockCodec):
    """Cohere Embed on Bedrock: Cohere's body without ``model``.

    ``texts`` (at most 96), ``input_type`` (``search_query`` for queries, ``search_document`` for
    documents, or a Cohere type given per call such as ``classification``), ``truncate: "NONE"``
    (a text over the limit is an error, never cut silently), ``embedding_types`` for a compact
    dtype, and ``output_dimension`` when v4 is asked for other than 1536 dimensions.
    """

    input_types: ClassVar[Mapping[str, str]] = {
        "query": "search_query", "document": "search_document"
    }  # fmt: skip
    __slots__ = ()

    def _fields_for(self, profile: ProviderProfile) -> dict[str, Any]:
        fields: dict[str, Any] = {"truncate": "NONE"}
        if profile.dtype != "float32":
            fields["embedding_types"] = [WIRE_TYPES[profile.dtype]]
        if profile.dimensions is not None and profile.dimensions != self.spec.native:
            fields["output_dimension"] = profile.dimensions
        return fields

    def _body(self, inputs: list[str], input_type: str | None) -> dict[str, Any]:
        return {"texts": inputs, "input_type": input_type, **self._fields}


class TitanV1Codec(TitanCodec):
    """Titan Text Embeddings v1 (``amazon.titan-embed-text-v1``, ``…-g1-text-02``)."""

    spec: ClassVar[BedrockModel] = BEDROCK_MODELS["titan-v1"]
    dtypes: ClassVar[frozenset[str]] = spec.dtypes
    __slots__ = ()


class TitanV2Codec(TitanCodec):
    """Titan Text Embeddings v2 (``amazon.titan-embed-text-v2:0``)."""

    spec: ClassVar[BedrockModel] = BEDROCK_MODELS["titan-v2"]
    dtypes: ClassVar[frozenset[str]] = spec.dtypes
    __slots__ = ()


class CohereV3Codec(CohereCodec):
    """Cohere Embed v3 on Bedrock (``cohere.embed-english-v3``, ``…-multilingual-v3``)."""

    spec: ClassVar[BedrockModel] = BEDROCK_MODELS["cohere-v3"]
    dtypes: ClassVar[frozenset[str]] = spec.dtypes
    __slots__ = ()


class CohereV4Codec(CohereCodec):
    """Cohere Embed v4 on Bedrock (``cohere.embed-v4:0``)."""

    spec: ClassVar[BedrockModel] = BEDROCK_MODELS["cohere-v4"]
    dtypes: ClassVar[frozenset[str]] = spec.dtypes
    __slots__ = ()


_CODECS: dict[str, type[BedrockCodec]] = {
    "titan-v1": TitanV1Codec,
    "titan-v2": TitanV2Codec,
    "cohere-v3": CohereV3Codec,
    "cohere-v4": CohereV4Codec,
}


def make_bedrock_codec(
    profile: ProviderProfile,
    *,
    api_key: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> BedrockCodec:
    """The codec for ``profile.model``'s family (see :class:`BedrockCodec` for the settings).

    Raises:
        ConfigurationError: The model is not a Titan text or Cohere Embed model (``model``), or a
            setting it cannot honour (``dimensions``, ``dtype``, ``region``, ...).
    """
    spec = bedrock_model(profile.model)
    if spec is None:
        raise ConfigurationError(
            f"{profile.model!r} is not a Bedrock embedding model embedguard speaks: use an "
            "amazon.titan-embed-text-v1/-v2 or cohere.embed-english-v3/-multilingual-v3/-v4 "
            "id, an inference profile (us.cohere.embed-v4:0) or an ARN naming one",
            field="model",
            provider=profile.name,
        )
    codec_class = _CODECS[spec.family]
    return codec_class(profile, api_key=api_key, environ=environ)
