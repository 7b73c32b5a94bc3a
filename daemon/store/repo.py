"""Typed queries. The rest of keynews talks to the database only through this module.

Every write that must not half-happen (an item with its tickers and matches, a digest window with
its outbox row and match links) is one transaction here, so callers cannot get it wrong.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, delete, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from daemon.models import Explanation, FetchResult, Item, Match, PriceEvent, Quote, Severity, SourceSpec
from daemon.store.tables import (
    ItemRow,
    ItemTicker,
    MatchRow,
    Meta,
    Outbox,
    OutboxMatch,
    PriceEventRow,
    QuoteRow,
    Source,
    Subscriber,
    Subscription,
)


def source_key(spec: SourceSpec) -> str:
    return f"{spec.id}:{spec.ticker}" if spec.ticker else spec.id


@dataclass(frozen=True, slots=True)
class StoredMatch:
    """A match joined with its item, as digests need it."""

    match_id: int
    rule_id: str
    rule_title: str
    ticker: str
    category: str
    severity: Severity
    explanations: tuple[Explanation, ...]
    created_at: datetime
    item_id: int | None
    cluster_id: str
    title: str
    url: str
    source_label: str
    summary: str
    published_at: datetime
    price_metrics: dict[str, float] | None = None


@dataclass(frozen=True, slots=True)
class SubscriberView:
    id: int
    email: str
    status: str
    frequency: str
    tz: str
    send_time: str
    weekly_day: int
    quiet_start: str | None
    quiet_end: str | None
    nothing_new: str
    created_at: datetime
    tickers: dict[str, tuple[frozenset[str], int]]  # ticker -> (categories or empty = all, min severity)


def _explanations_json(explanations: Iterable[Explanation]) -> str:
    return json.dumps([e.as_dict() for e in explanations], ensure_ascii=False)


def _explanations_from(raw: str) -> tuple[Explanation, ...]:
    out = []
    for d in json.loads(raw or "[]"):
        out.append(
            Explanation(
                rule_id=str(d.get("rule", "")),
                field=str(d.get("field", "")),
                text=str(d.get("text", "")),
                start=int(d.get("start", -1)),
                end=int(d.get("end", -1)),
            )
        )
    return tuple(out)


# The columns a digest needs, read as plain rows: ORM entities cost ~20 us each to build, and a
# digest run reads matches for every page of subscribers.
_MATCH_COLUMNS = (
    MatchRow.id,
    MatchRow.rule_id,
    MatchRow.rule_title,
    MatchRow.ticker,
    MatchRow.category,
    MatchRow.severity,
    MatchRow.explanation,
    MatchRow.created_at,
    MatchRow.item_id,
    MatchRow.price_event_id,
    ItemRow.id,
    ItemRow.cluster_id,
    ItemRow.title,
    ItemRow.url,
    ItemRow.source_label,
    ItemRow.source_id,
    ItemRow.summary,
    ItemRow.published_at,
    PriceEventRow.metrics,
)


_SUBSCRIBER_COLUMNS = (
    Subscriber.id,
    Subscriber.email,
    Subscriber.status,
    Subscriber.frequency,
    Subscriber.tz,
    Subscriber.send_time,
    Subscriber.weekly_day,
    Subscriber.quiet_start,
    Subscriber.quiet_end,
    Subscriber.nothing_new,
    Subscriber.created_at,
)


def _pending_select() -> Any:
    return (
        select(*_MATCH_COLUMNS)
        .join(ItemRow, ItemRow.id == MatchRow.item_id, isouter=True)
        .join(PriceEventRow, PriceEventRow.id == MatchRow.price_event_id, isouter=True)
    )


def _stored(row: Any) -> StoredMatch:
    (mid, rule_id, rule_title, ticker, category, severity, explanation, created_at, item_id, pe_id) = row[:10]
    (it_id, cluster_id, title, url, source_label, source_id, summary, published_at, metrics) = row[10:]
    item = it_id is not None
    return StoredMatch(
        match_id=mid,
        rule_id=rule_id,
        rule_title=rule_title,
        ticker=ticker,
        category=category,
        severity=Severity(severity),
        explanations=_explanations_from(explanation),
        created_at=created_at,
        item_id=item_id,
        cluster_id=cluster_id if item else f"price:{pe_id}",
        title=title if item else rule_title,
        url=url if item else "",
        source_label=(source_label or source_id) if item else "prices",
        summary=summary if item else "",
        published_at=published_at if item else created_at,
        price_metrics=json.loads(metrics) if metrics is not None else None,
    )


@dataclass(frozen=True, slots=True)
class WindowClose:
    """One digest window to close: the arguments of Repo.close_window, for close_windows."""

    subscriber_id: int
    window_key: str
    kind: str
    message_id: str
    subject: str
    raw: bytes
    match_ids: tuple[int, ...]
    now: datetime
    status: str = "queued"


def _match_row(
    m: Match, *, now: datetime, item_id: int | None = None, price_event_id: int | None = None, ticker: str | None = None
) -> MatchRow:
    return MatchRow(
        item_id=item_id,
        price_event_id=price_event_id,
        rule_id=m.rule_id,
        rule_title=m.rule_title,
        ticker=m.ticker if ticker is None else ticker,
        category=m.category,
        severity=int(m.severity),
        explanation=_explanations_json(m.explanations),
        created_at=now,
    )


class Repo:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"

    def session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # ---- meta -------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        with self.session() as s:
            row = s.get(Meta, key)
            return row.value if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.session() as s:
            row = s.get(Meta, key)
            if row is None:
                s.add(Meta(key=key, value=value))
            else:
                row.value = value
            s.commit()

    def secret_key(self) -> str:
        """The signing secret: generated once and kept, so links in old mail stay valid."""
        existing = self.get_meta("secret_key")
        if existing:
            return existing
        candidate = secrets.token_urlsafe(32)
        try:
            with self.session() as s:
                s.add(Meta(key="secret_key", value=candidate))
                s.commit()
        except IntegrityError:
            pass
        return self.get_meta("secret_key") or candidate

    # ---- sources ----------------------------------------------------------------------------
    def sync_sources(self, specs: Sequence[SourceSpec], now: datetime) -> None:
        """Make the source table follow sources.yaml; keep poll state of unchanged URLs."""
        with self.session() as s:
            existing = {row.id: row for row in s.execute(select(Source)).scalars()}
            for spec in specs:
                key = source_key(spec)
                row = existing.get(key)
                if row is None:
                    s.add(Source(id=key, spec_id=spec.id, url=spec.url, ticker=spec.ticker, next_due_at=now))
                elif row.url != spec.url:
                    row.url = spec.url
                    row.etag = None
                    row.last_modified = None
                    row.next_due_at = now
            s.commit()

    def get_source(self, key: str) -> Source | None:
        with self.session() as s:
            return s.get(Source, key)

    def list_sources(self) -> list[Source]:
        with self.session() as s:
            return list(s.execute(select(Source).order_by(Source.id)).scalars())

    def due_sources(self, now: datetime, keys: Iterable[str] | None = None) -> list[Source]:
        stmt = select(Source).where(Source.next_due_at <= now)
        if keys is not None:
            stmt = stmt.where(Source.id.in_(list(keys)))
        with self.session() as s:
            return list(s.execute(stmt.order_by(Source.next_due_at)).scalars())

    def record_poll(
        self,
        key: str,
        result: FetchResult,
        *,
        now: datetime,
        next_due_at: datetime,
        error: str | None,
        new_items: int,
    ) -> None:
        with self.session() as s:
            row = s.get(Source, key)
            if row is None:
                return
            row.last_polled_at = now
            row.last_status = result.status
            row.next_due_at = next_due_at
            if error:
                row.failures += 1
                row.last_error = error[:2000]
            else:
                row.failures = 0
                row.last_error = None
                row.last_ok_at = now
                if result.status == 304:
                    row.etag = result.etag or row.etag
                    row.last_modified = result.last_modified or row.last_modified
                else:
                    row.etag = result.etag
                    row.last_modified = result.last_modified
            row.items_total += new_items
            s.commit()

    # ---- items ------------------------------------------------------------------------------
    def known_uids(self, uids: Sequence[str]) -> set[str]:
        if not uids:
            return set()
        with self.session() as s:
            rows = s.execute(select(ItemRow.uid).where(ItemRow.uid.in_(list(uids))))
            return set(rows.scalars())

    def recent_stories(self, since: datetime) -> list[tuple[str, str, tuple[str, ...], datetime]]:
        """(cluster id, title, tickers, published) of recent items, for near-duplicate folding."""
        with self.session() as s:
            items = s.execute(
                select(ItemRow.id, ItemRow.cluster_id, ItemRow.title, ItemRow.published_at).where(
                    ItemRow.fetched_at >= since
                )
            ).all()
            ids = [r[0] for r in items]
            tickers: dict[int, list[str]] = {}
            for chunk_start in range(0, len(ids), 500):
                chunk = ids[chunk_start : chunk_start + 500]
                for item_id, ticker in s.execute(
                    select(ItemTicker.item_id, ItemTicker.ticker).where(ItemTicker.item_id.in_(chunk))
                ).all():
                    tickers.setdefault(item_id, []).append(ticker)
        return [(r[1], r[2], tuple(sorted(tickers.get(r[0], []))), r[3]) for r in items]

    def store_item(self, item: Item, *, cluster_id: str, matches: Sequence[Match], now: datetime) -> int | None:
        """Insert an item with its tickers and matches in one transaction; None if already stored."""
        with self.session() as s:
            row = ItemRow(
                uid=item.uid,
                source_id=item.source_id,
                source_label=item.source_label,
                url=item.url,
                guid=item.guid,
                title=item.title,
                summary=item.summary,
                published_at=item.published_at,
                fetched_at=now,
                cluster_id=cluster_id,
                form=item.form,
                filing_items=",".join(item.filing_items),
            )
            s.add(row)
            try:
                s.flush()
            except IntegrityError:
                s.rollback()
                return None
            assert row.id is not None
            for ticker in item.tickers:
                s.add(ItemTicker(item_id=row.id, ticker=ticker))
            seen: set[tuple[str, str]] = set()
            for m in matches:
                if (m.rule_id, m.ticker) in seen:
                    continue
                seen.add((m.rule_id, m.ticker))
                s.add(_match_row(m, now=now, item_id=row.id))
            s.commit()
            return row.id

    def items_since(self, since: datetime) -> list[Item]:
        with self.session() as s:
            rows = list(s.execute(select(ItemRow).where(ItemRow.fetched_at >= since)).scalars())
            tick: dict[int, list[str]] = {}
            for item_id, ticker in s.execute(select(ItemTicker.item_id, ItemTicker.ticker)).all():
                tick.setdefault(item_id, []).append(ticker)
        return [
            Item(
                uid=r.uid,
                source_id=r.source_id,
                url=r.url,
                title=r.title,
                summary=r.summary,
                published_at=r.published_at,
                guid=r.guid,
                form=r.form,
                filing_items=tuple(x for x in r.filing_items.split(",") if x),
                tickers=tuple(sorted(tick.get(r.id or 0, []))),
                source_label=r.source_label,
            )
            for r in rows
        ]

    def count(self, table: type, *, status: str | None = None) -> int:
        """Rows in `table`; with `status`, only those in it (tables with a status column)."""
        stmt = select(func.count()).select_from(table)
        if status is not None:
            stmt = stmt.where(table.status == status)
        with self.session() as s:
            return int(s.execute(stmt).one()[0])

    # ---- prices -----------------------------------------------------------------------------
    def store_quotes(self, quotes: Sequence[Quote]) -> int:
        """Insert or refresh bars; returns how many were new."""
        new = 0
        with self.session() as s:
            for q in quotes:
                row = s.execute(
                    select(QuoteRow).where(QuoteRow.ticker == q.ticker, QuoteRow.at == q.at, QuoteRow.daily == q.daily)
                ).scalar_one_or_none()
                if row is None:
                    s.add(
                        QuoteRow(
                            ticker=q.ticker,
                            at=q.at,
                            daily=q.daily,
                            open=q.open,
                            high=q.high,
                            low=q.low,
                            close=q.close,
                            volume=q.volume,
                        )
                    )
                    new += 1
                else:
                    row.open, row.high, row.low, row.close, row.volume = (
                        q.open,
                        q.high,
                        q.low,
                        q.close,
                        q.volume,
                    )
            s.commit()
        return new

    def quote_history(self, ticker: str, *, limit: int = 300) -> list[Quote]:
        """Daily bars, oldest first."""
        with self.session() as s:
            rows = list(
                s.execute(
                    select(QuoteRow)
                    .where(QuoteRow.ticker == ticker, QuoteRow.daily.is_(True))
                    .order_by(QuoteRow.at.desc())
                    .limit(limit)
                ).scalars()
            )
        rows.reverse()
        return [
            Quote(ticker=r.ticker, at=r.at, close=r.close, open=r.open, high=r.high, low=r.low, volume=r.volume)
            for r in rows
        ]

    def store_price_event(self, event: PriceEvent, matches: Sequence[Match], now: datetime) -> int:
        with self.session() as s:
            row = PriceEventRow(
                ticker=event.ticker, at=event.at, window=event.window, metrics=json.dumps(dict(event.metrics))
            )
            s.add(row)
            s.flush()
            assert row.id is not None
            for m in matches:
                s.add(_match_row(m, now=now, price_event_id=row.id, ticker=m.ticker or event.ticker))
            s.commit()
            return row.id

    # ---- subscribers ------------------------------------------------------------------------
    def add_subscriber(
        self,
        email: str,
        tickers: Sequence[str],
        *,
        now: datetime,
        frequency: str = "daily",
        tz: str = "UTC",
        send_time: str = "07:00",
        status: str = "active",
        categories: Sequence[str] = (),
        min_severity: int = 1,
        quiet_start: str | None = None,
        quiet_end: str | None = None,
        nothing_new: str = "skip",
        weekly_day: int = 0,
    ) -> int:
        """Create or update a subscriber; its ticker list is replaced by `tickers`."""
        email = email.strip().lower()
        with self.session() as s:
            sub = s.execute(select(Subscriber).where(Subscriber.email == email)).scalar_one_or_none()
            if sub is None:
                sub = Subscriber(email=email, created_at=now)
                s.add(sub)
            sub.frequency = frequency
            sub.tz = tz
            sub.send_time = send_time
            sub.status = status
            sub.quiet_start = quiet_start
            sub.quiet_end = quiet_end
            sub.nothing_new = nothing_new
            sub.weekly_day = weekly_day
            if status == "active":
                sub.hard_failures = 0
                sub.confirmed_at = sub.confirmed_at or now
            s.flush()
            assert sub.id is not None
            s.execute(delete(Subscription).where(Subscription.subscriber_id == sub.id))
            for t in dict.fromkeys(x.strip().upper() for x in tickers if x.strip()):
                s.add(
                    Subscription(
                        subscriber_id=sub.id,
                        ticker=t,
                        categories=",".join(categories),
                        min_severity=min_severity,
                    )
                )
            s.commit()
            return sub.id

    def remove_subscriber(self, email: str) -> bool:
        with self.session() as s:
            sub = s.execute(select(Subscriber).where(Subscriber.email == email.strip().lower())).scalar_one_or_none()
            if sub is None:
                return False
            s.delete(sub)
            s.commit()
            return True

    def confirm_subscriber(self, subscriber_id: int, now: datetime) -> bool:
        """pending -> active (double opt-in). False when it was not pending (confirmed already, or gone)."""
        with self.session() as s:
            res = s.execute(
                update(Subscriber)
                .where(Subscriber.id == subscriber_id, Subscriber.status == "pending")
                .values(status="active", confirmed_at=now, hard_failures=0)
            )
            s.commit()
            return bool(res.rowcount)

    def set_subscriber_status(self, subscriber_id: int, status: str) -> None:
        with self.session() as s:
            s.execute(update(Subscriber).where(Subscriber.id == subscriber_id).values(status=status))
            s.commit()

    def subscribers(self, *, status: str | None = None, email: str | None = None) -> list[SubscriberView]:
        stmt = select(*_SUBSCRIBER_COLUMNS).order_by(Subscriber.email)
        if status:
            stmt = stmt.where(Subscriber.status == status)
        if email:
            stmt = stmt.where(Subscriber.email == email.strip().lower())
        with self.session() as s:
            return self._views(s, s.execute(stmt).all())

    def subscriber_pages(self, *, status: str | None = None, page: int = 500) -> Iterator[list[SubscriberView]]:
        """Subscribers in email order, `page` at a time, so a run over all of them holds one page."""
        after: str | None = None
        while True:
            stmt = select(*_SUBSCRIBER_COLUMNS).order_by(Subscriber.email).limit(page)
            if status:
                stmt = stmt.where(Subscriber.status == status)
            if after is not None:
                stmt = stmt.where(Subscriber.email > after)
            with self.session() as s:
                views = self._views(s, s.execute(stmt).all())
            if not views:
                return
            yield views
            after = views[-1].email

    def contacts(self, subscriber_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
        """subscriber id -> (email, status), for the ids asked only."""
        ids = list(dict.fromkeys(subscriber_ids))
        out: dict[int, tuple[str, str]] = {}
        with self.session() as s:
            for start in range(0, len(ids), 500):
                rows = s.execute(
                    select(Subscriber.id, Subscriber.email, Subscriber.status).where(
                        Subscriber.id.in_(ids[start : start + 500])
                    )
                ).all()
                for sid, email, status in rows:
                    out[int(sid)] = (str(email), str(status))
        return out

    @staticmethod
    def _views(s: Session, subs: Sequence[Any]) -> list[SubscriberView]:
        """SubscriberViews from _SUBSCRIBER_COLUMNS rows, with their subscriptions read in bulk."""
        prefs: dict[int, dict[str, tuple[frozenset[str], int]]] = {sub[0]: {} for sub in subs if sub[0]}
        ids = list(prefs)
        cols = (Subscription.subscriber_id, Subscription.ticker, Subscription.categories, Subscription.min_severity)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows: Sequence[Any] = s.execute(select(*cols).where(Subscription.subscriber_id.in_(chunk))).all()
            for sid, ticker, categories, min_severity in rows:
                cats = frozenset(c for c in categories.split(",") if c)
                prefs[sid][ticker] = (cats, min_severity)
        return [
            SubscriberView(
                id=sid or 0,
                email=email,
                status=status,
                frequency=frequency,
                tz=tz,
                send_time=send_time,
                weekly_day=weekly_day,
                quiet_start=quiet_start,
                quiet_end=quiet_end,
                nothing_new=nothing_new,
                created_at=created_at,
                tickers=prefs.get(sid or 0, {}),
            )
            for (
                sid,
                email,
                status,
                frequency,
                tz,
                send_time,
                weekly_day,
                quiet_start,
                quiet_end,
                nothing_new,
                created_at,
            ) in subs
        ]

    def record_bounce(self, subscriber_id: int, error: str, *, limit: int) -> bool:
        """Count a permanent failure; returns True when the address is now marked bounced."""
        with self.session() as s:
            sub = s.get(Subscriber, subscriber_id)
            if sub is None:
                return False
            sub.hard_failures += 1
            sub.last_error = error[:2000]
            if sub.hard_failures >= limit:
                sub.status = "bounced"
            s.commit()
            return sub.status == "bounced"

    # ---- digest selection --------------------------------------------------------------------
    def pending_matches(
        self, subscriber_id: int, tickers: Sequence[str], *, since: datetime, min_severity: int = 1
    ) -> list[StoredMatch]:
        """Matches on these tickers not yet in any mail to this subscriber (an alert or a digest).

        A critical story that went out as an alert is not repeated in the next digest.
        """
        if not tickers:
            return []
        sent = exists().where(
            and_(
                OutboxMatch.match_id == MatchRow.id,
                OutboxMatch.subscriber_id == subscriber_id,
            )
        )
        stmt = (
            _pending_select()
            .where(
                MatchRow.ticker.in_(list(tickers)),
                MatchRow.created_at >= since,
                MatchRow.severity >= min_severity,
                ~sent,
            )
            .order_by(MatchRow.id)
        )
        with self.session() as s:
            return [_stored(row) for row in s.execute(stmt).all()]

    def pending_matches_many(
        self, wanted: Mapping[int, Sequence[str]], *, since: datetime, min_severity: int = 1
    ) -> dict[int, list[StoredMatch]]:
        """pending_matches for many subscribers (id -> tickers) in two queries instead of one each.

        The matches are read once and shared between subscribers; each list is in match id order.
        `since` applies to all: callers with a later per-subscriber bound filter on created_at.
        """
        tickers = sorted({t for ts in wanted.values() for t in ts})
        out: dict[int, list[StoredMatch]] = {sid: [] for sid in wanted}
        if not tickers:
            return out
        by_ticker: dict[str, list[StoredMatch]] = {}
        with self.session() as s:
            for start in range(0, len(tickers), 500):
                stmt = _pending_select().where(
                    MatchRow.ticker.in_(tickers[start : start + 500]),
                    MatchRow.created_at >= since,
                    MatchRow.severity >= min_severity,
                )
                for row in s.execute(stmt).all():
                    sm = _stored(row)
                    by_ticker.setdefault(sm.ticker, []).append(sm)
            if not by_ticker:
                return out
            lowest = min(m.match_id for ms in by_ticker.values() for m in ms)
            sent: set[tuple[int, int]] = set()
            ids = list(wanted)
            for start in range(0, len(ids), 500):
                rows = s.execute(
                    select(OutboxMatch.subscriber_id, OutboxMatch.match_id).where(
                        OutboxMatch.subscriber_id.in_(ids[start : start + 500]), OutboxMatch.match_id >= lowest
                    )
                ).all()
                sent.update((int(sid), int(mid)) for sid, mid in rows)
        for sid, ts in wanted.items():
            mine = [m for t in dict.fromkeys(ts) for m in by_ticker.get(t, ()) if (sid, m.match_id) not in sent]
            mine.sort(key=lambda m: m.match_id)
            out[sid] = mine
        return out

    def cluster_sources(self, cluster_ids: Sequence[str]) -> dict[str, list[tuple[str, str, str]]]:
        """cluster id -> [(source label, url, title)] of every item telling that story."""
        out: dict[str, list[tuple[str, str, str]]] = {}
        ids = [c for c in dict.fromkeys(cluster_ids) if not c.startswith("price:")]
        with self.session() as s:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                rows = s.execute(
                    select(
                        ItemRow.cluster_id,
                        ItemRow.source_label,
                        ItemRow.source_id,
                        ItemRow.url,
                        ItemRow.title,
                    )
                    .where(ItemRow.cluster_id.in_(chunk))
                    .order_by(ItemRow.id)
                ).all()
                for cid, label, sid, url, title in rows:
                    out.setdefault(cid, []).append((label or sid, url, title))
        return out

    def recent_stories_for(
        self, tickers: Sequence[str], since: datetime, *, limit: int = 300
    ) -> list[tuple[str, str, str, str, str, int, datetime]]:
        """(ticker, title, url, source, category, severity, published) of matched stories, newest first."""
        if not tickers:
            return []
        with self.session() as s:
            rows = s.execute(
                select(
                    MatchRow.ticker,
                    ItemRow.title,
                    ItemRow.url,
                    ItemRow.source_label,
                    MatchRow.category,
                    MatchRow.severity,
                    ItemRow.published_at,
                    ItemRow.cluster_id,
                )
                .join(ItemRow, ItemRow.id == MatchRow.item_id)
                .where(MatchRow.ticker.in_(list(tickers)), MatchRow.created_at >= since)
                .order_by(ItemRow.published_at.desc())
                .limit(limit * 3)
            ).all()
        seen: set[tuple[str, str]] = set()
        out = []
        for ticker, title, url, label, category, severity, published, cluster in rows:
            if (ticker, cluster) in seen:
                continue
            seen.add((ticker, cluster))
            when: datetime = published  # type: ignore[assignment]
            out.append((str(ticker), str(title), str(url), str(label), str(category), int(severity), when))
        return out[:limit]

    def stories_between(self, ticker: str, start: datetime, end: datetime, *, limit: int = 5) -> list[tuple[str, str]]:
        """(title, source) of the latest stories on a ticker in a time span, newest first."""
        with self.session() as s:
            rows = s.execute(
                select(ItemRow.title, ItemRow.source_label, ItemRow.source_id)
                .join(ItemTicker, ItemTicker.item_id == ItemRow.id)
                .where(ItemTicker.ticker == ticker, ItemRow.published_at >= start, ItemRow.published_at <= end)
                .order_by(ItemRow.published_at.desc())
                .limit(limit)
            ).all()
        return [(str(title), str(label or sid)) for title, label, sid in rows]

    def has_window(self, subscriber_id: int, window_key: str) -> bool:
        with self.session() as s:
            row = s.execute(
                select(Outbox.id).where(Outbox.subscriber_id == subscriber_id, Outbox.window_key == window_key)
            ).first()
            return row is not None

    def windows_closed(self, wanted: Iterable[tuple[int, str]]) -> set[tuple[int, str]]:
        """Which of these (subscriber id, window key) pairs are closed already: has_window in bulk."""
        pairs = set(wanted)
        subs = sorted({sid for sid, _k in pairs})
        keys = sorted({k for _s, k in pairs})
        found: set[tuple[int, str]] = set()
        if not pairs:
            return found
        with self.session() as s:
            for start in range(0, len(subs), 500):
                rows = s.execute(
                    select(Outbox.subscriber_id, Outbox.window_key).where(
                        Outbox.subscriber_id.in_(subs[start : start + 500]), Outbox.window_key.in_(keys)
                    )
                ).all()
                found.update((int(sid), str(key)) for sid, key in rows)
        return found & pairs

    def windows_of(self, subscriber_id: int) -> set[str]:
        with self.session() as s:
            return set(s.execute(select(Outbox.window_key).where(Outbox.subscriber_id == subscriber_id)).scalars())

    # ---- outbox -----------------------------------------------------------------------------
    def close_window(
        self,
        *,
        subscriber_id: int,
        window_key: str,
        kind: str,
        message_id: str,
        subject: str,
        raw: bytes,
        match_ids: Sequence[int],
        now: datetime,
        status: str = "queued",
    ) -> int | None:
        """Insert the outbox row and its match links in one transaction.

        Returns None when the window was already closed (by another process, or an earlier run):
        the unique (subscriber, window) constraint is what makes a digest impossible to double.
        """
        link_kind = "alert" if kind == "alert" else "digest"
        with self.session() as s:
            row = Outbox(
                subscriber_id=subscriber_id,
                window_key=window_key,
                kind=kind,
                message_id=message_id,
                subject=subject,
                status=status,
                next_attempt_at=now,
                created_at=now,
                raw=raw,
            )
            s.add(row)
            try:
                s.flush()
            except IntegrityError:
                s.rollback()
                return None
            assert row.id is not None
            for mid in dict.fromkeys(match_ids):
                s.add(OutboxMatch(outbox_id=row.id, match_id=mid, subscriber_id=subscriber_id, kind=link_kind))
            try:
                s.commit()
            except IntegrityError:
                s.rollback()
                return None
            return row.id

    def close_windows(self, windows: Sequence[WindowClose]) -> list[int | None]:
        """close_window for many windows in one transaction: outbox id per window, None if already closed.

        Each window is still all-or-nothing (its row and its links commit together). When any of
        them is found closed meanwhile (another process won the race), the batch is rolled back
        and every window goes through close_window alone, so one conflict loses nothing else.
        """
        if not windows:
            return []
        outbox, links = Outbox.__table__, OutboxMatch.__table__
        keys = {(w.subscriber_id, w.window_key) for w in windows}
        try:
            with self.engine.begin() as conn:
                taken: set[tuple[int, str]] = set()
                subs = sorted({w.subscriber_id for w in windows})
                for start in range(0, len(subs), 500):
                    rows = conn.execute(
                        select(Outbox.subscriber_id, Outbox.window_key).where(
                            Outbox.subscriber_id.in_(subs[start : start + 500]),
                            Outbox.window_key.in_(sorted({k for _s, k in keys})),
                        )
                    ).all()
                    taken.update((int(sid), str(key)) for sid, key in rows)
                fresh: list[WindowClose] = []
                for w in windows:
                    if (w.subscriber_id, w.window_key) not in taken:
                        taken.add((w.subscriber_id, w.window_key))
                        fresh.append(w)
                # One executemany for the batch, then the new ids in one read: INSERT ... RETURNING
                # in parameter order is done a row at a time on SQLite (no sentinel for rowids).
                if fresh:
                    conn.execute(
                        insert(outbox),
                        [
                            {
                                "subscriber_id": w.subscriber_id,
                                "window_key": w.window_key,
                                "kind": w.kind,
                                "message_id": w.message_id,
                                "subject": w.subject,
                                "status": w.status,
                                "attempts": 0,
                                "next_attempt_at": w.now,
                                "lease_until": None,
                                "last_error": None,
                                "created_at": w.now,
                                "sent_at": None,
                                "raw": w.raw,
                            }
                            for w in fresh
                        ],
                    )
                new_ids: dict[tuple[int, str], int] = {}
                wanted = {(w.subscriber_id, w.window_key) for w in fresh}
                fresh_subs = sorted({sid for sid, _k in wanted})
                for start in range(0, len(fresh_subs), 500):
                    for oid, sid, key in conn.execute(
                        select(Outbox.id, Outbox.subscriber_id, Outbox.window_key).where(
                            Outbox.subscriber_id.in_(fresh_subs[start : start + 500]),
                            Outbox.window_key.in_(sorted({k for _s, k in wanted})),
                        )
                    ).all():
                        if (int(sid), str(key)) in wanted:
                            new_ids[(int(sid), str(key))] = int(oid)
                link_rows = [
                    {
                        "outbox_id": new_ids[(w.subscriber_id, w.window_key)],
                        "match_id": mid,
                        "subscriber_id": w.subscriber_id,
                        "kind": "alert" if w.kind == "alert" else "digest",
                    }
                    for w in fresh
                    for mid in dict.fromkeys(w.match_ids)
                ]
                if link_rows:
                    conn.execute(insert(links), link_rows)
                ids: list[int | None] = []
                for w in windows:
                    oid = new_ids.pop((w.subscriber_id, w.window_key), None)  # a repeat in the batch gets None
                    ids.append(oid)
                return ids
        except IntegrityError:
            return [self.close_one(w) for w in windows]

    def close_one(self, w: WindowClose) -> int | None:
        """close_window for a prepared WindowClose."""
        return self.close_window(
            subscriber_id=w.subscriber_id,
            window_key=w.window_key,
            kind=w.kind,
            message_id=w.message_id,
            subject=w.subject,
            raw=w.raw,
            match_ids=w.match_ids,
            now=w.now,
            status=w.status,
        )

    def claim_outbox(self, now: datetime, *, lease: timedelta, limit: int) -> list[Outbox]:
        """Take due rows for sending. A row whose lease ran out (its sender died) is due again."""
        due = or_(
            and_(Outbox.status == "queued", Outbox.next_attempt_at <= now),
            and_(Outbox.status == "sending", Outbox.lease_until <= now),
        )
        order = (Outbox.next_attempt_at, Outbox.id)
        with self.session() as s:
            if not self.is_postgres:
                # SQLite has one writer: take the rows with a guarded update so two senders never
                # both win the same row. Only the guard columns are read first, and the updates skip
                # the ORM's in-session sync: both were quadratic in the batch size.
                candidates = s.execute(
                    select(Outbox.id, Outbox.status, Outbox.attempts).where(due).order_by(*order).limit(limit)
                ).all()
                if not candidates:
                    return []
                ids = [oid for oid, _status, _attempts in candidates]
                # One statement for the batch, guarded by `due` again: a row another sender took
                # meanwhile is no longer due. If any was, fall back to the row-by-row guard.
                res = s.execute(
                    update(Outbox)
                    .where(Outbox.id.in_(ids), due)
                    .values(status="sending", lease_until=now + lease, attempts=Outbox.attempts + 1)
                    .execution_options(synchronize_session=False)
                )
                if res.rowcount == len(ids):
                    s.commit()
                    return list(s.execute(select(Outbox).where(Outbox.id.in_(ids)).order_by(Outbox.id)).scalars())
                s.rollback()
                claimed = []
                for oid, status, attempts in candidates:
                    res = s.execute(
                        update(Outbox)
                        .where(Outbox.id == oid, Outbox.status == status, Outbox.attempts == attempts)
                        .values(status="sending", lease_until=now + lease, attempts=attempts + 1)
                        .execution_options(synchronize_session=False)
                    )
                    if res.rowcount == 1:
                        claimed.append(oid)
                s.commit()
                if not claimed:
                    return []
                return list(s.execute(select(Outbox).where(Outbox.id.in_(claimed)).order_by(Outbox.id)).scalars())
            stmt = select(Outbox).where(due).order_by(*order).limit(limit).with_for_update(skip_locked=True)
            rows = list(s.execute(stmt).scalars())
            for r in rows:
                r.status = "sending"
                r.lease_until = now + lease
                r.attempts += 1
            s.commit()
            return rows

    def mark_sent(self, outbox_id: int, now: datetime) -> None:
        self.mark_sent_many([outbox_id], now)

    def mark_sent_many(self, outbox_ids: Sequence[int], now: datetime) -> None:
        """Rows the server has accepted, in one transaction (callers pass only accepted rows)."""
        if not outbox_ids:
            return
        with self.engine.begin() as conn:
            conn.execute(
                update(Outbox)
                .where(Outbox.id.in_(list(outbox_ids)))
                .values(status="sent", sent_at=now, lease_until=None, last_error=None)
            )

    def mark_retry(self, outbox_id: int, error: str, next_attempt_at: datetime) -> None:
        with self.session() as s:
            s.execute(
                update(Outbox)
                .where(Outbox.id == outbox_id)
                .values(
                    status="queued",
                    next_attempt_at=next_attempt_at,
                    lease_until=None,
                    last_error=error[:2000],
                )
            )
            s.commit()

    def mark_failed(self, outbox_id: int, error: str) -> None:
        with self.session() as s:
            s.execute(
                update(Outbox)
                .where(Outbox.id == outbox_id)
                .values(status="failed", lease_until=None, last_error=error[:2000])
            )
            s.commit()

    def outbox_rows(self, *, status: str | None = None) -> list[Outbox]:
        stmt = select(Outbox).order_by(Outbox.id)
        if status:
            stmt = stmt.where(Outbox.status == status)
        with self.session() as s:
            return list(s.execute(stmt).scalars())

    def prune_outbox(self, before: datetime) -> int:
        """Drop the mail bytes of rows done with (sent, failed, skipped) and created before `before`.

        The rows themselves stay: their (subscriber, window) keys and the stories they carried are
        what keep a window from closing twice and a story from being mailed twice. The bytes are
        ~95% of the outbox and are never read again once a row is done.
        """
        with self.engine.begin() as conn:
            res = conn.execute(
                update(Outbox)
                .where(
                    Outbox.status.in_(["sent", "failed", "skipped"]),
                    Outbox.created_at < before,
                    func.length(Outbox.raw) > 0,
                )
                .values(raw=b"")
            )
            return int(res.rowcount or 0)

    def drop_unconfirmed(self, before: datetime) -> int:
        """Forget addresses that asked to subscribe but never confirmed, whose last request is that old.

        An unconfirmed address is not ours to keep; its confirmation mail goes with it (cascade).
        """
        recent = exists().where(and_(Outbox.subscriber_id == Subscriber.id, Outbox.created_at >= before))
        with self.engine.begin() as conn:
            res = conn.execute(
                delete(Subscriber).where(Subscriber.status == "pending", Subscriber.created_at < before, ~recent)
            )
            return int(res.rowcount or 0)

    def subscriber_counts(self) -> dict[str, int]:
        with self.session() as s:
            rows = s.execute(select(Subscriber.status, func.count()).group_by(Subscriber.status)).all()
            return {str(status): int(n) for status, n in rows}

    def outbox_counts(self) -> dict[str, int]:
        with self.session() as s:
            rows = s.execute(select(Outbox.status, func.count()).group_by(Outbox.status)).all()
            return {str(status): int(n) for status, n in rows}


def utcnow() -> datetime:
    return datetime.now(UTC)
