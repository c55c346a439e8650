"""Tracing with OpenTelemetry, off unless asked for.

Tracing is on when `--otel-endpoint URL` is given to a command that serves or reads a
stream, or when the environment names an OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT``
or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) and ``OTEL_SDK_DISABLED`` is not true. Then the
``riskengine[otel]`` extra is needed; the SDK reads the other standard variables itself
(``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``,
``OTEL_TRACES_SAMPLER_ARG``, ``OTEL_EXPORTER_OTLP_HEADERS``…).

This module imports nothing of OpenTelemetry: when tracing is off, `open_tracing` returns
None and the callers keep their untraced path, chosen once at start. `riskengine.tracing.otel`
(imported only when tracing is on) holds the tracer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from riskengine.exceptions import ConfigError

if TYPE_CHECKING:
    from riskengine.tracing.otel import Tracer

__all__ = ["ENDPOINT_ENV", "TRACE_FIELDS", "TracingSettings", "open_tracing",
           "tracing_settings"]

ENDPOINT_ENV = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
"""Either turns tracing on (the standard variables of the OTLP exporter)."""

TRACE_FIELDS = ("traceparent", "tracestate")
"""The W3C trace context: HTTP headers, Kafka headers, Redis Streams entry fields."""


@dataclass(frozen=True)
class TracingSettings:
    """Where spans go: `endpoint` (the OTLP/HTTP base URL, ``/v1/traces`` is added; None:
    the exporter reads ``OTEL_EXPORTER_OTLP_*``), or `exporter`, a span exporter object
    the spans are handed to as each ends (tests read them from the SDK's in-memory one).
    `service` names the service unless ``OTEL_SERVICE_NAME`` or the resource attributes
    of the environment do."""

    endpoint: str | None = None
    service: str = "riskengine"
    exporter: Any = None


def tracing_settings(endpoint: str | None, service: str,
                     environ: Mapping[str, str] = os.environ) -> TracingSettings | None:
    """The settings of `--otel-endpoint` (`endpoint`) or of the environment; None when
    tracing is off. `ConfigError` for an endpoint that is not an http(s) URL."""
    if endpoint is not None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"--otel-endpoint must be an http:// or https:// URL (the "
                              f"OTLP/HTTP collector), not {endpoint[:200]!r}")
        return TracingSettings(endpoint=endpoint.rstrip("/"), service=service)
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if any(environ.get(name) for name in ENDPOINT_ENV):
        return TracingSettings(service=service)
    return None


def open_tracing(settings: TracingSettings | None) -> Tracer | None:
    """The tracer of `settings` (None: tracing is off, and nothing is imported).
    `ConfigError` when tracing is asked for without the ``riskengine[otel]`` extra."""
    if settings is None:
        return None
    try:
        from riskengine.tracing.otel import Tracer
    except ImportError as exc:
        raise ConfigError(f"tracing needs the OpenTelemetry packages: pip install "
                          f"'riskengine[otel]' ({exc})") from None
    return Tracer(settings)
