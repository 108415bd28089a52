"""``deliver_webhook``: POST one job event to one of its owner's webhooks, signed.

The URL is vetted again at each delivery (the fetch job's rules, with DNS, pinned to the
vetted address). A 2xx is delivered; a 4xx other than 408/429 fails at once (the receiver
refused it); anything else is retried with backoff up to the job's tries.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from shared import webhooks
from shared.errors import PermanentJobError, TransientJobError
from shared.jobs import DeliverWebhookInput
from shared.queue import Keys
from worker.context import WorkerContext
from worker.retry_policy import current_job
from worker.tasks.base import job
from worker.tasks.fetch import send_pinned, vet

DELIVERY_TIMEOUT_SECONDS = 10.0


@job("deliver_webhook")
async def deliver_webhook(ctx: WorkerContext, inp: DeliverWebhookInput) -> dict[str, Any]:
    owner = current_job().owner
    prefix = Keys(ctx.settings.queue_name).prefix
    hook = await webhooks.one(ctx.redis, prefix, owner, inp.webhook_id)
    if hook is None:
        return {"delivered": False, "reason": "the webhook was deleted"}
    target = await vet(httpx.URL(hook.url), ctx.settings.fetch_allowed_hosts)
    body = json.dumps(inp.event, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "offload-webhooks/1",
               webhooks.HEADER: webhooks.sign(hook.secret, body)}
    response = await send_pinned(ctx.http, target, DELIVERY_TIMEOUT_SECONDS,
                                 post=(body, headers))
    await response.aclose()
    status = response.status_code
    if 200 <= status < 300:
        return {"delivered": True, "status": status}
    if 400 <= status < 500 and status not in (408, 429):
        raise PermanentJobError(f"{hook.url} refused the event: HTTP {status}")
    raise TransientJobError(f"{hook.url} answered HTTP {status}")
