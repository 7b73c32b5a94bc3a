"""Which watched companies an item is about. Pure: the watchlist is loaded once, then matched.

Evidence, strongest first: tickers the feed tagged (ticker_hints), the per-ticker source the item
came from, `$SYM` cashtags, exchange tags such as "(NASDAQ: KC)" or "HKEX: 3896", company names
and aliases, and finally the bare symbol as an upper-case word. Short symbols are the classic
false positive ("KC" in "KC-135", "IT", "ON"), so a bare symbol counts only when it has at least
three letters and is not an ordinary English word; two-letter symbols need a stronger signal.

Names and aliases go into one Aho-Corasick automaton (pyahocorasick), so linking costs one pass
over the text however many companies are watched.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Any

import ahocorasick
import yaml

from daemon.errors import ConfigError
from daemon.models import Item, Ticker, Watchlist

_CODE = re.compile(r"^[A-Z0-9][A-Z0-9.\-]{0,11}$")
_CASHTAG = re.compile(r"(?<![\w$])\$([A-Za-z][A-Za-z0-9]{0,5}(?:[.\-][A-Za-z]{1,2})?)(?![\w])")
_EXCHANGE_TAG = re.compile(
    r"\b(?:NASDAQ(?:\s?(?:GS|GM|CM))?|NYSE(?:\s(?:American|Arca|MKT))?|AMEX|OTC(?:QX|QB|\sMarkets)?|TSXV?|"
    r"LSE|HKEX|SEHK|SSE|SZSE|ASX|Euronext|XETRA)\s*:\s*([A-Za-z0-9]{1,6}(?:[.\-][A-Za-z0-9]{1,3})?)\b",
    re.IGNORECASE,
)
_PAREN_SYMBOL = re.compile(r"\(([A-Z]{3,5})\)")
_BARE_SYMBOL = re.compile(r"(?<![\w$.\-])([A-Z]{3,5})(?![\w\-])")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_CORPORATE_SUFFIXES = _words(
    "inc inc. incorporated corp corp. corporation co co. company companies ltd ltd. limited plc llc l.l.c. "
    "lp l.p. sa s.a. ag nv n.v. se holdings holding group"
)
# Tickers that are also everyday words or abbreviations seen in upper-case headlines.
COMMON_WORDS = _words(
    """
    A AN AND ARE AS AT BE BIG BUY BY CAN CEO CFO COO CTO DAY DO EPS ETF EU FDA FOR FUN GDP GET GO
    GOOD HAS HE HIS HOT IN IPO IS IT KEY LOW MAN MAY ME NEW NOT NOW NYSE OF OLD ON ONE OR OUR OUT
    PER RUN SEC SEE SHE SO THE TO TOP TWO UK UP US USA USD WAS WELL WHO WHY YOU ALL ANY ARE BIG
    CAR CAT DOW EAT EYE FAST FLY GAS HIT JOB LIFE LIVE LOVE MAIN NEXT OPEN PLAY REAL RIDE SAFE
    SAVE SHOP SNOW TRUE VERY WORK ZONE AIR ART BAND BEST BOX CASH CORE DISH EDGE FAN FIVE FORM
    FREE FUND GAIN GOLD HOME INFO JOBS KIDS LAND LOAN MIND MOVE NICE PEAK PLUS POST RATE RENT
    RISE SALE SEED SITE STAR TECH TIME TRIP WASH WIN WORLD YEAR CEOS IPOS ESG API NASDAQ AMEX
    OTC ADR ADS LLC INC LTD PLC CORP Q1 Q2 Q3 Q4 FY USA NFL NBA AI EV
    """
)


class TickerLinker:
    """Compiled once per watchlist; `link` is then a few regex scans per item."""

    def __init__(self, watchlist: Watchlist) -> None:
        self.watchlist = watchlist
        self._symbols = frozenset(t.symbol for t in watchlist.tickers)
        self._exchange = {t.symbol: t.exchange.upper() for t in watchlist.tickers}
        # code -> symbol: the symbol itself plus code-like aliases ("3896", "3896.HK", "BRK-B")
        self._codes: dict[str, set[str]] = {}
        names: dict[str, set[str]] = {}
        for t in watchlist.tickers:
            self._add_code(t.symbol, t.symbol)
            for alias in t.aliases:
                if _CODE.match(alias):
                    self._add_code(alias, t.symbol)
                else:
                    names.setdefault(_fold(alias), set()).add(t.symbol)
            for name in _name_forms(t.name):
                names.setdefault(_fold(name), set()).add(t.symbol)
        self._names = _NameMatcher(names)
        self._bare_ok = frozenset(s for s in self._symbols if len(s) >= 3 and s.isalpha() and s not in COMMON_WORDS)

    def _add_code(self, code: str, symbol: str) -> None:
        code = code.upper()
        self._codes.setdefault(code, set()).add(symbol)
        base = re.split(r"[.\-]", code, maxsplit=1)[0]
        if base != code and not base.isalpha():  # "3896.HK" -> "3896"; not "BRK.B" -> "BRK"
            self._codes.setdefault(base, set()).add(symbol)

    def _by_code(self, code: str) -> set[str]:
        return self._codes.get(code.upper(), set())

    def link(self, item: Item, source_ticker: str | None = None) -> tuple[str, ...]:
        """Watched symbols this item is about, sorted and unique."""
        found: set[str] = set()
        if source_ticker and source_ticker in self._symbols:
            found.add(source_ticker)
        for hint in item.ticker_hints:
            found |= self._by_code(hint)
        text = f"{item.title}\n{item.summary}"
        for m in _CASHTAG.finditer(text):
            found |= self._by_code(m.group(1))
        for m in _EXCHANGE_TAG.finditer(text):
            exchange = m.group(0).split(":", 1)[0].split()[0].upper()
            for symbol in self._by_code(m.group(1)):
                listed = self._exchange.get(symbol, "")
                # "(TSX: KC)" is another company's KC; an alias code ("3896") names its own market
                if listed and m.group(1).upper() == symbol and exchange != listed.split()[0]:
                    continue
                found.add(symbol)
        for m in _PAREN_SYMBOL.finditer(text):
            if m.group(1) in self._symbols and len(m.group(1)) >= 3:
                found.add(m.group(1))
        found |= self._names.find(text)
        if self._bare_ok:
            for segment in (item.title, item.summary):
                if _shouting(segment):
                    continue  # in an ALL-CAPS headline every word looks like a ticker
                for m in _BARE_SYMBOL.finditer(segment):
                    if m.group(1) in self._bare_ok:
                        found.add(m.group(1))
        return tuple(sorted(found))


def _fold(s: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", s).casefold().split())


def _name_forms(name: str) -> list[str]:
    """The legal name and its short form: "Kingsoft Cloud Holdings Limited" -> "Kingsoft Cloud"."""
    name = " ".join(name.split())
    if not name:
        return []
    forms = [name]
    words = name.replace(",", " ").split()
    while len(words) > 1 and words[-1].lower() in _CORPORATE_SUFFIXES:
        words.pop()
    short = " ".join(words)
    if short != name and len(short) >= 3:
        forms.append(short)
    return forms


def _has_cjk(s: str) -> bool:
    return any(
        "\u3040" <= ch <= "\u30ff"
        or "\u3400" <= ch <= "\u9fff"
        or "\uac00" <= ch <= "\ud7af"
        or "\uf900" <= ch <= "\ufaff"
        for ch in s
    )


class _NameMatcher:
    """All names and aliases in one Aho-Corasick automaton over case-folded text.

    One pass per item whatever the watchlist size (a 5,000-name regex alternation managed ~150
    items/s; the automaton is linear in the text). Latin names must sit on word boundaries;
    CJK names have none, so any occurrence counts.
    """

    def __init__(self, names: dict[str, set[str]]) -> None:
        self._automaton = ahocorasick.Automaton()
        for name, symbols in names.items():
            self._automaton.add_word(name, (len(name), _has_cjk(name), tuple(sorted(symbols))))
        self._empty = not names
        if not self._empty:
            self._automaton.make_automaton()

    def find(self, text: str) -> set[str]:
        if self._empty:
            return set()
        folded = _fold(text)
        last = len(folded) - 1
        hits: list[tuple[int, int, tuple[str, ...]]] = []
        for end, (length, cjk, symbols) in self._automaton.iter(folded):
            start = end - length + 1
            if not cjk and (
                (start > 0 and _word_char(folded[start - 1])) or (end < last and _word_char(folded[end + 1]))
            ):
                continue
            hits.append((start, end, symbols))
        # A name inside a longer matched name belongs to the longer one:
        # "Apple" in "Apple Hospitality REIT" is not Apple Inc.
        found: set[str] = set()
        for start, end, symbols in hits:
            if not any(s <= start and end <= e and (s, e) != (start, end) for s, e, _ in hits):
                found.update(symbols)
        return found


def _word_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _shouting(text: str) -> bool:
    letters = [c for c in text if c.isalpha() and c.isascii()]
    return len(letters) >= 12 and sum(c.isupper() for c in letters) > 0.8 * len(letters)


# --- watchlist.yaml ------------------------------------------------------------------------

_TICKER_KEYS = frozenset({"symbol", "exchange", "name", "aliases", "cik"})


def load_watchlist(path: Path) -> Watchlist:
    """Parse rules/watchlist.yaml (DESIGN.md §3); every problem is `path:line:col: message`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read watchlist: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}:1:1: not UTF-8 text ({exc.reason})") from exc
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: {exc.problem or exc}") from exc
    if root is None:
        return Watchlist()
    if not isinstance(root, yaml.MappingNode):
        raise _err(path, root, "expected a mapping with a 'tickers' list")
    tickers_node: yaml.Node | None = None
    for key, value in root.value:
        if _scalar(key) != "tickers":
            raise _err(path, key, f"unknown key {_scalar(key)!r} (expected 'tickers')")
        tickers_node = value
    if tickers_node is None or (isinstance(tickers_node, yaml.ScalarNode) and tickers_node.value in ("", "~", "null")):
        return Watchlist()
    if not isinstance(tickers_node, yaml.SequenceNode):
        raise _err(path, tickers_node, "'tickers' must be a list")
    seen: dict[str, yaml.Node] = {}
    out: list[Ticker] = []
    for node in tickers_node.value:
        ticker = _ticker(path, node)
        if ticker.symbol in seen:
            first = seen[ticker.symbol].start_mark.line + 1
            raise _err(path, node, f"symbol {ticker.symbol!r} listed twice (first on line {first})")
        seen[ticker.symbol] = node
        out.append(ticker)
    return Watchlist(tickers=tuple(out))


def _ticker(path: Path, node: yaml.Node) -> Ticker:
    if not isinstance(node, yaml.MappingNode):
        raise _err(path, node, "each ticker must be a mapping with at least 'symbol'")
    fields: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for key, value in node.value:
        k = _scalar(key)
        if k not in _TICKER_KEYS:
            raise _err(path, key, f"unknown ticker field {k!r} (known: {', '.join(sorted(_TICKER_KEYS))})")
        fields[k] = (key, value)
    if "symbol" not in fields:
        raise _err(path, node, "ticker without 'symbol'")
    symbol = _text(path, fields["symbol"][1], "symbol").upper()
    if not _CODE.match(symbol):
        raise _err(path, fields["symbol"][1], f"symbol {symbol!r} is not a ticker (letters, digits, '.', '-')")
    name = _text(path, fields["name"][1], "name") if "name" in fields else ""
    exchange = _text(path, fields["exchange"][1], "exchange").upper() if "exchange" in fields else ""
    aliases: tuple[str, ...] = ()
    if "aliases" in fields:
        a_node = fields["aliases"][1]
        if isinstance(a_node, yaml.ScalarNode):
            aliases = (_text(path, a_node, "alias"),) if a_node.value else ()
        elif isinstance(a_node, yaml.SequenceNode):
            aliases = tuple(_text(path, a, "alias") for a in a_node.value)
        else:
            raise _err(path, a_node, "'aliases' must be a list of names")
        for a_value, a in zip(aliases, getattr(a_node, "value", [a_node]), strict=False):
            if len(a_value.strip()) < 2:
                raise _err(path, a, "alias too short (at least 2 characters)")
    cik: str | None = None
    if "cik" in fields:
        raw = _text(path, fields["cik"][1], "cik")
        if not raw.isdigit() or len(raw) > 10:
            raise _err(path, fields["cik"][1], f"cik {raw!r} must be up to 10 digits")
        cik = raw.zfill(10)
    return Ticker(
        symbol=symbol,
        name=name,
        exchange=exchange,
        aliases=tuple(a.strip() for a in aliases if a.strip()),
        cik=cik,
    )


def _text(path: Path, node: yaml.Node, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise _err(path, node, f"{what} must be a single value")
    value: Any = node.value
    text = str(value).strip()
    if not text:
        raise _err(path, node, f"{what} is empty")
    return text


def _scalar(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else "<complex key>"


def _err(path: Path, node: yaml.Node, message: str) -> ConfigError:
    mark = node.start_mark
    return ConfigError(f"{path}:{mark.line + 1}:{mark.column + 1}: {message}")
