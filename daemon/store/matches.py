"""Matches as digests read them: plain rows joined with their item or price event."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, select

from daemon.models import Explanation, Match, Severity
from daemon.store.base import StoreBase
from daemon.store.tables import (
    ItemRow,
    ItemTicker,
    MatchRow,
    OutboxMatch,
    PriceEventRow,
)


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


def match_row_of(
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


class MatchStore(StoreBase):
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
