"""What every handler in ``functions/`` shares: per-container state, identity, errors.

A Lambda container handles one invocation at a time, for many invocations. It keeps one
:class:`Container`: the settings, one event loop (:class:`shared.aio.PersistentLoop`) and a
:class:`JobQueue` connected on that loop, so a warm invocation reuses the Redis connection.
Handlers reach it through :func:`run`. Tests call :func:`configure` with their own settings.

After a SnapStart restore the snapshot's sockets are dead: the runtime hook registered at
the bottom of this module drops the loop and the client so the next call reconnects.
"""

# No `from __future__ import annotations`: `caller` is a route dependency, and Powertools
# resolves its type hints twice per request; string annotations cost a compile() each time.

import base64
import binascii
import json
import re
import threading
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, TypeVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Request, Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import ResponseBuilder
from aws_lambda_powertools.event_handler.exceptions import NotFoundError, ServiceError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from coredis.exceptions import RedisError
from pydantic import ValidationError

from shared.aio import PersistentLoop
from shared.api_models import OWNER_PATTERN
from shared.config import Settings, get_settings
from shared.errors import (
    ApiError,
    NotFound,
    PayloadTooLarge,
    QueueUnavailable,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from shared.queue import JobQueue

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
    from mypy_boto3_s3 import S3Client

T = TypeVar("T")

METRICS_NAMESPACE = "Offload"

# Seconds a client should wait before retrying a 503 (Redis down or failing over).
RETRY_AFTER_SECONDS = 5


@dataclass
class Container:
    """One Lambda container's long-lived state."""

    settings: Settings
    loop: PersistentLoop = field(default_factory=PersistentLoop)
    queue: JobQueue = field(init=False)
    _s3: "S3Client | None" = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.queue = JobQueue(self.settings)

    @property
    def s3(self) -> "S3Client":
        # boto3 costs ~0.3 s to import: only the routes that sign or read S3 pay for it.
        if self._s3 is None:
            from shared.aws import s3_client

            self._s3 = s3_client(self.settings)
        return self._s3


_lock = threading.Lock()
_override: Settings | None = None
_container: Container | None = None


def configure(settings: Settings | None) -> None:
    """Use ``settings`` from now on (``None``: the environment's); drops the old container."""
    global _override
    shutdown()
    _override = settings


def container() -> Container:
    """The container's state, built on first use (invalid settings raise here, loudly)."""
    global _container
    with _lock:
        if _container is None:
            _container = Container(_override or get_settings())
        return _container


def settings() -> Settings:
    return container().settings


def run(work: Callable[[JobQueue], Coroutine[Any, Any, T]]) -> T:
    """Run ``work(queue)`` on the container's loop, with its connected queue."""
    state = container()
    return state.loop.run(work(state.queue))


def shutdown() -> None:
    """Close the queue client and the loop (tests, between configurations)."""
    global _container
    with _lock:
        state, _container = _container, None
    if state is not None:
        state.loop.run(state.queue.aclose())
        state.loop.reset()


def reset_connections() -> None:
    """Drop the loop and the client, for the SnapStart after-restore hook: connections
    made before the snapshot are dead after a restore, so no graceful close is attempted
    (closing the loop cancels their tasks); the next call connects afresh."""
    global _container
    with _lock:
        state, _container = _container, None
    if state is not None:
        state.loop.reset()


def _register_snapstart_hook() -> None:
    # Provided by the Lambda Python runtime (SnapStart), not by PyPI.
    try:
        from snapshot_restore_py import register_after_restore  # type: ignore[import-not-found]
    except ImportError:
        return
    register_after_restore(reset_connections)


_register_snapstart_hook()


# --- identity ------------------------------------------------------------------------


_OWNER = re.compile(OWNER_PATTERN)


def is_owner(sub: str) -> bool:
    """Whether ``sub`` is a caller id this API accepts (it becomes an S3 key segment)."""
    return _OWNER.match(sub) is not None


def caller(request: Request) -> str:
    """The caller's id: the JWT authorizer's ``sub`` claim (a ``Depends`` for routes)."""
    event = request.resolved_event
    claims = event.request_context.authorizer.jwt_claim  # type: ignore[attr-defined]
    sub = claims.get("sub") if isinstance(claims, dict) else None
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("the request carries no caller identity (JWT claim 'sub')")
    if not is_owner(sub):
        raise Unauthorized("the caller identity (JWT claim 'sub') has an unsupported format")
    return sub


# --- request bodies ------------------------------------------------------------------


def is_http_event(event: Any) -> bool:
    """Whether ``event`` has the shape of an API Gateway HTTP API (v2.0) request."""
    context = event.get("requestContext") if isinstance(event, dict) else None
    http = context.get("http") if isinstance(context, dict) else None
    return isinstance(http, dict) and isinstance(http.get("method"), str) \
        and isinstance(event.get("rawPath"), str)


def bad_event_response() -> dict[str, Any]:
    """The proxy answer to an invocation that is no HTTP request (a misrouted or hand-made
    event): 400 in the error shape, built without reading the event."""
    error = ApiError("the invocation is not an API Gateway HTTP API (v2.0) request")
    count("RequestsRejected", code=error.code)
    return {
        "statusCode": error.status_code,
        "headers": {"Content-Type": content_types.APPLICATION_JSON},
        "body": json.dumps(error.body()),
        "isBase64Encoded": False,
    }


def unreadable_body(event: dict[str, Any]) -> ApiError | None:
    """Why the request's body is refused before routing, if it is.

    Every body this API takes is UTF-8 JSON. Powertools would otherwise parse form and
    multipart bodies too (a multipart type without a boundary escapes as a bare
    ValueError), and a base64 body that is not UTF-8 as a UnicodeDecodeError: both are
    answered here instead, with 413 for an oversized body before anything parses it.
    (Read from the event as ``APIGatewayProxyEventV2`` reads it, without building one.)
    """
    body = event.get("body")
    if not body:
        return None
    try:
        raw = (base64.b64decode(body, validate=True) if event.get("isBase64Encoded")
               else body.encode("utf-8", "surrogatepass"))
        raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ValidationFailed("the request body is not UTF-8 JSON", [
            {"loc": ["body"], "type": "json_invalid", "msg": "the body is not UTF-8 text"}])
    limit = settings().api_max_body_bytes
    if len(raw) > limit:
        return PayloadTooLarge(f"the request body is {len(raw)} bytes; the limit is {limit}",
                               {"limit_bytes": limit})
    media_type = _content_type(event).split(";")[0].strip()
    if media_type and media_type.lower() != "application/json":
        return UnsupportedMediaType("send the body as application/json",
                                    {"content_type": media_type})
    return None


def _content_type(event: dict[str, Any]) -> Any:
    # Looked up as Powertools' CaseInsensitiveDict would (names folded to lower case, the
    # last of equal names wins), without building one when API Gateway's names are
    # lower case already.
    headers = event.get("headers")
    if isinstance(headers, dict):
        try:
            names = "".join(headers)
        except TypeError:
            names = None
        if names is not None and names == names.lower():
            return headers.get("content-type", "")
    return APIGatewayProxyEventV2(event).headers.get("content-type", "")


def request_id(event: Any) -> Any:
    """``requestContext.requestId``: the correlation id ``correlation_paths.API_GATEWAY_HTTP``
    selects, read without a JMESPath search (~8 us a call)."""
    context = event.get("requestContext") if isinstance(event, dict) else None
    return context.get("requestId") if isinstance(context, dict) else None


def respond(error: ApiError, event: dict[str, Any]) -> dict[str, Any]:
    """``error`` as the proxy integration's answer, built the way Powertools builds routes'."""
    return build(render(error), event)


def build(response: Response[Any], event: dict[str, Any]) -> dict[str, Any]:
    """``response`` as the proxy integration's answer to ``event`` (Powertools' builder)."""
    return ResponseBuilder[APIGatewayProxyEventV2](response).build(APIGatewayProxyEventV2(event))


# --- errors --------------------------------------------------------------------------


def error_response(status: int, code: str, message: str, details: Any = None,
                   headers: dict[str, str] | None = None) -> Response[dict[str, Any]]:
    """The API's one error shape: ``{"error": {"code", "message", "details"}}``."""
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body={"error": {"code": code, "message": message, "details": details}},
        headers=headers or {},
    )


_emf_blobs: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Any]] = {}


def count(metric: str, **dimensions: str) -> None:
    """Emit one EMF count in the ``Offload`` namespace, with its own dimensions.

    The blob ``single_metric`` prints. Powertools serialises it once per metric and
    dimensions for the container (a handful: job names, error codes); each count then
    only stamps the time and prints it, as ``flush_metrics`` would (~15 us a count on
    the hot ``POST /jobs`` path, against ~55 us through add_dimension/add_metric/flush
    and ~90 us through ``single_metric``)."""
    if is_metrics_disabled():
        return
    key = (metric, tuple(dimensions.items()))
    blob = _emf_blobs.get(key)
    if blob is None:
        emf = EphemeralMetrics(namespace=METRICS_NAMESPACE)
        for name, value in dimensions.items():
            emf.add_dimension(name=name, value=value)
        emf.add_metric(name=metric, unit=MetricUnit.Count, value=1)
        blob = _emf_blobs[key] = dict(emf.serialize_metric_set())
    # flush_metrics' own stamp and print.
    blob["_aws"]["Timestamp"] = int(datetime.now().timestamp() * 1000)
    print(json.dumps(blob, separators=(",", ":")))


def render(error: ApiError) -> Response[dict[str, Any]]:
    """An :class:`ApiError` with its status (and ``Retry-After`` when it is a 503), counted
    as ``RequestsRejected`` by code."""
    count("RequestsRejected", code=error.code)
    headers: dict[str, str] = {}
    if isinstance(error, ServiceUnavailable):
        headers["Retry-After"] = str(error.retry_after)
    return error_response(error.status_code, error.code, error.message, error.details, headers)


def field_errors(errors: Sequence[Any], prefix: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Pydantic-style errors as ``{loc, type, msg}``: no input echoed, no Python internals."""
    return [
        {
            "loc": [*prefix, *(p if isinstance(p, int) else str(p) for p in e.get("loc", ()))],
            "type": str(e.get("type", "invalid")),
            "msg": str(e.get("msg", "invalid value")),
        }
        for e in errors
    ]


def install_error_handlers(app: "APIGatewayHttpResolver", logger: Logger) -> None:
    """Map every error to the one error shape, once, for ``app``."""

    def queue_unavailable(error: Exception) -> Response[dict[str, Any]]:
        # RedisError beyond connection faults: READONLY or LOADING during a failover.
        logger.warning("queue unavailable: %s", error, exc_info=error)
        return render(ServiceUnavailable("the job queue is unavailable; try again shortly",
                                         retry_after=RETRY_AFTER_SECONDS))

    def invalid_request(error: RequestValidationError) -> Response[dict[str, Any]]:
        return render(ValidationFailed("the request is invalid", field_errors(error.errors())))

    def invalid_input(error: ValidationError) -> Response[dict[str, Any]]:
        # Raised by a catalogue input model: the errors are the body's.
        details = field_errors(error.errors(include_url=False), prefix=("body",))
        return render(ValidationFailed("the job input is invalid", details))

    def no_route(error: NotFoundError) -> Response[dict[str, Any]]:
        return render(NotFound("no such route"))

    def service_error(error: ServiceError) -> Response[dict[str, Any]]:
        status = HTTPStatus(error.status_code)
        return error_response(status, status.phrase.lower().replace(" ", "_"), str(error.msg))

    def unexpected(error: Exception) -> Response[dict[str, Any]]:
        logger.exception("unhandled error")
        return error_response(500, "internal_error", "internal error")

    handlers: list[tuple[type[Exception] | list[type[Exception]], Callable[[Any], Any]]] = [
        (ApiError, render),
        ([QueueUnavailable, RedisError], queue_unavailable),
        (RequestValidationError, invalid_request),
        (ValidationError, invalid_input),
        (NotFoundError, no_route),
        (ServiceError, service_error),
        (Exception, unexpected),  # the most specific handler wins, so this is last resort
    ]
    for errors, handler in handlers:
        app.exception_handler(errors)(handler)
