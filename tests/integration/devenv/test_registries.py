"""The local geo-replicated registries, through the real azure-containerregistry client over HTTPS.

A push to the primary must reach each other region after the size-aware delay
and not before; so must a manifest delete (after the base delay), as ACR's geo-replication
carries deletes too; region knobs must hold both back; the relay must publish ACR's
ImagePushed event (both schemas) to a topic and ignore blobs and pulls.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from azure.containerregistry import ContainerRegistryClient
from azure.core.exceptions import ResourceNotFoundError, ServiceRequestError

from devenv.config import LOCAL_REGISTRY_RESOURCE_ID, LOCAL_TOPIC_KEY, LocalEnv, isolated_env
from devenv.images import (
    Blob,
    ImageBlobs,
    build_helm_chart,
    build_image,
    build_index,
    push_image,
    registry_client,
)
from devenv.ports import LOOPBACK, free_port
from devenv.process import ManagedProcess, port_open, wait_until
from devenv.registries import RegistryControl, RegistryControlError, start_registries
from devenv.registries.config import CLOUD_EVENT_SCHEMA, registry_config, supervisor_settings
from devenv.tls import TlsFiles

pytestmark = pytest.mark.integration

BASE_S = 1.0
BANDWIDTH = 2_000_000.0  # bytes/s: a 3 MB image takes 1.5 s longer than a tiny one
SLACK_S = 6.0  # how late after its due time a copy may land on a busy 2-core machine
EVENT_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z$")


class FakeTopic:
    """An HTTPS Event Grid topic stand-in that checks the key and records each POSTed body."""

    def __init__(self, tls: TlsFiles) -> None:
        self.tls = tls
        self.port = free_port()
        self.bodies: list[tuple[dict[str, str], Any]] = []
        self.fail_next = 0  # answer this many requests with 503 first
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def endpoint(self) -> str:
        return f"https://{LOOPBACK}:{self.port}/topics/acr/api/events"

    async def _receive(self, request: web.Request) -> web.Response:
        if request.headers.get("aeg-sas-key") != LOCAL_TOPIC_KEY:
            return web.json_response({"error": {"code": "Unauthorized"}}, status=401)
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.json_response({"error": {"code": "ServiceUnavailable"}}, status=503)
        self.bodies.append((dict(request.headers), json.loads(await request.read())))
        return web.Response(status=200)

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/topics/acr/api/events", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(
            self._runner, LOOPBACK, self.port, ssl_context=self.tls.server_context()
        ).start()

    def start(self) -> FakeTopic:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def events_for(self, digest: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
        return [
            (headers, event)
            for headers, body in list(self.bodies)
            for event in body
            if event.get("data", {}).get("target", {}).get("digest") == digest
        ]


def _env(tmp: Path, regions: tuple[str, ...], **changes: Any) -> LocalEnv:
    env = isolated_env(tmp, regions)
    return replace(
        env,
        replication_base_s=changes.pop("base", BASE_S),
        replication_bandwidth_bytes_per_s=BANDWIDTH,
        **changes,
    )


@pytest.fixture(scope="module")
def topic(tls_files: TlsFiles) -> Iterator[FakeTopic]:
    fake = FakeTopic(tls_files).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def geo(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles, topic: FakeTopic
) -> Iterator[LocalEnv]:
    env = _env(tmp_path_factory.mktemp("geo"), ("eastus", "westus", "westeurope"))
    process = start_registries(env, tls_files, eventgrid_topic_endpoint=topic.endpoint)
    yield env
    process.stop()
    _assert_nothing_listens(env)


def _assert_nothing_listens(env: LocalEnv) -> None:
    ports = [env.relay_port, *(r.registry_port for r in env.regions)]
    assert not [p for p in ports if port_open(LOOPBACK, p)], "a registry outlived its supervisor"


def _client(env: LocalEnv, region: str, tls: TlsFiles) -> ContainerRegistryClient:
    return registry_client(env.region(region).registry_url, ca_path=tls.ca_pem)


def _present(env: LocalEnv, region: str, tls: TlsFiles, repository: str, digest: str) -> bool:
    with _client(env, region, tls) as client:
        try:
            return bool(client.get_manifest(repository, digest).digest == digest)
        except ResourceNotFoundError:
            return False


def _not_found(env: LocalEnv, region: str, tls: TlsFiles, repository: str, reference: str) -> bool:
    """Whether the region's registry answers 404 for the manifest (by digest or tag)."""
    with _client(env, region, tls) as client:
        try:
            client.get_manifest(repository, reference)
        except ResourceNotFoundError:
            return True
    return False


def _first_seen(
    env: LocalEnv,
    regions: list[str],
    tls: TlsFiles,
    repository: str,
    digest: str,
    *,
    deadline: float,
) -> dict[str, float]:
    """Poll each region until the digest is there; the wall-clock time each was first seen."""
    seen: dict[str, float] = {}
    while len(seen) < len(regions):
        for region in regions:
            if region not in seen and _present(env, region, tls, repository, digest):
                seen[region] = time.time()
        if time.time() > deadline:
            missing = sorted(set(regions) - set(seen))
            raise AssertionError(f"{repository}@{digest} never reached {missing}")
        time.sleep(0.05)
    return seen


def _first_gone(
    env: LocalEnv,
    regions: list[str],
    tls: TlsFiles,
    repository: str,
    reference: str,
    *,
    deadline: float,
) -> dict[str, float]:
    """Poll each region until it answers 404 for the reference; when each was first seen gone."""
    gone: dict[str, float] = {}
    while len(gone) < len(regions):
        for region in regions:
            if region not in gone and _not_found(env, region, tls, repository, reference):
                gone[region] = time.time()
        if time.time() > deadline:
            remaining = sorted(set(regions) - set(gone))
            raise AssertionError(f"{repository}@{reference} is still served by {remaining}")
        time.sleep(0.05)
    return gone


def _push(env: LocalEnv, tls: TlsFiles, repository: str, tag: str, image: Any) -> str:
    return push_image(env.primary.registry_url, repository, tag, image, ca_path=tls.ca_pem)


def test_push_reaches_each_region_after_the_delay_and_not_before(
    geo: LocalEnv, tls_files: TlsFiles
) -> None:
    image = build_image(size_bytes=20_000, seed="timing")
    started = time.time()
    digest = _push(geo, tls_files, "models/timing", "v1", image)
    pushed = time.time()
    assert digest == image.digest
    assert _present(geo, "eastus", tls_files, "models/timing", digest)

    expected = BASE_S + image.total_bytes / BANDWIDTH
    seen = _first_seen(
        geo,
        ["westus", "westeurope"],
        tls_files,
        "models/timing",
        digest,
        deadline=pushed + expected + SLACK_S,
    )
    for region, at in seen.items():
        assert at - started >= expected, f"{region} had it {at - started:.2f}s after the push"
    with _client(geo, "westus", tls_files) as client:
        assert client.get_manifest("models/timing", "v1").digest == digest


def test_a_larger_image_takes_longer_per_the_bandwidth(geo: LocalEnv, tls_files: TlsFiles) -> None:
    image = build_image(size_bytes=3_000_000, seed="large")
    started = time.time()
    digest = _push(geo, tls_files, "models/large", "v1", image)
    pushed = time.time()
    expected = BASE_S + image.total_bytes / BANDWIDTH
    assert expected >= BASE_S + 1.4
    seen = _first_seen(
        geo, ["westus"], tls_files, "models/large", digest, deadline=pushed + expected + SLACK_S
    )
    assert seen["westus"] - started >= expected
    with _client(geo, "westus", tls_files) as client:
        layer = image.layers[0]
        assert isinstance(layer, Blob)
        assert b"".join(client.download_blob("models/large", layer.digest)) == layer.data


def test_extra_delay_holds_one_region_back(geo: LocalEnv, tls_files: TlsFiles) -> None:
    control = RegistryControl(geo.relay_url)
    control.set_region("westeurope", extra_delay_s=2.0)
    try:
        image = build_image(size_bytes=10_000, seed="extra-delay")
        started = time.time()
        digest = _push(geo, tls_files, "models/extra", "v1", image)
        expected = BASE_S + image.total_bytes / BANDWIDTH
        seen = _first_seen(
            geo,
            ["westus", "westeurope"],
            tls_files,
            "models/extra",
            digest,
            deadline=time.time() + expected + 2.0 + SLACK_S,
        )
        assert seen["westus"] - started >= expected
        assert seen["westeurope"] - started >= expected + 2.0
    finally:
        control.set_region("westeurope", extra_delay_s=0.0)


def test_an_unavailable_region_gets_the_image_only_once_it_is_back(
    geo: LocalEnv, tls_files: TlsFiles
) -> None:
    control = RegistryControl(geo.relay_url)
    state = control.set_region("westeurope", unavailable=True)
    try:
        assert state["running"] is False
        with (
            _client(geo, "westeurope", tls_files) as client,
            pytest.raises(ServiceRequestError),
        ):
            client.get_manifest("models/outage", "v1", retry_total=0)

        image = build_image(size_bytes=10_000, seed="outage")
        digest = _push(geo, tls_files, "models/outage", "v1", image)
        due = time.time() + BASE_S + image.total_bytes / BANDWIDTH
        _first_seen(geo, ["westus"], tls_files, "models/outage", digest, deadline=due + SLACK_S)
        # Well past its due time the job is still waiting for the region.
        wait_until(lambda: time.time() > due + 0.5, timeout=SLACK_S, what="the due time to pass")
        pending = control.regions()["westeurope"]["pending_replications"]
        assert [job["digest"] for job in pending] == [digest]
    finally:
        state = control.set_region("westeurope", unavailable=False)
    assert state["running"] is True
    _first_seen(
        geo, ["westeurope"], tls_files, "models/outage", digest, deadline=time.time() + SLACK_S
    )
    assert control.regions()["westeurope"]["pending_replications"] == []


def test_a_never_replicating_region_never_gets_the_image(
    geo: LocalEnv, tls_files: TlsFiles
) -> None:
    control = RegistryControl(geo.relay_url)
    control.set_region("westus", never_replicates=True)
    try:
        image = build_image(size_bytes=10_000, seed="never")
        digest = _push(geo, tls_files, "models/never", "v1", image)
        due = time.time() + BASE_S + image.total_bytes / BANDWIDTH
        _first_seen(geo, ["westeurope"], tls_files, "models/never", digest, deadline=due + SLACK_S)
        wait_until(lambda: time.time() > due + 1.0, timeout=SLACK_S, what="the due time to pass")
        assert not _present(geo, "westus", tls_files, "models/never", digest)
        pending = control.regions()["westus"]["pending_replications"]
        assert [job["digest"] for job in pending] == [digest]
    finally:
        control.set_region("westus", never_replicates=False)
    _first_seen(geo, ["westus"], tls_files, "models/never", digest, deadline=time.time() + SLACK_S)


def test_an_index_is_replicated_with_its_child_manifests(
    geo: LocalEnv, tls_files: TlsFiles
) -> None:
    amd64 = build_image(size_bytes=5_000, seed="multi-amd64", architecture="amd64")
    arm64 = build_image(size_bytes=5_000, seed="multi-arm64", architecture="arm64")
    index = build_index((amd64, arm64))
    digest = _push(geo, tls_files, "models/multi", "v1", index)
    assert digest == index.digest
    _first_seen(
        geo,
        ["westus", "westeurope"],
        tls_files,
        "models/multi",
        digest,
        deadline=time.time() + BASE_S + SLACK_S,
    )
    with _client(geo, "westus", tls_files) as client:
        assert client.get_manifest("models/multi", "v1").digest == digest
        for child in (amd64, arm64):
            assert client.get_manifest("models/multi", child.digest).digest == child.digest


def _push_everywhere(geo: LocalEnv, tls: TlsFiles, repository: str, seed: str) -> str:
    """Push a small image tagged v1 and wait until every region has it."""
    image = build_image(size_bytes=10_000, seed=seed)
    digest = _push(geo, tls, repository, "v1", image)
    due = time.time() + BASE_S + image.total_bytes / BANDWIDTH
    _first_seen(geo, ["westus", "westeurope"], tls, repository, digest, deadline=due + SLACK_S)
    return digest


def test_generated_registry_config_enables_and_notifies_deletes(
    geo: LocalEnv, tls_files: TlsFiles
) -> None:
    settings = supervisor_settings(geo, tls_files, eventgrid_topic_endpoint=None)
    config = registry_config(settings.primary, settings)
    assert config["storage"]["delete"] == {"enabled": True}
    for endpoint in config["notifications"]["endpoints"]:
        assert "delete" not in endpoint["ignore"]["actions"], endpoint["name"]


def test_a_manifest_delete_reaches_each_region_after_the_delay_and_not_before(
    geo: LocalEnv, tls_files: TlsFiles
) -> None:
    digest = _push_everywhere(geo, tls_files, "models/deleted", "delete")
    with _client(geo, "eastus", tls_files) as client:
        deleted_at = time.time()
        client.delete_manifest("models/deleted", digest)
    assert _not_found(geo, "eastus", tls_files, "models/deleted", digest)

    gone = _first_gone(
        geo,
        ["westus", "westeurope"],
        tls_files,
        "models/deleted",
        digest,
        deadline=time.time() + BASE_S + SLACK_S,
    )
    for region, at in gone.items():
        assert at - deleted_at >= BASE_S, (
            f"{region} lost it {at - deleted_at:.2f}s after the delete"
        )
    # Deleting a digest untags it, in the primary and in each replica (as ACR does).
    for region in ("eastus", "westus", "westeurope"):
        assert _not_found(geo, region, tls_files, "models/deleted", "v1"), region
    control = RegistryControl(geo.relay_url)
    wait_until(
        lambda: all(
            any(d["digest"] == digest for d in control.regions()[region]["deleted"])
            for region in ("westus", "westeurope")
        ),
        timeout=SLACK_S,
        what="each region to report the delete",
    )
    regions = control.regions()
    assert regions["eastus"]["received"]["delete:digest"] >= 1
    assert regions["eastus"]["received"]["delete:tag"] >= 1  # v1, untagged by the delete
    for region in ("westus", "westeurope"):
        assert all(job["digest"] != digest for job in regions[region]["pending_replications"])


def test_an_unavailable_region_gets_the_delete_only_once_it_is_back(
    geo: LocalEnv, tls_files: TlsFiles
) -> None:
    digest = _push_everywhere(geo, tls_files, "models/delete-outage", "delete-outage")
    control = RegistryControl(geo.relay_url)
    state = control.set_region("westeurope", unavailable=True)
    try:
        assert state["running"] is False
        with _client(geo, "eastus", tls_files) as client:
            client.delete_manifest("models/delete-outage", digest)
        _first_gone(
            geo,
            ["westus"],
            tls_files,
            "models/delete-outage",
            digest,
            deadline=time.time() + BASE_S + SLACK_S,
        )
        # westus's copy of the job was due when westeurope's is (no extra delay): it waits.
        pending = control.regions()["westeurope"]["pending_replications"]
        assert [(job["action"], job["digest"]) for job in pending] == [("delete", digest)]
    finally:
        state = control.set_region("westeurope", unavailable=False)
    assert state["running"] is True
    _first_gone(
        geo,
        ["westeurope"],
        tls_files,
        "models/delete-outage",
        digest,
        deadline=time.time() + SLACK_S,
    )
    wait_until(
        lambda: control.regions()["westeurope"]["pending_replications"] == [],
        timeout=SLACK_S,
        what="the delete job to be acknowledged",
    )


def test_control_api_rejects_bad_knobs(geo: LocalEnv) -> None:
    control = RegistryControl(geo.relay_url)
    with pytest.raises(RegistryControlError, match="unknown_region"):
        control.set_region("mars", unavailable=True)
    request = urllib.request.Request(
        f"{geo.relay_url}/regions/westus",
        data=json.dumps({"extra_delay_s": True}).encode(),
        method="PATCH",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 400
    assert json.loads(refused.value.read())["error"]["code"] == "invalid_knob"
    regions = control.regions()
    assert list(regions) == ["eastus", "westus", "westeurope"]
    assert regions["eastus"]["primary"] is True


def _assert_event_grid_shape(event: dict[str, Any], env: LocalEnv, image: ImageBlobs) -> None:
    assert list(event) == [
        "id",
        "topic",
        "subject",
        "eventType",
        "eventTime",
        "data",
        "dataVersion",
        "metadataVersion",
    ]
    assert event["topic"] == LOCAL_REGISTRY_RESOURCE_ID
    assert event["eventType"] == "Microsoft.ContainerRegistry.ImagePushed"
    assert EVENT_TIME.match(event["eventTime"]), event["eventTime"]
    assert (event["dataVersion"], event["metadataVersion"]) == ("1.0", "1")
    _assert_data(event["data"], env, image)


def _assert_data(data: dict[str, Any], env: LocalEnv, image: ImageBlobs) -> None:
    assert list(data) == ["id", "timestamp", "action", "target", "request"]
    assert data["action"] == "push"
    assert data["target"] == {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "size": len(image.manifest),
        "digest": image.digest,
        "length": len(image.manifest),
        "repository": "models/events",
        "tag": "v7",
    }
    assert list(data["request"]) == ["id", "host", "method", "useragent"]
    assert data["request"]["host"] == env.primary.registry_host
    assert data["request"]["method"] == "PUT"
    assert "azsdk-python-azure-containerregistry" in data["request"]["useragent"]


def test_relay_publishes_image_pushed_in_the_event_grid_schema(
    geo: LocalEnv, tls_files: TlsFiles, topic: FakeTopic
) -> None:
    topic.fail_next = 2  # the relay must keep it and retry
    image = build_image(size_bytes=1_000, seed="events")
    digest = _push(geo, tls_files, "models/events", "v7", image)
    wait_until(lambda: bool(topic.events_for(digest)), timeout=15, what="ImagePushed at the topic")
    [(headers, event)] = topic.events_for(digest)
    assert headers["Content-Type"].startswith("application/json")
    assert event["subject"] == "models/events:v7"
    _assert_event_grid_shape(event, geo, image)


def test_relay_forwards_nothing_for_blobs_pulls_or_non_primary_pushes(
    geo: LocalEnv, tls_files: TlsFiles, topic: FakeTopic
) -> None:
    control = RegistryControl(geo.relay_url)
    before = dict(control.regions()["eastus"]["received"])
    blob_digest = "sha256:" + "ab" * 32
    envelope = {
        "events": [
            {
                "id": "f3c1c2d4-0000-4000-8000-000000000001",
                "timestamp": "2026-01-01T00:00:00.000000000Z",
                "action": "push",
                "target": {
                    "mediaType": "application/octet-stream",
                    "size": 10,
                    "digest": blob_digest,
                    "length": 10,
                    "repository": "models/blobs",
                    "url": f"/v2/models/blobs/blobs/{blob_digest}",
                },
                "request": {"id": "r1", "host": "127.0.0.1", "method": "PUT", "useragent": "x"},
            }
        ]
    }
    request = urllib.request.Request(
        f"{geo.relay_url}/notifications/eastus",
        data=json.dumps(envelope).encode(),
        method="POST",
        headers={"Content-Type": "application/vnd.docker.distribution.events.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        assert json.loads(response.read()) == {"accepted": 0, "ignored": 1}

    # Pulls of manifests and blobs through the real registry: dropped by the generated
    # config (ignore.actions / ignoredmediatypes), so the relay never sees them.
    seed = build_image(size_bytes=1_000, seed="barrier-0")
    _push(geo, tls_files, "models/quiet", "v0", seed)
    with _client(geo, "eastus", tls_files) as client:
        client.get_manifest("models/quiet", "v0")
        client.get_manifest("models/quiet", seed.digest)
        b"".join(client.download_blob("models/quiet", seed.config.digest))
    # Distribution delivers one endpoint's events in order: once this later push's
    # event is through, any pull or blob event before it would have been counted.
    barrier = build_image(size_bytes=1_000, seed="barrier-1")
    barrier_digest = _push(geo, tls_files, "models/quiet", "v1", barrier)
    wait_until(lambda: bool(topic.events_for(barrier_digest)), timeout=15, what="barrier event")

    after = control.regions()["eastus"]["received"]
    assert after.get("push:blob", 0) - before.get("push:blob", 0) == 1  # only the synthetic one
    assert after.get("pull:manifest", 0) == before.get("pull:manifest", 0)
    assert after.get("pull:blob", 0) == before.get("pull:blob", 0)
    assert after["push:manifest"] - before.get("push:manifest", 0) == 2
    assert not topic.events_for(blob_digest)
    state = control.state()
    assert all(
        job["digest"] != blob_digest
        for region in state["regions"]
        for job in region["pending_replications"]
    )
    # Copies made by the replicator are pushes in the secondaries: no ImagePushed for them.
    _first_seen(
        geo,
        ["westus"],
        tls_files,
        "models/quiet",
        barrier_digest,
        deadline=time.time() + BASE_S + SLACK_S,
    )
    wait_until(
        lambda: any(
            r["digest"] == barrier_digest for r in control.regions()["westus"]["replicated"]
        ),
        timeout=SLACK_S,
        what="westus to report the copy",
    )
    assert len(topic.events_for(barrier_digest)) == 1


def test_a_helm_chart_is_an_ordinary_manifest_push(
    geo: LocalEnv, tls_files: TlsFiles, topic: FakeTopic
) -> None:
    chart = build_helm_chart(name="scorer", version="1.2.3", seed="chart")
    digest = _push(geo, tls_files, "charts/scorer", "1.2.3", chart)
    wait_until(lambda: bool(topic.events_for(digest)), timeout=15, what="the chart's event")
    [(_, event)] = topic.events_for(digest)
    assert event["data"]["target"]["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    with _client(geo, "eastus", tls_files) as client:
        manifest = client.get_manifest("charts/scorer", digest).manifest
    assert manifest["config"]["mediaType"] == "application/vnd.cncf.helm.config.v1+json"


def test_relay_publishes_image_pushed_as_a_cloud_event(
    tmp_path: Path, tls_files: TlsFiles, topic: FakeTopic
) -> None:
    env = _env(tmp_path, ("eastus",))
    process = start_registries(
        env, tls_files, eventgrid_topic_endpoint=topic.endpoint, event_schema=CLOUD_EVENT_SCHEMA
    )
    try:
        image = build_image(size_bytes=1_000, seed="events-cloud")
        digest = _push(env, tls_files, "models/events", "v7", image)
        wait_until(
            lambda: any("specversion" in e for _, e in topic.events_for(digest)),
            timeout=15,
            what="a CloudEvent at the topic",
        )
    finally:
        process.stop()
    _assert_nothing_listens(env)
    [(headers, event)] = [(h, e) for h, e in topic.events_for(digest) if "specversion" in e]
    assert headers["Content-Type"].startswith("application/cloudevents-batch+json")
    # The SDK re-serialises CloudEvent dicts, so only the key set (not order) is the sample's.
    assert sorted(event) == sorted(
        ["id", "source", "subject", "type", "time", "data", "specversion"]
    )
    assert event["source"] == LOCAL_REGISTRY_RESOURCE_ID
    assert event["subject"] == "models/events:v7"
    assert event["type"] == "Microsoft.ContainerRegistry.ImagePushed"
    # The SDK re-formats a CloudEvent's time (microseconds, trailing zeros cut).
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,7}Z$", event["time"])
    assert event["specversion"] == "1.0"
    _assert_data(event["data"], env, image)


def test_a_restart_loses_no_replication_and_no_event(
    tmp_path: Path, tls_files: TlsFiles, topic: FakeTopic
) -> None:
    env = _env(tmp_path, ("eastus", "westus"), base=3.0)
    topic.fail_next = 1_000  # the topic is down during the first run
    first: ManagedProcess | None = start_registries(
        env, tls_files, eventgrid_topic_endpoint=topic.endpoint
    )
    try:
        image = build_image(size_bytes=1_000, seed="restart")
        digest = _push(env, tls_files, "models/restart", "v1", image)
        control = RegistryControl(env.relay_url)
        wait_until(
            lambda: bool(control.regions()["westus"]["pending_replications"]),
            timeout=10,
            what="the replication job to be spooled",
        )
        assert control.state()["events"]["pending"] == 1
        assert first is not None
        first.stop()
        first = None
        assert not port_open(LOOPBACK, env.region("westus").registry_port)
        topic.fail_next = 0
        second = start_registries(env, tls_files, eventgrid_topic_endpoint=topic.endpoint)
        try:
            _first_seen(
                env, ["westus"], tls_files, "models/restart", digest, deadline=time.time() + 10
            )
            wait_until(lambda: bool(topic.events_for(digest)), timeout=15, what="the event")
        finally:
            second.stop()
    finally:
        topic.fail_next = 0
        if first is not None:
            first.stop()
    _assert_nothing_listens(env)
