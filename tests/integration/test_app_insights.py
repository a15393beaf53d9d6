"""Telemetry reaches Application Insights through Microsoft's distro when, and only when,
APPLICATIONINSIGHTS_CONNECTION_STRING is set: a local HTTP server plays the ingestion
endpoint the connection string names, and a separate process (the distro configures
process-wide providers) records a metric and a span and flushes."""

from __future__ import annotations

import gzip
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from shared.service.telemetry import CONNECTION_STRING, configure_monitoring

pytestmark = pytest.mark.integration

CHILD = """
from opentelemetry import metrics, trace
from shared.domain.observations import Observations
from shared.service.telemetry import Telemetry, configure_monitoring
assert configure_monitoring()
telemetry = Telemetry()
telemetry.record(Observations(deployment_duration_s=[("westus", 12.5)], finished_as="live"))
with telemetry.span("georollout.reconcile", {"georollout.rollout_id": "the-rollout"}):
    with telemetry.span("registry.probe", {"region": "westus"}):
        pass
metrics.get_meter_provider().force_flush()
trace.get_tracer_provider().force_flush()
"""


class Ingestion(BaseHTTPRequestHandler):
    """Accepts every batch, as the ingestion service does, and keeps its body."""

    received: list[bytes]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.received.append(body)
        answer = b'{"itemsReceived": 1, "itemsAccepted": 1, "errors": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def ingestion() -> Iterator[tuple[str, list[bytes]]]:
    received: list[bytes] = []
    handler = type("Recording", (Ingestion,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", received
    finally:
        server.shutdown()
        server.server_close()


def test_metrics_and_spans_reach_the_ingestion_endpoint_of_the_connection_string(
    ingestion: tuple[str, list[bytes]], tmp_path: Path
) -> None:
    endpoint, received = ingestion
    connection = (
        f"InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint={endpoint}"
    )
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        env={
            "PATH": "/usr/bin:/bin",
            CONNECTION_STRING: connection,
            # No statsbeat: only what georollout records goes out.
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
            # Every trace kept: the distro's default (rate-limited sampling) may drop a
            # process's first span, and this one has only one trace to send.
            "OTEL_TRACES_SAMPLER": "microsoft.fixed_percentage",
            "OTEL_TRACES_SAMPLER_ARG": "1.0",
            "TMPDIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    sent = b"\n".join(received).decode("utf-8", "replace")
    assert "georollout.deployment.duration" in sent, sent[:2000]
    assert "georollout.rollouts.finished" in sent
    assert "georollout.reconcile" in sent and "registry.probe" in sent


def test_nothing_is_configured_without_a_connection_string() -> None:
    assert configure_monitoring({}) is False
