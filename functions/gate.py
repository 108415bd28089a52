"""What the API refuses before routing, as a Powertools handler decorator.

An invocation that is no HTTP API (v2.0) request gets a 400; a body over the configured
limit a 413, a body that is not UTF-8 a 422, and a body that is not ``application/json`` a
415, before anything parses it. Every body this API takes is UTF-8 JSON, and Powertools'
request validation would otherwise decode form and multipart bodies as well. This runs as
a ``lambda_handler_decorator`` because the resolver runs its request validation before any
``app.use`` middleware (docs/UPSTREAM.md).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler.api_gateway import ResponseBuilder
from aws_lambda_powertools.middleware_factory import lambda_handler_decorator
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions import container
from functions.errors import render
from functions.routes import SERVICE
from shared.errors import ApiError, PayloadTooLarge, UnsupportedMediaType, ValidationFailed

logger = Logger(service=SERVICE, child=True)

Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


@lambda_handler_decorator
def refuse_unreadable_requests(handler: Handler, event: Any,
                               context: LambdaContext) -> dict[str, Any]:
    """Answer what the router must never see; hand everything else to ``handler``."""
    limit = container.settings().api_max_body_bytes  # bad settings fail the invocation here
    if not is_http_event(event):
        logger.error("rejected an event that is not an API Gateway v2.0 request")
        not_http = ApiError("the invocation is not an API Gateway HTTP API (v2.0) request")
        return _answer(not_http, APIGatewayProxyEventV2({}))
    request = APIGatewayProxyEventV2(event)
    refusal = unreadable_body(request, limit)
    if refusal is not None:
        return _answer(refusal, request)
    return handler(event, context)


def is_http_event(event: Any) -> bool:
    """Whether ``event`` has the shape of an API Gateway HTTP API (v2.0) request."""
    if not isinstance(event, dict):
        return False
    context = event.get("requestContext")
    if not isinstance(context, dict):
        return False
    http = context.get("http")
    return (isinstance(http, dict) and isinstance(http.get("method"), str)
            and isinstance(context.get("stage"), str) and isinstance(event.get("rawPath"), str)
            and isinstance(event.get("headers") or {}, dict))


def unreadable_body(request: APIGatewayProxyEventV2, limit: int) -> ApiError | None:
    """Why the request's body is refused before routing, if it is."""
    body = request.body
    if not body:
        return None
    raw = _raw_body(body, base64_encoded=bool(request.is_base64_encoded))
    if raw is not None and len(raw) > limit:
        return PayloadTooLarge(f"the request body is {len(raw)} bytes; the limit is {limit}",
                               {"limit_bytes": limit})
    if raw is None or not _is_utf8(raw):
        return ValidationFailed("the request body is not UTF-8 JSON", [
            {"loc": ["body"], "type": "json_invalid", "msg": "the body is not UTF-8 text"}])
    media_type = str(request.headers.get("content-type") or "").split(";")[0].strip()
    if media_type and media_type.lower() != "application/json":
        return UnsupportedMediaType("send the body as application/json",
                                    {"content_type": media_type})
    return None


def _raw_body(body: Any, *, base64_encoded: bool) -> bytes | None:
    """The body's bytes, as API Gateway received them; None when it holds no bytes."""
    if not isinstance(body, str):
        return None
    try:
        return (base64.b64decode(body, validate=True) if base64_encoded
                else body.encode("utf-8", "surrogatepass"))
    except binascii.Error:
        return None


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _answer(refusal: ApiError, request: APIGatewayProxyEventV2) -> dict[str, Any]:
    # The resolver's own response builder: the same proxy answer a route's error gets.
    return ResponseBuilder[APIGatewayProxyEventV2](render(refusal)).build(request)
