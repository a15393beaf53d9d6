"""The project's own exceptions, each carrying the HTTP status and machine code it maps to.

Entrypoints translate these into `{"error": {"code", "message"}}` in one place;
adapters translate Azure SDK errors into them at their boundary.
"""

from __future__ import annotations

from typing import ClassVar


class GeorolloutError(Exception):
    """Base of every error georollout raises on purpose."""

    http_status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_body(self) -> dict[str, dict[str, str]]:
        """The JSON error body of the contract."""
        return {"error": {"code": self.code, "message": self.message}}


class InvalidInputError(GeorolloutError):
    """A request or event failed validation; `field` names the offending field."""

    http_status: ClassVar[int] = 400
    code: ClassVar[str] = "invalid_input"

    def __init__(self, field: str, message: str, code: str | None = None) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.reason = message
        # A finer machine code (e.g. "invalid_digest") when the caller has one.
        self.detail_code = code or self.code

    def to_body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.detail_code, "message": self.message, "field": self.field}}


class PayloadTooLargeError(GeorolloutError):
    """A request body exceeded the accepted size."""

    http_status: ClassVar[int] = 413
    code: ClassVar[str] = "payload_too_large"


class UnauthorizedError(GeorolloutError):
    """A request lacked a valid webhook token or credential."""

    http_status: ClassVar[int] = 401
    code: ClassVar[str] = "unauthorized"


class NotFoundError(GeorolloutError):
    """The requested rollout (or other resource) does not exist."""

    http_status: ClassVar[int] = 404
    code: ClassVar[str] = "not_found"


class ConflictError(GeorolloutError):
    """A concurrent writer changed the entity first (stale ETag); retry from a fresh read."""

    http_status: ClassVar[int] = 409
    code: ClassVar[str] = "conflict"


class InvalidTransitionError(GeorolloutError):
    """An operator's action does not fit the rollout's current state (it is recorded in the
    rollout's history all the same)."""

    http_status: ClassVar[int] = 409
    code: ClassVar[str] = "invalid_transition"


class ConfigurationError(GeorolloutError):
    """Settings are missing or inconsistent; reported at start-up and on /api/health."""

    http_status: ClassVar[int] = 500
    code: ClassVar[str] = "configuration_error"

    def __init__(self, message: str, problems: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = problems


class TransientError(GeorolloutError):
    """The world answered 'not now' (throttling, 5xx, timeout); try again later."""

    http_status: ClassVar[int] = 503
    code: ClassVar[str] = "transient_error"


class RefusedError(GeorolloutError):
    """The world refused the request itself (e.g. ARM answered 400): the same call cannot
    succeed by trying again; the step that made it has failed."""

    http_status: ClassVar[int] = 502
    code: ClassVar[str] = "refused"
