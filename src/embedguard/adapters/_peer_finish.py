"""What the peers' keywords mean once the provider is known (run by :func:`._vocabulary.translate`).

:func:`finish` settles the provider (given, the profile's, or told by the peer keywords), then
what only the provider decides: a truncation switch becomes ``context_policy="truncate"`` and the
provider's own cut as a backstop; a Gemini ``api_version`` joins the base URL; a TEI URL given as
``model`` becomes the base URL; Bedrock body settings (``model_kwargs``) land on the profile's
fields and the AWS keywords on the variables the client reads; a batch size stays within the
API's maximum.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, get_args

from embedguard.core import profiles
from embedguard.core.config import ProviderKind, ProviderProfile
from embedguard.core.errors import ConfigurationError

from ._peers import KEY_OWNERS, both_input_types, cut_of, dtype_of, set_cut
from ._translated import Translated, put

__all__ = ["finish"]

_PROVIDERS = frozenset(get_args(ProviderKind))
_BEDROCK_FAMILIES = frozenset({"amazon", "cohere", "twelvelabs"})  # langchain-aws's `provider`
_CAPPED = frozenset({"cohere", "gemini", "voyage", "bedrock"})  # max_inputs is the API's cap
# The field (and value) that makes the provider cut an over-long text itself.
_SERVER_CUT: dict[str, tuple[str, Any]] = {
    "cohere": ("truncate", "END"),
    "voyage": ("truncation", True),
    "tei": ("truncate", True),
}
_HUB_KEYWORDS = ("huggingfacehub_api_token", "repo_id", "task")
_VERSIONED = re.compile(r".*/v\d+(?:alpha|beta)?\d*/?")
_AWS_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def finish(out: Translated, base: ProviderProfile | None, environ: Mapping[str, str]) -> None:
    """Complete ``out`` for its provider (see the module docstring).

    Args:
        out: The translated keywords (changed in place).
        base: The profile the adapter was given, if any (its provider and model count).
        environ: The variables the client would read (for the AWS keywords' copy).

    Raises:
        ConfigurationError: Keywords of two providers, a key of another provider than the one
            given, or a setting the provider cannot honour (the message says what to do).
    """
    provider = _provider(out, base)
    model = out.settings.get("model") or (base.model if base is not None else None)
    bedrock_cohere = False
    if provider == "bedrock":
        bedrock_cohere = _bedrock_body(out, model)
    elif provider == "tei":
        _tei(out, environ)
    elif provider == "gemini":
        _gemini(out, environ)
    _truncation(out, provider, bedrock_cohere)
    if provider == "bedrock":
        _normalize(out, model)
        _aws(out, environ)
    elif out.normalize:
        raise ConfigurationError(
            "normalize is langchain-aws BedrockEmbeddings' setting (provider bedrock)",
            field="normalize",
        )
    _cap_batch(out, provider, model)


def _provider(out: Translated, base: ProviderProfile | None) -> str:
    """The provider: given, the profile's, or the one the peer keywords belong to."""
    given = out.settings.get("provider")
    bedrock_words = any(p == "bedrock" for p in out.implied.values())
    if given in _BEDROCK_FAMILIES and (bedrock_words or given not in _PROVIDERS):
        out.settings.pop("provider")
        out.ignored["provider"] = (
            f"{given!r} is langchain-aws's model family; embedguard tells it from the model id"
        )
        out.implied["provider"] = "bedrock"
        given = None
    fixed = given or (base.provider if base is not None else None)
    if fixed is not None:
        if fixed not in _PROVIDERS and "tei" in out.implied.values():
            raise ConfigurationError(
                f"provider={fixed!r} is a Hugging Face inference provider; embedguard's tei "
                "provider talks to a TEI server: pass its URL as model= and drop provider=",
                field="provider",
            )
        for name, owner in out.implied.items():
            if name in KEY_OWNERS and owner != fixed:
                raise ConfigurationError(
                    f"{name} belongs to the {owner} provider, not {fixed}: pass one or the other",
                    field=name,
                )
        return str(fixed)
    candidates = sorted(set(out.implied.values()))
    if len(candidates) > 1:
        said = ", ".join(f"{name} ({owner})" for name, owner in sorted(out.implied.items()))
        raise ConfigurationError(
            f"cannot tell the provider from {said}: pass provider=", field="provider"
        )
    if candidates:
        out.settings["provider"] = candidates[0]
        return candidates[0]
    return "openai"


def _truncation(out: Translated, provider: str, bedrock_cohere: bool) -> None:
    """A peer's truncation switch: the client's context policy, and the provider's own cut."""
    body = out.layer.get("extra_body") or {}
    if provider == "tei" and "truncate" in body:  # HuggingFaceEndpointEmbeddings' model_kwargs
        set_cut(out, "model_kwargs", cut_of("model_kwargs['truncate']", body["truncate"]))
    if out.cut is None:
        return
    policy = out.options.get("context_policy")
    if not out.cut:
        if policy == "truncate":
            raise ConfigurationError(
                "the peer's truncation keyword says never cut, context_policy='truncate' says cut",
                field="context_policy",
            )
        return  # every codec refuses an over-long text by default
    if policy not in (None, "truncate"):
        raise ConfigurationError(
            f"the peer's truncation keyword cuts over-long texts, context_policy={policy!r} "
            "does not: pass one or the other",
            field="context_policy",
        )
    out.options["context_policy"] = "truncate"
    server = ("truncate", "END") if bedrock_cohere else _SERVER_CUT.get(provider)
    if server is not None:  # a text the client's count let through is cut, not refused
        out.layer.setdefault("extra_body", {}).setdefault(*server)


def _gemini(out: Translated, environ: Mapping[str, str]) -> None:
    """A bare host becomes an https URL; ``api_version`` joins the base URL."""
    from embedguard.core.providers.gemini import BASE_URL_VARIABLE, DEFAULT_BASE_URL

    url = out.settings.get("base_url")
    if isinstance(url, str) and "://" not in url:
        out.settings["base_url"] = f"https://{url.strip()}"
    version = out.layer.pop("api_version", None)
    if not version:
        return
    root = str(
        out.settings.get("base_url") or environ.get(BASE_URL_VARIABLE, "").strip()
        or DEFAULT_BASE_URL
    ).rstrip("/")  # fmt: skip
    if _VERSIONED.fullmatch(root):
        raise ConfigurationError(
            f"api_version={version!r} and a base URL that names a version already ({root})",
            field="api_version",
        )
    out.settings["base_url"] = f"{root}/{str(version).strip('/')}"


def _tei(out: Translated, environ: Mapping[str, str]) -> None:
    """HuggingFaceEndpointEmbeddings' ``model`` is the TEI server's URL (or a Hub repo id)."""
    model = out.settings.get("model")
    if isinstance(model, str) and model.startswith(("http://", "https://")):
        url = model.rstrip("/")
        if out.settings.get("base_url") not in (None, url):
            raise ConfigurationError("model is a URL and base_url another", field="base_url")
        out.settings["base_url"] = url
        del out.settings["model"]  # the profile's label stays: TEI serves one model
    hub = any(name in out.implied for name in _HUB_KEYWORDS)
    if hub and not out.settings.get("base_url") and not environ.get("TEI_BASE_URL", "").strip():
        raise ConfigurationError(
            "HuggingFaceEndpointEmbeddings with a Hub repo id calls Hugging Face's hosted API, "
            "which embedguard does not speak: pass the TEI server's URL as model= (or "
            "base_url=, or set TEI_BASE_URL)",
            field="model",
        )


def _family(model: str | None) -> Any:
    from embedguard.core.providers._bedrock_models import bedrock_model

    return bedrock_model(model or profiles.bedrock().model)


def _bedrock_body(out: Translated, model: str | None) -> bool:
    """Body settings of ``model_kwargs`` / ``additional_kwargs`` that the profile has fields for
    (Cohere: ``embedding_types``, ``input_type``, ``output_dimension``, ``truncate``; Titan v2:
    ``embeddingTypes``). Returns whether the model is a Cohere one."""
    spec = _family(model)
    cohere = spec is not None and spec.cohere
    body = out.layer.get("extra_body")
    if not body:
        return cohere
    if cohere:
        if "embedding_types" in body:
            put(out.layer, "dtype", dtype_of("embedding_types", body.pop("embedding_types")))
        if "input_type" in body:
            both_input_types(out, "input_type", body.pop("input_type"))
        if "output_dimension" in body:
            put(out.settings, "dimensions", body.pop("output_dimension"))
        if "truncate" in body:
            set_cut(out, "model_kwargs", cut_of("model_kwargs['truncate']", body.pop("truncate")))
    elif "embeddingTypes" in body:
        dtype = dtype_of("embeddingTypes", body.pop("embeddingTypes"))
        if dtype != "float32":
            put(out.layer, "dtype", dtype)
    if not body:
        del out.layer["extra_body"]
    return cohere


def _normalize(out: Translated, model: str | None) -> None:
    """langchain-aws normalises client-side; Titan v2 is asked for unit vectors already."""
    if not out.normalize:
        return
    spec = _family(model)
    body = out.layer.get("extra_body") or {}
    if spec is None or spec.family != "titan-v2" or body.get("normalize") is False:
        raise ConfigurationError(
            "normalize=True is supported for Titan v2 only (asked for unit vectors: normalize: "
            "true): embedguard returns other models' vectors as they are; divide them by their "
            "norm yourself",
            field="normalize",
        )


def _aws(out: Translated, environ: Mapping[str, str]) -> None:
    """The AWS keywords become the variables this client's codec reads (``AWS_PROFILE``,
    ``AWS_ACCESS_KEY_ID``...), over a copy of ``environ``: like ``boto3.Session(...)``."""
    aws = out.aws
    if not aws:
        return
    key_id, secret = aws.get("aws_access_key_id"), aws.get("aws_secret_access_key")
    if (key_id is None) != (secret is None) or ("aws_session_token" in aws and key_id is None):
        raise ConfigurationError(
            "aws_access_key_id and aws_secret_access_key go together (with aws_session_token "
            "for temporary credentials)",
            field="aws_access_key_id" if key_id is None else "aws_secret_access_key",
        )
    env = dict(environ)
    for name in _AWS_KEYS:  # credentials named here replace those of the environment
        env.pop(name, None)
    if "api_key" not in out.settings:  # nor does a Bedrock API key variable take over
        env.pop("AWS_BEARER_TOKEN_BEDROCK", None)
    if "aws_profile" in aws:
        env["AWS_PROFILE"] = aws["aws_profile"]
    if key_id is not None and secret is not None:
        env.update(AWS_ACCESS_KEY_ID=key_id, AWS_SECRET_ACCESS_KEY=secret)
        if "aws_session_token" in aws:
            env["AWS_SESSION_TOKEN"] = aws["aws_session_token"]
    out.environ = env


def _cap_batch(out: Translated, provider: str, model: str | None) -> None:
    """A peer batch size above what the API takes per request is the API's maximum."""
    size = (out.layer.get("batching") or {}).get("max_inputs")
    if provider not in _CAPPED or not isinstance(size, int):
        return
    try:
        default = profiles.get(provider, **({"model": model} if model else {}))
    except ConfigurationError:
        return  # the profile itself will say what is wrong with the model
    out.layer["batching"]["max_inputs"] = min(size, default.batching.max_inputs)
