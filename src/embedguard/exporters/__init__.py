"""Metrics and trace exporters (stable public modules).

* :mod:`embedguard.exporters.prometheus`: a collector and a hook (extra ``prometheus``);
* :mod:`embedguard.exporters.otel`: OpenTelemetry spans and metrics (extra ``otel``);
* JSON: :meth:`embedguard.MetricsSnapshot.to_json`;
* logs: :class:`embedguard.events.LoggingHook`, on by default.
"""
