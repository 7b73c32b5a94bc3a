"""Signed, expiring, purpose-bound tokens for unsubscribe / confirm / preferences links.

Format: ``<base64url(payload)>.<expiry unix seconds or "">.<base64url(HMAC-SHA256)>``. The MAC
covers the purpose, so an unsubscribe token cannot be replayed as a confirm token, and the
expiry, so it cannot be extended. No state is needed to check a token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import UTC, datetime

from daemon.errors import KeynewsError


class TokenError(KeynewsError):
    """A token that is malformed, forged, expired or made for another purpose."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, purpose: str, payload_b64: str, expiry: str) -> bytes:
    if not secret:
        raise TokenError("no secret key configured for signing tokens")
    message = "\x00".join(("keynews-token-v1", purpose, payload_b64, expiry)).encode("utf-8")
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).digest()


def _unix(when: datetime) -> int:
    return int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())


def sign(payload: str, secret: str, *, purpose: str, expires_at: datetime | None) -> str:
    body = _b64(payload.encode("utf-8"))
    expiry = "" if expires_at is None else str(_unix(expires_at))
    return f"{body}.{expiry}.{_b64(_mac(secret, purpose, body, expiry))}"


def verify(token: str, secret: str, *, purpose: str, now: datetime) -> str:
    parts = (token or "").strip().split(".")
    if len(parts) != 3:
        raise TokenError("malformed token")
    body, expiry, mac_b64 = parts
    try:
        given = _unb64(mac_b64)
        payload = _unb64(body).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise TokenError("malformed token") from exc
    if not hmac.compare_digest(given, _mac(secret, purpose, body, expiry)):
        raise TokenError("invalid token")
    if expiry:
        if not expiry.isdigit():
            raise TokenError("malformed token")
        if _unix(now) >= int(expiry):
            raise TokenError("expired token")
    return payload
