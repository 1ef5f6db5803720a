"""Installing the app in many workspaces: Bolt's OAuth flow on the chat port.

``GET /slack/install`` issues a single-use state, binds it to the browser with a cookie
and redirects to Slack's authorize page; Slack sends the installer back to
``GET /slack/oauth_redirect?code&state``, where the code is exchanged for the workspace's
bot token (``oauth.v2.access``). Both are public, like /slack/events: the state and the
cookie are what stop a forged or replayed redirect, and a refusal is a 4xx page.
"""

from __future__ import annotations

import logging
from urllib.parse import urljoin

from fastapi import APIRouter, Request, Response
from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization.async_authorize import AsyncInstallationStoreAuthorize
from slack_bolt.oauth.async_oauth_flow import AsyncOAuthFlow
from slack_bolt.oauth.async_oauth_settings import AsyncOAuthSettings
from slack_sdk.web.async_client import AsyncWebClient

from controller.slack.config import OAuthApp
from controller.slack.installations import StoreInstallations, StoreOAuthStates
from controller.stores.base import ThreadStore

INSTALL_PATH = "/slack/install"
REDIRECT_PATH = "/slack/oauth_redirect"
STATE_SECONDS = 600  # Bolt's default: time enough to pick a workspace and approve


def authorization_url(api_url: str | None) -> str | None:
    """Slack's authorize page beside its Web API (``https://slack.com/api/`` gives
    ``https://slack.com/oauth/v2/authorize``), so a stand-in API serves both."""
    return None if api_url is None else urljoin(api_url, "../oauth/v2/authorize")


def oauth_flow(
    app: OAuthApp, store: ThreadStore, client: AsyncWebClient, api_url: str | None
) -> AsyncOAuthFlow:
    installations = StoreInstallations(store)
    settings = AsyncOAuthSettings(
        client_id=app.client_id,
        client_secret=app.client_secret,
        scopes=list(app.scopes),
        user_scopes=[],
        redirect_uri=app.redirect_uri,
        install_path=INSTALL_PATH,
        redirect_uri_path=REDIRECT_PATH,
        install_page_rendering_enabled=False,  # straight to Slack: the link is the install button
        authorization_url=authorization_url(api_url),
        installation_store=installations,
        installation_store_bot_only=True,  # threadbox acts as its bot only, never as the installer
        state_store=StoreOAuthStates(store, STATE_SECONDS),
        state_expiration_seconds=STATE_SECONDS,
    )
    settings.authorize = cached_authorize(app, installations)
    return AsyncOAuthFlow(client=client, settings=settings)


def cached_authorize(app: OAuthApp, installations: StoreInstallations) -> AsyncInstallationStoreAuthorize:
    """Bolt checks an event's token with auth.test before it acks; cached per token, that is one
    call per workspace and process, not one per event. A reinstall brings a new token, and an
    uninstalled workspace's token is no longer found in the store to look the cache up with."""
    return AsyncInstallationStoreAuthorize(
        logger=logging.getLogger(__name__),
        installation_store=installations,
        client_id=app.client_id,
        client_secret=app.client_secret,
        bot_only=True,
        cache_enabled=True,
    )


def oauth_router(app: AsyncApp) -> APIRouter:
    handler = AsyncSlackRequestHandler(app)
    router = APIRouter(tags=["slack"])

    async def oauth_page(request: Request) -> Response:
        return await handler.handle(request)

    router.add_api_route(INSTALL_PATH, oauth_page, methods=["GET"], summary="Install the Slack app (OAuth).")
    router.add_api_route(REDIRECT_PATH, oauth_page, methods=["GET"], summary="Slack's OAuth redirect.")
    return router
