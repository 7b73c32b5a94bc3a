from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from daemon.models import PriceEvent
from daemon.prices.alerts import AlertBook, fire
from daemon.rules import load_rules_text

T0 = datetime(2026, 3, 18, 14, 0, tzinfo=UTC)  # 10:00 New York
POLL = timedelta(minutes=5)

RULES = """
rules:
  - id: down-5
    title: Down 5% or more
    category: price
    severity: medium
    when:
      price: {change_pct: {lte: -5}, window: 1d}
  - id: kc-up-3
    title: KC up 3%
    category: price
    severity: low
    tickers: [KC]
    when:
      price: {change_pct: {gte: 3}}
  - id: other-only
    title: Only for OTHR
    category: price
    severity: low
    tickers: [OTHR]
    when:
      price: {change_pct: {lte: -1}}
  - id: earnings
    title: Results
    category: earnings
    severity: high
    when:
      headline: {phrases: ["quarterly results"]}
"""


def test_stays_below_for_five_polls_alerts_once_then_again_after_recovery() -> None:
    book = AlertBook()
    below = [book.step("down-5", "KC", True, T0 + i * POLL, None, "2026-03-18") for i in range(5)]
    assert below == [True, False, False, False, False]
    assert book.step("down-5", "KC", False, T0 + 5 * POLL, None, "2026-03-18") is False  # recovered
    assert book.step("down-5", "KC", True, T0 + 6 * POLL, None, "2026-03-18") is True  # fell again
    assert book.step("down-5", "KC", True, T0 + 7 * POLL, None, "2026-03-18") is False


def test_state_is_per_rule_and_ticker() -> None:
    book = AlertBook()
    assert book.step("down-5", "KC", True, T0, None)
    assert book.step("down-5", "AAPL", True, T0, None)
    assert book.step("other", "KC", True, T0, None)
    assert not book.step("down-5", "KC", True, T0 + POLL, None)


def test_cooldown_blocks_a_new_crossing_then_fires_once_it_elapsed() -> None:
    book = AlertBook()
    hour = timedelta(hours=1)
    assert book.step("r", "KC", True, T0, hour)
    assert not book.step("r", "KC", False, T0 + POLL, hour)  # re-armed
    assert not book.step("r", "KC", True, T0 + 2 * POLL, hour)  # new crossing inside the cooldown
    assert not book.step("r", "KC", True, T0 + 59 * timedelta(minutes=1), hour)
    assert book.step("r", "KC", True, T0 + hour, hour)  # still true when the cooldown ends
    assert not book.step("r", "KC", True, T0 + hour + POLL, hour)


def test_a_new_session_rearms_day_change_rules() -> None:
    book = AlertBook()
    assert book.step("r", "KC", True, T0, None, "2026-03-18")
    assert not book.step("r", "KC", True, T0 + POLL, None, "2026-03-18")
    # next session, still down 6% vs the new previous close: a new move
    assert book.step("r", "KC", True, T0 + timedelta(days=1), None, "2026-03-19")
    # with a 2-day cooldown the new session re-arms but cannot fire yet
    book2 = AlertBook()
    two = timedelta(days=2)
    assert book2.step("r", "KC", True, T0, two, "2026-03-18")
    assert not book2.step("r", "KC", True, T0 + timedelta(days=1), two, "2026-03-19")
    assert book2.step("r", "KC", True, T0 + two, two, "2026-03-20")


def test_json_round_trip_keeps_behaviour() -> None:
    book = AlertBook()
    book.step("down-5", "KC", True, T0, timedelta(days=1), "2026-03-18")
    book.step("down-5", "AAPL", False, T0, None, "2026-03-18")
    text = book.to_json()
    again = AlertBook.from_json(text)
    assert again.to_json() == text
    assert again.state("down-5", "KC").last_fired == T0
    assert not again.step("down-5", "KC", True, T0 + POLL, timedelta(days=1), "2026-03-18")  # still disarmed
    assert again.step("down-5", "AAPL", True, T0 + POLL, None, "2026-03-18")
    assert len(AlertBook.from_json(None)) == 0
    with pytest.raises(ValueError, match="unreadable alert book"):
        AlertBook.from_json('{"format": 1, "states": [{"ticker": "KC"}]}')
    with pytest.raises(ValueError, match="format"):
        AlertBook.from_json('{"format": 99, "states": []}')


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        AlertBook().step("r", "KC", True, datetime(2026, 3, 18, 14), None)


def _event(ticker: str, change: float, at: datetime) -> PriceEvent:
    return PriceEvent(ticker=ticker, at=at, metrics={"change_pct": change, "last": 94.0, "prev_close": 100.0})


def test_fire_with_the_rules_engine_alerts_on_crossings_only() -> None:
    rs = load_rules_text(RULES, "rules/price.yaml")
    book = AlertBook()
    polls = [-6.0, -6.2, -5.5, -7.0, -6.1, -3.0, -5.1, -5.2]
    fired = []
    for i, ch in enumerate(polls):
        now = T0 + i * POLL
        fired.append([m.rule_id for m in fire(book, rs, _event("KC", ch, now), now)])
    assert fired == [["down-5"], [], [], [], [], [], ["down-5"], []]
    # OTHR's rule is out of scope for KC: never stepped, no state kept for it
    assert ("other-only", "KC") not in {(r, t) for r, t in book._states}
    assert book.state("kc-up-3", "KC").armed  # stepped with a false condition


def test_fire_returns_the_engines_match_with_explanation() -> None:
    rs = load_rules_text(RULES, "rules/price.yaml")
    book = AlertBook()
    got = fire(book, rs, _event("KC", 4.0, T0), T0)
    assert [(m.rule_id, m.ticker, m.category) for m in got] == [("kc-up-3", "KC", "price")]
    assert got[0].explanations and "change_pct" in got[0].explanations[0].text
    assert fire(book, rs, _event("AAPL", 4.0, T0), T0) == []  # kc-up-3 is scoped to KC


def test_daily_bar_events_rearm_per_session_through_fire() -> None:
    rs = load_rules_text(RULES, "rules/price.yaml")
    book = AlertBook()
    d1 = datetime(2026, 3, 17, tzinfo=UTC)  # daily bars: session date at 00:00 UTC
    d2 = datetime(2026, 3, 18, tzinfo=UTC)
    assert [m.rule_id for m in fire(book, rs, _event("KC", -6, d1), d1)] == ["down-5"]
    assert [m.rule_id for m in fire(book, rs, _event("KC", -6, d2), d2)] == ["down-5"]
    assert fire(book, rs, _event("KC", -6, d2), d2 + POLL) == []
