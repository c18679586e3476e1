"""Built-in provider profiles.

Each function returns a :class:`~embedguard.ProviderProfile` with the provider's settings; any field
can be overridden by keyword (nested policies as objects or dicts)::

    from embedguard import profiles

    profiles.openai()                                   # text-embedding-3-small, 1536 d
    profiles.openai("text-embedding-3-large", dimensions=1024)
    profiles.azure("text-embedding-3-small", deployment="emb", api_version="2024-10-21")
    profiles.ollama("nomic-embed-text", base_url="http://gpu-box:11434")
    profiles.get("mistral")                             # by name, as the CLI does

Settings per provider (timeout s / retries / first backoff s / max inputs per request / assumed
requests and tokens per minute / gzip threshold bytes (gzip is off unless enabled) / pool size /
breaker: the failed share of recent requests that opens it, of how many, minimum requests counted,
probe successes, open s, probes):

============  ===  =  =====  ====  ====  =========  ====  ==  ========================
openai         60  3  1.0    2048  3000  1,000,000  1024  20  75% of 20, 10, 2, 30, 3
azure          90  4  2.0    2048   300    300,000  1024  15  75% of 20, 10, 3, 60, 3
mistral        30  3  0.5     128   100    100,000   512  10  75% of 20, 10, 2, 20, 2
cohere         60  3  1.0      96  2000          -  1024  20  75% of 20, 10, 2, 30, 3
gemini         60  4  1.0     100  3000  1,000,000  1024  10  75% of 20, 10, 2, 30, 3
voyage         60  3  1.0    1000  2000  3,000,000  1024  10  75% of 20, 10, 2, 30, 3
local          10  2  0.1      32     -          -  2048   5  off
ollama /       60  2  0.1      32     -          -  2048   5  off
compatible
bedrock        30  4  1.0    1/96     -          -  1024  16  75% of 20, 10, 2, 30, 3
tei            60  3  0.2      32     -          -  1024   8  75% of 20, 10, 2, 30, 3
============  ===  =  =====  ====  ====  =========  ====  ==  ========================

Bedrock by model family: Titan takes one text per request (pool 16, so single-text requests
run side by side), Cohere Embed 96 texts (pool 8); gzip stays off (Bedrock takes none, and SigV4
signs the exact bytes sent). Bedrock publishes no default rate limits (quotas are per account,
model and region) and sends no rate-limit headers: its 429s alone pace the client.

The OpenAI values are the policy defaults in :mod:`embedguard.core.config`; the other profiles
state only where they differ. Local HTTP servers (Ollama, OpenAI-compatible) use the local values
with a 60 s timeout, since a CPU-bound server can take longer than 10 s on a batch of 32. Gzip is
off in every profile unless enabled (the threshold applies once it is on).

Rate limits: no built-in profile sets ``rate_limit`` (a cap). The requests and tokens per minute
above are *assumed* (:func:`assumed_rate_limit`: one tier's published limits, a guess): the
client starts from them and follows the limits the server states in its headers, up or down.
Set ``rate_limit`` to cap them (e.g. to share a budget); ``-`` means no assumed limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .config import (
    BatchPolicy,
    BreakerPolicy,
    CompressionPolicy,
    ProviderKind,
    ProviderProfile,
    RateLimit,
    RetryPolicy,
    Timeouts,
)
from .errors import ConfigurationError

__all__ = [
    "MODEL_DIMENSIONS",
    "assumed_rate_limit",
    "azure",
    "bedrock",
    "cohere",
    "gemini",
    "get",
    "local",
    "mistral",
    "names",
    "ollama",
    "openai",
    "openai_compatible",
    "tei",
    "voyage",
]

MODEL_DIMENSIONS: dict[str, int] = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
    "mistral-embed": 1024,
    "codestral-embed": 1536,
    "all-MiniLM-L6-v2": 384,
    "embed-v4.0": 1536,
    "embed-english-v3.0": 1024,
    "embed-multilingual-v3.0": 1024,
    "embed-english-light-v3.0": 384,
    "embed-multilingual-light-v3.0": 384,
}
"""Native output size of well-known models (used when a profile does not set ``dimensions``)."""

_OPENAI, _MISTRAL, _OLLAMA, _LOCAL = (
    "text-embedding-3-small", "mistral-embed", "nomic-embed-text", "all-MiniLM-L6-v2",
)  # fmt: skip
_COHERE = "embed-v4.0"
_BEDROCK = "amazon.titan-embed-text-v2:0"
_TEI = "tei"

_LOCAL_SERVER: dict[str, Any] = {
    "timeouts": Timeouts(request=60.0, connect=5.0),
    "pool_size": 5,
    "retry": RetryPolicy(max_retries=2, initial_delay=0.1),
    "breaker": BreakerPolicy(enabled=False),
    "batching": BatchPolicy(max_inputs=32),
    "compression": CompressionPolicy(threshold_bytes=2048),
}

_ASSUMED_RATE_LIMITS: dict[str, RateLimit] = {
    "openai": RateLimit(requests_per_minute=3000, tokens_per_minute=1_000_000),
    "azure": RateLimit(requests_per_minute=300, tokens_per_minute=300_000),
    "mistral": RateLimit(requests_per_minute=100, tokens_per_minute=100_000),
    # Production keys' published embed limit; Cohere publishes no token limit. Trial keys state
    # theirs (100/min) in x-trial-endpoint-call-limit, which replaces this guess.
    "cohere": RateLimit(requests_per_minute=2000),
    "gemini": RateLimit(requests_per_minute=3000, tokens_per_minute=1_000_000),
    # Voyage's tier 1 (docs.voyageai.com/docs/rate-limits): 2000 RPM for every model; 3M TPM is
    # the lowest model's (voyage-3-large, voyage-code-3; 8M for voyage-3, 16M for voyage-3-lite).
    "voyage": RateLimit(requests_per_minute=2000, tokens_per_minute=3_000_000),
}


def assumed_rate_limit(provider: ProviderKind | str) -> RateLimit | None:
    """The limits assumed for ``provider`` until its server states its own; ``None``: none.

    A guess (one tier's published limits), used only where the profile sets no cap
    (``rate_limit``) and the server has not stated a limit. Local servers and in-process
    models have none.
    """
    return _ASSUMED_RATE_LIMITS.get(provider)


def _build(defaults: dict[str, Any], overrides: dict[str, Any], *, named: bool) -> ProviderProfile:
    """The provider's profile (``defaults``) with ``overrides`` on top.

    The overrides are a layer: a nested policy given as a dict or a policy object changes only
    the fields it names (``azure(retry={"max_retries": 6})`` keeps Azure's 2 s first backoff).
    ``named`` says whether the caller chose the model (it is then an argument, not a default).
    """
    data = dict(defaults)
    model = data["model"]
    if isinstance(model, str):
        data.setdefault("dimensions", MODEL_DIMENSIONS.get(model))
    base = ProviderProfile(**data)._with_origins(
        data["provider"], {"model": "argument"} if named else {}
    )
    return base.evolve(**overrides) if overrides else base


def openai(model: str = _OPENAI, **overrides: Any) -> ProviderProfile:
    """OpenAI's ``/v1/embeddings`` (key from ``OPENAI_API_KEY``)."""
    return _build({"provider": "openai", "model": model}, overrides, named=model != _OPENAI)


def azure(model: str = _OPENAI, **overrides: Any) -> ProviderProfile:
    """Azure OpenAI: a deployment URL with ``api-version``, or the ``/openai/v1`` form.

    Pass ``deployment=`` and ``api_version=`` for the classic form; the endpoint comes from
    ``base_url`` or ``AZURE_OPENAI_ENDPOINT`` and the key from ``AZURE_OPENAI_API_KEY``.
    """
    defaults: dict[str, Any] = {
        "provider": "azure",
        "model": model,
        "timeouts": Timeouts(request=90.0, connect=5.0),
        "pool_size": 15,
        "retry": RetryPolicy(max_retries=4, initial_delay=2.0),
        "breaker": BreakerPolicy(success_threshold=3, open_timeout=60.0, half_open_timeout=60.0),
    }
    return _build(defaults, overrides, named=model != _OPENAI)


def mistral(model: str = _MISTRAL, **overrides: Any) -> ProviderProfile:
    """Mistral's ``/v1/embeddings`` (key from ``MISTRAL_API_KEY``).

    Mistral caps a request at 16,384 tokens in all, so batches are split by that budget too.
    """
    defaults: dict[str, Any] = {
        "provider": "mistral",
        "model": model,
        "timeouts": Timeouts(request=30.0, connect=5.0),
        "pool_size": 10,
        "retry": RetryPolicy(max_retries=3, initial_delay=0.5),
        "breaker": BreakerPolicy(open_timeout=20.0, half_open_max_attempts=2),
        "batching": BatchPolicy(
            max_inputs=128, max_tokens_per_request=16_384, max_tokens_per_input=8192
        ),
        "compression": CompressionPolicy(threshold_bytes=512),
    }
    return _build(defaults, overrides, named=model != _MISTRAL)


def cohere(model: str = _COHERE, **overrides: Any) -> ProviderProfile:
    """Cohere's ``/v2/embed`` (key from ``CO_API_KEY`` or ``COHERE_API_KEY``; base URL from
    ``CO_API_URL``).

    96 texts per request; an input may hold 128,000 tokens on embed-v4 (512 on the v3 models).
    ``embed_query`` sends ``input_type: search_query``, ``embed`` / ``embed_documents``
    ``search_document`` (``query_input_type`` / ``document_input_type`` change them). Every
    ``dtype`` is offered (``int8``, ``uint8``, ``binary``, ``ubinary``); embed-v4 takes
    ``dimensions`` of 256, 512, 1024 or 1536.
    """
    from .providers.cohere import cohere_max_input_tokens  # the model's limits live there

    defaults: dict[str, Any] = {
        "provider": "cohere",
        "model": model,
        "batching": BatchPolicy(max_inputs=96, max_tokens_per_input=cohere_max_input_tokens(model)),
    }
    return _build(defaults, overrides, named=model != _COHERE)


def gemini(model: str = "gemini-embedding-001", **overrides: Any) -> ProviderProfile:
    """Google's Gemini API ``batchEmbedContents`` (key from ``GOOGLE_API_KEY``, else
    ``GEMINI_API_KEY``; base URL from ``GOOGLE_GEMINI_BASE_URL``).

    ``model`` may be given as ``models/x`` or ``x``. Requests hold at most 100 texts (the API's
    cap) of at most 2,048 tokens each (8,192 for gemini-embedding-2). ``embed_query`` sends
    ``RETRIEVAL_QUERY``, ``embed`` ``RETRIEVAL_DOCUMENT``. gemini-embedding-001 returns 3072
    dimensions; ``dimensions=768`` (or 1536...) asks for fewer, and those vectors are not
    unit-length: normalise them before a dot-product index (cosine similarity is unaffected).
    The assumed limits are tier 1's (3,000 requests and 1,000,000 tokens per minute); the API
    states none in its headers, and its 429s carry the wait to honour in the body.
    """
    from .providers.gemini import (
        GEMINI_MAX_INPUT_TOKENS,
        GEMINI_NATIVE_DIMENSIONS,
        gemini_model_id,
    )

    try:
        model_id = gemini_model_id(model)
    except ValueError as exc:
        raise ConfigurationError(str(exc), field="model", provider="gemini") from None
    native = GEMINI_NATIVE_DIMENSIONS.get(model_id)
    defaults: dict[str, Any] = {
        "provider": "gemini",
        "model": model_id,
        "dimensions": None if native is None else native.size,
        "timeouts": Timeouts(request=60.0, connect=5.0),
        "pool_size": 10,
        "retry": RetryPolicy(max_retries=4, initial_delay=1.0),
        "batching": BatchPolicy(
            max_inputs=100, max_tokens_per_input=GEMINI_MAX_INPUT_TOKENS.get(model_id, 2048)
        ),
    }
    return _build(defaults, overrides, named=model_id != "gemini-embedding-001")


def bedrock(model: str = _BEDROCK, **overrides: Any) -> ProviderProfile:
    """Amazon Bedrock's InvokeModel: Titan Text Embeddings v1/v2, Cohere Embed v3/v4.

    Requests are signed with SigV4 (the ``bedrock`` extra: botocore) from the AWS credential
    chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/``AWS_SESSION_TOKEN``,
    ``AWS_PROFILE``, SSO, instance and container roles), or carry a Bedrock API key
    (``AWS_BEARER_TOKEN_BEDROCK``) as a bearer token. The region is ``region=``, else
    ``AWS_REGION``, ``AWS_DEFAULT_REGION`` or the AWS config's; ``base_url`` (or
    ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``) replaces the public host. Model ids may be inference
    profiles (``us.cohere.embed-v4:0``) or ARNs naming the model. Titan v2 defaults to 1024
    dimensions (512, 256) and ``dtype="binary"``/``"ubinary"`` packs its bits; Cohere returns
    every dtype, and sends ``search_query``/``search_document`` as ``input_type``.
    """
    from .providers._bedrock_models import bedrock_model

    spec = bedrock_model(model)
    defaults: dict[str, Any] = {
        "provider": "bedrock",
        "model": model,
        "timeouts": Timeouts(request=30.0, connect=5.0),
        "retry": RetryPolicy(max_retries=4, initial_delay=1.0),
        "batching": BatchPolicy(max_inputs=1, max_tokens_per_request=8192,
                                max_tokens_per_input=8192),
    }  # fmt: skip
    if spec is not None:  # an unknown model keeps one text per request; the codec refuses it
        defaults["dimensions"] = spec.native
        defaults["pool_size"] = spec.pool_size
        defaults["batching"] = BatchPolicy(
            max_inputs=spec.max_inputs,
            max_tokens_per_request=spec.max_tokens_per_request,
            max_tokens_per_input=spec.max_tokens_per_input,
        )
    return _build(defaults, overrides, named=model != _BEDROCK)


def ollama(model: str = _OLLAMA, **overrides: Any) -> ProviderProfile:
    """A local Ollama server's native ``/api/embed`` (no key; host from ``OLLAMA_HOST``)."""
    defaults = {"provider": "ollama", "model": model, **_LOCAL_SERVER}
    return _build(defaults, overrides, named=model != _OLLAMA)


def openai_compatible(model: str, **overrides: Any) -> ProviderProfile:
    """Any OpenAI-compatible server (vLLM, LM Studio, llama.cpp, TEI, LocalAI...).

    ``base_url`` is required (e.g. ``http://localhost:8000/v1``); any model name is accepted and
    texts are always sent as text, never token ids.
    """
    defaults = {"provider": "openai_compatible", "model": model, **_LOCAL_SERVER}
    return _build(defaults, overrides, named=True)


def voyage(model: str = "voyage-3.5", **overrides: Any) -> ProviderProfile:
    """Voyage AI's ``/v1/embeddings`` (key from ``VOYAGE_API_KEY``).

    ``embed_query`` sends ``input_type: "query"`` and ``embed`` ``"document"``. A request holds
    at most 1,000 texts and the model's token cap (1M for the -lite models, 320K for voyage-4 /
    3.5, 120K for the large, code, finance and law models), one text at most the model's
    context (32K tokens for current models); ``dimensions`` is the model's native size.
    """
    from .providers.voyage import voyage_model

    spec = voyage_model(model)
    defaults: dict[str, Any] = {
        "provider": "voyage",
        "model": model,
        "dimensions": spec.size or None,
        "pool_size": 10,
        "batching": BatchPolicy(
            max_inputs=1000,
            max_tokens_per_request=spec.max_tokens_per_request,
            max_tokens_per_input=spec.max_tokens_per_input,
        ),
    }
    return _build(defaults, overrides, named=model != "voyage-3.5")


def tei(model: str = _TEI, **overrides: Any) -> ProviderProfile:
    """A Hugging Face Text Embeddings Inference server's native ``/embed`` route.

    TEI serves one model, so ``model`` is a label (the served model id, or ``"tei"``). The
    server's root comes from ``base_url``, else ``TEI_BASE_URL``, else ``http://localhost:8080``;
    an optional key (``--api-key`` servers) from ``TEI_API_KEY``. Batching starts from TEI's own
    defaults (32 inputs per request, 16,384 tokens per batch, 512 tokens per input) and, where
    the profile leaves them at that, follows the limits the server's ``/info`` states, fetched
    once before the first call. ``query_input_type`` / ``document_input_type`` name the model's
    prompts (sent as ``prompt_name``). No rate limit is assumed: TEI answers 429 only when its
    queue is full. For TEI's OpenAI-compatible route, use
    ``openai_compatible(model, base_url="http://host:8080/v1")`` instead.
    """
    defaults: dict[str, Any] = {
        "provider": "tei",
        "model": model,
        "timeouts": Timeouts(request=60.0, connect=5.0),
        "pool_size": 8,
        "retry": RetryPolicy(max_retries=3, initial_delay=0.2),
        "batching": BatchPolicy(
            max_inputs=32, max_tokens_per_request=16_384, max_tokens_per_input=512
        ),
    }
    return _build(defaults, overrides, named=model != _TEI)


def local(model: str = _LOCAL, **overrides: Any) -> ProviderProfile:
    """An in-process model (sentence-transformers); no network, no rate limit, breaker off."""
    defaults = {
        **_LOCAL_SERVER,
        "provider": "local",
        "model": model,
        "timeouts": 10.0,
        "price_per_million_tokens": 0.0,
    }
    return _build(defaults, overrides, named=model != _LOCAL)


_BUILTIN: dict[str, Callable[..., ProviderProfile]] = {
    "openai": openai,
    "azure": azure,
    "mistral": mistral,
    "cohere": cohere,
    "gemini": gemini,
    "bedrock": bedrock,
    "ollama": ollama,
    "openai_compatible": openai_compatible,
    "tei": tei,
    "local": local,
    "voyage": voyage,
}


def names() -> list[str]:
    """Names of the built-in profiles, sorted."""
    return sorted(_BUILTIN)


def get(name: str, **overrides: Any) -> ProviderProfile:
    """The built-in profile called ``name`` (see :func:`names`), with ``overrides`` applied."""
    try:
        factory = _BUILTIN[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown profile {name!r}; built-in profiles: {', '.join(names())}", field="profile"
        ) from None
    if name == "openai_compatible" and "model" not in overrides:
        raise ConfigurationError("the openai_compatible profile needs a model name", field="model")
    return factory(**overrides)
