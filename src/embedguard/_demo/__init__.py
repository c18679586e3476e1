"""The ``embedguard demo`` command and its bundled corpus (``passages.jsonl``, Apache-2.0)."""
