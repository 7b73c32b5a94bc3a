"""Hostile feed content through the real pipeline into real mail and pages, opened in Chromium.

Feeds on 127.0.0.1 carry 110 XSS payloads (script tags, event handlers, script URLs in every
spelling, SVG/MathML, CSS, malformed markup) in titles and summaries, hostile links and
enclosures, header-injection and bidi-control titles. keynews polls them, matches, and mails
digests and an alert; each mail's HTML part and the subscriber's recent-stories page are opened
in headless Chromium. Every payload's script would request /hit/<n> from the loopback beacon, so
"nothing ran" is measured, not assumed; a positive control proves the harness sees a run.
"""

from __future__ import annotations

import asyncio
import email
import random
import re
import shutil
import string
import subprocess
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from feedserver import FeedServer
from hostile_payloads import link_payloads, payloads
from workspace import NOW, make_workspace

from daemon.ingest.pipeline import Pipeline
from daemon.mail.digest import DigestService
from daemon.service import App
from daemon.store.tables import Outbox
from daemon.tokens import sign
from daemon.web.app import WebApp, serve

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium; .ci/run installs it)"
)

BIDI = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
SAFE_SCHEMES = ("http://", "https://", "mailto:")
LOADING_TAGS = {"script", "iframe", "object", "embed", "svg", "math", "form", "base", "frame", "frameset", "applet"}
URL_ATTRS = {"href", "src", "action", "formaction", "xlink:href", "background", "poster", "data", "srcset", "ping"}
CHUNK = 20  # stories per digest: well under the per-mail size cap, so none is cut


def _words(rng: random.Random, n: int) -> str:
    return " ".join("".join(rng.choice(string.ascii_lowercase) for _ in range(7)) for _ in range(n))


def _rss(items: list[tuple[str, str, str, str]]) -> bytes:
    """(title, link, description html, enclosure url) per item; text escaped as a feed would."""
    body = "".join(
        f"<item><title>{escape(t)}</title><link>{escape(link)}</link>"
        f'<description>{escape(d)}</description><guid isPermaLink="false">g-{i}</guid>'
        + (f'<enclosure url="{escape(enc, {chr(34): "&quot;"})}" type="image/png" length="1"/>' if enc else "")
        + "<pubDate>Fri, 27 Nov 2026 13:00:00 GMT</pubDate></item>"
        for i, (t, link, d, enc) in enumerate(items)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Hostile wire</title>'
        f"<link>https://wire.example.com/</link><description>x</description>{body}</channel></rss>"
    ).encode()


class _Audit(HTMLParser):
    """Collects what a sanitizer must never let through, for a readable failure message."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in LOADING_TAGS or (tag == "meta" and any(k == "http-equiv" for k, _ in attrs)):
            self.problems.append(f"<{tag}> tag")
        if tag == "link" and any(k == "rel" and (v or "").lower() == "stylesheet" for k, v in attrs):
            self.problems.append("<link rel=stylesheet>")
        for key, value in attrs:
            value = (value or "").strip()
            if key.startswith("on"):
                self.problems.append(f"<{tag} {key}=...>")
            if key in URL_ATTRS and value and not value.lower().startswith(SAFE_SCHEMES) and not value.startswith("#"):
                self.problems.append(f"<{tag} {key}={value[:60]!r}>")
            if key == "style" and re.search(r"url\s*\(|expression\s*\(|behavior|binding", value, re.I):
                self.problems.append(f"<{tag} style={value[:60]!r}>")

    def handle_data(self, data: str) -> None:
        if self.lasttag == "style" and re.search(r"url\s*\(|@import|binding", data, re.I):
            self.problems.append("<style> loading a resource")


def _audit(html: str) -> list[str]:
    audit = _Audit()
    audit.feed(html)
    audit.close()
    return audit.problems


def _open_in_chromium(url: str, profile: Path) -> str:
    assert CHROMIUM is not None
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=4000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        timeout=90,
    )
    return proc.stdout.decode("utf-8", "replace")


def _hits(server: FeedServer) -> list[str]:
    return sorted({p for p, _ in server.requests if p.startswith("/hit/")})


def _mails(app: App) -> list[EmailMessage]:
    rows = app.repo.outbox_rows()
    return [email.message_from_bytes(r.raw, policy=policy.default) for r in rows if r.raw]  # type: ignore[misc]


def _html_part(msg: EmailMessage) -> str:
    part = msg.get_body(("html",))
    assert part is not None, "every digest and alert carries an HTML part"
    return str(part.get_content())


@pytest.fixture
def hostile_run(tmp_path: Path, feed_server: FeedServer) -> tuple[App, list[EmailMessage], list[int], str]:
    """Poll hostile feeds chunk by chunk, closing a digest window after each; return the mails."""
    beacon = feed_server.url("").rstrip("/")
    rng = random.Random(13)
    all_payloads = payloads(beacon)
    assert len(all_payloads) >= 100
    items: list[tuple[str, str, str, str]] = []
    for p in all_payloads:
        marker = f"zq{p.n}q"
        title = f"Acme Widgets to acquire {_words(rng, 6)} {marker} {p.text}"
        desc = f"<p>Story {marker}: {_words(rng, 4)}</p>{p.text}"
        items.append((title, f"https://wire.example.com/story/{p.n}", desc, ""))
    for i, bad in enumerate(link_payloads(beacon)):
        marker = f"zl{i}q"
        items.append((f"Acme Widgets to acquire {_words(rng, 6)} {marker}", bad, f"<p>{marker}</p>", bad))
    items.append(
        (
            f"Acme Widgets to acquire {_words(rng, 6)} zbidiq \u202eevil.exe\u202c \u2066x\u2069",
            "https://wire.example.com/bidi",
            "<p>\u202egnp.exe</p>",
            "",
        )
    )
    items.append(
        (
            f"Acme Widgets cuts forecast {_words(rng, 6)} zhdrq\r\nBcc: victim@example.com\r\nX-Evil: 1",
            "https://wire.example.com/hdr",
            "<p>critical: alert path</p>",
            "",
        )
    )
    paths = []
    for start in range(0, len(items), CHUNK):
        path = f"/hostile-{start // CHUNK}.xml"
        feed_server.add(path, _rss(items[start : start + CHUNK]), content_type="application/rss+xml")
        paths.append(path)
    lines = ["defaults: {every: 10m, jitter: 0s}", "sources:"]
    for path in paths:
        lines += [f"  - id: {path.strip('/').replace('.', '-')}", f"    url: {feed_server.url(path)}"]
        lines += ["    allow_private: true", "    max_age: 30d"]
    settings = make_workspace(tmp_path, "\n".join(lines) + "\n", max_items_per_ticker=500)
    app = App.load(settings)
    app.repo.add_subscriber("ann@example.com", ["ACME"], now=NOW - timedelta(days=1))
    pipeline = Pipeline(app.settings, app.repo, app.watchlist, app.specs)
    pipeline.sync(NOW)
    digests = DigestService(app.settings, app.repo, app.watchlist)
    # one source per chunk, each polled and closed in its own window, so no digest is cut by the size cap
    for n, spec in enumerate(app.specs):
        only = Pipeline(app.settings, app.repo, app.watchlist, [spec])
        asyncio.run(only.poll_due(NOW + timedelta(minutes=n), app.rules, force=True))
        digests.close_due(NOW + timedelta(minutes=n, seconds=30), force_window=f"manual:{n}")
    mails = _mails(app)
    return app, mails, [p.n for p in all_payloads], beacon


@needs_chromium
def test_the_harness_sees_a_payload_run(tmp_path: Path, feed_server: FeedServer) -> None:
    """Positive control: the same payloads, unsanitized, do hit the beacon from Chromium."""
    beacon = feed_server.url("").rstrip("/")
    raw = "".join(p.text for p in payloads(beacon)[:20])
    page = tmp_path / "raw.html"
    page.write_text(f"<!doctype html><html><body>{raw}</body></html>", encoding="utf-8")
    _open_in_chromium(page.as_uri(), tmp_path / "profile")
    assert _hits(feed_server), "an unsanitized payload must reach the beacon, or the suite proves nothing"


@needs_chromium
def test_no_payload_runs_in_any_mail_or_page(
    hostile_run: tuple[App, list[EmailMessage], list[int], str], feed_server: FeedServer, tmp_path: Path
) -> None:
    app, mails, numbers, _beacon = hostile_run
    assert len(mails) >= 5
    html_pages = []
    for i, msg in enumerate(mails):
        html = _html_part(msg)
        page = tmp_path / f"mail-{i}.html"
        page.write_text(html, encoding="utf-8")
        html_pages.append(page)
    shown = "\n".join(p.read_text(encoding="utf-8") for p in html_pages)
    # every hostile story reached a mail (none cut, folded or dropped: otherwise it was not tested)
    missing = [n for n in numbers if f"zq{n}q" not in shown]
    assert not missing, f"payload stories missing from the mail: {missing[:10]}"

    problems = {page.name: _audit(page.read_text(encoding="utf-8")) for page in html_pages}
    assert not {k: v for k, v in problems.items() if v}, problems

    sub = app.repo.subscribers(email="ann@example.com")[0]
    web = WebApp(app.settings, app.repo, app.watchlist, clock=lambda: NOW + timedelta(hours=1))
    server, _thread = serve(web, "127.0.0.1", 0)
    try:
        token = sign(str(sub.id), web.secret, purpose="recent", expires_at=NOW + timedelta(days=2))
        recent_url = f"http://127.0.0.1:{server.server_port}/recent/{token}"
        for page in html_pages:
            _open_in_chromium(page.as_uri(), tmp_path / "profile")
        dom = _open_in_chromium(recent_url, tmp_path / "profile")
    finally:
        server.shutdown()
        server.server_close()
    assert "zq0q" in dom, "the recent-stories page lists the hostile stories"
    assert not _audit(dom), _audit(dom)
    assert _hits(feed_server) == [], "a payload ran in Chromium"


def test_links_are_http_only_and_headers_are_never_injected(
    hostile_run: tuple[App, list[EmailMessage], list[int], str],
) -> None:
    app, mails, _numbers, _beacon = hostile_run
    for msg in mails:
        for name, value in msg.items():
            assert "\n" not in str(value) and "\r" not in str(value), (name, value)
        names = {k.lower() for k in msg}
        assert "bcc" not in names and "x-evil" not in names
        html = _html_part(msg)
        hrefs = re.findall(r'href="([^"]*)"', html)
        assert hrefs
        bad = [h for h in hrefs if not h.lower().startswith(SAFE_SCHEMES)]
        assert not bad, bad
        for part in (html, str(msg.get_body(("plain",)).get_content()), str(msg["Subject"])):  # type: ignore[union-attr]
            assert not BIDI.search(part), "bidi controls from feed text reach the mail"
    text = "\n".join(str(m.get_body(("plain",)).get_content()) for m in mails)  # type: ignore[union-attr]
    assert "zbidiq" in text, "the bidi story itself is still mailed, with the controls neutralised"
    assert app.repo.count(Outbox) == len(mails)
