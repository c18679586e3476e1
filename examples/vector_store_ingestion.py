"""Ingestion with LlamaIndex: split and embed a corpus in an IngestionPipeline, then retrieve.

The corpus (examples/data/passages.jsonl) becomes LlamaIndex Documents; an IngestionPipeline
splits them into nodes and embeds them with GuardedEmbedding, a drop-in BaseEmbedding backed by
embedguard's resilient client, showing a progress bar when tqdm is installed. The nodes go into
a VectorStoreIndex for one retrieval, then the metrics the pipeline produced are printed:
tokens, estimated cost, p95 latency and retries. Against the loopback server, the first request
is answered with a 429 so the retry shows up in the numbers.

    python examples/vector_store_ingestion.py                     # offline, the in-process model
    python examples/vector_store_ingestion.py --provider loopback # loopback server, a 429 first
    python examples/vector_store_ingestion.py --provider mistral  # the real API (MISTRAL_API_KEY)
"""

from __future__ import annotations

import importlib.util

from _common import load_passages, parse_args, target
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter

from embedguard.adapters.llamaindex import GuardedEmbedding
from embedguard.testing import Fault

QUESTION = "Why do coral reefs bleach when the ocean gets warm?"


def main() -> None:
    """Run the pipeline, retrieve once, print the metrics."""
    args = parse_args(__doc__)
    with target(args.provider) as (profile, api_key, server):
        if server is not None:
            # Small requests so the latency percentiles have several samples, quick retries,
            # and a rate-limited first answer to show the client retrying by itself.
            profile = profile.evolve(
                batching={"max_inputs": 8}, retry={"initial_delay": 0.05, "max_delay": 0.2}
            )
            server.script(Fault.rate_limited(retry_after=0.05))
            print("The loopback server will answer the first request with 429 Too Many Requests.")
        embed_model = GuardedEmbedding(profile, api_key=api_key)

        documents = [
            Document(text=p["text"], doc_id=p["id"], metadata={"topic": p["topic"]})
            for p in load_passages()
        ]
        pipeline = IngestionPipeline(
            transformations=[SentenceSplitter(chunk_size=256, chunk_overlap=16), embed_model]
        )
        show_progress = importlib.util.find_spec("tqdm") is not None
        nodes = pipeline.run(documents=documents, show_progress=show_progress)
        size = len(nodes[0].embedding or [])
        print(f"Ingested {len(documents)} documents into {len(nodes)} nodes ({size} dimensions).")

        index = VectorStoreIndex(nodes, embed_model=embed_model)
        (hit,) = index.as_retriever(similarity_top_k=1).retrieve(QUESTION)
        print(f"Q: {QUESTION}\n  best node from {hit.node.ref_doc_id} (score {hit.score:.3f})")

        snap = embed_model.metrics()
        print(f"\nembedding batch size: {embed_model.embed_batch_size}")
        print(f"requests: {snap.total_requests} ({snap.successful_requests} ok)")
        print(f"tokens: {snap.tokens_used}")
        print(f"estimated cost: ${snap.estimated_cost:.6f}")
        print(f"p95 latency: {snap.latency_p95 * 1000:.1f} ms")
        print(f"retries: {snap.retried_requests}")
        embed_model.close()


if __name__ == "__main__":
    main()
