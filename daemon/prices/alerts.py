"""Alert state for price rules: fire on a crossing, not on every poll.

A price rule is a level ("down 5% or more"), polled every few minutes. Without state it would
alert on every poll for as long as the stock stays down. The book keeps, per (rule, ticker):

- `armed`: the next true condition may fire. Firing disarms; a poll where the condition is false
  re-arms (a new crossing needs the condition to have been false in between).
- `period`: the trading session the measurement belongs to. Day-change measures (change_pct,
  gap_pct, volume_ratio, high_days, low_days) start afresh each session, so a new session
  re-arms: "down 6% today" and "down 6% tomorrow" are two moves, even though no poll in between
  saw the condition false. Within a session, five polls at -6% give one alert. In a backtest
  over daily bars every bar is a new session, so every qualifying day fires (two ±10% days in a
  row are two alerts), subject to the cooldown.
- `last_fired` and the rule's `cooldown`: after firing, nothing fires before the cooldown has
  elapsed, even on a new crossing. A crossing seen during the cooldown stays armed and fires at
  the first poll after it that still finds the condition true (a late alert beats a lost one).

The book is JSON (`to_json`/`from_json`) so the store can keep it across restarts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol

from daemon.models import Match, PriceEvent

from .events import session_day

_FORMAT = 1


@dataclass(slots=True)
class AlertState:
    armed: bool = True
    last_fired: datetime | None = None
    period: str | None = None


class AlertBook:
    def __init__(self) -> None:
        self._states: dict[tuple[str, str], AlertState] = {}

    def state(self, rule_id: str, ticker: str) -> AlertState:
        """A copy of the state (fresh if unseen), for display and tests."""
        s = self._states.get((rule_id, ticker), AlertState())
        return AlertState(s.armed, s.last_fired, s.period)

    def __len__(self) -> int:
        return len(self._states)

    def step(
        self,
        rule_id: str,
        ticker: str,
        condition_true: bool,
        now: datetime,
        cooldown: timedelta | None,
        period: str | date | None = None,
    ) -> bool:
        """Feed one observation; True means: fire this alert now."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        key = (rule_id, ticker)
        s = self._states.get(key)
        if s is None:
            s = self._states[key] = AlertState()
        p = period.isoformat() if isinstance(period, date) else period
        if p is not None and p != s.period:
            s.armed = True  # a new session measures afresh
            s.period = p
        if not condition_true:
            s.armed = True
            return False
        if not s.armed:
            return False
        if cooldown is not None and s.last_fired is not None and now - s.last_fired < cooldown:
            return False  # stays armed: fires after the cooldown if still true
        s.armed = False
        s.last_fired = now
        return True

    def forget(self, rule_ids: Iterable[str]) -> None:
        """Drop state of rules that no longer exist (after a rules reload)."""
        gone = set(rule_ids)
        self._states = {k: v for k, v in self._states.items() if k[0] not in gone}

    def to_json(self) -> str:
        rows = [
            {
                "rule": r,
                "ticker": t,
                "armed": s.armed,
                "last_fired": s.last_fired.isoformat() if s.last_fired else None,
                "period": s.period,
            }
            for (r, t), s in sorted(self._states.items())
        ]
        return json.dumps({"format": _FORMAT, "states": rows}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes | None) -> AlertBook:
        """The book saved by `to_json`; empty for None/empty text (first run)."""
        book = cls()
        if not text:
            return book
        try:
            doc = json.loads(text)
            if doc.get("format") != _FORMAT:
                raise ValueError(f"unknown alert book format {doc.get('format')!r}")
            for row in doc["states"]:
                lf = row.get("last_fired")
                at = datetime.fromisoformat(lf) if lf else None
                if at is not None and at.tzinfo is None:
                    raise ValueError(f"naive last_fired {lf!r}")
                book._states[(str(row["rule"]), str(row["ticker"]))] = AlertState(
                    armed=bool(row.get("armed", True)), last_fired=at, period=row.get("period")
                )
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as e:
            raise ValueError(f"unreadable alert book: {e}") from None
        return book


class _PriceRule(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def cooldown(self) -> timedelta | None: ...
    def in_scope(self, ticker: str) -> bool: ...


class _PriceRuleSet(Protocol):
    def match_price(self, event: PriceEvent) -> list[Match]: ...
    def price_rules(self) -> Iterable[_PriceRule]: ...


def fire(
    book: AlertBook,
    ruleset: _PriceRuleSet,
    event: PriceEvent,
    now: datetime,
    *,
    exchange: str = "XNYS",
) -> list[Match]:
    """The matches of this event that alert now; every in-scope price rule is stepped once."""
    true_now: dict[str, list[Match]] = {}
    for m in ruleset.match_price(event):
        true_now.setdefault(m.rule_id, []).append(m)
    period = session_day(event, exchange).isoformat()
    out: list[Match] = []
    for rule in ruleset.price_rules():
        if not rule.in_scope(event.ticker):
            continue
        hit = true_now.get(rule.id, [])
        if book.step(rule.id, event.ticker, bool(hit), now, rule.cooldown, period=period):
            out.extend(hit)
    return out
