"""A real loopback embeddings server for tests and benchmarks, with fault injection.

It speaks the OpenAI, Azure OpenAI, Mistral and Ollama wire formats, answers with deterministic
vectors (``deterministic_vector(text, dimensions)``) and fails on demand::

    from embedguard.testing import EmbeddingServer, Fault, deterministic_vectors

    with EmbeddingServer(dimensions=64) as server:
        server.script(Fault.rate_limited(retry_after=0.05), Fault.drop())
        client = ...  # point it at server.base_url("openai")
        vectors = client.embed(["a", "b"])
        assert (vectors == deterministic_vectors(["a", "b"], 64)).all()
        assert [r.fault for r in server.requests] == ["rate_limited", "drop", None]

With ``EmbeddingServer(vectors="lexical")`` each vector is ``lexical_vectors([text], d)[0]``
instead: texts sharing words are close, so similarity search over the server's vectors returns
meaningful results (for examples and retrieval tests).

As a pytest fixture::

    @pytest.fixture
    def server():
        with EmbeddingServer() as srv:
            yield srv
"""

from ._faults import Fault
from ._server import EmbeddingServer, RecordedRequest
from ._vectors import deterministic_vector, deterministic_vectors, lexical_vectors

__all__ = [
    "EmbeddingServer",
    "Fault",
    "RecordedRequest",
    "deterministic_vector",
    "deterministic_vectors",
    "lexical_vectors",
]
