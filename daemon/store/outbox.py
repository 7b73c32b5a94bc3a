"""Digest windows and the outbox: close a window in one transaction, claim, mark, prune."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from daemon.store.base import StoreBase
from daemon.store.tables import (
    Outbox,
    OutboxMatch,
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


class OutboxStore(StoreBase):
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

    def outbox_counts(self) -> dict[str, int]:
        with self.session() as s:
            rows = s.execute(select(Outbox.status, func.count()).group_by(Outbox.status)).all()
            return {str(status): int(n) for status, n in rows}
