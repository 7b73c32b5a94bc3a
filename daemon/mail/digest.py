"""Due subscribers -> ranked, grouped digests -> closed outbox windows.

A window is closed in one transaction that writes the rendered message and the matches it
carries (repo.close_window). The unique (subscriber, window) key is what keeps a digest from
being built twice; the anti-join on outbox_match is what keeps a story from being mailed twice.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from daemon.config import Settings
from daemon.mail.message import build_message_bytes, make_message_id, sender_domain
from daemon.mail.render import Renderer
from daemon.mail.workers import Child, child_pipes, recv_frame, send_frame
from daemon.models import (
    CATEGORY_LABELS,
    Digest,
    DigestEntry,
    Quote,
    Severity,
    TickerSection,
    Watchlist,
)
from daemon.prices.events import move_since
from daemon.store.repo import Repo, StoredMatch, SubscriberView, WindowClose
from daemon.tokens import sign

LOOKBACK = timedelta(days=14)
FIRST_DIGEST_LOOKBACK = timedelta(days=1)
UNSUBSCRIBE_TTL = timedelta(days=400)
NEWS_BEFORE_MOVE = timedelta(hours=6)
RECENT_TTL = timedelta(days=30)
PAGE = 500  # subscribers read, and their pending matches fetched, at a time
POOL_MIN = 200  # digests in one page before rendering moves to worker processes
POOL_MAX = 4  # worker processes at most
SPARE_CORES = 2  # cores left to this process and the sender (plus a local SMTP server) before workers
WRITE_BATCH = 100  # closed windows per transaction
WRITE_BYTES = 8 * 1024 * 1024  # ... or fewer, so a run holds a bounded amount of rendered mail
SECTION_CACHE = 50_000  # built ticker sections kept in one run (bounded: memory stays flat)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _hhmm(value: str | None, default: time) -> time:
    if not value:
        return default
    try:
        h, m = value.split(":", 1)
        return time(int(h), int(m))
    except ValueError:
        return default


def in_quiet_hours(sub: SubscriberView, now: datetime) -> bool:
    """Quiet hours may span midnight (22:00-07:00)."""
    if not sub.quiet_start or not sub.quiet_end:
        return False
    local = now.astimezone(zone(sub.tz)).time()
    start, end = _hhmm(sub.quiet_start, time(0)), _hhmm(sub.quiet_end, time(0))
    if start <= end:
        return start <= local < end
    return local >= start or local < end


def due_window(sub: SubscriberView, now: datetime) -> str | None:
    """The digest window that is due for this subscriber now, or None.

    Daily and weekly windows are named after the local date / ISO week, so a daemon that was down
    at send time still sends the window once when it comes back, and never twice. A window whose
    send time came before the subscriber signed up is not theirs: no weekly digest on day one.
    """
    tz = zone(sub.tz)
    local = now.astimezone(tz)
    send_at = _hhmm(sub.send_time, time(7))
    if sub.frequency == "daily":
        scheduled = datetime.combine(local.date(), send_at, tz)
        key = f"daily:{local.date().isoformat()}"
    elif sub.frequency == "weekly":
        year, week, weekday = local.isocalendar()
        day = local.date() - timedelta(days=weekday - 1 - sub.weekly_day)
        scheduled = datetime.combine(day, send_at, tz)
        key = f"weekly:{year}-W{week:02d}"
    else:
        if in_quiet_hours(sub, now):
            return None
        return f"immediate:{now.strftime('%Y%m%dT%H%M%S')}"
    if now < scheduled or scheduled < sub.created_at:
        return None
    return key


def _wanted(sub: SubscriberView, m: StoredMatch) -> bool:
    pref = sub.tickers.get(m.ticker)
    if pref is None:
        return False
    cats, min_sev = pref
    return (not cats or m.category in cats) and int(m.severity) >= min_sev


@dataclass
class BuiltDigest:
    digest: Digest
    match_ids: list[int] = field(default_factory=list)


class DigestBuilder:
    """Turns a subscriber's pending matches into a models.Digest (pure apart from repo reads)."""

    def __init__(self, settings: Settings, repo: Repo, watchlist: Watchlist) -> None:
        self.settings = settings
        self.repo = repo
        self.watchlist = watchlist
        self._history: dict[str, list[Quote]] = {}
        # Per-run caches: thousands of subscribers share a few hundred stories and tickers, so
        # each price move, cluster and "news before" lookup is computed once per run, not per mail.
        self._moves: dict[tuple[str, datetime], float | None] = {}
        self._clusters: dict[str, list[tuple[str, str, str]]] = {}
        self._news: dict[tuple[str, datetime], list[tuple[str, str]]] = {}
        self._sections: dict[tuple[str, tuple[int, ...]], tuple[int, TickerSection]] = {}
        self._names = {t.symbol: t for t in watchlist.tickers}
        self._secret = settings.secret_key or repo.secret_key()

    def reset(self) -> None:
        """Forget what the previous run read (prices and stories move between runs)."""
        self._history.clear()
        self._moves.clear()
        self._clusters.clear()
        self._news.clear()
        self._sections.clear()

    def history(self, ticker: str) -> list[Quote]:
        if ticker not in self._history:
            self._history[ticker] = self.repo.quote_history(ticker, limit=60)
        return self._history[ticker]

    def links(self, sub: SubscriberView, now: datetime) -> tuple[str, str]:
        token = sign(str(sub.id), self._secret, purpose="unsubscribe", expires_at=now + UNSUBSCRIBE_TTL)
        prefs = sign(str(sub.id), self._secret, purpose="preferences", expires_at=now + UNSUBSCRIBE_TTL)
        base = self.settings.base_url.rstrip("/")
        return f"{base}/unsubscribe/{token}", f"{base}/preferences/{prefs}"

    def recent_url(self, sub: SubscriberView, now: datetime) -> str:
        """Where the "and N more" overflow links: every recent story on the subscriber's tickers."""
        token = sign(str(sub.id), self._secret, purpose="recent", expires_at=now + RECENT_TTL)
        return f"{self.settings.base_url.rstrip('/')}/recent/{token}"

    def pending(self, sub: SubscriberView, now: datetime, kind: str) -> list[StoredMatch]:
        since = max(sub.created_at - FIRST_DIGEST_LOOKBACK, now - LOOKBACK)
        floor = Severity.CRITICAL if kind == "alert" else Severity.LOW
        rows = self.repo.pending_matches(sub.id, list(sub.tickers), since=since, min_severity=int(floor))
        return [m for m in rows if _wanted(sub, m)]

    def pending_many(self, subs: Sequence[SubscriberView], now: datetime) -> dict[int, list[StoredMatch]]:
        """pending(sub, now, "digest") for a page of subscribers, in two queries for all of them."""
        since = {sub.id: max(sub.created_at - FIRST_DIGEST_LOOKBACK, now - LOOKBACK) for sub in subs}
        if not subs:
            return {}
        rows = self.repo.pending_matches_many(
            {sub.id: list(sub.tickers) for sub in subs}, since=min(since.values()), min_severity=int(Severity.LOW)
        )
        return {
            sub.id: [m for m in rows.get(sub.id, ()) if m.created_at >= since[sub.id] and _wanted(sub, m)]
            for sub in subs
        }

    def cluster_sources(self, cluster_ids: Sequence[str]) -> dict[str, list[tuple[str, str, str]]]:
        missing = [c for c in dict.fromkeys(cluster_ids) if c not in self._clusters]
        if missing:
            found = self.repo.cluster_sources(missing)
            for cid in missing:
                self._clusters[cid] = found.get(cid, [])
        return {cid: self._clusters[cid] for cid in cluster_ids}

    def move(self, ticker: str, published_at: datetime) -> float | None:
        key = (ticker, published_at)
        if key not in self._moves:
            self._moves[key] = move_since(self.history(ticker), published_at)
        return self._moves[key]

    def build(
        self, sub: SubscriberView, matches: Sequence[StoredMatch], *, kind: str, window_key: str, now: datetime
    ) -> BuiltDigest:
        by_ticker: dict[str, list[StoredMatch]] = defaultdict(list)
        for m in matches:
            by_ticker[m.ticker].append(m)
        sections: list[tuple[int, TickerSection]] = []
        for ticker, ms in by_ticker.items():
            # Thousands of subscribers get the same few hundred sections: built once per run.
            key = (ticker, tuple(m.match_id for m in ms))
            built = self._sections.get(key)
            if built is None:
                if len(self._sections) >= SECTION_CACHE:
                    self._sections.clear()
                built = self._sections[key] = self._section(ticker, ms)
            sections.append(built)
        sections.sort(key=lambda p: (-p[0], p[1].symbol))
        ordered = tuple(s for _, s in sections)
        unsubscribe, prefs = self.links(sub, now)
        digest = Digest(
            subscriber_email=sub.email,
            kind="alert" if kind == "alert" else "digest",
            window_key=window_key,
            generated_at=now,
            tz=sub.tz,
            sections=ordered,
            subject=subject_for(ordered, kind=kind),
            unsubscribe_url=unsubscribe,
            preferences_url=prefs,
            more_url=self.recent_url(sub, now),
        )
        return BuiltDigest(digest=digest, match_ids=[m.match_id for m in matches])

    def _section(self, ticker: str, ms: Sequence[StoredMatch]) -> tuple[int, TickerSection]:
        """One ticker's section and its top severity (sections are ordered by it)."""
        clusters = self.cluster_sources([m.cluster_id for m in ms])
        stories: dict[str, list[StoredMatch]] = defaultdict(list)
        for m in ms:
            stories[m.cluster_id].append(m)
        entries = [self._entry(group, clusters.get(cid, []), ticker) for cid, group in stories.items()]
        entries.sort(key=lambda e: (-int(e.severity), -e.published_at.timestamp()))
        cap = self.settings.max_items_per_ticker
        last, change = self._price_line(ticker)
        info = self._names.get(ticker)
        section = TickerSection(
            symbol=ticker,
            name=info.name if info else "",
            entries=tuple(entries[:cap]),
            overflow=max(0, len(entries) - cap),
            last_price=last,
            day_change_pct=change,
        )
        return max((int(e.severity) for e in entries), default=0), section

    def _entry(self, group: list[StoredMatch], reports: list[tuple[str, str, str]], ticker: str) -> DigestEntry:
        lead = min(group, key=lambda m: (m.published_at, m.match_id))
        categories = tuple(dict.fromkeys(m.category for m in sorted(group, key=lambda m: -int(m.severity))))
        rule_titles = tuple(dict.fromkeys(m.rule_title or m.rule_id for m in group))
        explanations = tuple(dict.fromkeys(e for m in group for e in m.explanations))
        others = tuple(dict.fromkeys(label for label, _url, _t in reports if label and label != lead.source_label))
        move = None
        title, summary = lead.title, lead.summary
        if lead.item_id is not None:
            move = self.move(ticker, lead.published_at)
        elif lead.price_metrics is not None:
            move = lead.price_metrics.get("change_pct")
            title, summary = self._price_story(ticker, lead)
        return DigestEntry(
            title=title,
            url=lead.url,
            source=lead.source_label,
            published_at=lead.published_at,
            summary=summary,
            categories=categories,
            severity=max(m.severity for m in group),
            explanations=explanations,
            rule_titles=rule_titles,
            also_reported_by=others,
            move_since_pct=move,
        )

    def _price_story(self, ticker: str, m: StoredMatch) -> tuple[str, str]:
        """A price move reads as a story: the move, and the news (if any) in the hours before it."""
        metrics = m.price_metrics or {}
        change, last = metrics.get("change_pct"), metrics.get("last")
        head = f"{ticker} {change:+.1f}% vs previous close" if change is not None else f"{ticker} price move"
        if last is not None:
            head += f" (last {last:,.2f})"
        title = f"{head}: {m.rule_title or m.rule_id}"
        news_key = (ticker, m.published_at)
        if news_key not in self._news:
            self._news[news_key] = self.repo.stories_between(
                ticker, m.published_at - NEWS_BEFORE_MOVE, m.published_at + timedelta(hours=1)
            )
        news = self._news[news_key]
        if news:
            listed = "; ".join(f"“{t}” ({src})" for t, src in news[:3])
            summary = f"News in the {NEWS_BEFORE_MOVE.seconds // 3600} hours before: {listed}"
        else:
            summary = f"No news on {ticker} in the {NEWS_BEFORE_MOVE.seconds // 3600} hours before this move."
        return title, summary

    def _price_line(self, ticker: str) -> tuple[float | None, float | None]:
        hist = self.history(ticker)
        if not hist:
            return None, None
        last = hist[-1].close
        if len(hist) >= 2 and hist[-2].close:
            return last, round((last / hist[-2].close - 1) * 100, 2)
        return last, None


def subject_for(sections: Sequence[TickerSection], *, kind: str) -> str:
    """Say what is inside: "KC: results, guidance · AAPL: 8-K"."""
    parts = []
    for s in sections[:4]:
        labels: list[str] = []
        for e in s.entries:
            for c in e.categories:
                label = CATEGORY_LABELS.get(c, c)
                if c == "filing":
                    forms = [x.text for x in e.explanations if x.field in ("form", "filing") and x.text]
                    label = forms[0] if forms else label
                if label not in labels:
                    labels.append(label)
        parts.append(f"{s.symbol}: {', '.join(labels[:3])}" if labels else s.symbol)
    if len(sections) > 4:
        parts.append(f"+{len(sections) - 4} more")
    if not parts:
        return "keynews: nothing new"
    prefix = "Alert · " if kind == "alert" else ""
    subject = prefix + " · ".join(parts)
    return subject if len(subject) <= 150 else subject[:149] + "…"


@dataclass
class CloseReport:
    queued: int = 0
    skipped: int = 0
    alerts: int = 0
    subscribers: list[str] = field(default_factory=list)


class DigestService:
    """Closes due windows: builds, renders and queues each subscriber's mail."""

    def __init__(self, settings: Settings, repo: Repo, watchlist: Watchlist, renderer: Renderer | None = None) -> None:
        self.settings = settings
        self.repo = repo
        self.builder = DigestBuilder(settings, repo, watchlist)
        self.renderer = renderer or Renderer(settings.templates_dir)
        self.parallel = renderer is None  # workers build their own Renderer: only the default one
        self.domain = sender_domain(settings.mail_from)

    def close_due(self, now: datetime, *, force_window: str | None = None) -> CloseReport:
        """Alerts first, then digests whose window is due (or every digest, under `force_window`).

        Subscribers are taken a page at a time with their pending matches read in bulk, and
        digest windows are written in batches (each window still all-or-nothing), so the run's
        memory does not grow with the number of subscribers and the database sees few round trips.
        """
        report = CloseReport()
        self.builder.reset()
        writer = _WindowWriter(self.repo, report)
        renderers = _Renderers(self, writer)
        try:
            self._close_pages(now, force_window, report, writer, renderers)
        except BaseException:
            renderers.close(collect=False)
            raise
        renderers.close()
        writer.flush()
        return report

    def _close_pages(
        self,
        now: datetime,
        force_window: str | None,
        report: CloseReport,
        writer: _WindowWriter,
        renderers: _Renderers,
    ) -> None:
        for page in self.repo.subscriber_pages(status="active", page=PAGE):
            jobs: list[_Job] = []
            keys = {sub.id: force_window or due_window(sub, now) for sub in page}
            closed = self.repo.windows_closed((sid, key) for sid, key in keys.items() if key is not None)
            pending = self.builder.pending_many(page, now)
            for sub in page:
                matches = pending[sub.id]
                if not in_quiet_hours(sub, now):
                    matches = self._close_alert(sub, now, report, matches)
                key = keys[sub.id]
                if key is None or (sub.id, key) in closed:
                    continue
                if not matches:
                    if sub.frequency == "immediate" and force_window is None:
                        continue
                    if sub.nothing_new != "note":
                        writer.add(
                            WindowClose(
                                subscriber_id=sub.id,
                                window_key=key,
                                kind="digest",
                                message_id="",
                                subject="",
                                raw=b"",
                                match_ids=(),
                                now=now,
                                status="skipped",
                            ),
                            None,
                        )
                        report.skipped += 1
                        continue
                jobs.append(self._job(sub, matches, "digest", key, now))
            renderers.submit(jobs)

    def _close_alert(
        self, sub: SubscriberView, now: datetime, report: CloseReport, pending: Sequence[StoredMatch] | None = None
    ) -> list[StoredMatch]:
        """Queue the critical matches as an alert now; returns what is left pending for the digest."""
        if pending is None:
            critical = self.builder.pending(sub, now, "alert")
        else:
            critical = [m for m in pending if int(m.severity) >= int(Severity.CRITICAL)]
        if critical:
            key = f"alert:{min(m.match_id for m in critical)}"
            if self._queue(sub, critical, kind="alert", window_key=key, now=now):
                report.alerts += 1
                if pending is not None:
                    sent = {m.match_id for m in critical}
                    return [m for m in pending if m.match_id not in sent]
            elif pending is not None:
                return self.builder.pending(sub, now, "digest")  # someone else closed it: ask the database
        return list(pending) if pending is not None else self.builder.pending(sub, now, "digest")

    def render(self, sub: SubscriberView, matches: Sequence[StoredMatch], *, kind: str, window_key: str, now: datetime):  # type: ignore[no-untyped-def]
        built = self.builder.build(sub, matches, kind=kind, window_key=window_key, now=now)
        rendered = (
            self.renderer.render_alert(built.digest, now=now)
            if kind == "alert"
            else self.renderer.render_digest(built.digest, now=now)
        )
        return built, rendered

    def _prepare(
        self, sub: SubscriberView, matches: Sequence[StoredMatch], *, kind: str, window_key: str, now: datetime
    ) -> WindowClose:
        return _finish(self.renderer, self.settings, self.domain, self._job(sub, matches, kind, window_key, now))

    def _job(
        self, sub: SubscriberView, matches: Sequence[StoredMatch], kind: str, window_key: str, now: datetime
    ) -> _Job:
        built = self.builder.build(sub, matches, kind=kind, window_key=window_key, now=now)
        return _Job(sub.id, sub.email, built, kind, window_key, now)

    def _queue(
        self, sub: SubscriberView, matches: Sequence[StoredMatch], *, kind: str, window_key: str, now: datetime
    ) -> bool:
        return self.repo.close_one(self._prepare(sub, matches, kind=kind, window_key=window_key, now=now)) is not None


@dataclass(frozen=True, slots=True)
class _Job:
    """A built digest waiting to be rendered into mail: all a worker process needs, picklable."""

    subscriber_id: int
    email: str
    built: BuiltDigest
    kind: str
    window_key: str
    now: datetime


def _finish(renderer: Renderer, settings: Settings, domain: str, job: _Job) -> WindowClose:
    """Render and MIME-build one digest: the CPU-heavy, database-free half of closing a window."""
    digest = job.built.digest
    rendered = (
        renderer.render_alert(digest, now=job.now)
        if job.kind == "alert"
        else renderer.render_digest(digest, now=job.now)
    )
    message_id = make_message_id(domain, f"{job.subscriber_id}:{job.window_key}")
    raw = build_message_bytes(
        rendered,
        to=job.email,
        from_=settings.mail_from,
        message_id=message_id,
        date=job.now,
        list_id=settings.list_id,
        unsubscribe_url=digest.unsubscribe_url,
        unsubscribe_mailto=settings.unsubscribe_mailto,
    )
    return WindowClose(
        subscriber_id=job.subscriber_id,
        window_key=job.window_key,
        kind=job.kind,
        message_id=message_id,
        subject=rendered.subject,
        raw=raw,
        match_ids=tuple(job.built.match_ids),
        now=job.now,
    )


def worker_main() -> None:
    """A render worker: (settings, domain), then lists of _Job in, lists of WindowClose out, until EOF.

    Only trusted frames from the parent daemon process ever reach pickle here (a private pipe).
    """
    stdin, stdout = child_pipes()
    try:
        settings, domain = recv_frame(stdin)
        renderer = Renderer(settings.templates_dir)
        while True:
            jobs = recv_frame(stdin)
            try:
                reply: object = [_finish(renderer, settings, domain, job) for job in jobs]
            except Exception as exc:  # reported to the parent, which raises
                reply = f"{type(exc).__name__}: {exc}"
            send_frame(stdout, reply)
    except EOFError:
        return


class _Worker(Child):
    def __init__(self, settings: Settings, domain: str) -> None:
        super().__init__("daemon.mail.digest", "worker_main")
        self.send((settings, domain))

    def receive(self) -> list[WindowClose]:
        reply = super().receive()
        if isinstance(reply, str):
            raise RuntimeError(f"render worker failed: {reply}")
        return cast(list[WindowClose], reply)


class _Renderers:
    """Where _finish runs: here, or (for big runs on a multi-core machine) in worker processes.

    Workers only turn built digests into bytes; every database read and write stays in this
    process, so the outbox contract is the same either way. A page is rendered by the workers
    while this process builds the next one, with one page in flight: memory stays flat however
    many subscribers there are. Workers are plain `python -c` children on pipes, not
    multiprocessing, so a script that embeds DigestService needs no `__main__` guard. Small runs
    (tests, a few subscribers) and a service given its own Renderer stay in-process: starting
    workers costs about a second. So do runs on machines with fewer than SPARE_CORES + 1 cores:
    rendering is ~1 ms a digest now that stories are rendered once, and on 2 cores the closer,
    the sender process and the SMTP server already keep both busy; measured there, workers cost
    more (pickling, contention) than they gave: 243 vs 326 msgs/s for 10,000 digests.
    """

    def __init__(self, service: DigestService, writer: _WindowWriter) -> None:
        self.service = service
        self.writer = writer
        self.count = min((os.cpu_count() or 1) - SPARE_CORES, POOL_MAX)
        self.allowed = service.parallel and self.count >= 1
        self._workers: list[_Worker] = []
        self._inflight: list[tuple[_Worker, list[str]]] = []

    def submit(self, jobs: list[_Job]) -> None:
        if not jobs:
            return
        if not self._workers and self.allowed and len(jobs) >= POOL_MIN:
            self._workers = [_Worker(self.service.settings, self.service.domain) for _ in range(self.count)]
        if not self._workers:
            svc = self.service
            for job in jobs:
                self.writer.add(_finish(svc.renderer, svc.settings, svc.domain, job), job.email)
            return
        self._collect()  # the previous page: at most one frame per worker is ever outstanding
        share = -(-len(jobs) // len(self._workers))
        for i, worker in enumerate(self._workers):
            part = jobs[i * share : (i + 1) * share]
            if part:
                worker.send(part)
                self._inflight.append((worker, [j.email for j in part]))

    def _collect(self) -> None:
        inflight, self._inflight = self._inflight, []
        for worker, emails in inflight:
            for email, window in zip(emails, worker.receive(), strict=True):
                self.writer.add(window, email)

    def close(self, *, collect: bool = True) -> None:
        try:
            if collect:
                self._collect()
        finally:
            for worker in self._workers:
                worker.stop()
            self._workers = []
            self._inflight = []


class _WindowWriter:
    """Digest windows closed in batches: one transaction per WRITE_BATCH windows or WRITE_BYTES."""

    def __init__(self, repo: Repo, report: CloseReport) -> None:
        self.repo = repo
        self.report = report
        self._pending: list[tuple[WindowClose, str | None]] = []
        self._bytes = 0

    def add(self, window: WindowClose, email: str | None) -> None:
        """`email` is counted as queued once the window is written; None for skipped windows."""
        self._pending.append((window, email))
        self._bytes += len(window.raw)
        if len(self._pending) >= WRITE_BATCH or self._bytes >= WRITE_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending, self._bytes = self._pending, [], 0
        ids = self.repo.close_windows([w for w, _e in batch])
        for (_w, email), outbox_id in zip(batch, ids, strict=True):
            if email is not None and outbox_id is not None:
                self.report.queued += 1
                self.report.subscribers.append(email)


PreviewFn = Callable[[SubscriberView], str]
