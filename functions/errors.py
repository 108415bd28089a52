"""The API's one error shape, ``{"error": {"code", "message", "details"}}``, and the
exception handlers that map every error to it, registered once on the resolver."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from coredis.exceptions import RedisError
from pydantic import ValidationError

from functions.metrics import count
from shared.errors import (
    ApiError,
    NotFound,
    QueueUnavailable,
    ServiceUnavailable,
    ValidationFailed,
)
from shared.limits import RateLimited

# Seconds a client should wait before retrying a 503 (Redis down or failing over).
RETRY_AFTER_SECONDS = 5

ErrorResponse = Response[dict[str, Any]]


def error_response(status: int, code: str, message: str, details: Any = None,
                   headers: dict[str, str] | None = None) -> ErrorResponse:
    """The API's one error shape, as a Powertools ``Response``."""
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body={"error": {"code": code, "message": message, "details": details}},
        headers=headers or {},
    )


def render(error: ApiError) -> ErrorResponse:
    """An :class:`ApiError` with its status (and ``Retry-After`` when it is a 503), counted
    as ``RequestsRejected`` by code."""
    count("RequestsRejected", code=error.code)
    headers: dict[str, str] = {}
    if isinstance(error, ServiceUnavailable):
        headers["Retry-After"] = str(error.retry_after)
    if isinstance(error, RateLimited):
        headers.update(error.headers)
    return error_response(error.status_code, error.code, error.message, error.details, headers)


_DATE = "expected a date as YYYY-MM-DD, e.g. 2026-11-01"
_DATETIME = "expected a date and time as ISO 8601 with an offset, e.g. 2026-11-01T09:30:00Z"
# Pydantic error types whose own message names a Python notion (or a misleading cause:
# `123` for a date says "Datetimes provided to dates should have zero time") -> what a
# person should send instead. Types not listed keep pydantic's message.
FRIENDLY_MESSAGES = {
    "date_type": _DATE, "date_parsing": _DATE, "date_from_datetime_inexact": _DATE,
    "date_from_datetime_parsing": _DATE,
    "datetime_type": _DATETIME, "datetime_parsing": _DATETIME,
    "datetime_from_date_parsing": _DATETIME, "timezone_aware": _DATETIME,
    "int_type": "expected a whole number", "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number", "float_parsing": "expected a number",
    "bool_type": "expected true or false", "bool_parsing": "expected true or false",
    "string_type": "expected a string",
    "url_type": "expected a URL as a string, e.g. https://example.com/data.json",
    "url_parsing": "expected an absolute URL, e.g. https://example.com/data.json",
    "url_scheme": "expected an http or https URL",
    "missing": "this field is required",
    "extra_forbidden": "unknown field: remove it (the job's fields are in GET /openapi.json)",
}


def _friendly(error: Any) -> str:
    """A message a person can act on; parsing errors keep their reason (``month value is
    outside expected range of 1-12``)."""
    message = FRIENDLY_MESSAGES.get(str(error.get("type", "")))
    if message is None:
        return str(error.get("msg", "invalid value"))
    reason = (error.get("ctx") or {}).get("error")
    return f"{message} ({reason})" if isinstance(reason, str) and reason else message


def field_errors(errors: Sequence[Any], prefix: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Pydantic-style errors as ``{loc, type, msg}``: no input echoed, no Python internals,
    and a message that says what is expected (:data:`FRIENDLY_MESSAGES`)."""
    return [
        {
            "loc": [*prefix, *(p if isinstance(p, int) else str(p) for p in e.get("loc", ()))],
            "type": str(e.get("type", "invalid")),
            "msg": _friendly(e),
        }
        for e in errors
    ]


def register(app: APIGatewayHttpResolver, logger: Logger) -> None:
    """Map every error to the one error shape, once, for ``app``."""

    def queue_unavailable(error: Exception) -> ErrorResponse:
        # RedisError beyond connection faults: READONLY or LOADING during a failover.
        logger.warning("queue unavailable: %s", error, exc_info=error)
        return render(ServiceUnavailable("the job queue is unavailable; try again shortly",
                                         retry_after=RETRY_AFTER_SECONDS))

    def unexpected(error: Exception) -> ErrorResponse:
        logger.exception("unhandled error")
        return error_response(500, "internal_error", "internal error")

    handlers: list[tuple[type[Exception] | list[type[Exception]], Callable[[Any], Any]]] = [
        (ApiError, render),
        ([QueueUnavailable, RedisError], queue_unavailable),
        (RequestValidationError, _invalid_request),
        (ValidationError, _invalid_input),
        (NotFoundError, _no_route),
        (ServiceError, _service_error),
        (Exception, unexpected),  # the most specific handler wins, so this is last resort
    ]
    for errors, handler in handlers:
        app.exception_handler(errors)(handler)


# A 422 lists at most this many field errors; its message says how many there were.
MAX_FIELD_ERRORS = 20


def invalid(message: str, details: list[dict[str, Any]]) -> ValidationFailed:
    """A 422 with the first :data:`MAX_FIELD_ERRORS` field errors (a huge body's thousands
    of errors would make a response larger than the request)."""
    if len(details) > MAX_FIELD_ERRORS:
        message = f"{message}: {len(details)} field errors, the first {MAX_FIELD_ERRORS} listed"
    return ValidationFailed(message, details[:MAX_FIELD_ERRORS])


def _invalid_request(error: RequestValidationError) -> ErrorResponse:
    return render(invalid("the request is invalid", field_errors(error.errors())))


def _invalid_input(error: ValidationError) -> ErrorResponse:
    # Raised by a catalogue input model: the errors are the body's.
    details = field_errors(error.errors(include_url=False), prefix=("body",))
    return render(invalid("the job input is invalid", details))


def _no_route(error: NotFoundError) -> ErrorResponse:
    return render(NotFound("no such route"))


def _service_error(error: ServiceError) -> ErrorResponse:
    status = HTTPStatus(error.status_code)
    return error_response(status, status.phrase.lower().replace(" ", "_"), str(error.msg))
