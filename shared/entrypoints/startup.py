"""At start-up: report the configuration once, every problem on its own line.

It never raises: a function app that fails to import serves nothing, not even
/api/health, which is where an operator looks first.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from shared.config import load_config
from shared.errors import ConfigurationError
from shared.service.health import Redactor, unprotected_webhook
from shared.service.telemetry import configure_monitoring

log = logging.getLogger("georollout.startup")


def report_configuration(environ: Mapping[str, str] | None = None) -> bool:
    """Log whether the settings (os.environ by default) are valid; True when they are.

    Problem lines echo some settings' values; any secret among them is redacted, as
    start-up logs end up in Application Insights.
    """
    start_monitoring(environ)
    try:
        config = load_config(environ)
    except ConfigurationError as error:
        quiet_azure_sdk("WARNING")
        redact = Redactor(environ)
        log.error("georollout is misconfigured; every trigger will fail until this is fixed:")
        for problem in error.problems or (error.message,):
            log.error("  %s", redact(problem))
        return False
    quiet_azure_sdk(config.azure_sdk_log_level)
    log.info(
        "georollout configuration ok: registry %s, regions %s (primary %s)",
        config.registry_login_server,
        ", ".join(config.region_names),
        config.primary_region.name,
    )
    risk = unprotected_webhook(config)
    if risk is not None:
        log.warning("%s", risk)
    for name in config.unknown_settings:
        log.warning("unknown setting %s (a typo?) is ignored", name)
    return True


def quiet_azure_sdk(level: str) -> None:
    """Set the Azure SDK's loggers to `level` (GEOROLLOUT_AZURE_SDK_LOG_LEVEL).

    At INFO the SDK logs every request and response with their headers, dozens of
    multi-line records per push, drowning georollout's own line per step in the host's
    log (and in Application Insights' bill); WARNING keeps its problems only.

    azure-ai-ml gives some of its loggers a level of their own (INFO) and a handler to
    stderr when it is imported, so the "azure" level does not reach them: every
    deployment wrote "Check: endpoint ... exists" to the host's log whatever the
    setting. Those levels are set here too, after the import. (Its polling dots are
    printed, not logged: `adapters.sdk_pollers` keeps its pollers from polling.)
    """
    import azure.ai.ml  # noqa: F401  (its loggers exist, with their levels, from here on)

    logging.getLogger("azure").setLevel(level)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if (
            name.startswith("azure.")
            and isinstance(logger, logging.Logger)
            and logger.level != logging.NOTSET
        ):
            logger.setLevel(level)


def start_monitoring(environ: Mapping[str, str] | None = None) -> None:
    """Application Insights when its connection string is set; a failure to set it up is
    logged, never raised (the app serves without telemetry rather than not at all)."""
    try:
        configure_monitoring(environ)
    except Exception:
        log.exception("telemetry could not be set up; the app runs without it")
