"""At start-up: report the configuration once, every problem on its own line.

It never raises: a function app that fails to import serves nothing, not even
/api/health, which is where an operator looks first.
"""

from __future__ import annotations

import logging

from shared.config import load_config
from shared.errors import ConfigurationError

log = logging.getLogger("georollout.startup")


def report_configuration() -> bool:
    """Log whether the settings are valid; True when they are."""
    try:
        config = load_config()
    except ConfigurationError as error:
        log.error("georollout is misconfigured; every trigger will fail until this is fixed:")
        for problem in error.problems or (error.message,):
            log.error("  %s", problem)
        return False
    log.info(
        "georollout configuration ok: registry %s, regions %s (primary %s)",
        config.registry_login_server,
        ", ".join(config.region_names),
        config.primary_region.name,
    )
    for name in config.unknown_settings:
        log.warning("unknown setting %s (a typo?) is ignored", name)
    return True
