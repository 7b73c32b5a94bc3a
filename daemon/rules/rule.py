"""The public face of one rule: what digests, stores and subscribers need to know about it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

from daemon.models import Severity

from .conditions import Node

_DURATION = re.compile(r"(\d+)\s*([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta | None:
    """'1d', '6h', '30m', '1h30m' -> timedelta; None when the text is not a duration."""
    s = text.strip().lower()
    if not s:
        return None
    total = timedelta()
    pos = 0
    for m in _DURATION.finditer(s):
        if s[pos : m.start()].strip():
            return None
        total += timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
        pos = m.end()
    if pos == 0 or s[pos:].strip():
        return None
    return total


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    category: str
    severity: Severity
    tickers: tuple[str, ...] = ("*",)  # "*" = every watched ticker
    cooldown: timedelta | None = None
    is_price: bool = False
    path: str = "<string>"
    line: int = 0
    description: str = ""
    when: Node | None = field(default=None, repr=False, compare=False)
    unless: Node | None = field(default=None, repr=False, compare=False)

    @property
    def all_tickers(self) -> bool:
        return "*" in self.tickers

    def in_scope(self, ticker: str) -> bool:
        return "*" in self.tickers or ticker in self.tickers
