"""The parts of one running emulator, shared by its HTTP handlers."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from devenv.eventgrid.config import EmulatorConfig
from devenv.eventgrid.delivery import DeliveryDispatcher
from devenv.eventgrid.provisioning import SubscriptionProvisioner
from devenv.eventgrid.subscriptions import SubscriptionRegistry


@dataclass(frozen=True)
class EmulatorState:
    config: EmulatorConfig
    registry: SubscriptionRegistry
    dispatcher: DeliveryDispatcher
    provisioner: SubscriptionProvisioner


EMULATOR = web.AppKey("emulator", EmulatorState)
