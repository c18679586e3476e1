"""Prometheus export of a client's metrics (extra ``prometheus``)."""

from ..core.export.prometheus import (
    DEFAULT_BUCKETS,
    PrometheusCollector,
    PrometheusHook,
    register_prometheus,
    render_prometheus,
)

__all__ = [
    "DEFAULT_BUCKETS",
    "PrometheusCollector",
    "PrometheusHook",
    "register_prometheus",
    "render_prometheus",
]
