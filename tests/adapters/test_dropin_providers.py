"""Drop-in for the Cohere, Voyage AI, Gemini, Bedrock and TEI peers: their keywords build the
right profile, key and client (issue 17). The round trips over the loopback server are in
test_dropin_providers_wire.py.

The peers are not installed here: their keyword lists below were read from their sources
(langchain-ai/langchain-cohere, voyage-ai/langchain-voyageai, langchain-ai/langchain-google,
langchain-ai/langchain-aws, langchain-ai/langchain partners/huggingface, run-llama/llama_index
llama-index-integrations/embeddings/*).
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest

from embedguard import ConfigurationError, ProviderProfile, profiles
from embedguard.adapters._peer_table import table_markdown
from embedguard.adapters._shared import _key_of
from embedguard.adapters._vocabulary import TABLE, Translated, translate
from embedguard.adapters.langchain import GuardedEmbeddings
from embedguard.adapters.llamaindex import GuardedEmbedding

from .conftest import KEY

SECRET = "PLANTED/aws+secret/0123456789abcdefVOCAB"
KEY_ID = "AKIDPLANTEDVOCAB0001"
_AWS_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
             "AWS_BEARER_TOKEN_BEDROCK", "AWS_REGION", "AWS_DEFAULT_REGION", "CO_API_KEY",
             "COHERE_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY", "VOYAGE_API_KEY",
             "VOYAGE_API_KEY_PATH", "TEI_API_KEY", "TEI_BASE_URL")  # fmt: skip


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No key, credential or AWS config of the machine running the tests leaks in."""
    for name in _AWS_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _quiet(make: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return make(**kwargs)


def _translated(**kwargs: Any) -> Translated:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return translate(dict(kwargs), owner="test", environ={})


# -- one construction per peer ------------------------------------------------------------------
def test_langchain_cohere_keywords() -> None:
    """CohereEmbeddings' keywords: the Cohere key selects cohere; types, cut, timeout, agent."""
    emb = GuardedEmbeddings(
        model="embed-english-v3.0", cohere_api_key=KEY, embedding_types=["int8"],
        truncate="END", max_retries=5, request_timeout=12, user_agent="my-app",
        base_url="https://cohere.example",
    )  # fmt: skip
    p = emb.profile
    assert (emb.provider, emb.model, emb.api_key.get_secret_value()) == ("cohere", p.model, KEY)
    assert (p.dtype, p.retry.max_retries, p.timeouts.request) == ("int8", 5, 12)
    assert (p.base_url, p.batching.max_inputs) == ("https://cohere.example", 96)
    assert p.extra_body == {"truncate": "END"} and emb.client._context_policy == "truncate"
    assert emb._owned is not None and emb._owned[0].headers["x-client-name"] == "my-app"


def test_llamaindex_cohere_keywords() -> None:
    """CohereEmbedding: input_type is sent for every text; a batch above 96 is sent as 96s."""
    emb = GuardedEmbedding(
        model_name="embed-multilingual-v3.0", cohere_api_key=KEY, input_type="classification",
        embedding_type="ubinary", embed_batch_size=200, timeout=7.5, truncate="NONE",
    )  # fmt: skip
    p = emb.profile
    assert (emb.provider, emb.model_name) == ("cohere", "embed-multilingual-v3.0")
    assert (p.query_input_type, p.document_input_type) == ("classification", "classification")
    assert (p.dtype, p.batching.max_inputs, emb.embed_batch_size) == ("ubinary", 96, 200)
    assert p.timeouts.request == 7.5 and emb.client._context_policy == "error"


def test_langchain_voyage_keywords() -> None:
    """VoyageAIEmbeddings: the key selects voyage; batch_size, output_dimension, truncation."""
    emb = GuardedEmbeddings(
        model="voyage-3.5", voyage_api_key=KEY, batch_size=5000, output_dimension=512,
        truncation=True, show_progress_bar=True,
    )  # fmt: skip
    p = emb.profile
    assert (emb.provider, emb.dimensions, p.batching.max_inputs) == ("voyage", 512, 1000)
    assert p.extra_body == {"truncation": True} and emb.show_progress_bar


def test_llamaindex_voyage_keywords() -> None:
    """VoyageEmbedding: output_dtype and output_dimension land on the profile; no cut."""
    emb = GuardedEmbedding(
        model_name="voyage-3-large", voyage_api_key=KEY, output_dtype="int8",
        output_dimension=256, truncation=False, embed_batch_size=7,
    )  # fmt: skip
    p = emb.profile
    assert (emb.provider, p.dtype, emb.dimensions, p.batching.max_inputs) == (
        "voyage", "int8", 256, 7,
    )  # fmt: skip
    assert p.extra_body == {} and emb.client._context_policy == "error"


def test_langchain_google_keywords() -> None:
    """GoogleGenerativeAIEmbeddings: task_type for every text, dimensions, headers, api_version."""
    with pytest.warns(UserWarning, match="transport"):
        emb = GuardedEmbeddings(
            model="models/gemini-embedding-001", google_api_key=KEY, task_type="CLUSTERING",
            output_dimensionality=768, additional_headers={"X-Team": "t"}, transport="rest",
            request_options={"timeout": 9}, api_version="v1",
            client_options={"api_endpoint": "generativelanguage.googleapis.com"},
        )  # fmt: skip
    p = emb.profile
    assert (emb.provider, emb.model, emb.dimensions) == ("gemini", "gemini-embedding-001", 768)
    assert (p.query_input_type, p.document_input_type) == ("CLUSTERING", "CLUSTERING")
    assert p.base_url == "https://generativelanguage.googleapis.com/v1"
    assert p.timeouts.request == 9 and emb._owned is not None
    assert emb._owned[0].headers["x-team"] == "t"


def test_llamaindex_google_genai_keywords() -> None:
    """GoogleGenAIEmbedding: embedding_config, http_options (ms), retries counted as attempts."""
    with pytest.warns(UserWarning, match=r"embedding_config\['task_type'\]"):
        emb = GuardedEmbedding(
            model_name="text-embedding-004", api_key=KEY, provider="gemini",
            embedding_config={"output_dimensionality": 256, "task_type": "CLUSTERING"},
            http_options={"timeout": 30_000, "base_url": "https://proxy.example"},
            retries=4, retry_min_seconds=2, retry_max_seconds=30, retry_exponential_base=3,
        )  # fmt: skip
    p = emb.profile
    assert (emb.dimensions, p.base_url, p.timeouts.request) == (256, "https://proxy.example", 30)
    assert (p.retry.max_retries, p.retry.initial_delay, p.retry.max_delay) == (3, 2, 30)
    assert p.retry.multiplier == 3 and p.query_input_type is None


def test_llamaindex_gemini_keywords() -> None:
    """GeminiEmbedding: task_type for every text, api_base as a bare host, request_options."""
    emb = GuardedEmbedding(
        model_name="models/embedding-001", api_key=KEY, task_type="retrieval_document",
        api_base="generativelanguage.googleapis.com", request_options={"timeout": 20},
        title="",
    )  # fmt: skip
    p = emb.profile
    assert (emb.provider, emb.model_name, emb.dimensions) == ("gemini", "embedding-001", 768)
    assert p.query_input_type == p.document_input_type == "retrieval_document"
    assert p.base_url == "https://generativelanguage.googleapis.com"


def test_langchain_bedrock_keywords() -> None:
    """BedrockEmbeddings: model_id, region_name, endpoint_url; its `provider` family ignored;
    model_kwargs land on the profile's fields; the keys go to this client's variables only."""
    kwargs = {"model_id": "cohere.embed-english-v3", "region_name": "us-west-2",
              "endpoint_url": "https://vpce.example", "provider": "cohere",
              "aws_access_key_id": KEY_ID, "aws_secret_access_key": SECRET,
              "model_kwargs": {"input_type": "clustering", "truncate": "END",
                               "embedding_types": ["int8"]}}  # fmt: skip
    with pytest.warns(UserWarning, match="langchain-aws's model family"):
        emb = GuardedEmbeddings(**kwargs)
    p = emb.profile
    assert (emb.provider, emb.model, p.region, p.base_url) == (
        "bedrock", "cohere.embed-english-v3", "us-west-2", "https://vpce.example",
    )  # fmt: skip
    assert (p.dtype, p.query_input_type, p.document_input_type) == ("int8", *["clustering"] * 2)
    assert p.extra_body == {"truncate": "END"} and emb.client._context_policy == "truncate"
    out = _translated(**kwargs)
    assert out.environ == {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
    for shown in (repr(emb), str(emb.model_dump()), repr(out), pickle.dumps(emb)):
        assert SECRET not in str(shown) and KEY_ID not in str(shown)


def test_langchain_bedrock_profile_and_normalize() -> None:
    """credentials_profile_name becomes AWS_PROFILE for this client (the environment's keys
    and bearer key no longer apply); normalize=True is Titan v2's own behaviour."""
    out = translate(
        {"model_id": "amazon.titan-embed-text-v2:0", "credentials_profile_name": "dev",
         "normalize": True, "model_kwargs": {"dimensions": 512}},
        owner="test", environ={"AWS_ACCESS_KEY_ID": "A", "AWS_SECRET_ACCESS_KEY": "B",
                               "AWS_BEARER_TOKEN_BEDROCK": "C", "HOME": "/h"},
    )  # fmt: skip
    assert out.environ == {"AWS_PROFILE": "dev", "HOME": "/h"}
    assert (out.settings["provider"], out.settings["dimensions"]) == ("bedrock", 512)
    with pytest.raises(ConfigurationError, match="Titan v2 only"):
        translate({"model_id": "amazon.titan-embed-text-v1", "normalize": True}, owner="t")


def test_llamaindex_bedrock_keywords() -> None:
    """BedrockEmbedding: profile_name, keys, additional_kwargs; Titan takes one text a request;
    its LLM prompt settings are ignored with one warning."""
    with pytest.warns(UserWarning, match="system_prompt") as caught:
        emb = GuardedEmbedding(
            model_name="amazon.titan-embed-text-v2:0", region_name="eu-west-1",
            aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET, aws_session_token="T",
            additional_kwargs={"dimensions": 256, "normalize": True}, max_retries=6,
            timeout=15.0, embed_batch_size=10, system_prompt=None, output_parser=None,
        )  # fmt: skip
    assert len(caught) == 1
    p = emb.profile
    assert (emb.provider, emb.dimensions, p.region, p.batching.max_inputs) == (
        "bedrock", 256, "eu-west-1", 1,
    )  # fmt: skip
    assert (p.extra_body, p.retry.max_retries, p.timeouts.request) == ({"normalize": True}, 6, 15)
    assert SECRET not in emb.to_json() and SECRET not in repr(emb)


def test_langchain_huggingface_endpoint_keywords() -> None:
    """HuggingFaceEndpointEmbeddings: a TEI URL as model is the tei provider's base URL; the
    token is the server's key; model_kwargs' truncate and prompt_name take effect."""
    out = _translated(
        model="http://tei.internal:8080/", huggingfacehub_api_token=KEY,
        task="feature-extraction", model_kwargs={"truncate": True, "prompt_name": "query"},
    )  # fmt: skip
    assert out.settings == {"provider": "tei", "base_url": "http://tei.internal:8080",
                            "api_key": KEY}  # fmt: skip
    assert out.options == {"context_policy": "truncate"}
    assert out.layer["extra_body"] == {"truncate": True, "prompt_name": "query"}
    with pytest.raises(ConfigurationError, match="hosted API"):
        _translated(model="BAAI/bge-small-en-v1.5", huggingfacehub_api_token=KEY)
    with pytest.raises(ConfigurationError, match="Hugging Face inference provider"):
        _translated(model="http://tei:80", provider="hf-inference", huggingfacehub_api_token=KEY)


def test_llamaindex_text_embeddings_inference_keywords() -> None:
    """TextEmbeddingsInference: instructions become prefixes (instruction and a space), the
    auth token the key, truncate_text the client's cut plus TEI's own."""
    out = _translated(
        model_name="BAAI/bge-small-en-v1.5", base_url="http://127.0.0.1:8080",
        query_instruction="Represent this query:", text_instruction="", timeout=30.0,
        truncate_text=True, auth_token=KEY, embed_batch_size=16,
    )  # fmt: skip
    assert out.settings == {"provider": "tei", "model": "BAAI/bge-small-en-v1.5",
                            "base_url": "http://127.0.0.1:8080", "api_key": KEY}  # fmt: skip
    assert out.layer == {"query_prefix": "Represent this query: ", "timeouts": 30.0,
                         "extra_body": {"truncate": True}}  # fmt: skip
    assert out.options == {"context_policy": "truncate"}
    assert "embed_batch_size" not in out.layer  # LlamaIndex's own field (the adapter maps it)


# -- keys from the environment ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("provider", "environ", "expected"),
    [
        ("cohere", {"COHERE_API_KEY": "b"}, "b"),
        ("cohere", {"CO_API_KEY": "a", "COHERE_API_KEY": "b"}, "a"),
        ("gemini", {"GEMINI_API_KEY": "g"}, "g"),
        ("gemini", {"GOOGLE_API_KEY": "k", "GEMINI_API_KEY": "g"}, "k"),
        ("voyage", {"VOYAGE_API_KEY": "v"}, "v"),
        ("voyage", {"VOYAGE_API_KEY": "v", "VOYAGE_API_KEY_PATH": "/k"}, None),
        ("bedrock", {"AWS_BEARER_TOKEN_BEDROCK": "bk", "AWS_ACCESS_KEY_ID": "x"}, "bk"),
        ("bedrock", {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y"}, None),
        ("tei", {"TEI_API_KEY": "t", "HF_TOKEN": "h"}, "t"),
        ("tei", {"HF_TOKEN": "h", "HUGGINGFACEHUB_API_TOKEN": "h"}, None),
    ],
)
def test_keys_are_read_from_the_providers_variables(
    provider: str, environ: dict[str, str], expected: str | None
) -> None:
    """Each provider's key variables, in the codec's order; Bedrock without one signs (SigV4),
    a Voyage key file is left to the codec, a Hugging Face token is never read for TEI."""
    key = _key_of(ProviderProfile(provider=provider, model="m"), None, environ)  # type: ignore[arg-type]
    assert (key.get_secret_value() if key else None) == expected


# -- which provider ----------------------------------------------------------------------------
def test_a_key_keyword_contradicting_the_provider_is_refused() -> None:
    """A Cohere key is never sent to another provider, given or set by a profile."""
    for make in (GuardedEmbeddings, GuardedEmbedding):
        with pytest.raises(ConfigurationError, match="belongs to the cohere provider"):
            make(provider="openai", cohere_api_key=KEY)
        with pytest.raises(ConfigurationError, match="belongs to the voyage provider"):
            make(profiles.mistral(), voyage_api_key=KEY)


def test_keywords_of_two_peers_need_a_provider() -> None:
    """Keywords of two peer families do not guess: the error names them."""
    with pytest.raises(ConfigurationError, match=r"embedding_types \(cohere\).*pass provider="):
        GuardedEmbeddings(embedding_types=["int8"], output_dtype="int8", api_key=KEY)
    emb = GuardedEmbeddings(provider="voyage", model="voyage-3.5", api_key=KEY, input_type="query")
    assert emb.profile.query_input_type == "query"  # a hint yields to a provider given


def test_hints_select_the_provider_and_keep_the_profiles_other_values() -> None:
    """A peer-only keyword selects its provider; the other fields stay the provider's."""
    emb = _quiet(GuardedEmbedding, model_name="embed-english-v3.0", api_key=KEY, truncate="END")
    assert emb.provider == "cohere" and emb.profile.retry == profiles.cohere().retry
    lc = GuardedEmbeddings(model_id="amazon.titan-embed-text-v2:0", region_name="us-east-1")
    assert (lc.provider, lc.api_key) == ("bedrock", None)  # no key variable: SigV4 signing


# -- refusals ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"cohere_api_key": KEY, "truncate": "START"}, "never its start"),
        ({"cohere_api_key": KEY, "embedding_types": ["float", "int8"]}, "one embedding type"),
        ({"cohere_api_key": KEY, "embedding_types": ["base64"]}, "float, int8"),
        ({"cohere_api_key": KEY, "truncate": "END", "context_policy": "chunk"}, "one or the other"),
        ({"voyage_api_key": KEY, "truncation": True, "truncate": "NONE"}, "disagree"),
        ({"google_api_key": KEY, "vertexai": True}, "Vertex AI is not supported"),
        ({"google_api_key": KEY, "credentials": object()}, "Gemini Developer API"),
        ({"google_api_key": KEY, "client_args": {"proxy": "x"}}, "http_client="),
        ({"google_api_key": KEY, "request_options": {"retry": 1}}, "timeout="),
        ({"google_api_key": KEY, "title": "Doc"}, "document_prefix="),
        ({"api_key": KEY, "embedding_config": {"title": "T"}}, "no document titles"),
        ({"model_id": "amazon.titan-embed-text-v2:0", "config": object()}, "region_name="),
        ({"model_id": "cohere.embed-v4:0", "aws_access_key_id": KEY_ID}, "go together"),
        ({"model_id": "cohere.embed-v4:0", "normalize": True}, "Titan v2 only"),
        ({"provider": "openai", "api_key": KEY, "normalize": True}, "BedrockEmbeddings"),
        ({"auth_token": lambda url: KEY, "base_url": "http://t:80"}, "token itself as api_key="),
        ({"base_url": "http://t:80", "task": "sentence-similarity"}, "feature-extraction"),
        ({"google_api_key": KEY, "transport": httpx.HTTPTransport()}, "http_client="),
        ({"google_api_key": KEY, "task_type": "X", "query_input_type": "Y"}, "two values"),
    ],
)
def test_refused_keywords_say_what_to_do(kwargs: dict[str, Any], says: str) -> None:
    """A peer keyword embedguard cannot honour is refused in one line naming the way out."""
    for adapter in (GuardedEmbeddings, GuardedEmbedding):
        with pytest.raises(ConfigurationError, match=says) as info:
            _quiet(adapter, **kwargs)
        assert "\n" not in str(info.value) and KEY not in str(info.value)


# -- the table ---------------------------------------------------------------------------------
PEERS = {
    "langchain_cohere.CohereEmbeddings": "client async_client model truncate cohere_api_key "
    "embedding_types max_retries request_timeout user_agent base_url",
    "llama_index CohereEmbedding": "cohere_api_key api_key model_name truncate input_type "
    "embedding_type embed_batch_size callback_manager base_url timeout httpx_client "
    "httpx_async_client num_workers",
    "langchain_voyageai.VoyageAIEmbeddings": "model batch_size output_dimension "
    "show_progress_bar truncation voyage_api_key api_key base_url",
    "llama_index VoyageEmbedding": "model_name voyage_api_key embed_batch_size truncation "
    "output_dtype output_dimension callback_manager",
    "langchain_google_genai.GoogleGenerativeAIEmbeddings": "client model task_type "
    "google_api_key api_key credentials vertexai project location base_url additional_headers "
    "client_args api_version request_options output_dimensionality client_options transport",
    "llama_index GoogleGenAIEmbedding": "model_name api_key embedding_config vertexai_config "
    "http_options debug_config embed_batch_size callback_manager retries timeout "
    "retry_min_seconds retry_max_seconds retry_exponential_base",
    "llama_index GeminiEmbedding": "model_name task_type api_key api_base transport title "
    "embed_batch_size callback_manager request_options",
    "langchain_aws.BedrockEmbeddings": "client region_name credentials_profile_name "
    "aws_access_key_id aws_secret_access_key aws_session_token model_id model_kwargs "
    "endpoint_url normalize config provider",
    "llama_index BedrockEmbedding": "model_name profile_name aws_access_key_id "
    "aws_secret_access_key aws_session_token region_name client botocore_session "
    "botocore_config additional_kwargs max_retries timeout callback_manager system_prompt "
    "messages_to_prompt completion_to_prompt pydantic_program_mode output_parser",
    "langchain_huggingface.HuggingFaceEndpointEmbeddings": "client async_client model provider "
    "repo_id task model_kwargs huggingfacehub_api_token",
    "llama_index TextEmbeddingsInference": "model_name base_url text_instruction "
    "query_instruction embed_batch_size timeout truncate_text callback_manager auth_token",
}


def test_every_new_peer_keyword_has_a_translation() -> None:
    """Each keyword of the ten peer classes is ours, LlamaIndex's, or in the README table."""
    from llama_index.core.base.embeddings.base import BaseEmbedding

    ours = {
        "provider",
        "model",
        "base_url",
        "dimensions",
        "api_key",
        "profile",
        "client",
        "api_version",
        "http_client",
        "async_http_client",
        *BaseEmbedding.model_fields,
    }
    tabled = {name.split(" (")[0] for name, _ in TABLE}
    missing = {f"{peer}: {name}" for peer, names in PEERS.items() for name in names.split()
               if name not in ours | tabled}  # fmt: skip
    assert not missing


def test_docs_show_the_peer_table() -> None:
    """docs/adapters.md holds the peers' table exactly as the code describes it."""
    docs = (Path(__file__).parents[2] / "docs" / "adapters.md").read_text("utf-8")
    assert table_markdown() in docs
