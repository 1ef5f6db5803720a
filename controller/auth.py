"""Who is calling: API tokens, a trusted authenticating proxy, and the FastAPI dependency.

A token is ``tbx_<random>``. Only its sha256 is kept, as the store's state key
``tokens/<sha256>``, so every replica sees the same tokens and checking one is a
single store read. A token record's ``id`` (a prefix of the hash) names it for
listing and revoking; the token itself is shown once, when created, and never again.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import secrets
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Receive, Scope, Send

from controller.config import Settings
from controller.stores.base import StoreUnavailable, ThreadStore

TOKEN_PREFIX = "tbx_"
STATE_PREFIX = "tokens"
ID_CHARS = 12
BOOTSTRAP_ADMIN = "admin"  # the user behind THREADBOX_ADMIN_TOKEN
CHALLENGE = {"WWW-Authenticate": "Bearer"}
# What anyone may fetch: probes and metrics (no thread data), the console's page and assets
# (the token form must load) and the API schema. Everything else needs a caller.
PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
)
PUBLIC_PREFIX = "/console/"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TokenRecord(BaseModel):
    id: str
    user: str = Field(min_length=1, max_length=200)
    admin: bool = False
    created: float
    label: str | None = None


@dataclass(frozen=True)
class Principal:
    user: str
    admin: bool


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(
    store: ThreadStore, user: str, admin: bool = False, label: str | None = None
) -> tuple[str, TokenRecord]:
    """A new token and its record; the token is not kept anywhere, so show it now."""
    token = new_token()
    digest = token_hash(token)
    record = TokenRecord(id=digest[:ID_CHARS], user=user, admin=admin, created=time.time(), label=label)
    store.put_state(f"{STATE_PREFIX}/{digest}", record.model_dump())
    return token, record


def find_token(store: ThreadStore, token: str) -> TokenRecord | None:
    value = store.get_state(f"{STATE_PREFIX}/{token_hash(token)}")
    return TokenRecord.model_validate(value) if value else None


def list_tokens(store: ThreadStore) -> list[TokenRecord]:
    records = (TokenRecord.model_validate(v) for v in store.list_state(STATE_PREFIX).values())
    return sorted(records, key=lambda r: r.created)


def revoke_token(store: ThreadStore, token_id: str) -> TokenRecord | None:
    for key, value in store.list_state(STATE_PREFIX).items():
        record = TokenRecord.model_validate(value)
        if record.id == token_id:
            store.delete_state(key)
            return record
    return None


def is_trusted_peer(peer: str | None, networks: list[Network]) -> bool:
    try:
        address = ipaddress.ip_address(peer or "")
    except ValueError:  # no peer address (a Unix socket) or not an IP
        return False
    return any(address in net for net in networks)


class Authenticator:
    """Resolves credentials to a Principal. Blocking (a store read): call it in a thread."""

    def __init__(self, settings: Settings, store: ThreadStore) -> None:
        self.store = store
        admin = settings.admin_token
        self.admin_hash = token_hash(admin.get_secret_value()) if admin else None
        self.proxy_networks: list[Network] = [ipaddress.ip_network(c) for c in settings.auth_proxy_cidrs]
        self.proxy_header = settings.auth_proxy_header
        self.proxy_admins = frozenset(settings.auth_proxy_admins)

    def from_token(self, token: str) -> Principal | None:
        digest = token_hash(token)
        # Constant time, so response timing tells nothing about the bootstrap token.
        if self.admin_hash is not None and hmac.compare_digest(digest, self.admin_hash):
            return Principal(BOOTSTRAP_ADMIN, admin=True)
        record = find_token(self.store, token)
        return Principal(record.user, record.admin) if record else None

    def from_proxy(self, user: str | None, peer: str | None) -> Principal | None:
        user = (user or "").strip()
        if not user or not is_trusted_peer(peer, self.proxy_networks):
            return None
        return Principal(user, admin=user in self.proxy_admins)

    def resolve(self, token: str | None, proxy_user: str | None, peer: str | None) -> Principal | None:
        """A bearer token, when sent, decides alone; otherwise the proxy header from a trusted peer."""
        if token is not None:
            return self.from_token(token)
        return self.from_proxy(proxy_user, peer)


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIX)


class AuthGate:
    """ASGI middleware: every non-public request names its caller before the app reads a byte
    of its body (FastAPI parses bodies before running dependencies), or gets a 401 here."""

    def __init__(self, app: ASGIApp, auth: Authenticator) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_public(scope["path"]):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        token = bearer_token(request.headers.get("authorization"))
        peer = request.client.host if request.client else None
        proxy_user = request.headers.get(self.auth.proxy_header)
        try:
            principal = await asyncio.to_thread(self.auth.resolve, token, proxy_user, peer)
        except StoreUnavailable as exc:
            detail = f"Storage is unavailable, so the token cannot be checked; nothing was done: {exc}"
            await JSONResponse({"detail": detail}, status_code=503)(scope, receive, send)
            return
        if principal is None:
            await _unauthorized(sent_token=token is not None)(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = (authorization or "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def _unauthorized(sent_token: bool) -> JSONResponse:
    if sent_token:
        detail = "The token is not valid: it is unknown or was revoked."
    else:
        detail = (
            "This API needs a token: send 'Authorization: Bearer <token>' (threadbox token create makes one)."
        )
    return JSONResponse({"detail": detail}, status_code=401, headers=CHALLENGE)


# Declares the Bearer scheme in the OpenAPI schema; AuthGate has already checked the token.
_bearer = HTTPBearer(auto_error=False, description="An API token: `threadbox token create` makes one.")


async def current_principal(
    request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """FastAPI dependency: the caller AuthGate resolved."""
    principal: Principal = request.state.principal
    return principal


Caller = Annotated[Principal, Depends(current_principal)]
