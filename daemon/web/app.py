"""Subscriber pages: subscribe (double opt-in), one-click unsubscribe (RFC 8058), preferences, health.

A plain WSGI app on the standard library: four routes do not need a framework. Every page that
changes something is reached only with a signed token from the subscriber's own mail, and only
by POST, so link scanners that fetch every URL in a message cannot unsubscribe anyone.
"""

from __future__ import annotations

import hmac
import json
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from daemon.config import Settings
from daemon.mail.message import build_message_bytes, make_message_id, sender_domain
from daemon.mail.render import Renderer
from daemon.models import FREQUENCIES, Watchlist
from daemon.store.repo import Repo, SubscriberView, WindowClose, utcnow
from daemon.tokens import TokenError, sign, verify

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
MAX_FORM_BYTES = 16 * 1024
RECENT_WINDOW = timedelta(days=7)
CONFIRM_TTL = timedelta(days=2)
SUBSCRIBE_LIMIT = 5  # subscribe requests per client address ...
SUBSCRIBE_PER = timedelta(minutes=10)  # ... per this long; and one confirmation mail per address
_EMAIL = re.compile(r"[^@\s<>\"',;]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+")

_SECURITY_HEADERS = [
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),
]


class WebApp:
    def __init__(
        self, settings: Settings, repo: Repo, watchlist: Watchlist, *, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.watchlist = watchlist
        self.renderer = Renderer(settings.templates_dir)
        self.secret = settings.secret_key or repo.secret_key()
        self.clock = clock
        self._lock = threading.Lock()
        self._recent_requests: dict[str, deque[datetime]] = {}
        self._recent_mails: dict[str, datetime] = {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "/")
        parts = [p for p in path.split("/") if p]
        if parts == ["healthz"]:
            return self._json(start_response, {"ok": True, "outbox": self.repo.outbox_counts()})
        if parts == ["metrics"]:
            return self._metrics(start_response, environ)
        if parts == ["status"]:
            return self._status(start_response, environ)
        if parts == ["subscribe"]:
            if method == "POST":
                return self._subscribe(start_response, self._client(environ), self._form(environ))
            return self._subscribe_page(start_response, "200 OK")
        if len(parts) == 2 and parts[0] == "confirm":
            return self._confirm(start_response, method, parts[1])
        if len(parts) == 2 and parts[0] == "recent":
            sub = self._subscriber(parts[1], "recent")
            if sub is None:
                return self._invalid(start_response)
            return self._recent(start_response, sub)
        leave = len(parts) == 3 and parts[0] == "preferences" and parts[2] == "unsubscribe"
        if (len(parts) == 2 and parts[0] in ("unsubscribe", "preferences")) or leave:
            sub = self._subscriber(parts[1], parts[0])
            if sub is None:
                return self._invalid(start_response)
            form = self._form(environ) if method == "POST" else {}
            if leave and method == "POST":
                return self._unsubscribe(start_response, method, sub, parts[1], form)
            if parts[0] == "unsubscribe":
                return self._unsubscribe(start_response, method, sub, parts[1], form)
            return self._preferences(start_response, method, sub, parts[1], form)
        return self._page(start_response, "404 Not Found", "message", title="Not found", message="Nothing here.")

    # ---- routes ------------------------------------------------------------------------------
    def _unsubscribe(
        self, start_response: StartResponse, method: str, sub: SubscriberView, token: str, form: dict[str, str]
    ) -> Iterable[bytes]:
        if method == "POST":
            # RFC 8058 one-click (List-Unsubscribe=One-Click) or the page's own button
            self.repo.set_subscriber_status(sub.id, "unsubscribed")
            return self._page(
                start_response,
                "200 OK",
                "message",
                title="Unsubscribed",
                message=f"{sub.email} will get no more keynews mail.",
            )
        return self._page(
            start_response,
            "200 OK",
            "unsubscribe",
            title="Unsubscribe",
            email=sub.email,
            action=f"/unsubscribe/{token}",
        )

    def _preferences(
        self, start_response: StartResponse, method: str, sub: SubscriberView, token: str, form: dict[str, str]
    ) -> Iterable[bytes]:
        saved = False
        if method == "POST":
            symbols = [t.strip().upper() for t in form.get("tickers", "").split(",") if t.strip()]
            known = set(self.watchlist.symbols())
            symbols = [s for s in symbols if s in known]
            frequency = form.get("frequency", sub.frequency)
            send_time = form.get("send_time", sub.send_time)
            if frequency not in FREQUENCIES or not _valid_hhmm(send_time):
                return self._page(
                    start_response,
                    "400 Bad Request",
                    "message",
                    title="Not saved",
                    message="Please choose a frequency and a time like 07:30.",
                )
            cats = next(iter(sub.tickers.values()), (frozenset(), 1))
            self.repo.add_subscriber(
                sub.email,
                symbols,
                now=self.clock(),
                frequency=frequency,
                tz=sub.tz,
                send_time=send_time,
                status=sub.status,
                categories=sorted(cats[0]),
                min_severity=cats[1],
                quiet_start=sub.quiet_start,
                quiet_end=sub.quiet_end,
                nothing_new=sub.nothing_new,
                weekly_day=sub.weekly_day,
            )
            sub = self.repo.subscribers(email=sub.email)[0]
            saved = True
        return self._page(
            start_response,
            "200 OK",
            "preferences",
            title="Your keynews mail",
            email=sub.email,
            tickers=", ".join(sorted(sub.tickers)),
            watchlist=", ".join(self.watchlist.symbols()),
            frequency=sub.frequency,
            frequencies=FREQUENCIES,
            send_time=sub.send_time,
            tz=sub.tz,
            saved=saved,
            action=f"/preferences/{token}",
            unsubscribe_action=f"/preferences/{token}/unsubscribe",
        )

    def _recent(self, start_response: StartResponse, sub: SubscriberView) -> Iterable[bytes]:
        from daemon.models import CATEGORY_LABELS

        rows = self.repo.recent_stories_for(sorted(sub.tickers), self.clock() - RECENT_WINDOW)
        stories = [
            {
                "ticker": t,
                "title": title,
                "url": url if url.startswith(("https://", "http://")) else "",
                "source": src,
                "category": CATEGORY_LABELS.get(cat, cat),
                "when": published.strftime("%Y-%m-%d %H:%M UTC"),
            }
            for t, title, url, src, cat, _sev, published in rows
        ]
        return self._page(
            start_response,
            "200 OK",
            "recent",
            title="Recent key news",
            email=sub.email,
            stories=stories,
            days=RECENT_WINDOW.days,
        )

    def _metrics(self, start_response: StartResponse, environ: dict[str, Any]) -> Iterable[bytes]:
        """Prometheus text format: aggregate counts only, never who subscribes.

        Served to loopback clients (a scraper on this machine), or to whoever presents the
        operator token as a bearer token; anyone else gets 403.
        """
        if not self._operator(environ):
            return self._forbidden(start_response)
        now = self.clock()
        lines: list[str] = []

        def metric(name: str, kind: str, about: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP keynews_{name} {about}")
            lines.append(f"# TYPE keynews_{name} {kind}")
            lines.extend(f"keynews_{name}{labels} {value:g}" for labels, value in samples)

        outbox = self.repo.outbox_counts()
        metric(
            "outbox_messages",
            "gauge",
            "Mail in the outbox by status.",
            [(f'{{status="{s}"}}', outbox.get(s, 0)) for s in ("queued", "sending", "sent", "failed", "skipped")],
        )
        subs = self.repo.subscriber_counts()
        metric(
            "subscribers",
            "gauge",
            "Subscribers by status.",
            [(f'{{status="{s}"}}', subs.get(s, 0)) for s in ("pending", "active", "unsubscribed", "bounced")],
        )
        sources = self.repo.list_sources()
        metric("sources", "gauge", "Polled sources.", [("", len(sources))])
        metric(
            "sources_failing", "gauge", "Sources whose last poll failed.", [("", sum(1 for x in sources if x.failures))]
        )
        metric(
            "source_seconds_since_ok",
            "gauge",
            "Seconds since each source last polled fine (-1: never).",
            [
                (f'{{source="{_label(x.id)}"}}', (now - x.last_ok_at).total_seconds() if x.last_ok_at else -1)
                for x in sources
            ],
        )
        metric("items_stored", "counter", "Items stored from all sources.", [("", sum(x.items_total for x in sources))])
        body = ("\n".join(lines) + "\n").encode()
        start_response(
            "200 OK",
            [("Content-Type", "text/plain; version=0.0.4; charset=utf-8"), ("Content-Length", str(len(body)))],
        )
        return [body]

    def _status(self, start_response: StartResponse, environ: dict[str, Any]) -> Iterable[bytes]:
        """The operator's page: mail, subscribers and source health at a glance (same access as /metrics)."""
        if not self._operator(environ):
            return self._forbidden(start_response)

        def when(value: datetime | None) -> str:
            return value.strftime("%Y-%m-%d %H:%M UTC") if value else "never"

        sources = self.repo.list_sources()
        return self._page(
            start_response,
            "200 OK",
            "status",
            title="keynews status",
            now=when(self.clock()),
            outbox=sorted(self.repo.outbox_counts().items()),
            subscribers=sorted(self.repo.subscriber_counts().items()),
            failing=sum(1 for x in sources if x.failures),
            sources=[
                {
                    "id": x.id,
                    "status": x.last_status if x.last_status is not None else "",
                    "failures": x.failures,
                    "last_ok": when(x.last_ok_at),
                    "next_due": when(x.next_due_at),
                    "items": x.items_total,
                    "error": (x.last_error or "")[:300],
                }
                for x in sources
            ],
        )

    def _operator(self, environ: dict[str, Any]) -> bool:
        """Operator pages answer a client on this machine (not forwarded), or the operator token's bearer."""
        token = self.settings.operator_token
        if token:
            return hmac.compare_digest(str(environ.get("HTTP_AUTHORIZATION", "")), f"Bearer {token}")
        local = str(environ.get("REMOTE_ADDR", "")) in ("127.0.0.1", "::1")
        return local and "HTTP_X_FORWARDED_FOR" not in environ

    @staticmethod
    def _forbidden(start_response: StartResponse) -> Iterable[bytes]:
        start_response("403 Forbidden", [("Content-Type", "text/plain")])
        return [b"forbidden\n"]

    def _subscribe_page(self, start_response: StartResponse, status: str) -> Iterable[bytes]:
        return self._page(
            start_response,
            status,
            "subscribe",
            title="Subscribe to keynews",
            watchlist=", ".join(self.watchlist.symbols()),
            frequencies=FREQUENCIES,
        )

    def _subscribe(self, start_response: StartResponse, client: str, form: dict[str, str]) -> Iterable[bytes]:
        """Double opt-in: a pending subscriber and one confirmation mail; nothing else until confirmed.

        The answer is the same whether or not the address is known, so the form cannot be used to
        find out who subscribes. Requests per client address and confirmation mails per address
        are limited, so it cannot be used to flood a mailbox either.
        """
        now = self.clock()
        if not self._allow(client, now):
            start_response("429 Too Many Requests", [("Content-Type", "text/plain"), ("Retry-After", "600")])
            return [b"Too many requests; try again in a few minutes.\n"]
        email = form.get("email", "").strip().lower()
        known = set(self.watchlist.symbols())
        tickers = [
            t for t in dict.fromkeys(x.strip().upper() for x in form.get("tickers", "").split(",")) if t in known
        ]
        frequency = form.get("frequency", "daily")
        tz = form.get("tz", "UTC").strip() or "UTC"
        if (
            not _EMAIL.fullmatch(email)
            or len(email) > 254
            or not tickers
            or frequency not in FREQUENCIES
            or not _zone_ok(tz)
        ):
            return self._page(
                start_response,
                "400 Bad Request",
                "message",
                title="Not subscribed",
                message="Please give a valid email address, at least one ticker on this service and a time zone "
                "such as Europe/Paris.",
            )
        existing = self.repo.subscribers(email=email)
        if not (existing and existing[0].status == "active") and self._first_mail(email, now):
            sub_id = self.repo.add_subscriber(email, tickers, now=now, frequency=frequency, tz=tz, status="pending")
            self._queue_confirmation(sub_id, email, tickers, now)
        return self._page(
            start_response,
            "200 OK",
            "message",
            title="Check your inbox",
            message="If the address can receive mail, a confirmation link is on its way. Nothing else is sent "
            "until you confirm.",
        )

    def _confirm(self, start_response: StartResponse, method: str, token: str) -> Iterable[bytes]:
        sub = self._subscriber(token, "confirm")
        if sub is None:
            return self._invalid(start_response)
        if method == "POST":
            if sub.status == "pending":
                self.repo.confirm_subscriber(sub.id, self.clock())
            elif sub.status != "active":
                return self._invalid(start_response)
            return self._page(
                start_response,
                "200 OK",
                "message",
                title="Subscribed",
                message=f"{sub.email} will get key news on {', '.join(sorted(sub.tickers))}.",
            )
        return self._page(
            start_response,
            "200 OK",
            "confirm",
            title="Confirm your subscription",
            email=sub.email,
            tickers=", ".join(sorted(sub.tickers)),
            action=f"/confirm/{token}",
        )

    def _queue_confirmation(self, sub_id: int, email: str, tickers: list[str], now: datetime) -> None:
        """Into the outbox like any mail: the sender (daemon or `keynews send`) delivers it."""
        token = sign(str(sub_id), self.secret, purpose="confirm", expires_at=now + CONFIRM_TTL)
        rendered = self.renderer.render_confirm(email, f"{self.settings.base_url.rstrip('/')}/confirm/{token}", tickers)
        key = f"confirm:{now.strftime('%Y%m%dT%H%M%S%f')}"
        message_id = make_message_id(sender_domain(self.settings.mail_from), f"{sub_id}:{key}")
        raw = build_message_bytes(
            rendered,
            to=email,
            from_=self.settings.mail_from,
            message_id=message_id,
            date=now,
            list_id=self.settings.list_id,
            unsubscribe_url="",
        )
        self.repo.close_one(
            WindowClose(
                subscriber_id=sub_id,
                window_key=key,
                kind="confirm",
                message_id=message_id,
                subject=rendered.subject,
                raw=raw,
                match_ids=(),
                now=now,
            )
        )

    def _allow(self, client: str, now: datetime) -> bool:
        with self._lock:
            seen = self._recent_requests.setdefault(client, deque())
            while seen and now - seen[0] > SUBSCRIBE_PER:
                seen.popleft()
            if len(seen) >= SUBSCRIBE_LIMIT:
                return False
            seen.append(now)
            if len(self._recent_requests) > 10_000:  # bounded: forget the quiet ones
                self._recent_requests = {
                    k: v for k, v in self._recent_requests.items() if v and now - v[-1] <= SUBSCRIBE_PER
                }
            return True

    def _first_mail(self, email: str, now: datetime) -> bool:
        with self._lock:
            last = self._recent_mails.get(email)
            if last is not None and now - last <= SUBSCRIBE_PER:
                return False
            self._recent_mails[email] = now
            if len(self._recent_mails) > 10_000:
                self._recent_mails = {k: v for k, v in self._recent_mails.items() if now - v <= SUBSCRIBE_PER}
            return True

    def _invalid(self, start_response: StartResponse) -> Iterable[bytes]:
        return self._page(
            start_response,
            "400 Bad Request",
            "message",
            title="Link not valid",
            message="This link is not valid or has expired. Use the link in a recent keynews email.",
        )

    # ---- helpers -----------------------------------------------------------------------------
    def _client(self, environ: dict[str, Any]) -> str:
        """The client's address: behind a trusted reverse proxy, the last hop it added to X-Forwarded-For.

        Only hops appended by trusted proxies are believed (a client can write anything on the left).
        """
        peer = str(environ.get("REMOTE_ADDR", ""))
        trusted = {p.strip() for p in self.settings.web_trusted_proxies.split(",") if p.strip()}
        if peer not in trusted:
            return peer
        hops = [h.strip() for h in str(environ.get("HTTP_X_FORWARDED_FOR", "")).split(",") if h.strip()]
        while hops and hops[-1] in trusted:
            hops.pop()
        return hops[-1] if hops else peer

    def _subscriber(self, token: str, purpose: str) -> SubscriberView | None:
        try:
            payload = verify(token, self.secret, purpose=purpose, now=self.clock())
            sub_id = int(payload)
        except (TokenError, ValueError):
            return None
        for sub in self.repo.subscribers():
            if sub.id == sub_id:
                return sub
        return None

    @staticmethod
    def _form(environ: dict[str, Any]) -> dict[str, str]:
        try:
            length = min(int(environ.get("CONTENT_LENGTH") or 0), MAX_FORM_BYTES)
        except ValueError:
            length = 0
        body = environ["wsgi.input"].read(length).decode("utf-8", "replace") if length else ""
        return {k: v[0] for k, v in parse_qs(body).items()}

    def _page(self, start_response: StartResponse, status: str, name: str, **context: Any) -> Iterable[bytes]:
        body = self.renderer.render_page(name, **context).encode()
        start_response(
            status,
            [("Content-Type", "text/html; charset=utf-8"), *_SECURITY_HEADERS, ("Content-Length", str(len(body)))],
        )
        return [body]

    @staticmethod
    def _json(start_response: StartResponse, data: object) -> Iterable[bytes]:
        body = json.dumps(data).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]


def _label(value: str) -> str:
    """A Prometheus label value: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _zone_ok(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _valid_hhmm(value: str) -> bool:
    try:
        h, m = value.split(":")
        return 0 <= int(h) < 24 and 0 <= int(m) < 60 and len(m) == 2
    except ValueError:
        return False


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


def serve(app: WebApp, host: str, port: int) -> tuple[WSGIServer, threading.Thread]:
    """Start serving in a background thread; returns the server (its port may have been 0)."""
    server = make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
    thread = threading.Thread(target=server.serve_forever, name="keynews-web", daemon=True)
    thread.start()
    return server, thread
