"""Provider codecs: each builds a request description and parses the response (no I/O).

``make_codec(profile)`` picks the codec for ``profile.provider``. The client pipeline sends the
:class:`HttpRequest` and hands the reply to ``codec.parse_response``, which returns an
:class:`EmbeddingResult` or raises the typed :class:`~embedguard.core.errors.ProviderError`.
"""

from ._decode import decode_openai_data
from ._errors import error_from_response
from .azure import AzureOpenAICodec
from .base import Codec, EmbeddingResult, HttpRequest, RateLimitInfo
from .cohere import CohereCodec
from .compatible import OpenAICompatibleCodec
from .gemini import GeminiCodec
from .mistral import MistralCodec
from .ollama import OllamaCodec
from .openai import OpenAICodec
from .registry import make_codec
from .tei import TEICodec

__all__ = [
    "AzureOpenAICodec",
    "Codec",
    "CohereCodec",
    "EmbeddingResult",
    "GeminiCodec",
    "HttpRequest",
    "MistralCodec",
    "OllamaCodec",
    "OpenAICodec",
    "OpenAICompatibleCodec",
    "RateLimitInfo",
    "TEICodec",
    "decode_openai_data",
    "error_from_response",
    "make_codec",
]
