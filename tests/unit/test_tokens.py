"""Signed, expiring, purpose-bound tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon.errors import KeynewsError
from daemon.tokens import TokenError, sign, verify

NOW = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)
SECRET = "s3cret-key"


def test_round_trip_and_url_safe() -> None:
    payload = "sub:42|ann@example.com|ünï/?&="
    token = sign(payload, SECRET, purpose="unsubscribe", expires_at=NOW + timedelta(days=30))
    assert all(c.isalnum() or c in "-_." for c in token)
    assert verify(token, SECRET, purpose="unsubscribe", now=NOW) == payload


def test_no_expiry() -> None:
    token = sign("p", SECRET, purpose="unsubscribe", expires_at=None)
    assert verify(token, SECRET, purpose="unsubscribe", now=NOW + timedelta(days=3650)) == "p"


def test_expired() -> None:
    token = sign("p", SECRET, purpose="confirm", expires_at=NOW + timedelta(hours=1))
    assert verify(token, SECRET, purpose="confirm", now=NOW + timedelta(minutes=59)) == "p"
    with pytest.raises(TokenError, match="expired"):
        verify(token, SECRET, purpose="confirm", now=NOW + timedelta(hours=1))


def test_wrong_purpose_and_wrong_secret() -> None:
    token = sign("p", SECRET, purpose="confirm", expires_at=None)
    with pytest.raises(TokenError):
        verify(token, SECRET, purpose="unsubscribe", now=NOW)
    with pytest.raises(TokenError):
        verify(token, "other-secret", purpose="confirm", now=NOW)


@pytest.mark.parametrize("mutate", ["payload", "expiry", "mac", "drop", "garbage", "empty"])
def test_tampered_or_malformed(mutate: str) -> None:
    token = sign("sub:1", SECRET, purpose="unsubscribe", expires_at=NOW + timedelta(hours=1))
    body, expiry, mac = token.split(".")
    bad = {
        "payload": f"{sign('sub:2', SECRET, purpose='x', expires_at=None).split('.')[0]}.{expiry}.{mac}",
        "expiry": f"{body}.{int(expiry) + 86400}.{mac}",
        "mac": f"{body}.{expiry}.{mac[:-2]}AA",
        "drop": f"{body}.{mac}",
        "garbage": "!!!.@@@.###",
        "empty": "",
    }[mutate]
    with pytest.raises(TokenError):
        verify(bad, SECRET, purpose="unsubscribe", now=NOW)


def test_error_is_a_keynews_error_and_secret_required() -> None:
    assert issubclass(TokenError, KeynewsError)
    with pytest.raises(TokenError):
        sign("p", "", purpose="unsubscribe", expires_at=None)
