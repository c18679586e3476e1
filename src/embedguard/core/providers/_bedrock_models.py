"""The Bedrock embedding models embedguard speaks, by family, and how to tell a model id's family.

A model id may be a base id (``amazon.titan-embed-text-v2:0``), a cross-Region inference profile
(``us.cohere.embed-v4:0``, ``global.…``) or an ARN that names one of those
(``arn:aws:bedrock:us-east-1::foundation-model/cohere.embed-english-v3``). An application
inference profile ARN (``…:application-inference-profile/abc123``) does not name its model, so
its family cannot be told from the id.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BEDROCK_MODELS", "BedrockModel", "base_model_id", "bedrock_model"]


@dataclass(frozen=True)
class BedrockModel:
    """One family of Bedrock embedding models: its wire format and limits.

    Attributes:
        family: ``titan-v1``, ``titan-v2``, ``cohere-v3`` or ``cohere-v4``.
        native: The vector size sent when none is asked for.
        sizes: The sizes the model can be asked for (``native`` alone: fixed).
        dtypes: The :data:`~embedguard.core.config.VectorDtype` values it can return.
        max_inputs: Texts per request (Titan: 1; Cohere: 96).
        max_tokens_per_input: Tokens one text may hold (Titan 8,192; Cohere v3 512, v4 128,000).
        max_tokens_per_request: Tokens one request may hold (v4: an assumed cap; none is stated).
        pool_size: Requests in flight by default (Titan sends one text per request).
    """

    family: str
    native: int
    sizes: frozenset[int]
    dtypes: frozenset[str]
    max_inputs: int
    max_tokens_per_input: int
    max_tokens_per_request: int
    pool_size: int

    @property
    def cohere(self) -> bool:
        """Whether the body is Cohere's (``texts``, ``input_type``) rather than Titan's."""
        return self.family.startswith("cohere")


_ALL_DTYPES = frozenset({"float32", "int8", "uint8", "binary", "ubinary"})
_TITAN = {"max_inputs": 1, "max_tokens_per_input": 8192, "max_tokens_per_request": 8192,
          "pool_size": 16}  # fmt: skip
_COHERE = {"max_inputs": 96, "pool_size": 8}

BEDROCK_MODELS: dict[str, BedrockModel] = {
    "titan-v1": BedrockModel(
        "titan-v1", 1536, frozenset({1536}), dtypes=frozenset({"float32"}), **_TITAN
    ),
    "titan-v2": BedrockModel(
        "titan-v2",
        1024,
        frozenset({256, 512, 1024}),
        dtypes=frozenset({"float32", "binary", "ubinary"}),
        **_TITAN,
    ),
    "cohere-v3": BedrockModel(
        "cohere-v3",
        1024,
        frozenset({1024}),
        dtypes=_ALL_DTYPES,
        max_tokens_per_input=512,
        max_tokens_per_request=96 * 512,
        **_COHERE,
    ),
    "cohere-v4": BedrockModel(
        "cohere-v4",
        1536,
        frozenset({256, 512, 1024, 1536}),
        dtypes=_ALL_DTYPES,
        max_tokens_per_input=128_000,
        max_tokens_per_request=128_000,
        **_COHERE,
    ),
}
"""The families by name; Titan v2's sizes are AWS's (1024/512/256), v4's Cohere's."""

_PREFIXES = (
    ("amazon.titan-embed-text-v2", "titan-v2"),
    ("amazon.titan-embed-text-v1", "titan-v1"),
    ("amazon.titan-embed-g1-text", "titan-v1"),
    ("cohere.embed-v4", "cohere-v4"),
    ("cohere.embed-english-v3", "cohere-v3"),
    ("cohere.embed-multilingual-v3", "cohere-v3"),
)


def base_model_id(model: str) -> str:
    """The base model id a model id names: an ARN's resource name without its type, and a
    cross-Region inference profile without its geography (``us.``, ``eu.``, ``global.``...)."""
    name = model.strip()
    if name.startswith("arn:"):
        name = name.rsplit("/", 1)[-1]
    head, dot, rest = name.partition(".")
    if dot and head not in ("amazon", "cohere") and rest.split(".", 1)[0] in ("amazon", "cohere"):
        return rest
    return name


def bedrock_model(model: str) -> BedrockModel | None:
    """The family of ``model`` (any id form), or ``None`` when it is not one embedguard speaks."""
    base = base_model_id(model)
    for prefix, family in _PREFIXES:
        if base == prefix or base.startswith((prefix + ":", prefix + "-")):
            return BEDROCK_MODELS[family]
    return None
