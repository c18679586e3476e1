"""Incremental ingestion into Qdrant with LangChain's indexing API: a rerun embeds only changes.

A corpus of passages (JSONL with ``id``, ``topic`` and ``text``; examples/data/passages.jsonl by
default) is split into chunks and written into a persistent, embedded Qdrant database (local
mode: a folder on disk, no server) through LangChain's ``index()`` with a ``SQLRecordManager``.
The record manager keeps a hash of every chunk it indexed, so a rerun on unchanged documents
sends no embedding request at all, and a changed document re-embeds only its own chunks (its old
chunks are deleted). Embeddings go through GuardedEmbeddings, embedguard's resilient client.
Each run prints what is new, a progress bar, what ``index()`` did and the client's metrics.

    python examples/vector_store_ingestion.py                      # offline, the in-process model
    python examples/vector_store_ingestion.py                      # again: 0 requests
    python examples/vector_store_ingestion.py --provider loopback  # the loopback test server
    python examples/vector_store_ingestion.py --corpus mine.jsonl --store ./vectors
    python examples/vector_store_ingestion.py --provider openai    # the real API (OPENAI_API_KEY)

Why Qdrant: its local mode is pure Python (langchain-qdrant adds six packages; langchain-chroma
adds 28, onnxruntime and a Kubernetes client among them), and the same code reaches a Qdrant
server by passing ``url=`` instead of ``path=`` to ``QdrantClient``. Local mode keeps the points
in memory and lets one process open the folder at a time: use it for development and small
corpora, a server beyond that.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import tempfile
import uuid
from pathlib import Path

from _common import DATA, PROVIDERS, target
from langchain_classic.indexes import SQLRecordManager
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.indexing import index
from langchain_qdrant import QdrantVectorStore
from langchain_text_splitters import RecursiveCharacterTextSplitter
from qdrant_client import QdrantClient, models
from tqdm import tqdm

from embedguard.adapters.langchain import GuardedEmbeddings

STORE = Path(tempfile.gettempdir()) / "embedguard-ingestion"
CHUNK_SIZE = 100  # characters: the bundled passages are short; real documents take ~1000
BATCH_SIZE = 16  # chunks per index() batch: one embedding call each, and the bar's step


def parse_args() -> argparse.Namespace:
    """``--provider`` as in the other examples, plus the corpus and the store."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--provider",
        choices=PROVIDERS,
        default="local",
        help="local: the in-process model (offline); loopback: the built-in test server; or a "
        "real API (key and endpoint from the environment). Default: local",
    )
    parser.add_argument(
        "--corpus", type=Path, default=DATA, help="JSONL passages (id, topic, text)"
    )
    parser.add_argument(
        "--store", type=Path, default=STORE, help=f"the database folder (default: {STORE})"
    )
    parser.add_argument("--reset", action="store_true", help="delete the store first")
    return parser.parse_args()


def split_corpus(path: Path) -> tuple[int, list[Document]]:
    """The number of passages in ``path`` and their chunks (metadata: ``source``, ``topic``)."""
    with path.open(encoding="utf-8") as lines:
        passages = [json.loads(line) for line in lines if line.strip()]
    documents = [
        Document(p["text"], metadata={"source": p["id"], "topic": p["topic"]}) for p in passages
    ]
    splitter = RecursiveCharacterTextSplitter(chunk_size=CHUNK_SIZE, chunk_overlap=0)
    return len(documents), splitter.split_documents(documents)


def chunk_key(chunk: Document) -> str:
    """The record manager's key for a chunk, which is also its Qdrant point id.

    128 bits of a SHA-256 of the text and metadata, as a UUID (Qdrant ids are UUIDs or
    integers): the same chunk gets the same key in every run. ``index()``'s own ``"sha256"``
    key is a hex string Qdrant refuses, and its default ``"sha1"`` warns that SHA-1 is not
    collision-resistant.
    """
    payload = json.dumps([chunk.page_content, chunk.metadata], sort_keys=True)
    return str(uuid.UUID(bytes=hashlib.sha256(payload.encode("utf-8")).digest()[:16]))


def open_collection(
    client: QdrantClient, name: str, embeddings: Embeddings, dimensions: int | None
) -> tuple[QdrantVectorStore, int]:
    """The collection (created on first use) and its vector size, without embedding anything.

    ``QdrantVectorStore`` embeds ``"dummy_text"`` to learn the vector size when it creates a
    collection and to check an existing one (``validate_collection_config``): one request per
    run, which would spoil the free rerun. The profile knows the size, so we check it here.
    """
    if client.collection_exists(name):
        vectors = client.get_collection(name).config.params.vectors
        assert isinstance(vectors, models.VectorParams)  # created below: one unnamed vector
        if dimensions is not None and vectors.size != dimensions:
            raise SystemExit(
                f"Collection {name!r} holds {vectors.size}-dimensional vectors, the model makes "
                f"{dimensions}: pass --reset or another --store."
            )
        size = vectors.size
    else:
        # A model of unknown size (e.g. on Ollama) is asked once, when the collection is made.
        size = dimensions or len(embeddings.embed_query("How long are your vectors?"))
        params = models.VectorParams(size=size, distance=models.Distance.COSINE)
        client.create_collection(name, vectors_config=params)
    store = QdrantVectorStore(client, name, embeddings, validate_collection_config=False)
    return store, size


def pending(chunks: list[Document], records: SQLRecordManager) -> list[Document]:
    """The chunks the record manager has no record of: those ``index()`` is about to embed."""
    known = records.exists([chunk_key(chunk) for chunk in chunks])
    return [chunk for chunk, seen in zip(chunks, known, strict=True) if not seen]


def documents(sources: list[str]) -> str:
    """``"1 document: coral"``, ``"3 documents: a, b, c"``, or just the count past five."""
    count = f"{len(sources)} document{'' if len(sources) == 1 else 's'}"
    return f"{count}: {', '.join(sources)}" if 0 < len(sources) <= 5 else count


def main() -> None:
    """Split the corpus, index what changed into Qdrant, print the counts and the metrics."""
    args = parse_args()
    if args.reset:
        shutil.rmtree(args.store, ignore_errors=True)
    args.store.mkdir(parents=True, exist_ok=True)
    passages, chunks = split_corpus(args.corpus)

    with target(args.provider) as (profile, api_key, server):
        embeddings = GuardedEmbeddings(profile, api_key=api_key)
        collection = re.sub(r"[^\w-]+", "_", f"passages-{args.provider}-{profile.model}")
        records = SQLRecordManager(
            f"qdrant/{collection}", db_url=f"sqlite:///{args.store / 'records.sqlite'}"
        )
        records.create_schema()
        client = QdrantClient(path=str(args.store / "qdrant"))
        try:
            store, size = open_collection(client, collection, embeddings, profile.dimensions)
            print(f"Qdrant at {args.store}: collection {collection!r} ({size} dimensions).")
            new = pending(chunks, records)
            changed = sorted({chunk.metadata["source"] for chunk in new})
            print(
                f"Split {passages} documents into {len(chunks)} chunks; {len(new)} new or "
                f"changed ({documents(changed)}), {len(chunks) - len(new)} unchanged."
            )
            # cleanup="full": the corpus is the whole collection, so the chunks no document
            # produces any more (a changed or removed passage's old ones) are deleted.
            with tqdm(chunks, desc="Indexing", unit="chunk") as bar:
                result = index(
                    bar,
                    records,
                    store,
                    batch_size=BATCH_SIZE,
                    cleanup="full",
                    source_id_key="source",
                    key_encoder=chunk_key,
                )
            print(
                f"Indexed: {result['num_added']} added, {result['num_updated']} updated, "
                f"{result['num_skipped']} skipped, {result['num_deleted']} deleted. "
                f"The collection holds {client.count(collection).count} chunks."
            )
            if server is not None:
                sent = server.requests
                texts = sum(len(request.inputs) for request in sent)
                received = f"{len(sent)} embedding requests ({texts} texts)"
                print(f"The loopback server received {received}.")
            print()
            print(embeddings.metrics().format())
        finally:
            client.close()
            embeddings.close()


if __name__ == "__main__":
    main()
