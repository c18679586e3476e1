"""Thin adapters that make embedguard a drop-in for LangChain and LlamaIndex."""
