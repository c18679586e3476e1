"""The README-facing table of the Cohere, Voyage AI, Gemini, Bedrock and TEI peers' keywords.

:data:`TABLE` lists what each keyword becomes; docs/adapters.md shows :func:`table_markdown`.
"""

from __future__ import annotations

from ._peers import BOTO, IGNORED, NO_TITLE, VERTEX, VERTEX_NAMES

__all__ = ["TABLE", "table_markdown"]

_CUT = (
    "`True` / `'END'`: `context_policy='truncate'` (the client cuts an over-long text to "
    "`batching.max_tokens_per_input` before sending it, counted in `inputs_adjusted`), and the "
    "provider's own cut as a backstop (Cohere `truncate: END`, Voyage `truncation: true`, TEI "
    "`truncate: true`); `False` / `'NONE'`: refused before sending (embedguard's default); "
    "`'START'`: refused"
)
_TYPES = "profile `query_input_type` and `document_input_type`: the peer sends it for every text"
TABLE: list[tuple[str, str]] = [
    ("cohere_api_key", "`api_key`; selects provider `cohere` (default: `CO_API_KEY`, then "
                       "`COHERE_API_KEY`)"),
    ("voyage_api_key", "`api_key`; selects provider `voyage` (default: `VOYAGE_API_KEY`)"),
    ("google_api_key", "`api_key`; selects provider `gemini` (default: `GOOGLE_API_KEY`, then "
                       "`GEMINI_API_KEY`)"),
    *((name, "`api_key` of the TEI server; selects provider `tei` (default: `TEI_API_KEY`; "
             "`HF_TOKEN` is never read; a function is refused)")
      for name in ("huggingfacehub_api_token", "auth_token")),
    *((name, "SigV4 credentials of this client only (never in `repr`, dumps or pickles; an "
             "`AWS_BEARER_TOKEN_BEDROCK` variable is then not used); selects provider `bedrock`")
      for name in ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")),
    *((name, "the AWS profile SigV4 credentials and the region come from (`AWS_PROFILE` for this "
             "client; the `AWS_ACCESS_KEY_ID`... variables are then not used); selects provider "
             "`bedrock`") for name in ("credentials_profile_name", "profile_name")),
    ("model_id", "`model` (a Bedrock model id, inference profile or ARN); suggests `bedrock`"),
    ("region_name", "profile `region` (Bedrock); suggests `bedrock`"),
    ("endpoint_url", "`base_url` (a Bedrock Runtime endpoint); suggests `bedrock`"),
    ("repo_id", "`model` (HuggingFaceEndpointEmbeddings' older name)"),
    ("model (a URL)", "HuggingFaceEndpointEmbeddings' TEI URL: `base_url` of the `tei` provider "
                      "(a Hub repo id is refused: embedguard does not speak Hugging Face's "
                      "hosted API)"),
    *((name, "`dimensions`") for name in ("output_dimension", "output_dimensionality")),
    *((name, "`dtype` (`float` -> `float32`, `int8`, `uint8`, `binary`, `ubinary`; one type)")
      for name in ("embedding_types", "embedding_type", "output_dtype")),
    ("input_type", _TYPES + " (LlamaIndex's CohereEmbedding)"),
    ("task_type", _TYPES + " (the Gemini peers)"),
    ("query_instruction", "profile `query_prefix` (the instruction and a space)"),
    ("text_instruction", "profile `document_prefix` (the instruction and a space)"),
    *((name, _CUT) for name in ("truncate", "truncation", "truncate_text")),
    ("batch_size", "`batching.max_inputs` (at most the API's maximum)"),
    ("retries", "`retry.max_retries`: `retries - 1` (GoogleGenAIEmbedding counts attempts)"),
    ("retry_exponential_base", "`retry.multiplier`"),
    ("request_options", "its `timeout` -> `timeouts`; other keys refused"),
    ("client_options", "its `api_endpoint` -> `base_url` (`https://` added to a bare host), "
                       "`api_key` -> `api_key`; other keys refused"),
    ("http_options", "its `base_url`, `api_version`, `headers`, `timeout` (milliseconds) "
                     "mapped; other keys refused"),
    ("embedding_config", "its `output_dimensionality` -> `dimensions`, `auto_truncate` -> as "
                         "`truncation`; `task_type` ignored with a warning (the peer replaces "
                         "it on every call too); other keys refused"),
    ("api_version (Gemini)", "appended to `base_url` (`https://generativelanguage.googleapis.com"
                             "/v1`)"),
    ("additional_headers", "headers on every request"),
    ("user_agent", "the `X-Client-Name` header (where the Cohere SDK sends it)"),
    ("normalize", "`True`: accepted for Titan v2 (asked for unit vectors: `normalize: true`); "
                  "refused for other models (embedguard returns their vectors as they are)"),
    ("provider (langchain-aws)", "the Bedrock model family (`amazon`, `cohere`): ignored with a "
                                 "warning, the family is told from the model id"),
    ("provider (langchain-huggingface)", "Hugging Face's inference provider: refused"),
    ("task", "`feature-extraction` only (anything else is refused)"),
    ("httpx_client", "`http_client`"),
    ("httpx_async_client", "`async_http_client`"),
    ("transport", "a string (`rest`, `grpc`): ignored with a warning: embedguard sends REST "
                  "requests over httpx"),
    *((name, f"ignored, with a warning: {why}") for name, why in IGNORED.items()),
    *((name, f"refused: {VERTEX}")
      for name in VERTEX_NAMES),
    *((name, f"refused: {BOTO}") for name in ("botocore_session", "botocore_config", "config")),
    ("client_args", "refused: pass `http_client=` / `async_http_client=` built with them"),
    ("title", f"refused: {NO_TITLE}"),
]  # fmt: skip
"""The Cohere, Voyage AI, Gemini, Bedrock and TEI peers' keywords and what each becomes."""


def table_markdown() -> str:
    """:data:`TABLE` as the Markdown table docs/adapters.md shows (names sharing a meaning
    share a row)."""
    rows: dict[str, list[str]] = {}
    for name, meaning in TABLE:
        rows.setdefault(meaning, []).append(name)
    lines = ["| Peer keyword | In embedguard |", "|---|---|"]
    for meaning, names in rows.items():
        cells = ", ".join(_cell(n) for n in names)
        lines.append(f"| {cells} | {meaning.replace('|', '/')} |")
    return "\n".join(lines)


def _cell(name: str) -> str:
    """``model (a URL)`` -> ```model` (a URL)``: the keyword in code, the note after it."""
    keyword, _, note = name.partition(" (")
    return f"`{keyword}` ({note}" if note else f"`{keyword}`"
