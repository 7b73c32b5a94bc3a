"""Subscribers and what each follows."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, func, select, update
from sqlalchemy.orm import Session

from daemon.store.base import StoreBase
from daemon.store.tables import (
    Outbox,
    Subscriber,
    Subscription,
)


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


class SubscriberStore(StoreBase):
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
