"""georollout's telemetry recorded in memory through the OpenTelemetry SDK, for assertions."""

from __future__ import annotations

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared.service.telemetry import Telemetry


class RecordedTelemetry:
    """A `Telemetry` whose metrics and spans stay in this process, to be read back."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.telemetry = Telemetry(
            meter_provider=MeterProvider(metric_readers=[self.reader]),
            tracer_provider=tracer_provider,
        )

    def _points(self, name: str) -> list[HistogramDataPoint | NumberDataPoint]:
        data = self.reader.get_metrics_data()
        found: list[HistogramDataPoint | NumberDataPoint] = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found += [
                            p
                            for p in metric.data.data_points
                            if isinstance(p, HistogramDataPoint | NumberDataPoint)
                        ]
        return found

    def histogram(self, name: str) -> dict[str, list[float]]:
        """Per region, the values recorded (from the histogram's sum and count: each test
        region records one value, so the sum is that value)."""
        values: dict[str, list[float]] = {}
        for point in self._points(name):
            assert isinstance(point, HistogramDataPoint)
            region = str(point.attributes["region"]) if point.attributes else ""
            # One observation per point here; more would be folded into min/max/sum.
            values[region] = [point.sum] if point.count == 1 else [point.min, point.max]
        return values

    def counter(self, name: str, attribute: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        for point in self._points(name):
            assert isinstance(point, NumberDataPoint)
            key = str(point.attributes[attribute]) if point.attributes else ""
            counts[key] = int(point.value)
        return counts

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def root_of(self, span: ReadableSpan) -> ReadableSpan:
        """The outermost span `span` was recorded under (itself when it has no parent)."""
        by_id = {s.context.span_id: s for s in self.spans() if s.context is not None}
        while span.parent is not None and span.parent.span_id in by_id:
            span = by_id[span.parent.span_id]
        return span
