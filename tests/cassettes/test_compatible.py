"""OpenAI-compatible servers (vLLM, LM Studio), replayed from cassettes through the public API."""

import numpy as np

from embedguard import BadRequestError, CircuitState, ContextLengthError, profiles

from .conftest import Recording, assert_metrics, fast, run_client

VLLM = profiles.openai_compatible("BAAI/bge-small-en-v1.5", base_url="http://localhost:8000/v1")


async def test_vllm_base64_with_id_and_created(replay, mode):
    """vLLM's base64 200 with id, created and usage.completion_tokens yields the vectors."""
    name = "openai_compatible/vllm_base64.yaml"
    rec = Recording.of(name)
    doc = rec.doc(0)
    assert doc["id"].startswith("embd-") and isinstance(doc["created"], int)
    with replay(name) as cassette:
        out = await run_client(fast(VLLM), rec.inputs(), mode)
    assert out.error is None and out.vectors is not None
    assert out.vectors.shape == (2, 384)
    assert np.array_equal(out.vectors, rec.vectors(0))
    assert cassette.play_count == 1 and cassette.all_played
    assert_metrics(out, attempts=1, failures={}, items=2, tokens=rec.prompt_tokens(0))
    assert out.circuit is CircuitState.CLOSED


async def test_float_answer_to_a_base64_request(replay, mode):
    """LM Studio ignores encoding_format=base64 and sends floats; they are accepted as is."""
    name = "openai_compatible/lmstudio_float_for_base64.yaml"
    rec = Recording.of(name)
    assert rec.request_body()["encoding_format"] == "base64"
    assert isinstance(rec.doc(0)["data"][0]["embedding"], list)
    profile = profiles.openai_compatible(
        "text-embedding-nomic-embed-text-v1.5", base_url="http://localhost:1234/v1"
    )
    with replay(name) as cassette:
        out = await run_client(fast(profile), rec.inputs(), mode, query=True)
    assert out.vectors is not None and out.vectors.shape == (768,)
    assert np.array_equal(out.vectors, rec.vectors(0)[0])
    assert cassette.play_count == 1 and cassette.all_played
    assert_metrics(out, attempts=1, failures={}, items=1, tokens=0)


async def test_vllm_400_with_an_int_code(replay, mode):
    """vLLM's 400 {"error": {..., "code": 400}} is a BadRequestError, sent once."""
    name = "openai_compatible/vllm_400.yaml"
    rec = Recording.of(name)
    assert rec.doc(0)["error"]["code"] == 400
    profile = VLLM.evolve(extra_body={"dimensions": 256})
    with replay(name) as cassette:
        out = await run_client(fast(profile), rec.inputs(), mode)
    error = out.error
    assert isinstance(error, BadRequestError) and not isinstance(error, ContextLengthError)
    assert error.status_code == 400 and error.code == "BadRequestError"
    assert "does not support matryoshka representation" in error.message
    assert cassette.play_count == 1 and cassette.all_played
    assert_metrics(out, attempts=1, failures={"bad_request": 1}, items=0, tokens=0)
    assert out.circuit is CircuitState.CLOSED
