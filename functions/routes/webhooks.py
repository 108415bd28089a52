"""``/webhooks``: a caller's own job events, POSTed to their URL and signed (shared.webhooks)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from functions import container
from functions.identity import Caller
from functions.routes import COMMON, responses
from shared import webhooks
from shared.api_models import WebhookCreate, WebhookCreated, WebhookPage, WebhookPublic
from shared.errors import Conflict, NotFound, ValidationFailed

router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # untyped __init__

HookId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="The webhook's id.")]


def _public(hook: webhooks.Webhook) -> WebhookPublic:
    return WebhookPublic(id=hook.id, url=hook.url, events=list(hook.events),
                         created_at=hook.created_at)


@router.post(
    "/webhooks",
    status_code=201,
    summary="Deliver your job events to a URL, signed (Offload-Signature)",
    responses=responses(201, WebhookCreated, "Registered; the secret is shown this once.",
                        *COMMON, 409),
    tags=["webhooks"],
)
def create_webhook(body: Annotated[WebhookCreate, Body()], owner: Caller) -> WebhookCreated:
    problem = webhooks.url_problem(body.url, container.settings().fetch_allowed_hosts)
    if problem is not None:
        raise ValidationFailed("the webhook URL is refused",
                               [{"loc": ["body", "url"], "type": "url_refused", "msg": problem}])
    hook = webhooks.new(owner, body.url, tuple(dict.fromkeys(body.events)))
    if not container.run(lambda q: q.add_webhook(hook)):
        raise Conflict(f"at most {webhooks.MAX_PER_OWNER} webhooks per caller")
    return WebhookCreated(**_public(hook).model_dump(), secret=hook.secret)


@router.get(
    "/webhooks",
    summary="Your webhooks (without their secrets)",
    responses=responses(200, WebhookPage, "Your webhooks, oldest first.", *COMMON),
    tags=["webhooks"],
)
def list_webhooks(owner: Caller) -> WebhookPage:
    hooks = container.run(lambda q: q.webhooks(owner))
    return WebhookPage(items=[_public(h) for h in hooks])


@router.delete(
    "/webhooks/<hook_id>",
    summary="Stop delivering to a webhook",
    responses=responses(200, WebhookPublic, "Deleted.", *COMMON, 404),
    tags=["webhooks"],
)
def delete_webhook(hook_id: HookId, owner: Caller) -> WebhookPublic:
    hook = container.run(lambda q: q.remove_webhook(owner, hook_id))
    if hook is None:
        raise NotFound(f"no webhook {hook_id!r}")
    return _public(hook)
