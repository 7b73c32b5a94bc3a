"""Which watched companies an item is about. Pure: the watchlist is compiled once, then matched.

Evidence, strongest first (docs/tickers.md has the rules with examples):
1. the feed's own ticker tags (Item.ticker_hints: Seeking Alpha `sa:symbol`, wire categories
   such as "NASDAQ:KC"), and the per-ticker source the item came from (an EDGAR company feed);
2. an EDGAR CIK in the item's address or text, mapped through the watchlist's `cik`;
3. `$SYM` cashtags and exchange prefixes ("(NASDAQ: KC)", "NYSE:IBM", "HKEX: 3896");
4. company names and aliases (word-bounded, case-aware: daemon/ingest/names.py);
5. the symbol written alone, "(AMC)" or "AMC": only for symbols of three or more letters that are
   not ordinary words. An ambiguous symbol (A, KC, IT, NOW, ALL...) written alone counts only
   when the company's name is in the same item, where the name already links it; it does confirm a
   weak name ("Sea" + "SE").
The item's title and summary are read; an ALL-CAPS headline offers no bare symbols, since every
word in it looks like one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from daemon.errors import ConfigError
from daemon.ingest.cashtags import bare_symbols, cashtags, ciks, exchange_tags, parenthesised_symbols
from daemon.ingest.names import NameMatcher, name_forms
from daemon.ingest.symbols import CODE, COMMON_WORDS, is_ambiguous_symbol
from daemon.models import Item, Ticker, Watchlist

__all__ = ["COMMON_WORDS", "TickerLinker", "load_watchlist"]

_CODE = CODE


class TickerLinker:
    """Compiled once per watchlist; `link` is then a few regex scans and one automaton pass per item."""

    def __init__(self, watchlist: Watchlist) -> None:
        self.watchlist = watchlist
        self._symbols = frozenset(t.symbol for t in watchlist.tickers)
        self._exchange = {t.symbol: t.exchange.upper() for t in watchlist.tickers}
        self._by_cik: dict[str, set[str]] = {}
        # code -> symbols: the symbol itself plus code-like aliases ("3896", "3896.HK", "BRK-B")
        self._codes: dict[str, set[str]] = {}
        names: dict[str, list[tuple[str, bool]]] = {}
        for t in watchlist.tickers:
            self._add_code(t.symbol, t.symbol)
            if t.cik:
                self._by_cik.setdefault(t.cik.zfill(10), set()).add(t.symbol)
            for alias in t.aliases:
                if _CODE.match(alias):
                    self._add_code(alias, t.symbol)
                else:
                    names.setdefault(alias, []).append((t.symbol, False))
            for form in name_forms(t.name):
                names.setdefault(form.text, []).append((t.symbol, form.weak))
        self._names = NameMatcher(names)
        self._alone_ok = frozenset(s for s in self._symbols if s.isalpha() and not is_ambiguous_symbol(s))

    def _add_code(self, code: str, symbol: str) -> None:
        code = code.upper()
        self._codes.setdefault(code, set()).add(symbol)
        base = re.split(r"[.\-]", code, maxsplit=1)[0]
        if base != code and not base.isalpha():  # "3896.HK" -> "3896"; not "BRK.B" -> "BRK"
            self._codes.setdefault(base, set()).add(symbol)

    def _by_code(self, code: str) -> set[str]:
        code = code.upper()
        found = self._codes.get(code)
        if found is None and code.isdigit():  # "(HKEX: 03896)" is 3896
            found = self._codes.get(code.lstrip("0"))
        return found or set()

    def link(self, item: Item, source_ticker: str | None = None) -> tuple[str, ...]:
        """Watched symbols this item is about, sorted and unique."""
        if not self._symbols:
            return ()
        found: set[str] = set()
        if source_ticker and source_ticker in self._symbols:
            found.add(source_ticker)
        for hint in item.ticker_hints:
            found |= self._by_code(hint)
        text = f"{item.title}\n{item.summary}" if item.summary else item.title
        if self._by_cik:
            for cik in ciks(text, item.url, item.guid):
                found |= self._by_cik.get(cik, set())
        for code in cashtags(text):
            found |= self._by_code(code)
        for exchange, code in exchange_tags(text):
            found |= self._listed_on(exchange, code)
        strong_names, weak_names = self._names.find(text)
        found |= strong_names
        written: set[str] = set()  # symbols written alone, "(KC)" or "KC"
        for code in parenthesised_symbols(text):
            written |= self._by_code(code) & self._symbols
        for segment in (item.title, item.summary):
            for code in bare_symbols(segment):
                if code in self._symbols:
                    written.add(code)
        found |= written & self._alone_ok
        found |= written & weak_names
        return tuple(sorted(found))

    def _listed_on(self, exchange: str, code: str) -> set[str]:
        """Watched symbols for "EXCHANGE: CODE"; "(TSX: KC)" is another company's KC."""
        out: set[str] = set()
        for symbol in self._by_code(code):
            listed = self._exchange.get(symbol, "")
            # an alias code ("3896") names its own market; the symbol itself must be on its exchange
            if listed and code.upper() == symbol and exchange.split()[0] != listed.split()[0]:
                continue
            out.add(symbol)
        return out


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
