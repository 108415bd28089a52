"""Webhooks: a caller's URL that receives its own job events, signed like Stripe's.

Registered per owner in Redis (at most :data:`MAX_PER_OWNER`, kept :data:`TTL_SECONDS`
after the last registration), each with a secret shown once. A delivery is a POST of the
event's JSON with ``Offload-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
"<t>.<body>" with the secret>``; :func:`verify` is what a receiver runs. The URL passes the
fetch job's rules (``shared.hosts``: the allow-list, no private address) when it is
registered and again, with DNS, at every delivery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from shared.hosts import host_allowed, ip_literal, is_public_address, normalize_host

MAX_PER_OWNER = 10
TTL_SECONDS = 90 * 24 * 3600
TOLERANCE_SECONDS = 300
HEADER = "Offload-Signature"
EVENTS = ("queued", "started", "succeeded", "failed", "aborted")


@dataclass(frozen=True)
class Webhook:
    id: str
    owner: str
    url: str
    events: tuple[str, ...]
    secret: str
    created_at: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str) -> Webhook:
        data = json.loads(raw)
        return cls(**{**data, "events": tuple(data["events"])})


def key(prefix: str, owner: str) -> str:
    return f"{prefix}webhooks:{owner}"


def url_problem(url: str, allowed: tuple[str, ...]) -> str | None:
    """Why ``url`` may not receive deliveries (None: it may, DNS permitting)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "the URL must be http or https with a host"
    if not allowed:
        return "webhooks are disabled: OFFLOAD_FETCH_ALLOWED_HOSTS is empty"
    host = normalize_host(parts.hostname)
    if not host_allowed(host, allowed):
        return f"host {host!r} is not in the allow-list (OFFLOAD_FETCH_ALLOWED_HOSTS)"
    literal = ip_literal(host)
    if literal is not None and not is_public_address(literal) \
            and not any(ip_literal(entry) == literal for entry in allowed):
        return f"{host} is not a public address"
    return None


def new(owner: str, url: str, events: tuple[str, ...]) -> Webhook:
    return Webhook(id=uuid.uuid4().hex, owner=owner, url=url, events=events,
                   secret=f"whsec_{secrets.token_urlsafe(32)}",
                   created_at=datetime.now(UTC).isoformat())


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The ``Offload-Signature`` header for ``body``."""
    moment = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{moment}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={moment},v1={digest}"


def verify(secret: str, header: str, body: bytes, now: float | None = None) -> bool:
    """Whether ``header`` signs ``body`` with ``secret``, within the tolerance."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        moment = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - moment) > TOLERANCE_SECONDS:
        return False
    return hmac.compare_digest(sign(secret, body, moment), header.strip())


async def register(redis: Any, prefix: str, hook: Webhook) -> bool:
    """Store ``hook``; False when the owner already has the maximum."""
    name = key(prefix, hook.owner)
    if int(await redis.hlen(name)) >= MAX_PER_OWNER:
        return False
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(name, {hook.id: hook.to_json()})
        pipe.expire(name, TTL_SECONDS)
    return True


async def all_of(redis: Any, prefix: str, owner: str) -> list[Webhook]:
    found = await redis.hgetall(key(prefix, owner))
    return sorted((Webhook.from_json(v.decode() if isinstance(v, bytes) else str(v))
                   for v in found.values()), key=lambda h: h.created_at)


async def one(redis: Any, prefix: str, owner: str, hook_id: str) -> Webhook | None:
    raw = await redis.hget(key(prefix, owner), hook_id)
    return Webhook.from_json(raw.decode() if isinstance(raw, bytes) else str(raw)) if raw else None


async def remove(redis: Any, prefix: str, owner: str, hook_id: str) -> bool:
    return bool(int(await redis.hdel(key(prefix, owner), [hook_id])))
