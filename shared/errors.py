"""One error hierarchy for Offload, mapped once per layer.

``OffloadError`` is the root. ``ApiError`` subclasses carry an HTTP status and a stable
``code`` for ``functions/``; ``PermanentJobError`` / ``TransientJobError`` tell the worker's
retry policy whether trying again can help.
"""

from __future__ import annotations

from typing import Any


class OffloadError(Exception):
    """Root of every error Offload raises on purpose."""


# --- API errors: rendered as {"error": {"code", "message", "details"}} -----------------


class ApiError(OffloadError):
    """An error with an HTTP status and a stable machine-readable code."""

    status_code = 400
    code = "bad_request"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class Unauthorized(ApiError):
    """The request carries no caller identity."""

    status_code, code = 401, "unauthorized"


class Forbidden(ApiError):
    """The caller may not do this (for example enqueue an internal job)."""

    status_code, code = 403, "forbidden"


class NotFound(ApiError):
    """No such resource, or it belongs to someone else."""

    status_code, code = 404, "not_found"


class Conflict(ApiError):
    """The resource is in a state that does not allow the request."""

    status_code, code = 409, "conflict"


class PayloadTooLarge(ApiError):
    """The request body is larger than the configured limit."""

    status_code, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    """The request body is not JSON."""

    status_code, code = 415, "unsupported_media_type"


class ValidationFailed(ApiError):
    """The request body or parameters do not match the schema."""

    status_code, code = 422, "validation_failed"


class ServiceUnavailable(ApiError):
    """A dependency (Redis) is unreachable; try again after ``retry_after`` seconds."""

    status_code, code = 503, "service_unavailable"

    def __init__(self, message: str, details: Any = None, retry_after: int = 5) -> None:
        super().__init__(message, details)
        self.retry_after = retry_after


class ReplicationUnconfirmed(ServiceUnavailable):
    """The job is enqueued, but no replica confirmed it in time: a failover could still
    lose it. The same request with the same Idempotency-Key (or job id) is safe to send
    again: it returns the job and waits again."""

    status_code, code = 503, "durability_unconfirmed"


# --- Job errors: the worker's retry policy reads these ----------------------------------


class JobError(OffloadError):
    """Root of errors raised by jobs on purpose."""


class PermanentJobError(JobError):
    """Trying again cannot help (bad input, missing object, refused image): fail now."""


class TransientJobError(JobError):
    """A passing fault (throttling, network): retry with backoff up to max tries."""


class QueueUnavailable(OffloadError):
    """Redis could not be reached."""
