"""The local ACR stand-in: one CNCF Distribution registry per region, a replicator, and a relay.

The relay turns the primary registry's notifications into ACR's ImagePushed events
(to the local Event Grid topic) and into replication jobs for the other regions.
"""

from devenv.registries.control import RegistryControl, RegistryControlError
from devenv.registries.launcher import start_registries

__all__ = ["RegistryControl", "RegistryControlError", "start_registries"]
