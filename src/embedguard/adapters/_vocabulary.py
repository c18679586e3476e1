"""The peers' keyword arguments, translated: so that swapping the class is the only change.

LangChain's ``OpenAIEmbeddings`` / ``AzureOpenAIEmbeddings`` and LlamaIndex's ``OpenAIEmbedding``
/ ``AzureOpenAIEmbedding`` take keywords that embedguard spells differently or holds elsewhere,
and so do the Cohere, Voyage AI, Gemini, Bedrock and TEI peers (:mod:`._peers`; what only the
provider decides is settled by :mod:`._peer_finish`). :func:`translate` sorts them into four kinds:

* **aliases**: another name for an embedguard setting (``openai_api_key`` -> ``api_key``,
  ``azure_endpoint`` -> ``base_url``, ``azure_deployment`` -> the profile's ``deployment``...);
* **mapped**: a meaning embedguard holds in the profile or the client (``max_retries`` ->
  ``retry.max_retries``, ``timeout`` -> ``timeouts``, ``chunk_size`` -> ``batching.max_inputs``,
  ``model_kwargs`` -> ``extra_body``, ``default_headers`` -> request headers...);
* **ignored**, with one warning: settings of the peer's own tokenizer or SDK client, for which
  embedguard does its own thing (``tiktoken_enabled``, ``check_embedding_ctx_length``...);
* **refused**: a one-line :class:`~embedguard.ConfigurationError` naming the equivalent.

A peer's key or credential keyword selects its provider (``cohere_api_key`` -> ``cohere``), and
other keywords only one peer family takes suggest it (``model_id`` -> ``bedrock``) when no
``provider`` is given. No framework imports: both adapters share it. The README's table is
:data:`TABLE`.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from pydantic import SecretStr

from embedguard.core.config import ProviderProfile
from embedguard.core.errors import ConfigurationError

from . import _peer_table, _peers
from ._peer_finish import finish
from ._translated import Translated, put

__all__ = ["TABLE", "Translated", "translate"]

# Another name for an embedguard keyword (peer name -> ours).
_ALIASES = {
    "openai_api_key": "api_key",
    "openai_api_base": "base_url",
    "api_base": "base_url",
    "azure_endpoint": "base_url",
    "openai_api_version": "api_version",
    "azure_deployment": "deployment",
    "deployment_name": "deployment",
    "deployment_id": "deployment",
    "model_name": "model",
    "openai_organization": "organization",
    "request_timeout": "timeout",
    "http_async_client": "async_http_client",
    "azure_ad_token_provider": "token_provider",
    "model_kwargs": "extra_body",
    "additional_kwargs": "extra_body",
    "default_headers": "headers",
    "default_query": "params",
    "openai_proxy": "proxy",
}

# Settings of the peer's own tokenizer or SDK client: accepted, ignored, one warning.
_IGNORED = {
    "tiktoken_enabled": "embedguard counts tokens itself (tiktoken when its files are cached)",
    "tiktoken_model_name": "embedguard counts tokens itself (tiktoken when its files are cached)",
    "allowed_special": "texts are sent as text, never as token ids",
    "disallowed_special": "texts are sent as text, never as token ids",
    "check_embedding_ctx_length": (
        "a text over batching.max_tokens_per_input follows the client's context_policy "
        "('error' by default; pass context_policy='chunk' to split and average as the peer does)"
    ),
    "mode": "it only picks engines of retired models; the model name is sent as given",
    "reuse_client": "embedguard keeps one connection pool per client",
    "validate_base_url": "embedguard always checks base_url",
}

# Peer settings with no place here: the error names what to do instead.
_REFUSED = {
    "skip_empty": "empty texts raise InputValidationError by default; pass empty='zero' for a "
    "zero vector or empty='skip' for a NaN vector (one vector per text either way)",
    "async_client": "embedguard's client is sync and async: pass client=EmbeddingClient(...)",
    "azure_ad_async_token_provider": "pass a sync token_provider= (called for each request)",
    "use_azure_ad": "pass token_provider=azure.identity.get_bearer_token_provider("
    "DefaultAzureCredential(), 'https://cognitiveservices.azure.com/.default')",
}

# Mapped onto the profile: keyword -> (policy, field).
_POLICY_FIELDS = {
    "max_retries": ("retry", "max_retries"),
    "retry_min_seconds": ("retry", "initial_delay"),
    "retry_max_seconds": ("retry", "max_delay"),
    "chunk_size": ("batching", "max_inputs"),
    "embedding_ctx_length": ("batching", "max_tokens_per_input"),
}
_PEER_POLICY_FIELDS = {**_POLICY_FIELDS, **_peers.POLICY_FIELDS}
_PROFILE_FIELDS = ("deployment", "api_version", "region", "query_input_type",
                   "document_input_type", "query_prefix", "document_prefix")  # fmt: skip
_ALL_ALIASES = {**_ALIASES, **_peers.ALIASES}
_ALL_IGNORED = {**_IGNORED, **_peers.IGNORED}
_CLIENT_OPTIONS = ("token_provider", "http_client", "async_http_client", "context_policy", "empty")
_AZURE_HINTS = ("azure_endpoint", "azure_deployment", "deployment_name", "azure_ad_token",
                "azure_ad_token_provider", "deployment_id")  # fmt: skip
_DEPLOYMENT_URL = re.compile(r"^(?P<root>.+?)/openai/deployments/(?P<deployment>[^/?#]+)/?$")

TABLE: list[tuple[str, str]] = [
    *((name, f"alias of `{ours}`") for name, ours in _ALIASES.items()),
    *((name, f"`{policy}.{sub}`") for name, (policy, sub) in _POLICY_FIELDS.items()),
    ("timeout", "`timeouts` (a number: request, and connect up to 5 s; (connect, read); or "
                "an httpx.Timeout)"),
    ("organization", "the `OpenAI-Organization` header"),
    ("headers", "headers on every request (the adapter's own httpx clients)"),
    ("params", "query parameters on every request (the adapter's own httpx clients)"),
    ("proxy", "the proxy of the adapter's own httpx clients"),
    ("extra_body", "`extra_body`; its `dimensions` and `encoding_format` keys go to the "
                   "profile fields of those names"),
    ("openai_api_type", "`provider` (`azure`/`azure_ad` -> azure, `openai` -> openai)"),
    ("azure_ad_token", "`token_provider` returning that token"),
    ("show_progress_bar", "a tqdm bar per request-sized chunk (LangChain)"),
    *((name, f"ignored, with a warning: {why}") for name, why in _IGNORED.items()),
    *((name, f"refused: {what}") for name, what in _REFUSED.items()),
    *_peer_table.TABLE,
]  # fmt: skip
"""Every peer keyword and what it becomes (the README's table)."""


def translate(
    kwargs: dict[str, Any],
    *,
    owner: str,
    base: ProviderProfile | None = None,
    environ: Mapping[str, str] | None = None,
) -> Translated:
    """Take the peer and client keywords out of ``kwargs``; what stays is for the caller.

    Args:
        kwargs: The adapter's keyword arguments (changed in place).
        owner: The adapter's class name, for the warning about ignored keywords.
        base: The profile the adapter was given (its provider and model count), if any.
        environ: The variables the client reads (default ``os.environ``).

    Raises:
        ConfigurationError: A refused keyword (the message names the equivalent), two
            aliases that disagree, keywords of two providers, or a value of the wrong kind.
    """
    out = Translated()
    canon: dict[str, Any] = {}
    azure = False  # Azure keywords without a provider or profile select the azure profile
    for name in list(kwargs):
        if name in _REFUSED:
            raise ConfigurationError(f"{name} is not supported: {_REFUSED[name]}", field=name)
        ours = _ALL_ALIASES.get(name, name)
        if ours == name and name not in _KNOWN:
            continue
        value = kwargs.pop(name)
        azure = azure or (name in _AZURE_HINTS and bool(value))
        owner_of = _peers.KEY_OWNERS.get(name) or _peers.HINTS.get(name)
        if owner_of is not None and value is not None and value is not False:
            out.implied[name] = owner_of
        if ours in canon and canon[ours] != value:
            raise ConfigurationError(f"{name} and {ours} disagree", field=ours)
        canon[ours] = value
    for name, value in canon.items():
        if name in _ALL_IGNORED:
            out.ignored[name] = _ALL_IGNORED[name]
        else:
            _HANDLERS.get(name, _setting)(out, name, value)
    azure = azure or canon.get("openai_api_type") in ("azure", "azure_ad")
    azure = azure or "deployment" in out.layer  # e.g. from a .../openai/deployments/{name} URL
    if azure and "provider" not in out.settings and "profile" not in out.settings:
        out.settings["provider"] = "azure"
    finish(out, base, os.environ if environ is None else environ)
    if out.ignored:
        reasons = "; ".join(f"{name}: {why}" for name, why in out.ignored.items())
        warnings.warn(f"{owner} ignores {reasons}", UserWarning, stacklevel=4)
    return out


# -- handlers: one per embedguard meaning ------------------------------------------------------
def _setting(out: Translated, name: str, value: Any) -> None:
    if value is not None:
        _put(out.settings, name, value)


_put = put


def _api_key(out: Translated, name: str, value: Any) -> None:
    if callable(value) and not isinstance(value, SecretStr):
        raise ConfigurationError(
            "api_key must be a string; for Microsoft Entra ID tokens pass token_provider=",
            field="api_key",
        )
    _setting(out, "api_key", value)


def _base_url(out: Translated, name: str, value: Any) -> None:
    if value is None:
        return
    match = _DEPLOYMENT_URL.match(str(value))
    if match:  # LangChain's Azure form: {endpoint}/openai/deployments/{deployment}
        out.settings["base_url"] = match["root"]
        out.layer.setdefault("deployment", match["deployment"])
    else:
        out.settings["base_url"] = value


def _profile_field(out: Translated, name: str, value: Any) -> None:
    if value not in (None, ""):  # LlamaIndex's api_version defaults to ""
        _put(out.layer, name, value)


def _policy_field(out: Translated, name: str, value: Any) -> None:
    if value is not None:
        policy, sub = _PEER_POLICY_FIELDS[name]
        _put(out.layer.setdefault(policy, {}), sub, value)


def _timeout(out: Translated, name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, httpx.Timeout):
        longest = max((t for t in (value.read, value.write, value.pool) if t), default=None)
        out.layer["timeouts"] = {
            **({"request": longest} if longest else {}),
            **({"connect": value.connect} if value.connect else {}),
        }
    elif isinstance(value, tuple) and len(value) == 2:
        out.layer["timeouts"] = {"connect": value[0], "request": value[1]}
    else:
        _put(out.layer, "timeouts", value)  # a number: validated by the profile


def _extra_body(out: Translated, name: str, value: Any) -> None:
    if not value:
        return
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"expected a dict, got {type(value).__name__}", field=name)
    body = dict(value)
    for key in ("dimensions", "encoding_format"):  # the profile has fields for these
        if key in body:
            _put(out.settings if key == "dimensions" else out.layer, key, body.pop(key))
    if body:
        out.layer["extra_body"] = body


def _http(out: Translated, name: str, value: Any) -> None:
    if value:
        if name == "headers":
            out.http.setdefault("headers", {}).update(value)
        else:
            out.http[name] = value


def _organization(out: Translated, name: str, value: Any) -> None:
    if value:
        out.http.setdefault("headers", {})["OpenAI-Organization"] = str(value)


def _api_type(out: Translated, name: str, value: Any) -> None:
    if value in (None, "openai", "azure", "azure_ad"):
        return  # azure is inferred in translate(); openai is the default
    raise ConfigurationError(
        f"openai_api_type={value!r} is not supported: pass provider= (openai, azure, mistral, "
        "ollama, openai_compatible)",
        field="openai_api_type",
    )


def _azure_ad_token(out: Translated, name: str, value: Any) -> None:
    if value:
        token = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        out.options["token_provider"] = _Constant(token)


def _option(out: Translated, name: str, value: Any) -> None:
    if value is not None:
        out.options[name] = value


def _progress(out: Translated, name: str, value: Any) -> None:
    out.show_progress = bool(value)


class _Constant:
    """A token provider returning one fixed token (kept out of ``repr``)."""

    __slots__ = ("_token",)

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self) -> str:
        return self._token

    def __repr__(self) -> str:
        return "_Constant(token=**********)"


_HANDLERS: dict[str, Callable[[Translated, str, Any], None]] = {
    "api_key": _api_key,
    "base_url": _base_url,
    **dict.fromkeys(_PROFILE_FIELDS, _profile_field),
    **dict.fromkeys(_PEER_POLICY_FIELDS, _policy_field),
    "timeout": _timeout,
    "extra_body": _extra_body,
    **dict.fromkeys(("headers", "params", "proxy"), _http),
    "organization": _organization,
    "openai_api_type": _api_type,
    "azure_ad_token": _azure_ad_token,
    **dict.fromkeys(_CLIENT_OPTIONS, _option),
    "show_progress_bar": _progress,
    **_peers.HANDLERS,
}
_KNOWN = frozenset(
    [*_HANDLERS, *_ALL_IGNORED, *_ALL_ALIASES.values(), "provider", "profile", "model",
     "dimensions"]
)  # fmt: skip
