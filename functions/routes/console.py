"""``/console``: the browser console, served by this function with every asset it uses.

The page and its assets are public (they hold no data); every call the page makes goes to
this API with the caller's bearer token. ``/console/config.json`` tells the page how to sign
in: ``dev`` (the local stack's users), ``cognito`` (the user pool's hosted UI, PKCE) or
``token`` (paste a token from another identity provider). A strict Content-Security-Policy
allows only this origin, the S3 endpoints that presigned URLs point at, and the sign-in
domain.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from functions import container
from shared.config import Settings
from shared.errors import NotFound

router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]  # untyped __init__

ASSETS = Path(__file__).resolve().parent.parent / "console"
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Assets are named in index.html with their content hash (?v=...), so they can be cached.
ASSET_CACHE = "public, max-age=31536000, immutable"


@cache
def _asset(name: str) -> tuple[str, str] | None:
    path = ASSETS / "assets" / name
    if "/" in name or name.startswith(".") or path.suffix not in CONTENT_TYPES:
        return None
    try:
        return path.read_text(), CONTENT_TYPES[path.suffix]
    except OSError:
        return None


@cache
def _index() -> str:
    html = (ASSETS / "index.html").read_text()
    for name in sorted(p.name for p in (ASSETS / "assets").iterdir()):
        digest = hashlib.sha256((ASSETS / "assets" / name).read_bytes()).hexdigest()[:12]
        html = html.replace(f"assets/{name}\"", f"assets/{name}?v={digest}\"")
    return html


def s3_origins(settings: Settings) -> list[str]:
    """Where presigned upload forms post and presigned downloads point."""
    if settings.aws_endpoint_url:
        parts = urlsplit(settings.aws_endpoint_url)
        return [f"{parts.scheme}://{parts.netloc}"]
    region = settings.aws_region
    origins = [f"https://{bucket}.s3.{region}.amazonaws.com"
               for bucket in (settings.uploads_bucket, settings.results_bucket)]
    return [*origins, f"https://s3.{region}.amazonaws.com"]


def content_security_policy(settings: Settings) -> str:
    s3 = " ".join(s3_origins(settings))
    sign_in = f" {settings.cognito_domain}" if settings.cognito_domain else ""
    return "; ".join([
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        f"img-src 'self' blob: data: {s3}",
        f"connect-src 'self' {s3}{sign_in}",
        "form-action 'self'" + sign_in,
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ])


def _security_headers(settings: Settings) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(settings),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


@router.get("/console", include_in_schema=False)
def console_page() -> Response[str]:
    settings = container.settings()
    return Response(status_code=200, content_type="text/html; charset=utf-8", body=_index(),
                    headers={**_security_headers(settings), "Cache-Control": "no-cache"})


@router.get("/console/assets/<name>", include_in_schema=False)
def console_asset(name: str) -> Response[str]:
    found = _asset(name)
    if found is None:
        raise NotFound(f"no console asset {name!r}")
    body, content_type = found
    return Response(status_code=200, content_type=content_type, body=body,
                    headers={"Cache-Control": ASSET_CACHE, "X-Content-Type-Options": "nosniff"})


@router.get("/console/config.json", include_in_schema=False)
def console_config() -> dict[str, object]:
    """How the page signs in (no secrets: a public client and public URLs)."""
    settings = container.settings()
    if settings.env == "development":
        return {"auth": "dev", "users_url": "/_dev/users", "mail_url": "/_dev/mail"}
    if settings.cognito_domain and settings.console_client_id:
        domain = settings.cognito_domain.rstrip("/")
        return {
            "auth": "cognito",
            "authorize_url": f"{domain}/oauth2/authorize",
            "token_url": f"{domain}/oauth2/token",
            "logout_url": f"{domain}/logout",
            "client_id": settings.console_client_id,
            "scopes": "openid email profile",
        }
    return {"auth": "token"}
