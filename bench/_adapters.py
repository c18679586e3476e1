"""S12's contenders: embedguard's LangChain and LlamaIndex adapters, and LlamaIndex pipelines.

Each adapter is built the way a user swaps it in for the peer: the peer's keywords, embedguard's
defaults underneath. The IngestionPipeline runners take ``Document`` objects built before the
measured part (the user has them already) and return the pipeline's nodes; the vectors are read
from the nodes after the clock stops.
"""

from __future__ import annotations

from typing import Any

import _scenarios as sc
from _contenders import API_KEY, MODEL, Context, Runner


def _keywords(ctx: Context, base_url_key: str) -> dict[str, Any]:
    return {
        "model": MODEL,
        "api_key": API_KEY,
        base_url_key: ctx.base_url,
        "dimensions": ctx.scenario.dimensions,
    }


class GuardedLangChain(Runner):
    """``GuardedEmbeddings(model=..., base_url=..., api_key=...).embed_documents``."""

    def __init__(self, ctx: Context) -> None:
        from embedguard.adapters.langchain import GuardedEmbeddings

        self.model = GuardedEmbeddings(**_keywords(ctx, "base_url"))

    def embed(self, inputs: Any) -> Any:
        return self.model.embed_documents(inputs)

    def close(self) -> None:
        self.model.close()


def _guarded_llama(ctx: Context) -> Any:
    from embedguard.adapters.llamaindex import GuardedEmbedding

    return GuardedEmbedding(**_keywords(ctx, "api_base"))


class GuardedLlamaIndex(Runner):
    """``GuardedEmbedding(model=..., api_base=..., api_key=...).get_text_embedding_batch``."""

    def __init__(self, ctx: Context) -> None:
        self.model = _guarded_llama(ctx)

    def embed(self, inputs: Any) -> Any:
        return self.model.get_text_embedding_batch(inputs)

    def close(self) -> None:
        self.model.close()


class Pipeline(Runner):
    """``IngestionPipeline(transformations=[embed_model]).run(documents=...)``, defaults."""

    def __init__(self, ctx: Context, guarded: bool) -> None:
        from llama_index.core.ingestion import IngestionPipeline

        if guarded:
            self.model = _guarded_llama(ctx)
        else:
            from llama_index.embeddings.openai import OpenAIEmbedding  # type: ignore[import-untyped]

            kwargs: dict[str, Any] = {"model": MODEL, "api_key": API_KEY, "api_base": ctx.base_url}
            if ctx.dims_param is not None:
                kwargs["dimensions"] = ctx.dims_param
            self.model = OpenAIEmbedding(**kwargs)
        self.guarded = guarded
        self.pipeline = IngestionPipeline(transformations=[self.model])

    def inputs(self, texts: list[str]) -> Any:
        from llama_index.core import Document

        return [Document(text=t) for t in texts]

    def embed(self, inputs: Any) -> Any:
        return self.pipeline.run(documents=inputs)

    def vectors(self, out: Any) -> Any:
        return [node.embedding for node in out]

    def close(self) -> None:
        if self.guarded:
            self.model.close()


FACTORIES = {
    sc.EMBEDGUARD_LANGCHAIN: GuardedLangChain,
    sc.EMBEDGUARD_LLAMAINDEX: GuardedLlamaIndex,
    sc.EMBEDGUARD_PIPELINE: lambda ctx: Pipeline(ctx, guarded=True),
    sc.LLAMAINDEX_PIPELINE: lambda ctx: Pipeline(ctx, guarded=False),
}
