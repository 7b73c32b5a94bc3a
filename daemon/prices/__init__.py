"""Price data: providers (Yahoo, Stooq, Stooq bulk files), session calendar, price events,
alert state and backtests. Pure code: the pipeline fetches the bytes and passes `now`."""

from __future__ import annotations

from .alerts import AlertBook, fire
from .calendar import is_open, next_poll_at, session
from .events import events_for_history, move_since, price_event
from .providers import PriceProvider, ProviderError, get_provider, read_stooq_bulk

__all__ = [
    "AlertBook",
    "PriceProvider",
    "ProviderError",
    "events_for_history",
    "fire",
    "get_provider",
    "is_open",
    "move_since",
    "next_poll_at",
    "price_event",
    "read_stooq_bulk",
    "session",
]
