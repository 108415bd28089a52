"""The AWS event shapes the local stack delivers: API Gateway HTTP API (payload 2.0),
S3 notifications and EventBridge scheduled events, as AWS builds them (see tests/events/).
"""

from __future__ import annotations

import base64
import itertools
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote_plus, unquote_plus

ACCOUNT_ID = "123456789012"
API_ID = "offloadlocal"
# Content types API Gateway passes as text; any other body arrives base64-encoded.
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript",
               "application/x-www-form-urlencoded", "application/problem+json")


@dataclass(frozen=True)
class HttpRequest:
    """What the gateway read off the wire."""

    method: str
    raw_path: str
    raw_query: str
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    protocol: str = "HTTP/1.1"


def _is_text(content_type: str | None) -> bool:
    value = (content_type or "").lower()
    return any(value.startswith(t) for t in _TEXT_TYPES) or "+json" in value


def _joined(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Repeated names joined with commas, as payload 2.0 does for headers and queries."""
    out: dict[str, str] = {}
    for key, value in pairs:
        out[key] = f"{out[key]},{value}" if key in out else value
    return out


def http_api_event(request: HttpRequest, route_key: str, path_parameters: Mapping[str, str],
                   claims: Mapping[str, str] | None, host: str) -> dict[str, Any]:
    """The payload 2.0 event API Gateway's HTTP API hands to a Lambda integration."""
    headers = _joined((k.lower(), v) for k, v in request.headers if k.lower() != "cookie")
    cookies = [c.strip() for k, v in request.headers if k.lower() == "cookie"
               for c in v.split(";") if c.strip()]
    headers.update({
        "x-forwarded-for": request.source_ip,
        "x-forwarded-proto": "http",
        "x-forwarded-port": host.rpartition(":")[2] or "80",
        "x-amzn-trace-id": f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)}",
    })
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": request.raw_path,
        "rawQueryString": request.raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "domainName": host,
            "domainPrefix": host.split(".")[0].split(":")[0],
            "http": {
                "method": request.method,
                "path": request.raw_path,
                "protocol": request.protocol,
                "sourceIp": request.source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": base64.b64encode(secrets.token_bytes(12)).decode().rstrip("="),
            "routeKey": route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if request.raw_query:
        event["queryStringParameters"] = _joined(parse_qsl(request.raw_query,
                                                           keep_blank_values=True))
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if claims is not None:
        event["requestContext"]["authorizer"] = {"jwt": {"claims": dict(claims), "scopes": None}}
    if request.body:
        if _is_text(headers.get("content-type")):
            try:
                event["body"] = request.body.decode("utf-8")
            except UnicodeDecodeError:
                event["body"] = base64.b64encode(request.body).decode()
                event["isBase64Encoded"] = True
        else:
            event["body"] = base64.b64encode(request.body).decode()
            event["isBase64Encoded"] = True
    return event


_sequence = itertools.count(1)


def s3_key_for_event(key: str) -> str:
    """A key as S3 writes it into notifications: URL-encoded, spaces as '+', '/' kept."""
    return quote_plus(key, safe="/")


def normalise_s3_record(record: dict[str, Any], region: str) -> dict[str, Any]:
    """A moto notification record completed to the shape S3 delivers.

    moto encodes '/' in keys and leaves out the identity, request and sequencer fields;
    S3 keeps '/' and sends all of them. Values already present (size, ETag, event name and
    time) are kept as moto wrote them.
    """
    s3 = dict(record.get("s3") or {})
    obj = dict(s3.get("object") or {})
    bucket = dict(s3.get("bucket") or {})
    obj["key"] = s3_key_for_event(unquote_plus(str(obj.get("key", ""))))
    obj.setdefault("sequencer", f"{time.time_ns():016X}{next(_sequence):04X}")
    bucket.setdefault("ownerIdentity", {"principalId": "A3OFFLOADLOCAL"})
    bucket.setdefault("arn", f"arn:aws:s3:::{bucket.get('name', '')}")
    s3.update(object=obj, bucket=bucket)
    s3.setdefault("s3SchemaVersion", "1.0")
    return {
        "eventVersion": record.get("eventVersion", "2.1"),
        "eventSource": "aws:s3",
        "awsRegion": record.get("awsRegion") or region,
        "eventTime": record.get("eventTime")
        or datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "eventName": record.get("eventName", "ObjectCreated:Put"),
        "userIdentity": record.get("userIdentity") or {"principalId": "AWS:OFFLOADLOCAL"},
        "requestParameters": record.get("requestParameters") or {"sourceIPAddress": "127.0.0.1"},
        "responseElements": record.get("responseElements") or {
            "x-amz-request-id": secrets.token_hex(8).upper(),
            "x-amz-id-2": base64.b64encode(secrets.token_bytes(48)).decode(),
        },
        "s3": s3,
    }


def is_s3_test_event(body: Mapping[str, Any]) -> bool:
    """S3 (and moto) send ``s3:TestEvent`` when a notification is configured: not an upload."""
    return body.get("Event") == "s3:TestEvent"


def scheduled_event(rule_name: str, region: str, when: datetime | None = None) -> dict[str, Any]:
    """EventBridge's "Scheduled Event", as delivered for a rule without ``Input``."""
    moment = (when or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{ACCOUNT_ID}:rule/{rule_name}"],
        "detail": {},
    }


def schedule_payload(input_json: Any, rule_name: str, region: str,
                     when: datetime | None = None) -> Any:
    """What EventBridge delivers: the rule's ``Input`` itself when set, else the event."""
    if input_json is not None:
        return input_json
    return scheduled_event(rule_name, region, when)
