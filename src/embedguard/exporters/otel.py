"""OpenTelemetry spans and metrics for embedding requests (extra ``otel``)."""

from ..core.export.otel import SCHEMA_URL, OpenTelemetryHook, provider_name

__all__ = ["SCHEMA_URL", "OpenTelemetryHook", "provider_name"]
