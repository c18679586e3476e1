"""Errors that point the right way (issue 15.5), over real HTTP on loopback."""

import httpx
import numpy as np
import pytest

from embedguard import (
    ContextLengthError,
    EmbeddingClient,
    EndpointNotFoundError,
    ModelNotFoundError,
    ProviderProfile,
    profiles,
)
from embedguard.core.providers import error_from_response, make_codec
from embedguard.testing import EmbeddingServer, Fault, deterministic_vectors

from .conftest import KEY, fast

D = 64
# What OpenAI answers when one item of an input *list* is too long (embedguard always sends a list).
_ITEM_TOO_LONG = "Invalid 'input[{i}]': maximum input length is 8192 tokens."


def _item_too_long(i: int) -> Fault:
    error = {
        "message": _ITEM_TOO_LONG.format(i=i),
        "type": "invalid_request_error",
        "param": f"input[{i}]",
        "code": "invalid_value",
    }
    return Fault.status(400, body={"error": error})


def _missing_v1(server: EmbeddingServer) -> EmbeddingClient:
    """An OpenAI client whose base_url lacks /v1 (the usual mistake with a local server)."""
    return EmbeddingClient(profiles.openai(base_url=server.url, dimensions=D), api_key=KEY)


def test_base_url_without_v1_says_check_base_url(server: EmbeddingServer) -> None:
    """A base_url missing /v1 gives EndpointNotFoundError saying 'check base_url', not a model."""
    with _missing_v1(server) as client, pytest.raises(EndpointNotFoundError) as caught:
        client.embed(["hello"])
    assert not isinstance(caught.value, ModelNotFoundError)
    assert "check base_url" in str(caught.value) and KEY not in str(caught.value)
    assert caught.value.status_code == 404
    assert [r.path for r in server.requests] == ["/embeddings"]


def test_endpoint_hint_shows_the_url_without_its_secrets(server: EmbeddingServer) -> None:
    """Through the client, the 404 hint shows the URL requested, with query secrets hidden."""
    profile = ProviderProfile(
        provider="openai_compatible", model="m", dimensions=D,
        base_url=f"{server.url}/api?token=querysecret99",
    )  # fmt: skip
    with EmbeddingClient(profile) as client, pytest.raises(EndpointNotFoundError) as caught:
        client.embed(["hello"])
    assert f"{server.url}/api" in str(caught.value)
    assert "querysecret99" not in str(caught.value) + repr(caught.value)


def test_endpoint_hint_from_a_real_404_page(server: EmbeddingServer) -> None:
    """The mapper, given a real server's 404 for a codec's URL, shows that URL and the hint."""
    codec = make_codec(profiles.openai(base_url=server.url, dimensions=D), api_key=KEY)
    request = codec.build_request(["hello"])
    reply = httpx.post(request.url, headers=request.headers, content=request.body)
    error = error_from_response(
        "openai", reply.status_code, reply.headers, reply.content, url=request.url, secrets=[KEY]
    )
    assert type(error) is EndpointNotFoundError
    assert error.url == f"{server.url}/embeddings"
    assert f"{server.url}/embeddings" in str(error) and "check base_url" in str(error)
    assert "Invalid URL (POST /embeddings)" in str(error)  # the server's own words are kept


def test_html_404_page_at_the_right_path_points_at_base_url(server: EmbeddingServer) -> None:
    """A proxy's HTML 404 page is an endpoint problem, not a missing model."""
    server.script(Fault.status(404, body=b"<html><body><h1>404 Not Found</h1></body></html>"))
    profile = fast(profiles.openai(base_url=server.base_url("openai"), dimensions=D))
    with EmbeddingClient(profile, api_key=KEY) as client:
        with pytest.raises(EndpointNotFoundError) as caught:
            client.embed(["hello"])
        assert "check base_url" in str(caught.value)
        server.script(Fault.status(404))  # the server's model_not_found body
        with pytest.raises(ModelNotFoundError):
            client.embed(["hello again"])


def test_list_item_over_length_splits_so_good_inputs_get_vectors(server: EmbeddingServer) -> None:
    """OpenAI's list-input over-length error splits the batch: only the long item fails."""
    texts = ["first", "second", "far too long", "fourth"]
    # One request at a time, so the scripted answers meet the requests in order:
    # [0..3] -> item 2 too long; [0, 1] ok; [2, 3] -> item 0 too long; [2] again; [3] ok.
    server.script(_item_too_long(2), Fault.delay(0), _item_too_long(0), _item_too_long(0))
    profile = fast(profiles.openai(base_url=server.base_url("openai"), dimensions=D), pool_size=1)
    with EmbeddingClient(profile, api_key=KEY) as client:
        with pytest.raises(ContextLengthError) as caught:
            client.embed(texts)
        assert caught.value.failed_indices == (2,)
        assert [r.inputs for r in server.requests] == [
            tuple(texts), ("first", "second"), ("far too long", "fourth"),
            ("far too long",), ("fourth",),
        ]  # fmt: skip
        server.reset()
        good = [t for t in texts if t != "far too long"]
        np.testing.assert_array_equal(client.embed(good), deterministic_vectors(good, D))


def test_ollama_nested_options_reach_the_server(server: EmbeddingServer) -> None:
    """extra_body accepts nested JSON: Ollama's options object is sent as given."""
    options = {"num_ctx": 8192, "stop": ["\n\n"], "mirostat": {"tau": 5.0, "on": True}}
    profile = profiles.ollama(
        "nomic-embed-text", base_url=server.base_url("ollama"),
        extra_body={"options": options, "keep_alive": "5m"},
    )  # fmt: skip
    with EmbeddingClient(profile) as client:
        vectors = client.embed(["hello"])
    assert vectors.shape[0] == 1
    assert server.requests[0].body["options"] == options
    assert server.requests[0].body["keep_alive"] == "5m"
