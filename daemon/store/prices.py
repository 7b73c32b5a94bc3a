"""Quotes and price events with their matches."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select

from daemon.models import Match, PriceEvent, Quote
from daemon.store.base import StoreBase
from daemon.store.matches import match_row_of
from daemon.store.tables import (
    PriceEventRow,
    QuoteRow,
)


class PriceStore(StoreBase):
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
                s.add(match_row_of(m, now=now, price_event_id=row.id, ticker=m.ticker or event.ticker))
            s.commit()
            return row.id
