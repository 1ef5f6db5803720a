"""Authentication at start-up and in the CLI client: the dev token, and the loopback rule.

``threadbox dev`` needs no setup: it makes (or reuses) an admin token for the local user
and leaves it in ``<data_dir>/dev-token`` (mode 0600), where the CLI client finds it when
it talks to a server on loopback. A server reachable from elsewhere must have some way to
authenticate callers, or it refuses to start.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from urllib.parse import urlsplit

from controller.auth import create_token, find_token, list_tokens
from controller.config import DEFAULT_HOME, Settings
from controller.stores.base import ThreadStore

DEV_TOKEN_FILE = "dev-token"
NO_AUTH = (
    "threadbox: refusing to serve on {host}, which is not loopback, with no way to authenticate callers: "
    "set THREADBOX_ADMIN_TOKEN, or THREADBOX_AUTH_PROXY_CIDRS, or create a token with `threadbox token create`"
)


def is_loopback(host: str) -> bool:
    """True for a host name or URL host that only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name, or 0.0.0.0-style wildcards written as names
        return False


def can_authenticate(settings: Settings, store: ThreadStore) -> bool:
    return bool(settings.admin_token or settings.auth_proxy_cidrs or list_tokens(store))


def ensure_dev_token(store: ThreadStore, data_dir: Path, user: str) -> str:
    """The admin token in ``<data_dir>/dev-token`` if the store still knows it, else a new one."""
    path = data_dir / DEV_TOKEN_FILE
    if path.is_file() and not path.is_symlink():
        token = path.read_text().strip()
        record = find_token(store, token) if token else None
        if record is not None and record.admin:
            return token
    token, _ = create_token(store, user, admin=True, label="threadbox dev")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # a fresh file, so the 0600 mode applies
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token


def client_token(explicit: str | None, server: str) -> str | None:
    """``--token``, else THREADBOX_TOKEN, else the dev token when the server is on loopback."""
    token = explicit or os.environ.get("THREADBOX_TOKEN")
    if token:
        return token.strip()
    if not is_loopback(urlsplit(server).hostname or ""):
        return None
    data_dir = Path(os.environ.get("THREADBOX_DATA_DIR") or DEFAULT_HOME).expanduser()
    try:
        return (data_dir / DEV_TOKEN_FILE).read_text().strip() or None
    except OSError:
        return None
