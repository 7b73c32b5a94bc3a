"""Run price rules over a history, as if each daily bar had been one poll.

Why: before a rule goes live the operator wants to see how often it would have fired on real
data ("how many ±10% days did AAPL have?"). The same `AlertBook` semantics apply as in
production: each bar is a new session (day-change rules re-arm per trading day), and a rule's
cooldown is measured between bar dates, so `cooldown: 1d` allows consecutive sessions while
`cooldown: 7d` silences a week after each alert.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from typing import Any

from daemon.models import PriceEvent, Quote

from .alerts import AlertBook, _PriceRuleSet, fire
from .events import events_for_history, session_day


def _by_ticker(quotes: Sequence[Quote]) -> dict[str, list[Quote]]:
    out: dict[str, list[Quote]] = {}
    for q in quotes:
        out.setdefault(q.ticker, []).append(q)
    return out


def backtest(
    quotes: Sequence[Quote], ruleset: _PriceRuleSet, *, exchange: str = "XNYS", book: AlertBook | None = None
) -> Iterator[dict[str, Any]]:
    """One dict per alert, in date order (ties by ticker): date, ticker, rule, change_pct."""
    book = book if book is not None else AlertBook()
    streams = [events_for_history(qs, exchange=exchange) for qs in _by_ticker(quotes).values()]
    merged: Iterator[PriceEvent] = heapq.merge(*streams, key=lambda e: (e.at, e.ticker))
    for ev in merged:
        for m in fire(book, ruleset, ev, ev.at, exchange=exchange):
            yield {
                "date": session_day(ev, exchange).isoformat(),
                "ticker": ev.ticker,
                "rule": m.rule_id,
                "change_pct": round(ev.metrics["change_pct"], 4),
            }
