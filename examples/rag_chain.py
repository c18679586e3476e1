"""Retrieval for RAG with LangChain: embed a corpus into InMemoryVectorStore, answer by retrieval.

The corpus (examples/data/passages.jsonl) is embedded through GuardedEmbeddings, a drop-in
LangChain Embeddings backed by embedguard's resilient client. A small chain, retriever |
formatter, built from RunnableLambda, answers four questions with the best passages and their
scores (no LLM involved). The client's metrics are printed at the end.

    python examples/rag_chain.py                    # offline, the in-process model
    python examples/rag_chain.py --provider openai  # the real API (OPENAI_API_KEY)
"""

from __future__ import annotations

import textwrap

from _common import load_passages, parse_args, target
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda
from langchain_core.vectorstores import InMemoryVectorStore

from embedguard.adapters.langchain import GuardedEmbeddings

QUESTIONS = [
    "How do bees turn nectar into honey?",
    "Why does a volcano erupt lava and ash?",
    "How does Python's garbage collector handle reference cycles?",
    "How does compound interest grow my savings?",
]
TOP_K = 3


def format_hits(hits: list[tuple[Document, float]]) -> str:
    """One line per retrieved passage: rank, score, id, topic and the start of the text."""
    lines = []
    for rank, (doc, score) in enumerate(hits, start=1):
        preview = textwrap.shorten(doc.page_content, width=70, placeholder="...")
        lines.append(f"  {rank}. [{score:.3f}] {doc.id} ({doc.metadata['topic']}): {preview}")
    return "\n".join(lines)


def main() -> None:
    """Index the corpus, run the retrieval chain on each question, print the metrics."""
    args = parse_args(__doc__)
    with target(args.provider) as (profile, api_key, _server):
        embeddings = GuardedEmbeddings(profile, api_key=api_key)
        store = InMemoryVectorStore(embeddings)
        passages = load_passages()
        store.add_documents(
            [Document(p["text"], id=p["id"], metadata={"topic": p["topic"]}) for p in passages]
        )
        print(f"Indexed {len(passages)} passages with {profile.name} / {profile.model}.")

        def search(question: str) -> list[tuple[Document, float]]:
            return store.similarity_search_with_score(question, k=TOP_K)

        retriever = RunnableLambda(search, name="retriever")
        chain = retriever | RunnableLambda(format_hits, name="formatter")
        for question in QUESTIONS:
            print(f"\nQ: {question}")
            print(chain.invoke(question))

        print()
        print(embeddings.metrics().format())
        embeddings.close()


if __name__ == "__main__":
    main()
