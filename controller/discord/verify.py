"""Discord's interaction signature: Ed25519 over the timestamp and the raw body.

Discord signs every interaction it posts with the application's key; the public half is
shown on the application's page. A request whose signature does not verify under it, or
whose timestamp is outside the window (a replayed request), is not from Discord now.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

WINDOW_SECONDS = 5 * 60


class Verifier:
    def __init__(self, public_key_hex: str) -> None:
        self.key = VerifyKey(bytes.fromhex(public_key_hex))

    def verified(self, body: bytes, headers: Mapping[str, str], now: float | None = None) -> bool:
        """``headers`` with lowercase names, as Starlette gives them."""
        stamp = headers.get("x-signature-timestamp", "")
        signature = headers.get("x-signature-ed25519", "")
        if not stamp.isdigit() or abs((time.time() if now is None else now) - int(stamp)) > WINDOW_SECONDS:
            return False
        try:
            self.key.verify(stamp.encode() + body, bytes.fromhex(signature))
        except (BadSignatureError, ValueError):  # ValueError: not hex, or not 64 bytes
            return False
        return True
