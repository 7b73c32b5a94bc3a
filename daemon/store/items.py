"""Items with their tickers and matches, and the stories (clusters) they belong to."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from daemon.models import Item, Match
from daemon.store.base import StoreBase
from daemon.store.matches import match_row_of
from daemon.store.tables import (
    ItemRow,
    ItemTicker,
)


class ItemStore(StoreBase):
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
                s.add(match_row_of(m, now=now, item_id=row.id))
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
