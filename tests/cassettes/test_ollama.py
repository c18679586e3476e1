"""Ollama's native /api/embed, replayed from cassettes through the public API."""

import numpy as np

from embedguard import CircuitState, ModelNotFoundError, profiles

from .conftest import Recording, assert_metrics, fast, run_client


async def test_embed_returns_recorded_vectors(replay, mode):
    """/api/embed's {"embeddings": [[...]], "prompt_eval_count": n} yields the recorded vectors."""
    name = "ollama/embed_ok.yaml"
    rec = Recording.of(name)
    with replay(name) as cassette:
        out = await run_client(fast(profiles.ollama("all-minilm")), rec.inputs(), mode)
    assert out.error is None and out.vectors is not None
    assert out.vectors.shape == (2, 384)
    assert np.array_equal(out.vectors, rec.vectors(0))
    assert cassette.play_count == 1 and cassette.all_played
    assert_metrics(out, attempts=1, failures={}, items=2, tokens=rec.prompt_tokens(0))
    assert out.circuit is CircuitState.CLOSED


async def test_missing_model_404(replay, mode):
    """{"error": "model \\"x\\" not found, try pulling it first"} is a ModelNotFoundError."""
    name = "ollama/model_not_found_404.yaml"
    rec = Recording.of(name)
    with replay(name) as cassette:
        out = await run_client(fast(profiles.ollama("nomic-embed-txt")), rec.inputs(), mode)
    error = out.error
    assert isinstance(error, ModelNotFoundError)
    assert error.status_code == 404 and error.code is None and error.request_id is None
    assert error.message == 'model "nomic-embed-txt" not found, try pulling it first'
    assert cassette.play_count == 1 and cassette.all_played
    assert_metrics(out, attempts=1, failures={"model_not_found": 1}, items=0, tokens=0)
