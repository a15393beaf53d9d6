"""Sample payloads as the vendors document them (ACR Event Grid source page, ACR webhook
reference, Distribution notifications), with placeholders filled in."""

from __future__ import annotations

import copy
from typing import Any

DIGEST = "sha256:213bbc182920ab41e18edc2001e06abcca6735d87782d9cef68abd83941cf0e5"
TOPIC = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/georollout-local/providers/Microsoft.ContainerRegistry/registries/georollout"

_DATA: dict[str, Any] = {
    "id": "31c51664-e5bd-416a-a5df-e5206bc47ed0",
    "timestamp": "2018-04-25T21:39:47.276585742Z",
    "action": "push",
    "target": {
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "size": 3023,
        "digest": DIGEST,
        "length": 3023,
        "repository": "aci-helloworld",
        "tag": "v1",
    },
    "request": {
        "id": "7c66f28b-de19-40a4-821c-6f5f6c0003a4",
        "host": "demo.azurecr.io",
        "method": "PUT",
        "useragent": "docker/18.03.0-ce go/go1.9.4 git-commit/0520e24 os/windows arch/amd64",
    },
}


def eventgrid_schema_push() -> dict[str, Any]:
    return {
        "id": "831e1650-001e-001b-66ab-eeb76e069631",
        "topic": TOPIC,
        "subject": "aci-helloworld:v1",
        "eventType": "Microsoft.ContainerRegistry.ImagePushed",
        "eventTime": "2018-04-25T21:39:47.6549614Z",
        "data": copy.deepcopy(_DATA),
        "dataVersion": "1.0",
        "metadataVersion": "1",
    }


def cloudevent_push() -> dict[str, Any]:
    return {
        "id": "831e1650-001e-001b-66ab-eeb76e069631",
        "source": TOPIC,
        "subject": "aci-helloworld:v1",
        "type": "Microsoft.ContainerRegistry.ImagePushed",
        "time": "2018-04-25T21:39:47.6549614Z",
        "data": copy.deepcopy(_DATA),
        "specversion": "1.0",
    }


def cloudevent_image_deleted() -> dict[str, Any]:
    return {
        "id": "f06e3921-301f-42ec-b368-212f7d5354bd",
        "source": TOPIC,
        "subject": "aci-helloworld",
        "type": "Microsoft.ContainerRegistry.ImageDeleted",
        "time": "2018-04-26T17:56:01.8211268Z",
        "data": {
            "id": "f06e3921-301f-42ec-b368-212f7d5354bd",
            "timestamp": "2018-04-26T17:56:00.996603117Z",
            "action": "delete",
            "target": {
                "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "digest": DIGEST,
                "repository": "aci-helloworld",
            },
            "request": {"id": "aeda5b99", "host": "demo.azurecr.io", "method": "DELETE"},
        },
        "specversion": "1.0",
    }


def eventgrid_chart_pushed() -> dict[str, Any]:
    return {
        "id": "6356e9e0-627f-4fed-8e5c-d9059b5143ac",
        "topic": TOPIC,
        "subject": "repo:wordpress-5.4.0.tgz",
        "eventType": "Microsoft.ContainerRegistry.ChartPushed",
        "eventTime": "2019-03-05T23:45:31.2614267Z",
        "data": {
            "id": "6356e9e0-627f-4fed-8e5c-d9059b5143ac",
            "timestamp": "2019-03-05T23:45:31.2614267Z",
            "action": "chart_push",
            "target": {
                "mediaType": "application/vnd.acr.helm.chart",
                "size": 25265,
                "digest": DIGEST,
                "repository": "repo",
                "tag": "wordpress-5.4.0.tgz",
                "name": "wordpress",
                "version": "5.4.0.tgz",
            },
        },
        "dataVersion": "1.0",
        "metadataVersion": "1",
    }


def acr_webhook_push() -> dict[str, Any]:
    return {
        "id": "cb8c3971-9adc-488b-bdd8-43cbb4974ff5",
        "timestamp": "2017-11-17T16:52:01.343145347Z",
        "action": "push",
        "target": {
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "size": 524,
            "digest": DIGEST,
            "length": 524,
            "repository": "hello-world",
            "tag": "v1",
        },
        "request": {
            "id": "3cbb6949-7549-4fa1-86cd-a6d5451dffc7",
            "host": "myregistry.azurecr.io",
            "method": "PUT",
            "useragent": "docker/17.09.0-ce go/go1.8.3",
        },
    }


def acr_webhook(action: str) -> dict[str, Any]:
    body = acr_webhook_push()
    body["action"] = action
    return body


def distribution_envelope() -> dict[str, Any]:
    request = {
        "id": "r1",
        "addr": "127.0.0.1:40000",
        "host": "127.0.0.1:5001",
        "method": "PUT",
        "useragent": "azsdk-python",
    }
    source = {"addr": "host:5001", "instanceID": "a1b2"}
    return {
        "events": [
            {
                "id": "e1",
                "timestamp": "2025-03-01T12:00:00.123456789Z",
                "action": "push",
                "target": {
                    "mediaType": "application/octet-stream",
                    "size": 1234,
                    "digest": "sha256:" + "1" * 64,
                    "length": 1234,
                    "repository": "models/llm",
                    "url": "https://127.0.0.1:5001/v2/models/llm/blobs/sha256:" + "1" * 64,
                },
                "request": request,
                "actor": {},
                "source": source,
            },
            {
                "id": "e2",
                "timestamp": "2025-03-01T12:00:01.5Z",
                "action": "push",
                "target": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "size": 512,
                    "digest": DIGEST,
                    "length": 512,
                    "repository": "models/llm",
                    "url": "https://127.0.0.1:5001/v2/models/llm/manifests/" + DIGEST,
                    "tag": "v2",
                },
                "request": request,
                "actor": {},
                "source": source,
            },
            {
                "id": "e3",
                "timestamp": "2025-03-01T12:00:02Z",
                "action": "pull",
                "target": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": DIGEST,
                    "repository": "models/llm",
                },
                "request": request,
                "actor": {},
                "source": source,
            },
        ]
    }
