"""The Cohere, Voyage AI, Gemini, Bedrock and TEI peers' keywords (see :mod:`._vocabulary`).

The peers, as their sources define them:

* Cohere: LangChain's ``CohereEmbeddings`` (``langchain_cohere``), LlamaIndex's ``CohereEmbedding``;
* Voyage AI: ``VoyageAIEmbeddings`` (``langchain_voyageai``), LlamaIndex's ``VoyageEmbedding``;
* Gemini: ``GoogleGenerativeAIEmbeddings`` (``langchain_google_genai``), LlamaIndex's
  ``GoogleGenAIEmbedding`` and ``GeminiEmbedding``;
* Bedrock: ``BedrockEmbeddings`` (``langchain_aws``), LlamaIndex's ``BedrockEmbedding``;
* TEI: ``HuggingFaceEndpointEmbeddings`` (``langchain_huggingface``), LlamaIndex's
  ``TextEmbeddingsInference``.

A keyword here is read the way its peer reads it: an input type the peer sends for every text
(``input_type``, ``task_type``) sets both of the profile's input types; a truncation switch
(``truncate``, ``truncation``, ``truncate_text``) is settled once the provider is known
(:mod:`._peer_finish`). Keys and credentials tell which provider they belong to
(:data:`KEY_OWNERS`); other keywords only one peer family takes suggest it (:data:`HINTS`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import SecretStr

from embedguard.core.errors import ConfigurationError

from ._translated import Translated, put

__all__ = [
    "ALIASES",
    "BOTO",
    "HANDLERS",
    "HINTS",
    "IGNORED",
    "KEY_OWNERS",
    "NO_TITLE",
    "POLICY_FIELDS",
    "VERTEX",
    "VERTEX_NAMES",
    "both_input_types",
    "cut_of",
    "dtype_of",
    "set_cut",
]

# Another name for an embedguard keyword (peer name -> ours).
ALIASES = {
    "cohere_api_key": "api_key",
    "voyage_api_key": "api_key",
    "google_api_key": "api_key",
    "huggingfacehub_api_token": "api_key",
    "model_id": "model",
    "repo_id": "model",
    "region_name": "region",
    "endpoint_url": "base_url",
    "output_dimension": "dimensions",
    "output_dimensionality": "dimensions",
    "credentials_profile_name": "aws_profile",
    "profile_name": "aws_profile",
    "additional_headers": "headers",
    "httpx_client": "http_client",
    "httpx_async_client": "async_http_client",
}

# Mapped onto the profile: keyword -> (policy, field).
POLICY_FIELDS = {
    "batch_size": ("batching", "max_inputs"),
    "retry_exponential_base": ("retry", "multiplier"),
}

_LLM_SETTINGS = ("system_prompt", "messages_to_prompt", "completion_to_prompt",
                 "pydantic_program_mode", "output_parser")  # fmt: skip
_LLM_ONLY = "an LLM prompt setting BedrockEmbedding accepts and never uses for embeddings"
IGNORED = {
    "debug_config": "google-genai's record and replay; embedguard's hooks and cassettes do that",
    **dict.fromkeys(_LLM_SETTINGS, _LLM_ONLY),
}

KEY_OWNERS = {
    "cohere_api_key": "cohere",
    "voyage_api_key": "voyage",
    "google_api_key": "gemini",
    "huggingfacehub_api_token": "tei",
    "auth_token": "tei",
    "aws_access_key_id": "bedrock",
    "aws_secret_access_key": "bedrock",
    "aws_session_token": "bedrock",
    "credentials_profile_name": "bedrock",
    "profile_name": "bedrock",
}
"""Keys and credentials: they select their provider, and contradict any other (never sent)."""

HINTS = {
    **dict.fromkeys(("embedding_types", "embedding_type", "truncate", "input_type",
                     "user_agent"), "cohere"),
    **dict.fromkeys(("output_dtype", "truncation", "output_dimension"), "voyage"),
    **dict.fromkeys(("task_type", "output_dimensionality", "embedding_config", "client_options",
                     "transport", "http_options", "request_options", "title", "retries",
                     "additional_headers"), "gemini"),
    **dict.fromkeys(("model_id", "region_name", "endpoint_url", "normalize"), "bedrock"),
    **dict.fromkeys(("query_instruction", "text_instruction", "truncate_text", "repo_id",
                     "task"), "tei"),
}  # fmt: skip
"""Keywords only one peer family takes: they select its provider when none is given."""

_DTYPES = {"float": "float32", "float32": "float32", "int8": "int8", "uint8": "uint8",
           "binary": "binary", "ubinary": "ubinary"}  # fmt: skip
_AWS_NAMES = ("aws_profile", "aws_access_key_id", "aws_secret_access_key", "aws_session_token")
VERTEX_NAMES = ("vertexai", "vertexai_config", "credentials", "project", "location")
VERTEX = (
    "Vertex AI is not supported: the gemini provider speaks the Gemini Developer API with an "
    "API key (google_api_key=, or GOOGLE_API_KEY / GEMINI_API_KEY)"
)
BOTO = (
    "embedguard signs and sends Bedrock requests itself (no boto3 client): pass region_name=, "
    "endpoint_url=, timeout=, max_retries=, credentials_profile_name= or the aws_* keys instead"
)
NO_TITLE = (
    "embedguard sends no document titles (Gemini reads one with RETRIEVAL_DOCUMENT only); put "
    "it in the text, e.g. document_prefix='Title: ...\\n'"
)


def _plain(value: Any) -> Any:
    """An enum member's value (the peers' enums subclass str), else the value itself."""
    return getattr(value, "value", value)


def dtype_of(name: str, value: Any) -> str | None:
    """embedguard's dtype for a peer's embedding type (``"float"``, ``["int8"]``...), or ``None``.

    Raises:
        ConfigurationError: Several types (the peers return one list per type, end to end), or
            a type embedguard does not return.
    """
    if value is None:
        return None
    if isinstance(value, list | tuple):
        if len(value) != 1:
            raise ConfigurationError(
                f"{name} must name one embedding type, got {len(value)} (the peer returns the "
                "vectors of each type one after the other)",
                field=name,
            )
        value = value[0]
    key = str(_plain(value)).strip().lower()
    if key not in _DTYPES:
        raise ConfigurationError(
            f"{name}={value!r} is not supported: use float, int8, uint8, binary or ubinary",
            field=name,
        )
    return _DTYPES[key]


def cut_of(name: str, value: Any) -> bool | None:
    """A peer's truncation switch as "cut the end" (``True``), "never" (``False``) or ``None``.

    ``True``/``"END"`` cut, ``False``/``"NONE"`` refuse; ``"START"`` (Cohere: keep the end) has
    no equivalent.

    Raises:
        ConfigurationError: ``"START"``, or a value that is none of those.
    """
    value = _plain(value)
    if value is None:
        return None
    if isinstance(value, bool):
        return value
    word = str(value).strip().upper()
    if word == "START":
        raise ConfigurationError(
            f"{name}='START' is not supported: embedguard cuts the end of an over-long text "
            "(context_policy='truncate'), never its start",
            field=name,
        )
    if word in ("END", "NONE"):
        return word == "END"
    raise ConfigurationError(f"{name} must be True, False, 'END' or 'NONE'", field=name)


def set_cut(out: Translated, name: str, cut: bool | None) -> None:
    """Record a truncation switch; two that disagree are refused."""
    if cut is None:
        return
    if out.cut is not None and out.cut != cut:
        raise ConfigurationError(
            "the truncation keywords disagree (truncate, truncation, truncate_text)", field=name
        )
    out.cut = cut


def both_input_types(out: Translated, name: str, value: Any) -> None:
    """The one input type a peer sends for queries and documents alike."""
    value = _plain(value)
    if value is None or not str(value).strip():
        return
    for field in ("query_input_type", "document_input_type"):
        put(out.layer, field, str(value).strip())


# -- handlers ------------------------------------------------------------------------------------
def _dtype(out: Translated, name: str, value: Any) -> None:
    dtype = dtype_of(name, value)
    if dtype is not None:
        put(out.layer, "dtype", dtype)


def _truncation(out: Translated, name: str, value: Any) -> None:
    set_cut(out, name, cut_of(name, value))


def _instruction(out: Translated, name: str, value: Any) -> None:
    if value is None:
        return
    # LlamaIndex formats f"{instruction} {text}".strip(): an empty instruction adds nothing.
    prefix = f"{value} ".lstrip()
    if prefix:
        put(out.layer, "query_prefix" if name == "query_instruction" else "document_prefix", prefix)


def _auth_token(out: Translated, name: str, value: Any) -> None:
    if value is None:
        return
    if callable(value) and not isinstance(value, SecretStr):
        raise ConfigurationError(
            "auth_token as a function is not supported: pass the token itself as api_key= "
            "(or set TEI_API_KEY)",
            field=name,
        )
    put(out.settings, "api_key", value)


def _aws(out: Translated, name: str, value: Any) -> None:
    if value is None or value == "":
        return
    secret = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
    put(out.aws, name, secret)


def _normalize(out: Translated, name: str, value: Any) -> None:
    if value is not None:
        out.normalize = bool(value)


def _refusal(why: str) -> Callable[[Translated, str, Any], None]:
    def refuse(out: Translated, name: str, value: Any) -> None:
        if value is not None and value is not False and value != "" and value != {}:
            raise ConfigurationError(f"{name} is not supported: {why}", field=name)

    return refuse


def _options(name: str, value: Any) -> dict[str, Any]:
    """A peer's options object (a dict, a pydantic model or a plain object) as a dict."""
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items() if v is not None}
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        data: dict[str, Any] = dump(exclude_none=True)
        return data
    if hasattr(value, "__dict__"):
        return {k: v for k, v in vars(value).items() if v is not None and not k.startswith("_")}
    raise ConfigurationError(f"expected a dict, got {type(value).__name__}", field=name)


def _unsupported(name: str, key: str, why: str) -> ConfigurationError:
    return ConfigurationError(f"{name}[{key!r}] is not supported: {why}", field=name)


def _request_options(out: Translated, name: str, value: Any) -> None:
    for key, item in _options(name, value).items():
        if key != "timeout":
            raise _unsupported(name, key, "only its timeout has an equivalent (timeout=)")
        put(out.layer, "timeouts", item)


def _https(url: Any) -> str:
    text = str(url).strip()
    return text if "://" in text else f"https://{text}"


def _client_options(out: Translated, name: str, value: Any) -> None:
    for key, item in _options(name, value).items():
        if key == "api_endpoint":
            put(out.settings, "base_url", _https(item))
        elif key == "api_key":
            put(out.settings, "api_key", item)
        else:
            raise _unsupported(name, key, "only api_endpoint and api_key have an equivalent")


def _http_options(out: Translated, name: str, value: Any) -> None:
    for key, item in _options(name, value).items():
        if key == "base_url":
            put(out.settings, "base_url", _https(item))
        elif key == "api_version":
            put(out.layer, "api_version", item)
        elif key == "headers":
            out.http.setdefault("headers", {}).update(item)
        elif key == "timeout":  # google-genai counts milliseconds
            put(out.layer, "timeouts", item / 1000)
        else:
            raise _unsupported(
                name, key, "pass http_client= / async_http_client= for transport settings"
            )


def _embedding_config(out: Translated, name: str, value: Any) -> None:
    for key, item in _options(name, value).items():
        if key in ("task_type", "taskType"):
            out.ignored[f"{name}[{key!r}]"] = (
                "GoogleGenAIEmbedding replaces it with RETRIEVAL_QUERY / RETRIEVAL_DOCUMENT on "
                "every call, as embedguard does; set query_input_type= / document_input_type= "
                "to change them"
            )
        elif key in ("output_dimensionality", "outputDimensionality"):
            put(out.settings, "dimensions", item)
        elif key in ("auto_truncate", "autoTruncate"):
            set_cut(out, name, cut_of(name, item))
        elif key == "title":
            raise _unsupported(name, key, NO_TITLE)
        else:
            raise _unsupported(name, key, "texts are sent as text, with no other options")


def _retries(out: Translated, name: str, value: Any) -> None:
    if value is None:
        return
    if type(value) is not int or value < 1:
        raise ConfigurationError(f"{name} must be a number of attempts, at least 1", field=name)
    # GoogleGenAIEmbedding stops after `retries` attempts: the first and retries - 1 retries.
    put(out.layer.setdefault("retry", {}), "max_retries", value - 1)


def _client_name(out: Translated, name: str, value: Any) -> None:
    if value:  # the Cohere SDK sends its client_name as X-Client-Name
        out.http.setdefault("headers", {})["X-Client-Name"] = str(value)


def _task(out: Translated, name: str, value: Any) -> None:
    if value not in (None, "feature-extraction"):
        raise ConfigurationError(
            f"task={value!r} is not supported: embedguard embeds texts (feature-extraction)",
            field=name,
        )


def _transport(out: Translated, name: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise ConfigurationError(
            "transport is not supported: pass http_client=httpx.Client(transport=...) and "
            "async_http_client=",
            field=name,
        )
    out.ignored[name] = "embedguard sends REST requests over httpx (gRPC has no equivalent)"


HANDLERS: dict[str, Callable[[Translated, str, Any], None]] = {
    **dict.fromkeys(("dtype", "embedding_types", "embedding_type", "output_dtype"), _dtype),
    **dict.fromkeys(("input_type", "task_type"), both_input_types),
    **dict.fromkeys(("truncate", "truncation", "truncate_text"), _truncation),
    **dict.fromkeys(("query_instruction", "text_instruction"), _instruction),
    "auth_token": _auth_token,
    **dict.fromkeys(_AWS_NAMES, _aws),
    "normalize": _normalize,
    **dict.fromkeys(VERTEX_NAMES, _refusal(VERTEX)),
    **dict.fromkeys(("botocore_session", "botocore_config", "config"), _refusal(BOTO)),
    "client_args": _refusal(
        "pass http_client=httpx.Client(...) and async_http_client=httpx.AsyncClient(...)"
    ),
    "title": _refusal(NO_TITLE),
    "request_options": _request_options,
    "client_options": _client_options,
    "http_options": _http_options,
    "embedding_config": _embedding_config,
    "retries": _retries,
    "user_agent": _client_name,
    "task": _task,
    "transport": _transport,
}
