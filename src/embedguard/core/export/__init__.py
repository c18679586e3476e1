"""Metrics exporters.

JSON export is :meth:`embedguard.core.metrics.MetricsSnapshot.to_json` (and ``from_dict`` reads it
back). Exporters that need an optional dependency live in submodules and import it lazily:
:mod:`embedguard.core.export.prometheus` (extra ``prometheus``).
"""
