"""The custom-cloud metadata that points azure-ai-ml's MLClient at a resource manager such as the emulator."""

from __future__ import annotations

# MLClient registers a cloud name once per process and ignores later metadata for the
# same name, so a name must stand for one resource-manager URL.
LOCAL_CLOUD_NAME = "GeoRolloutLocal"


def cloud_metadata(resource_manager_url: str) -> dict[str, str]:
    """The six keys `MLClient(cloud=..., cloud_metadata=...)` reads (azure-ai-ml 1.35 `_add_cloud_to_environments`)."""
    base = resource_manager_url.rstrip("/") + "/"
    return {
        "azure_portal": base,
        "resource_manager": base,
        "active_directory": base,
        "aml_resource_id": base,
        "storage_endpoint": "core.windows.net",
        "registry_discovery_endpoint": base,
    }
