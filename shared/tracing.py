"""Tracing with OpenTelemetry, configured by the standard ``OTEL_*`` environment variables.

Off unless ``OTEL_TRACES_EXPORTER`` names one or more exporters (comma-separated):
``console`` prints each span on stdout as JSON, ``otlp`` sends spans to
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) over
``http/protobuf``. Unset, ``none`` or ``OTEL_SDK_DISABLED=true``: no provider exists and the
callers skip every tracing step, so the request path does no tracing work at all.

The rest is the SDK's own reading of the environment: ``Resource.create`` takes
``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES``, ``TracerProvider`` the sampler
(``OTEL_TRACES_SAMPLER``), ``BatchSpanProcessor`` its ``OTEL_BSP_*`` limits, the OTLP
exporter its ``OTEL_EXPORTER_OTLP_*`` endpoint, headers and timeout. Exporters are found by
name through the ``opentelemetry_traces_exporter`` entry points, as the SDK finds them.

Written here rather than through the SDK's configurator: that one is private
(``opentelemetry.sdk._configuration``), installs a process-wide provider (the API keeps
its provider to itself, so tests can build several apps) and sends ``otlp`` over gRPC
unless told otherwise, where the OpenTelemetry specification's default, which this
follows, is ``http/protobuf``.
"""

from __future__ import annotations

import os
from importlib.metadata import EntryPoint, entry_points

from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

EXPORTER_GROUP = "opentelemetry_traces_exporter"
# What "otlp" means for each OTEL_EXPORTER_OTLP_PROTOCOL (the entry points' names).
OTLP_BY_PROTOCOL = {"http/protobuf": "otlp_proto_http", "grpc": "otlp_proto_grpc"}
DEFAULT_OTLP_PROTOCOL = "http/protobuf"


class TracingConfigError(ValueError):
    """The ``OTEL_*`` variables ask for an exporter this installation does not have."""


def exporter_names() -> list[str]:
    """The entry-point names of the exporters asked for; empty when tracing is off."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    asked = [name.strip() for name in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",")]
    names = [name for name in asked if name not in ("", "none")]
    if "otlp" not in names:
        return names
    protocol = (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or DEFAULT_OTLP_PROTOCOL
    ).strip()
    if protocol not in OTLP_BY_PROTOCOL:
        raise TracingConfigError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: one of {', '.join(OTLP_BY_PROTOCOL)}"
        )
    return [OTLP_BY_PROTOCOL[protocol] if name == "otlp" else name for name in names]


def _entry_points(names: list[str]) -> list[EntryPoint]:
    installed = {point.name: point for point in entry_points(group=EXPORTER_GROUP)}
    missing = [name for name in names if name not in installed]
    if missing:
        raise TracingConfigError(
            f"OTEL_TRACES_EXPORTER asks for {', '.join(missing)}, which is not installed "
            f"(installed: {', '.join(sorted(installed))}; 'otlp' means "
            f"{OTLP_BY_PROTOCOL[DEFAULT_OTLP_PROTOCOL]} unless OTEL_EXPORTER_OTLP_PROTOCOL says)"
        )
    return [installed[name] for name in names]


class Tracing:
    """One process's tracing: ``provider`` is None when it is off.

    Built from the environment, checking it (a typo fails at start-up), without starting
    anything; ``start`` adds the exporters, whose batching threads must be started in the
    process that uses them (after a fork, for a worker's pool process).
    """

    def __init__(self, service_name: str, exporters: list[SpanExporter] | None = None) -> None:
        """``exporters``: these instead of those ``OTEL_TRACES_EXPORTER`` names (tests)."""
        self._exporters: list[SpanExporter] | None = exporters
        self._entry_points = [] if exporters is not None else _entry_points(exporter_names())
        self.provider: TracerProvider | None = None
        self._started = False
        if not self._exporters and not self._entry_points:
            return
        resource = Resource.create()
        # OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) wins over ours.
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: service_name}))
        self.provider = TracerProvider(resource=resource)

    @property
    def enabled(self) -> bool:
        return self.provider is not None

    def start(self) -> None:
        if self.provider is None or self._started:
            return
        exporters = self._exporters or [point.load()() for point in self._entry_points]
        for exporter in exporters:
            self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self._started = True

    def shutdown(self) -> None:
        """Export what is buffered, then stop the exporters."""
        if self.provider is not None and self._started:
            self.provider.shutdown()
            self._started = False
