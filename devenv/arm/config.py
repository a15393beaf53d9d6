"""The ARM emulator's configuration file: which workspaces exist, in which region, and where state lives."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

# How long an endpoint still says `Updating` after its own operation reported `Succeeded`.
# Azure does this (Azure/azure-sdk-for-net#36961: the endpoint operation succeeded, then a
# deployment PUT was refused "because it is in Updating provisioning state"); a client that
# trusts the operation alone must see the refusal locally too. Small, so local runs stay quick.
DEFAULT_ENDPOINT_SETTLE_S = 1.5


@dataclass(frozen=True)
class WorkspaceConfig:
    """One Azure ML workspace and the registry replica of its region."""

    name: str
    region: str
    registry_url: str  # e.g. https://127.0.0.1:5002: where this region's pulls are served from
    subscription_id: str
    resource_group: str

    @property
    def arm_id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.MachineLearningServices/workspaces/{self.name}"
        )


@dataclass(frozen=True)
class ArmConfig:
    """Everything the emulator process needs besides its port and TLS files."""

    base_url: str  # how clients reach the emulator; used for absolute operation and scoring URLs
    provisioning_s: float
    state_path: Path
    audit_path: Path
    workspaces: tuple[WorkspaceConfig, ...]
    # 0 makes an endpoint `Succeeded` the moment its operation is (the emulator's old behaviour).
    endpoint_settle_s: float = DEFAULT_ENDPOINT_SETTLE_S

    def __post_init__(self) -> None:
        if self.endpoint_settle_s < 0:
            raise ValueError(f"endpoint_settle_s must be 0 or more, not {self.endpoint_settle_s}")

    def workspace(
        self, subscription_id: str, resource_group: str, name: str
    ) -> WorkspaceConfig | None:
        # ARM resource names and ids compare case-insensitively.
        for ws in self.workspaces:
            if (
                ws.name.lower() == name.lower()
                and ws.subscription_id.lower() == subscription_id.lower()
                and ws.resource_group.lower() == resource_group.lower()
            ):
                return ws
        return None

    def workspace_named(self, name: str) -> WorkspaceConfig | None:
        for ws in self.workspaces:
            if ws.name.lower() == name.lower():
                return ws
        return None

    def dump(self, path: Path) -> None:
        data = {
            "base_url": self.base_url,
            "provisioning_s": self.provisioning_s,
            "endpoint_settle_s": self.endpoint_settle_s,
            "state_path": str(self.state_path),
            "audit_path": str(self.audit_path),
            "workspaces": [asdict(ws) for ws in self.workspaces],
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> ArmConfig:
        data = json.loads(path.read_text())
        return cls(
            base_url=str(data["base_url"]).rstrip("/"),
            provisioning_s=float(data["provisioning_s"]),
            state_path=Path(data["state_path"]),
            audit_path=Path(data["audit_path"]),
            workspaces=tuple(WorkspaceConfig(**ws) for ws in data["workspaces"]),
            endpoint_settle_s=float(data.get("endpoint_settle_s", DEFAULT_ENDPOINT_SETTLE_S)),
        )
