"""Metrics and traces through the OpenTelemetry API.

Nothing is sent anywhere unless a provider is configured: with
APPLICATIONINSIGHTS_CONNECTION_STRING set, `configure_monitoring` hands the global
providers to Microsoft's Azure Monitor distro (Application Insights); otherwise the API's
no-op providers make every call free. Tests pass their own SDK providers (an in-memory
metric reader and span exporter) to `Telemetry`.

Metrics (each per `region` where it says so):
- `georollout.replication.latency` (s, per region): an image's arrival after the primary;
- `georollout.replication.detection_lag` (s, per region): at most this long in the replica
  before georollout saw it (since the last probe that found it missing);
- `georollout.deployment.duration` (s, per region): deployment start to serving;
- `georollout.rollouts.finished` (per `outcome`: live, failed, rolled_back, ...).
Traces: a span `georollout.reconcile` per pass (attribute `georollout.rollout_id`), with
the adapter calls it makes as child spans (`registry.*`, `azureml.*`, `table.*`, `eventgrid.*`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Span, TracerProvider

from shared.domain.observations import Observations

log = logging.getLogger("georollout.telemetry")

CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
SCOPE = "georollout"
_configured = False


def configure_monitoring(environ: Mapping[str, str] | None = None) -> bool:
    """Send metrics, traces and logs to Application Insights when its connection string is
    set (once per process); True when configured."""
    global _configured
    env = os.environ if environ is None else environ
    if _configured or not env.get(CONNECTION_STRING):
        return _configured
    from azure.monitor.opentelemetry import configure_azure_monitor

    # The distro reads the connection string itself; georollout's loggers go along.
    configure_azure_monitor(logger_name=SCOPE)
    _configured = True
    log.info("telemetry: metrics and traces go to Application Insights")
    return True


class Telemetry:
    """georollout's instruments, from the given providers (default: the global ones)."""

    def __init__(
        self,
        *,
        meter_provider: MeterProvider | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(SCOPE)
        self._tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(SCOPE)
        self._replication = meter.create_histogram(
            "georollout.replication.latency",
            unit="s",
            description="an image's arrival in a secondary region after the primary had it",
        )
        self._detection = meter.create_histogram(
            "georollout.replication.detection_lag",
            unit="s",
            description="the longest an image was in a replica before georollout saw it",
        )
        self._deployment = meter.create_histogram(
            "georollout.deployment.duration",
            unit="s",
            description="from a region's deployment start to it serving the new image",
        )
        self._finished = meter.create_counter(
            "georollout.rollouts.finished",
            description="rollouts that ended, by outcome",
        )

    def record(self, observed: Observations) -> None:
        for region, seconds in observed.replication_latency_s:
            self._replication.record(seconds, {"region": region})
        for region, seconds in observed.detection_lag_s:
            self._detection.record(seconds, {"region": region})
        for region, seconds in observed.deployment_duration_s:
            self._deployment.record(seconds, {"region": region})
        if observed.finished_as is not None:
            self._finished.add(1, {"outcome": observed.finished_as})

    @contextmanager
    def span(self, name: str, attributes: Mapping[str, str | int] | None = None) -> Iterator[Span]:
        """A span around one call (a child of the current one); an exception marks it."""
        with self._tracer.start_as_current_span(name, attributes=attributes) as span:
            yield span
