"""The pure parts of authentication: hashing, peers, principal resolution, the dev token."""

from __future__ import annotations

import hashlib
import ipaddress
import stat
from pathlib import Path
from typing import Any

import pytest

from controller.auth import (
    BOOTSTRAP_ADMIN,
    Authenticator,
    Principal,
    bearer_token,
    create_token,
    find_token,
    is_public,
    is_trusted_peer,
    list_tokens,
    new_token,
    revoke_token,
    token_hash,
)
from controller.auth_setup import can_authenticate, client_token, ensure_dev_token, is_loopback
from controller.config import Settings
from controller.stores.local import LocalStore

ADMIN = "bootstrap-admin-token-0123456789"


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    return Settings(data_dir=tmp_path, sandbox_python=Path("/usr/bin/python3"), **kw)


def test_tokens_are_random_and_stored_by_hash(tmp_path: Path) -> None:
    a, b = new_token(), new_token()
    assert a.startswith("tbx_") and len(a) > 40 and a != b
    assert token_hash(a) == hashlib.sha256(a.encode()).hexdigest()
    store = LocalStore(tmp_path)
    token, record = create_token(store, "alice", label="laptop")
    assert record.id == token_hash(token)[:12] and not record.admin
    assert find_token(store, token) == record
    assert find_token(store, token + "x") is None
    assert [r.id for r in list_tokens(store)] == [record.id]
    assert revoke_token(store, "nope") is None
    assert revoke_token(store, record.id) == record and find_token(store, token) is None


@pytest.mark.parametrize(
    ("peer", "trusted"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("10.0.0.0", True),
        ("11.0.0.1", False),
        ("::1", True),
        ("fe80::1", False),
        (None, False),
        ("", False),
        ("not-an-ip", False),
    ],
)
def test_trusted_peer(peer: str | None, trusted: bool) -> None:
    nets = [ipaddress.ip_network(c) for c in ("127.0.0.1/32", "10.0.0.0/8", "::1/128")]
    assert is_trusted_peer(peer, nets) is trusted


def test_principal_resolution(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    settings = _settings(
        tmp_path, admin_token=ADMIN, auth_proxy_cidrs="127.0.0.0/8", auth_proxy_admins="root, ops"
    )
    auth = Authenticator(settings, store)
    user_token, _ = create_token(store, "alice")
    admin_token, _ = create_token(store, "bob", admin=True)
    assert auth.resolve(ADMIN, None, "8.8.8.8") == Principal(BOOTSTRAP_ADMIN, admin=True)
    assert auth.resolve(user_token, None, None) == Principal("alice", admin=False)
    assert auth.resolve(admin_token, None, None) == Principal("bob", admin=True)
    assert auth.resolve("tbx_unknown", None, None) is None
    assert auth.resolve(None, "carol", "127.0.0.1") == Principal("carol", admin=False)
    assert auth.resolve(None, " ops ", "127.0.0.2") == Principal("ops", admin=True)
    assert auth.resolve(None, "carol", "192.168.1.1") is None, "untrusted peers cannot name a user"
    assert auth.resolve(None, "  ", "127.0.0.1") is None
    assert auth.resolve("tbx_unknown", "carol", "127.0.0.1") is None, "a bad token is not rescued"
    assert auth.resolve(None, None, "127.0.0.1") is None


def test_without_proxy_cidrs_the_header_means_nothing(tmp_path: Path) -> None:
    auth = Authenticator(_settings(tmp_path), LocalStore(tmp_path))
    assert auth.resolve(None, "root", "127.0.0.1") is None
    assert auth.resolve(ADMIN, None, None) is None, "no bootstrap token configured"


def test_settings_check_auth_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 16"):
        _settings(tmp_path, admin_token="short")
    with pytest.raises(ValueError, match="CHAT_PORT"):
        _settings(tmp_path, port=9000, chat_port=9000)
    with pytest.raises(ValueError):
        _settings(tmp_path, auth_proxy_cidrs="10.0.0.1/8")
    s = _settings(tmp_path, auth_proxy_cidrs="10.0.0.0/8, ::1/128", auth_proxy_admins="a,,b")
    assert s.auth_proxy_cidrs == ["10.0.0.0/8", "::1/128"] and s.auth_proxy_admins == ["a", "b"]
    assert (s.chat_port, s.auth_proxy_header) == (8601, "X-Forwarded-User")


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("example.com", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_can_authenticate(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    assert not can_authenticate(_settings(tmp_path), store)
    assert can_authenticate(_settings(tmp_path, admin_token=ADMIN), store)
    assert can_authenticate(_settings(tmp_path, auth_proxy_cidrs="10.0.0.0/8"), store)
    create_token(store, "alice")
    assert can_authenticate(_settings(tmp_path), store)


def test_dev_token_is_reused_while_the_store_knows_it(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    first = ensure_dev_token(store, tmp_path, "me")
    path = tmp_path / "dev-token"
    assert path.read_text() == first + "\n" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_dev_token(store, tmp_path, "me") == first
    [record] = list_tokens(store)
    assert record.admin and record.user == "me"
    revoke_token(store, record.id)
    second = ensure_dev_token(store, tmp_path, "me")
    assert second != first and path.read_text() == second + "\n"


def test_client_token_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THREADBOX_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("THREADBOX_TOKEN", raising=False)
    assert client_token(None, "http://127.0.0.1:8600") is None
    (tmp_path / "dev-token").write_text("tbx_dev\n")
    assert client_token(None, "http://127.0.0.1:8600") == "tbx_dev"
    assert client_token(None, "http://localhost:8600") == "tbx_dev"
    assert client_token(None, "https://threadbox.example.com") is None, "never sent to another host"
    monkeypatch.setenv("THREADBOX_TOKEN", "tbx_env")
    assert client_token(None, "http://127.0.0.1:8600") == "tbx_env"
    assert client_token("tbx_flag", "http://127.0.0.1:8600") == "tbx_flag"


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer tbx_a", "tbx_a"),
        ("bearer  tbx_a ", "tbx_a"),
        ("Bearer", None),
        ("Bearer  ", None),
        ("Basic YTpi", None),
        ("tbx_a", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_public_paths_are_few_and_exact() -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/", "/console/console.js", "/docs", "/openapi.json"):
        assert is_public(path), path
    for path in ("/threads", "/threads/x/files", "/healthz/x", "/consolex", "/console", "/slack/events"):
        assert not is_public(path), path
