"""Subscriber pages over real HTTP: signed links, one-click unsubscribe (RFC 8058), preferences."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from workspace import NOW, make_workspace

from daemon.mail.digest import DigestBuilder
from daemon.service import App
from daemon.web.app import WebApp, serve


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[App, str]]:
    app = App.load(make_workspace(tmp_path, "sources: []\n"))
    server, _thread = serve(WebApp(app.settings, app.repo, app.watchlist), "127.0.0.1", 0)
    try:
        yield app, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def _links(app: App, email: str) -> tuple[str, str]:
    sub = app.repo.subscribers(email=email)[0]
    unsub, prefs = DigestBuilder(app.settings, app.repo, app.watchlist).links(sub, NOW)
    return unsub.split("/unsubscribe/", 1)[1], prefs.split("/preferences/", 1)[1]


def _call(url: str, data: bytes | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_one_click_unsubscribe_post_works_and_get_only_asks(site: tuple[App, str]) -> None:
    app, base = site
    app.repo.add_subscriber("ann@example.com", ["KC"], now=NOW - timedelta(days=1))
    token, _ = _links(app, "ann@example.com")
    status, page = _call(f"{base}/unsubscribe/{token}")
    assert status == 200 and "ann@example.com" in page and "<form" in page
    assert app.repo.subscribers(email="ann@example.com")[0].status == "active"  # a GET changes nothing
    status, page = _call(f"{base}/unsubscribe/{token}", b"List-Unsubscribe=One-Click")
    assert status == 200 and "no more keynews mail" in page
    assert app.repo.subscribers(email="ann@example.com")[0].status == "unsubscribed"


def test_tampered_or_wrong_purpose_tokens_are_refused(site: tuple[App, str]) -> None:
    app, base = site
    app.repo.add_subscriber("bob@example.com", ["KC"], now=NOW - timedelta(days=1))
    token, prefs = _links(app, "bob@example.com")
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    assert _call(f"{base}/unsubscribe/{forged}", b"List-Unsubscribe=One-Click")[0] == 400
    assert _call(f"{base}/unsubscribe/{prefs}", b"List-Unsubscribe=One-Click")[0] == 400  # preferences token
    assert app.repo.subscribers(email="bob@example.com")[0].status == "active"


def test_preferences_page_changes_tickers_and_frequency(site: tuple[App, str]) -> None:
    app, base = site
    app.repo.add_subscriber("cy@example.com", ["KC"], now=NOW - timedelta(days=1))
    _, prefs = _links(app, "cy@example.com")
    status, page = _call(f"{base}/preferences/{prefs}")
    assert status == 200 and "cy@example.com" in page and 'value="KC"' in page
    status, page = _call(
        f"{base}/preferences/{prefs}", b"tickers=kc%2C+acme%2C+NOPE&frequency=weekly&send_time=08%3A15"
    )
    assert status == 200 and "Saved" in page
    sub = app.repo.subscribers(email="cy@example.com")[0]
    assert sorted(sub.tickers) == ["ACME", "KC"] and sub.frequency == "weekly" and sub.send_time == "08:15"
    assert _call(f"{base}/preferences/{prefs}", b"frequency=hourly&send_time=08:15")[0] == 400
    assert _call(f"{base}/preferences/{prefs}/unsubscribe", b"confirm=yes")[0] == 200
    assert app.repo.subscribers(email="cy@example.com")[0].status == "unsubscribed"


def test_healthz_and_pages_escape_and_lock_down(site: tuple[App, str]) -> None:
    app, base = site
    status, body = _call(f"{base}/healthz")
    assert status == 200 and '"ok": true' in body
    app.repo.add_subscriber("<script>x</script>@example.com", ["KC"], now=NOW)
    token, _ = _links(app, "<script>x</script>@example.com")
    _status, page = _call(f"{base}/unsubscribe/{token}")
    assert "<script>x" not in page and "&lt;script&gt;" in page
    with urllib.request.urlopen(f"{base}/unsubscribe/{token}", timeout=10) as resp:
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]


def test_overflow_link_lists_recent_stories(site: tuple[App, str]) -> None:
    from daemon.models import Explanation, Item, Match, Severity
    from daemon.store.repo import utcnow

    app, base = site
    now = utcnow()
    app.repo.add_subscriber("dee@example.com", ["KC"], now=now - timedelta(days=1))
    for i in range(3):
        item = Item(
            uid=f"r{i}",
            source_id="w",
            source_label="Wire",
            url=f"https://wire.example.com/{i}",
            title=f"KC story {i} <b>bold</b>",
            summary="",
            published_at=now - timedelta(hours=i),
            tickers=("KC",),
        )
        m = Match("results", "Results", "earnings", Severity.HIGH, "KC", (Explanation("results", "headline", "x"),))
        app.repo.store_item(item, cluster_id=item.uid, matches=[m], now=now)
    sub = app.repo.subscribers(email="dee@example.com")[0]
    url = DigestBuilder(app.settings, app.repo, app.watchlist).recent_url(sub, now)
    status, page = _call(base + url.split("news.keynews.test", 1)[1])
    assert status == 200
    assert page.index("KC story 0") < page.index("KC story 2")  # newest first
    assert "&lt;b&gt;bold" in page and 'href="https://wire.example.com/1"' in page


def _confirm_token(app: App, email_addr: str) -> tuple[str, bytes]:
    """The confirmation mail queued for this address, and the token its link carries."""
    import email as email_lib
    from email import policy

    sub = app.repo.subscribers(email=email_addr)[0]
    rows = [r for r in app.repo.outbox_rows() if r.subscriber_id == sub.id and r.kind == "confirm"]
    assert len(rows) == 1, rows
    msg = email_lib.message_from_bytes(rows[0].raw, policy=policy.default)
    assert msg["Subject"] == "Confirm your keynews subscription" and msg["To"] == email_addr
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    link = next(line.strip() for line in text.splitlines() if "/confirm/" in line)
    return link.rsplit("/confirm/", 1)[1], rows[0].raw


def test_subscribe_is_double_opt_in(site: tuple[App, str]) -> None:
    from urllib.parse import urlencode

    from daemon.mail.digest import DigestService

    app, base = site
    status, page = _call(f"{base}/subscribe")
    assert status == 200 and '<form method="post" action="/subscribe">' in page and "KC" in page
    form = urlencode(
        {"email": "Carol@Example.com", "tickers": "kc, ACME, NOPE", "frequency": "daily", "tz": "Europe/Paris"}
    )
    status, page = _call(f"{base}/subscribe", form.encode())
    assert status == 200 and "confirmation link is on its way" in page
    sub = app.repo.subscribers(email="carol@example.com")[0]
    assert sub.status == "pending" and sorted(sub.tickers) == ["ACME", "KC"] and sub.tz == "Europe/Paris"
    token, raw = _confirm_token(app, "carol@example.com")
    # the sender delivers it like any queued mail (here: the .eml outbox), while the address is pending
    from daemon.mail.send import Sender

    assert Sender(app.settings, app.repo).send_due().sent == 1
    assert [p.read_bytes() for p in Path(app.settings.outbox_dir).glob("*.eml")] == [raw]
    # a pending address gets no digest
    closed = DigestService(app.settings, app.repo, app.watchlist).close_due(NOW, force_window="manual:1")
    assert "carol@example.com" not in closed.subscribers
    # asking again at once sends no second mail, and the answer does not tell
    status, again = _call(f"{base}/subscribe", form.encode())
    assert status == 200 and again == page
    _confirm_token(app, "carol@example.com")  # still exactly one
    # opening the link (as a mail scanner would) changes nothing; the button confirms
    status, ask = _call(f"{base}/confirm/{token}")
    assert status == 200 and "<form" in ask and app.repo.subscribers(email="carol@example.com")[0].status == "pending"
    status, done = _call(f"{base}/confirm/{token}", b"confirm=yes")
    assert status == 200 and "ACME, KC" in done
    assert app.repo.subscribers(email="carol@example.com")[0].status == "active"
    # an active subscriber's address cannot be re-pended or re-mailed from the form
    status, _ = _call(f"{base}/subscribe", urlencode({"email": "carol@example.com", "tickers": "ACME"}).encode())
    assert status == 200
    sub = app.repo.subscribers(email="carol@example.com")[0]
    assert sub.status == "active" and sorted(sub.tickers) == ["ACME", "KC"]
    # a forged or tampered token confirms nothing
    status, _ = _call(f"{base}/confirm/{token[:-2]}xx", b"confirm=yes")
    assert status == 400


def test_subscribe_refuses_bad_input_and_floods(site: tuple[App, str]) -> None:
    from urllib.parse import urlencode

    app, base = site
    bad = [
        {"email": "not-an-address", "tickers": "KC"},
        {"email": "dan@example.com", "tickers": "NOPE"},
        {"email": "dan@example.com", "tickers": "KC", "tz": "Mars/Olympus"},
        {"email": "dan@example.com\r\nBcc: x@example.com", "tickers": "KC"},
        {"email": "dan@example.com", "tickers": "KC", "frequency": "hourly"},
    ]
    for fields in bad:
        status, _ = _call(f"{base}/subscribe", urlencode(fields).encode())
        assert status == 400, fields
    assert app.repo.subscribers(email="dan@example.com") == []
    status, _ = _call(f"{base}/subscribe", urlencode({"email": "eve@example.com", "tickers": "KC"}).encode())
    assert status == 429  # the sixth request from this address within ten minutes
    assert app.repo.outbox_rows() == []


def test_subscribe_limits_each_client_behind_a_trusted_proxy(site: tuple[App, str]) -> None:
    """Behind the (trusted, local) reverse proxy, each forwarded client has its own limit."""
    from urllib.parse import urlencode

    _app, base = site

    def post(client: str, spoofed: str = "198.51.100.7") -> int:
        body = urlencode({"email": "not-an-address", "tickers": "KC"}).encode()
        req = urllib.request.Request(
            f"{base}/subscribe", data=body, method="POST", headers={"X-Forwarded-For": f"{spoofed}, {client}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)

    assert [post("203.0.113.5") for _ in range(6)] == [400] * 5 + [429]
    assert post("203.0.113.9") == 400  # another client: not limited by the first one's requests
    # what the client wrote itself (the left-hand hops) does not get it a fresh limit
    assert post("203.0.113.5", spoofed="192.0.2.44") == 429


def test_metrics_for_a_local_scraper_or_the_operator_token_only(site: tuple[App, str]) -> None:
    from dataclasses import replace

    from daemon.web.app import _label

    app, base = site
    app.repo.add_subscriber("fay@example.com", ["KC"], now=NOW - timedelta(days=1))
    app.repo.add_subscriber("gus@example.com", ["KC"], now=NOW - timedelta(days=1), status="pending")
    status, text = _call(f"{base}/metrics")
    assert status == 200
    assert 'keynews_subscribers{status="active"} 1' in text and 'keynews_subscribers{status="pending"} 1' in text
    assert 'keynews_outbox_messages{status="queued"} 0' in text and "keynews_sources 0" in text
    assert "fay@example.com" not in text
    # through a proxy (a forwarded client), and no operator token set: refused
    req = urllib.request.Request(f"{base}/metrics", headers={"X-Forwarded-For": "203.0.113.5"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code == 403
    # with a token set, only the bearer of it
    server, _thread = serve(
        WebApp(replace(app.settings, operator_token="s3cret"), app.repo, app.watchlist), "127.0.0.1", 0
    )
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        assert _call(url)[0] == 403
        ok = urllib.request.Request(url, headers={"Authorization": "Bearer s3cret"})
        with urllib.request.urlopen(ok, timeout=10) as resp:
            assert resp.status == 200 and b"keynews_subscribers" in resp.read()
    finally:
        server.shutdown()
        server.server_close()
    assert _label('a "b"\\\nc') == 'a \\"b\\"\\\\\\nc'


def test_addresses_never_confirmed_are_forgotten(site: tuple[App, str]) -> None:
    app, _base = site
    old = NOW - timedelta(days=10)

    def confirmation(sub_id: int, at: object) -> None:
        app.repo.close_window(
            subscriber_id=sub_id,
            window_key=f"confirm:{at}",
            kind="confirm",
            message_id=f"<{sub_id}-{at}@t>",
            subject="Confirm your keynews subscription",
            raw=b"raw",
            match_ids=[],
            now=at,  # type: ignore[arg-type]
        )

    stale = app.repo.add_subscriber("stale@example.com", ["KC"], now=old, status="pending")
    confirmation(stale, old)
    asked_again = app.repo.add_subscriber("again@example.com", ["KC"], now=old, status="pending")
    confirmation(asked_again, old)
    confirmation(asked_again, NOW)  # a fresh link: not forgotten while it is valid
    app.repo.add_subscriber("kept@example.com", ["KC"], now=old)  # active long ago: never touched
    assert app.repo.drop_unconfirmed(NOW - timedelta(days=7)) == 1
    assert sorted(s.email for s in app.repo.subscribers()) == ["again@example.com", "kept@example.com"]
    assert {r.subscriber_id for r in app.repo.outbox_rows()} == {asked_again}  # its mail went with it


def test_status_page_shows_health_to_the_operator_only(site: tuple[App, str]) -> None:
    from daemon.store.tables import Source

    app, base = site
    app.repo.add_subscriber("hal@example.com", ["KC"], now=NOW - timedelta(days=1))
    with app.repo.session() as s:
        s.add(
            Source(
                id="wire",
                spec_id="wire",
                url="https://wire.example.com/feed.xml",
                next_due_at=NOW,
                failures=2,
                last_status=500,
                last_error="HTTP 500 <script>alert(1)</script>",
            )
        )
        s.commit()
    status, page = _call(f"{base}/status")
    assert status == 200
    assert "Sources (1, 1 failing)" in page and "<td>wire</td><td>500</td><td>2</td>" in page
    assert "&lt;script&gt;" in page and "<script>" not in page  # feed-side text stays text
    assert "active: <strong>1</strong>" in page and "hal@example.com" not in page
    req = urllib.request.Request(f"{base}/status", headers={"X-Forwarded-For": "203.0.113.5"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code == 403
